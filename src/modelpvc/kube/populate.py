"""``populate``: preflight, create the populate Job, follow it, record the verified revision on the PVC."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from modelpvc.core.errors import ConfigError
from modelpvc.core.events import Event, ProgressSink
from modelpvc.core.units import human_bytes
from modelpvc.kube import manifests
from modelpvc.kube import objects as o
from modelpvc.kube.claimrecord import record_revision
from modelpvc.kube.cluster import Cluster
from modelpvc.kube.jobs import run_indexed_job, run_job
from modelpvc.kube.podlog import JobResult
from modelpvc.kube.podstate import PENDING_GRACE
from modelpvc.kube.preflight import Preflight, check, measure_source, run_preflight
from modelpvc.kube.spec import MOUNT, ModelSpec


@dataclass
class PopulateResult:
    preflight: Preflight
    job: JobResult
    summary: dict[str, Any]


@dataclass(frozen=True)
class PopulateOptions:
    create_pvc: bool = False
    source_check: str = "auto"  # "auto" (from here, else a probe Job in the cluster), "local", "cluster", "skip"
    timeout: float = 6 * 3600
    link_dest: str | None = None  # another revision on the claim: unchanged files are hard-linked from it
    wait: bool = True  # False: create the Job and return (a later populate follows it)
    pending_grace: float = PENDING_GRACE


def populate(cluster: Cluster, spec: ModelSpec, sink: ProgressSink, options: PopulateOptions = PopulateOptions()
             ) -> PopulateResult:
    create_pvc, source_check, timeout = options.create_pvc, options.source_check, options.timeout
    link_dest, wait, pending_grace = options.link_dest, options.wait, options.pending_grace
    if spec.import_from:
        import_first(cluster, spec, sink, timeout, pending_grace)
    pf = run_preflight(cluster, spec, sink, create_pvc=create_pvc, source_check=source_check,
                       pending_grace=pending_grace)
    spec = replace(pf.spec, model_bytes=pf.source_bytes or spec.model_bytes)
    if link_dest is not None:
        other = f"{MOUNT}/{link_dest}".rstrip("/")
        spec = replace(spec, mirror_args=(*spec.mirror_args, "--link-dest", other))
    if spec.parallel > 1:
        shards = run_indexed_job(cluster, manifests.parallel_populate_job(spec), sink, timeout, pending_grace)
        copied = sum(int((r.last("summary") or {}).get("bytes_fetched", 0)) for r in shards)
        sink.emit(Event("step", {"message": f"{len(shards)} shards copied {human_bytes(copied)}; a final run "
                                            "adopts them, checks the whole model and writes the manifest"}))
        spec = replace(spec, parallel=1)
    job = manifests.populate_job(spec, followed=wait)
    if not wait:
        cluster.create(job)
        name = job["metadata"]["name"]
        sink.emit(Event("step", {"message": f"Job {name} created; follow it with: oc logs -f job/{name} -n "
                                            f"{spec.namespace}, or re-run populate: it follows the running Job"}))
        return PopulateResult(pf, JobResult(name), {})
    result = run_job(cluster, job, sink, timeout, pending_grace)
    summary = result.last("summary") or {}
    record_revision(cluster, spec, summary.get("revision"))
    return PopulateResult(pf, result, summary)


def import_first(cluster: Cluster, spec: ModelSpec, sink: ProgressSink, timeout: float,
                 pending_grace: float = PENDING_GRACE) -> dict[str, Any]:
    """The import Job (Hub -> bucket) in front of the populate Job: the secret's keys and endpoint as for the
    populate Job, the Hub token from ``spec.hub_secret``; returns the import's summary."""
    pf = measure_source(cluster, spec, sink, source_check="skip", pending_grace=pending_grace)
    if spec.hub_secret:
        secret = cluster.get("Secret", spec.hub_secret, spec.namespace)
        if secret is None or "HF_TOKEN" not in o.secret_values(secret):
            check(sink, False, f"secret {spec.hub_secret} with key HF_TOKEN not found in {spec.namespace}")
            raise ConfigError(f"--hub-secret {spec.hub_secret!r}: no Secret with a key HF_TOKEN in {spec.namespace}",
                              hint=f"oc create secret generic {spec.hub_secret} --from-literal=HF_TOKEN=hf_... "
                                   f"-n {spec.namespace}")
        check(sink, True, f"secret {spec.hub_secret} has HF_TOKEN")
    result = run_job(cluster, manifests.import_job(pf.spec, followed=True), sink, timeout, pending_grace)
    summary = result.last("summary") or {}
    what = "already there, nothing uploaded" if summary.get("noop") else \
        f"{summary.get('uploaded_files', 0)} files uploaded ({human_bytes(int(summary.get('bytes_sent', 0)))})"
    sink.emit(Event("step", {"message": f"imported {spec.import_from} into {spec.source}: {what}"}))
    return summary
