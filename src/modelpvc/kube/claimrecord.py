"""What we record on a claim we populated, for `deploy`, `update` and `doctor` to read back: which verified
revision sits at which path, its source and the Secret's name (annotations under our own field manager)."""

from __future__ import annotations

from modelpvc.kube import objects as o
from modelpvc.kube.cluster import Cluster
from modelpvc.kube.spec import ModelSpec

REVISION_ANNOTATION = "modelpvc.io/revision"  # + "." + path ("root" for the claim's root)
SOURCE_ANNOTATION = "modelpvc.io/source"
SECRET_ANNOTATION = "modelpvc.io/secret"  # noqa: S105 -- the Secret's name only, which update re-uses


RECORD_MANAGER = "modelpvc-record"  # its own manager: the PVC's other fields stay with whoever created it


def annotation_key(path: str) -> str:
    return f"{REVISION_ANNOTATION}.{path.replace('/', '_') or 'root'}"



def record_revision(cluster: Cluster, spec: ModelSpec, revision: str | None) -> None:
    """Remember on the PVC which revision sits (verified) at which path, and its source."""
    if not revision:
        return
    # A Job pinned to one zone bound a fresh volume there; doctor tells a project admin where it is from this.
    # (Kept when a later Job was not pinned: fields this manager stops applying would be removed.)
    pvc = cluster.get("PersistentVolumeClaim", spec.pvc, spec.namespace) or {}
    known = ((pvc.get("metadata") or {}).get("annotations") or {}).get(o.ZONE_ANNOTATION)
    pinned = spec.placement.zones[0] if len(spec.placement.zones) == 1 else known
    zone = {o.ZONE_ANNOTATION: pinned} if pinned else {}
    # Our own field manager applies only these annotations: applying the whole claim would conflict with
    # the fields whoever created it owns.
    cluster.apply({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                   "metadata": {"name": spec.pvc, "namespace": spec.namespace,
                                "annotations": {annotation_key(spec.path): revision,
                                                SOURCE_ANNOTATION: spec.source,
                                                SECRET_ANNOTATION: spec.secret,
                                                **zone}}}, force=True,
                  manager=RECORD_MANAGER)
