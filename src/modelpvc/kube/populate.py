"""``populate``: preflight, create the populate Job, follow it, record the verified revision on the PVC."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from modelpvc.core.events import Event, ProgressSink
from modelpvc.kube import manifests
from modelpvc.kube.cluster import Cluster
from modelpvc.kube.jobs import PENDING_GRACE, JobResult, run_indexed_job, run_job
from modelpvc.kube.preflight import Preflight, run_preflight
from modelpvc.kube.spec import MOUNT, ModelSpec

REVISION_ANNOTATION = "modelpvc.io/revision"  # + "." + path ("root" for the claim's root)
SOURCE_ANNOTATION = "modelpvc.io/source"
SECRET_ANNOTATION = "modelpvc.io/secret"  # noqa: S105 -- the Secret's name only, which update re-uses


RECORD_MANAGER = "modelpvc-record"  # its own manager: the PVC's other fields stay with whoever created it


def annotation_key(path: str) -> str:
    return f"{REVISION_ANNOTATION}.{path.replace('/', '_') or 'root'}"


@dataclass
class PopulateResult:
    preflight: Preflight
    job: JobResult
    summary: dict[str, Any]


def populate(cluster: Cluster, spec: ModelSpec, sink: ProgressSink, *, create_pvc: bool = False,
             source_check: str = "auto", timeout: float = 6 * 3600, link_dest: str | None = None,
             wait: bool = True, pending_grace: float = PENDING_GRACE) -> PopulateResult:
    pf = run_preflight(cluster, spec, sink, create_pvc=create_pvc, source_check=source_check,
                       pending_grace=pending_grace)
    spec = replace(pf.spec, model_bytes=pf.source_bytes or spec.model_bytes)
    if link_dest is not None:
        other = f"{MOUNT}/{link_dest}".rstrip("/")
        spec = replace(spec, mirror_args=(*spec.mirror_args, "--link-dest", other))
    if spec.parallel > 1:
        shards = run_indexed_job(cluster, manifests.parallel_populate_job(spec), sink, timeout, pending_grace)
        copied = sum(int((r.last("summary") or {}).get("bytes_fetched", 0)) for r in shards)
        sink.emit(Event("step", {"message": f"{len(shards)} shards copied {copied / 1e9:.2f} GB; a final run "
                                            "adopts them, checks the whole model and writes the manifest"}))
        spec = replace(spec, parallel=1)
    job = manifests.populate_job(spec)
    if not wait:
        cluster.create(job)
        name = job["metadata"]["name"]
        sink.emit(Event("step", {"message": f"Job {name} created; follow it with: oc logs -f job/{name} -n "
                                            f"{spec.namespace}, or re-run populate to wait for it"}))
        return PopulateResult(pf, JobResult(name), {})
    result = run_job(cluster, job, sink, timeout, pending_grace)
    summary = result.last("summary") or {}
    record_revision(cluster, spec, summary.get("revision"))
    sink.emit(Event("step", {"message": f"populated {spec.storage_uri}: revision {summary.get('revision')}"}))
    return PopulateResult(pf, result, summary)


def record_revision(cluster: Cluster, spec: ModelSpec, revision: str | None) -> None:
    """Remember on the PVC which revision sits (verified) at which path, and its source."""
    if not revision:
        return
    # Our own field manager applies only these annotations: applying the whole claim would conflict with
    # the fields whoever created it owns.
    cluster.apply({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                   "metadata": {"name": spec.pvc, "namespace": spec.namespace,
                                "annotations": {annotation_key(spec.path): revision,
                                                SOURCE_ANNOTATION: spec.source,
                                                SECRET_ANNOTATION: spec.secret}}}, force=True,
                  manager=RECORD_MANAGER)
