"""Mirror onto a claim whose directory may be serving: a source that changed is written beside it.

A GitOps hook re-runs the same ``mirror SRC DEST`` at every sync. When DEST already holds a complete copy of
another revision of the source, rewriting it in place would change the files under a running server (and
a restarted pod would load a mix); instead the source's revision goes to ``revisions/<id>/`` on the same
claim, its unchanged files hard-linked from DEST, and ``revisions/latest.json`` names it, for the verify
hook and for ``update --gitops`` to serve it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from modelpvc.core.events import Event, ProgressSink
from modelpvc.core.manifest import revision_id
from modelpvc.core.stop import StopToken
from modelpvc.store.volume.destination import Destination
from modelpvc.store.volume.revisions import revision_dir, write_latest
from modelpvc.transfer.mirror import MirrorRequest, MirrorResult, mirror


@dataclass(frozen=True)
class ServedTarget:
    request: MirrorRequest  # the request to run: into DEST, or into revisions/<id>/ beside it
    revision: str  # the source's revision, as the manifest will name it
    beside: bool  # DEST serves another revision: this one goes beside it


def plan_target(req: MirrorRequest, root: Path) -> ServedTarget:
    """Where the source's current revision goes, listing the source once for both decisions."""
    listed = req.source.list_objects()
    dry = mirror(replace(req, objects=listed, settings=replace(req.settings, dry_run=True)))
    revision = revision_id([(op.rel, op.size, op.obj.etag) for op in dry.plan.selected if op.obj is not None])
    req = replace(req, objects=listed)
    served = Destination(req.dest).read_manifest()
    if served is None or served.revision == revision:
        return ServedTarget(req, revision, beside=False)
    return ServedTarget(replace(req, dest=revision_dir(root, revision), link_dest=req.dest), revision, beside=True)


def mirror_served(req: MirrorRequest, root: Path, sink: ProgressSink, stop: StopToken | None = None
                  ) -> tuple[MirrorResult, ServedTarget]:
    """``mirror`` that never rewrites a complete revision in DEST; ``root`` is the claim's mount."""
    target = plan_target(req, root)
    if target.beside:
        sink.emit(Event("step", {"message": f"{req.dest} serves another revision of the source: writing revision "
                                            f"{target.revision} beside it, in {target.request.dest}"}))
    result = mirror(target.request, sink=sink, stop=stop)
    if not req.settings.dry_run:
        write_latest(root, target.revision, target.request.dest)
    return result, target

