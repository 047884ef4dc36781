"""``update``: refresh the weights, with zero downtime where the cluster allows it.

Zero-downtime: populate ``revisions/<id>/`` beside the served revision (unchanged files hard-linked from
it), switch only ``storageUri`` (server-side apply of a minimal object with our own field manager: every
other field stays with whoever set it), wait until the pods that mount the new URI are Ready, then remove
the old revision. It needs room on the claim for the new files and room in the cluster for a second
predictor pod (KServe rolls out surge-first); when either is missing, zero downtime is impossible and we
say so before changing anything. ``--stop-the-world`` then runs the runbook's sequence, automated and
waited: delete the InferenceService, wait for its pods, populate, recreate it exactly as it was (minus
status), wait. An InferenceService that Argo CD manages is not changed behind its back (kube/gitops.py).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from modelpvc.core.errors import ConfigError, DestinationFull, ModelpvcError, PodBlocked
from modelpvc.core.events import Event, ProgressSink
from modelpvc.core.manifest import revision_id
from modelpvc.kube import jobs, manifests, preflight
from modelpvc.kube import objects as o
from modelpvc.kube.claimrecord import SECRET_ANNOTATION, SOURCE_ANNOTATION
from modelpvc.kube.cluster import Cluster
from modelpvc.kube.gitops import Served, argo_managed, refuse_argo, storage_uri, write_served
from modelpvc.kube.placement import room_for_second_predictor
from modelpvc.kube.podstate import PENDING_GRACE
from modelpvc.kube.serving import served, switch_storage_uri, wait_serving
from modelpvc.kube.spec import Facts, ModelSpec, Placement


@dataclass
class UpdateResult:
    strategy: str  # "zero-downtime", "stop-the-world", "gitops", "populator" or "none"
    why: str
    revision: str | None
    storage_uri: str


@dataclass(frozen=True)
class UpdateOptions:
    stop_the_world: bool = False
    timeout: float = 6 * 3600
    pending_grace: float = PENDING_GRACE
    gitops_file: Path | None = None  # an Argo-managed InferenceService: point the manifests here at the new URI


def _impossible(why: str) -> ConfigError:
    return ConfigError(f"a zero-downtime update is impossible: {why}. Nothing was changed.",
                       hint="re-run with --stop-the-world to delete the InferenceService, populate and recreate it "
                            "(the model is offline meanwhile), or make room and re-run")


def _recorded(pvc: o.Obj, spec: ModelSpec) -> Facts:
    """The source and secret populate recorded on the claim, for what was not asked."""
    ann = (pvc.get("metadata") or {}).get("annotations") or {}
    if not spec.source and not ann.get(SOURCE_ANNOTATION):
        raise ConfigError("no --source given and none recorded on the PVC", hint="pass --source s3://...")
    if not spec.secret and not ann.get(SECRET_ANNOTATION):
        raise ConfigError("no --secret given and none recorded on the PVC", hint="pass --secret NAME")
    return Facts(source=None if spec.source else ann[SOURCE_ANNOTATION],
                 secret=None if spec.secret else ann[SECRET_ANNOTATION])


def update(cluster: Cluster, asked: ModelSpec, sink: ProgressSink, options: UpdateOptions = UpdateOptions()
           ) -> UpdateResult:
    isvc, spec = served(cluster, asked)
    pvc = cluster.get("PersistentVolumeClaim", spec.pvc, spec.namespace)
    if pvc is None:
        raise ConfigError(f"PVC {spec.pvc!r} (from the storageUri) not found")
    spec = spec.resolved(_recorded(pvc, spec)).validate()
    if argo_managed(isvc) and options.gitops_file is None:
        refuse_argo(isvc, f"pvc://{spec.pvc}/revisions/<new>/")
    openshift = preflight.namespace(cluster, spec, sink)
    spec, listing = preflight.source(cluster, spec, sink,
                                     lambda s: jobs.probe_source(cluster, s, sink, options.pending_grace))
    assert listing is not None  # "auto" lists from here, else in the cluster, or raises
    rev = revision_id(list(listing.entries))
    if spec.path == f"revisions/{rev}":
        sink.emit(Event("step", {"message": f"{spec.storage_uri} already serves revision {rev}; nothing to do"}))
        return UpdateResult("none", "already up to date", rev, spec.storage_uri)
    fill = _Fill(spec, listing.bytes, openshift)
    modes = (pvc.get("spec") or {}).get("accessModes") or []
    why_not = None
    if "ReadWriteOncePod" in modes:
        why_not = "the claim is ReadWriteOncePod: no Job can mount it while the server does"
    else:
        room = room_for_second_predictor(cluster, isvc, modes)
        if room.fits is False:
            why_not = room.why
        elif room.fits is None:
            sink.emit(Event("check", {"ok": True, "message": f"room for a second predictor pod {room.why}: trying "
                                                             "zero-downtime; if the new pod cannot be scheduled, "
                                                             "the storageUri is switched back"}))
    if why_not is not None:
        if not options.stop_the_world:
            raise _impossible(why_not)
        return _stop_the_world(cluster, isvc, fill, sink, options, why_not)
    if options.stop_the_world:
        return _stop_the_world(cluster, isvc, fill, sink, options, "asked for with --stop-the-world")
    return _zero_downtime(cluster, isvc, fill, rev, sink, options)


@dataclass(frozen=True)
class _Fill:
    """A resolved spec and what its claim's preflight needs."""

    spec: ModelSpec
    source_bytes: int
    openshift: bool

    def at(self, spec: ModelSpec) -> _Fill:
        return _Fill(spec, self.source_bytes, self.openshift)


def _fill(cluster: Cluster, fill: _Fill, sink: ProgressSink, options: UpdateOptions,
          link_dest: str | None = None) -> dict[str, Any]:
    """populate's claim checks and its Job, on a source update already measured."""
    spec = fill.spec
    _exists, storage_class = preflight.claim_class(cluster, spec, sink, create=False)
    target = preflight.target(cluster, spec, sink, fill.source_bytes, fill.openshift, storage_class)
    _result, summary = jobs.fill_claim(cluster, spec.resolved(target), sink, options.timeout,
                                       options.pending_grace, link_dest)
    return summary


def _zero_downtime(cluster: Cluster, isvc: o.Obj, fill: _Fill, rev: str, sink: ProgressSink,
                   options: UpdateOptions) -> UpdateResult:
    spec = fill.spec
    new = spec.at_path(f"revisions/{rev}")
    sink.emit(Event("step", {"message": f"zero-downtime: populating {new.storage_uri} beside {spec.storage_uri} "
                                        "(unchanged files hard-linked)"}))
    try:
        summary = _fill(cluster, fill.at(new), sink, options, link_dest=spec.path)
    except DestinationFull as e:
        _run_gc(cluster, new, ["--abandoned"], sink)  # mirror refused before its first byte: remove its state
        if not options.stop_the_world:
            raise _impossible(f"no room on the claim for a second revision ({e.message})") from e
        return _stop_the_world(cluster, isvc, fill, sink, options, f"no room for a second revision: {e.message}")
    if options.gitops_file is not None:
        changed = write_served(options.gitops_file, _served(spec, storage_uri(isvc)), _served(new, new.storage_uri))
        sink.emit(Event("step", {"message": f"wrote storageUri {new.storage_uri} into "
                                            f"{', '.join(str(f) for f in changed)}: commit and push; Argo CD "
                                            "switches the server at the next sync and its gc hook then removes "
                                            "the old revision"}))
        return UpdateResult("gitops", f"Argo CD manages {spec.name}: the change is in {options.gitops_file}",
                            summary.get("revision"), new.storage_uri)
    switch_storage_uri(cluster, spec, new.storage_uri)
    sink.emit(Event("step", {"message": f"switched storageUri to {new.storage_uri}"}))
    try:
        wait_serving(cluster, new, sink, timeout=1800, pending_grace=options.pending_grace)
    except PodBlocked as e:
        # The new predictor pod cannot start beside the old one (no room after all): serve the old revision
        # again rather than leave the rollout stuck; the new revision stays on the claim for a later try.
        switch_storage_uri(cluster, spec, spec.storage_uri)
        raise PodBlocked(f"the new revision's predictor pod could not start beside the serving one ({e.message}); "
                         f"switched storageUri back to {spec.storage_uri}, which still serves",
                         hint="free room for a second pod (GPUs, memory) and re-run update, or run update "
                              "--stop-the-world to replace the server with downtime") from e
    _retire(cluster, spec, sink)
    return UpdateResult("zero-downtime", "room on the claim and in the cluster for a second revision",
                        summary.get("revision"), new.storage_uri)


def _served(spec: ModelSpec, uri: str) -> Served:
    return Served(spec.name, spec.pvc, uri, spec.model_dir)


def _run_gc(cluster: Cluster, spec: ModelSpec, flags: list[str], sink: ProgressSink) -> None:
    """Remove a revision directory with a Job on the node holding the claim (RWO), tolerating its taints."""
    holders = o.pods_using_claim(cluster.list("Pod", spec.namespace), spec.pvc)
    tolerations = tuple({str(t): t for h in holders for t in h["spec"].get("tolerations") or []}.values())
    on_holder = Facts(placement=Placement(node=o.holder_node(holders, spec.pvc), tolerations=tolerations))
    job = manifests.gc_job(spec.resolved(on_holder), ["gc", spec.model_dir, "--yes", *flags])
    jobs.run_job(cluster, job, sink, timeout=600)
    cluster.delete("Job", job["metadata"]["name"], spec.namespace)


def _retire(cluster: Cluster, old: ModelSpec, sink: ProgressSink) -> None:
    """Remove the old revision's files once no predictor pod mounts it any more."""
    from modelpvc.kube.podstate import serves

    def gone() -> bool:
        return not any(serves(p, old.pvc, old.path)
                       for p in cluster.list("Pod", old.namespace, labels={o.PREDICTOR_LABEL: old.name}))

    cluster.poll("the old revision's pods to go", gone, timeout=600, interval=0.3)
    _run_gc(cluster, old, [], sink)
    sink.emit(Event("step", {"message": f"removed the old revision at {old.storage_uri}"}))


def _saved(isvc: o.Obj) -> o.Obj:
    """The user's object as they wrote it: no status, no server-set metadata."""
    out = copy.deepcopy(isvc)
    out.pop("status", None)
    meta = out["metadata"]
    for k in ("uid", "resourceVersion", "generation", "creationTimestamp", "managedFields", "deletionTimestamp",
              "finalizers"):
        meta.pop(k, None)
    return out


def _stop_the_world(cluster: Cluster, isvc: o.Obj, fill: _Fill, sink: ProgressSink, options: UpdateOptions,
                    why: str) -> UpdateResult:
    spec = fill.spec
    sink.emit(Event("step", {"message": f"stop-the-world: {why}"}))
    saved = _saved(isvc)
    backup = Path(f"{spec.name}-inferenceservice.yaml").resolve()
    backup.write_text(yaml.safe_dump(saved, sort_keys=False))
    sink.emit(Event("step", {"message": f"saved InferenceService {spec.name} as it is to {backup}"}))
    cluster.delete("InferenceService", spec.name, spec.namespace)
    cluster.poll("the InferenceService's pods to go", lambda: not cluster.list(
        "Pod", spec.namespace, labels={o.PREDICTOR_LABEL: spec.name}), timeout=600, interval=0.3)
    sink.emit(Event("step", {"message": f"InferenceService {spec.name} deleted; its pods are gone"}))
    try:
        summary = _fill(cluster, fill, sink, options)
    except ModelpvcError as e:
        # The claim may hold part of the new revision: serving it could load a mix of two models.
        e.hint = (f"{e.hint + '; ' if e.hint else ''}the InferenceService was not recreated; once the claim holds a "
                  f"verified model: oc apply -f {backup}")
        raise
    cluster.create(saved)
    sink.emit(Event("step", {"message": f"InferenceService {spec.name} recreated as it was"}))
    wait_serving(cluster, spec, sink, timeout=1800, pending_grace=options.pending_grace)
    return UpdateResult("stop-the-world", why, summary.get("revision"), spec.storage_uri)
