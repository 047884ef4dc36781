"""``populate``: preflight, create the populate Job, follow it, record the verified revision on the PVC."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modelpvc.core.errors import ConfigError
from modelpvc.core.events import Event, ProgressSink
from modelpvc.core.units import human_bytes
from modelpvc.kube import jobs, manifests, preflight
from modelpvc.kube import objects as o
from modelpvc.kube.checks import check
from modelpvc.kube.cluster import Cluster
from modelpvc.kube.podlog import JobResult
from modelpvc.kube.podstate import PENDING_GRACE
from modelpvc.kube.source import Listing
from modelpvc.kube.spec import Facts, ModelSpec


@dataclass
class PopulateResult:
    job: JobResult
    summary: dict[str, Any]


@dataclass(frozen=True)
class PopulateOptions:
    create_pvc: bool = False
    source_check: str = "auto"  # "auto" (from here, else a probe Job in the cluster), "local", "cluster", "skip"
    timeout: float = 6 * 3600
    wait: bool = True  # False: create the Job and return (a later populate follows it)
    pending_grace: float = PENDING_GRACE


def populate(cluster: Cluster, spec: ModelSpec, sink: ProgressSink, options: PopulateOptions = PopulateOptions()
             ) -> PopulateResult:
    if spec.import_from:
        import_first(cluster, spec, sink, options.timeout, options.pending_grace)
    openshift = preflight.namespace(cluster, spec, sink)
    spec, listing = resolve_source(cluster, spec, sink, options.source_check, options.pending_grace)
    source_bytes = listing.bytes if listing is not None else None
    exists, storage_class = preflight.claim_class(cluster, spec, sink, options.create_pvc)
    if not exists:
        spec = spec.resolved(Facts(size=preflight.new_claim_size(spec, source_bytes)))
        cluster.create(manifests.pvc(spec))
        check(sink, True, f"PVC {spec.pvc} created ({spec.size}, {spec.access_mode})")
    spec = spec.resolved(preflight.target(cluster, spec, sink, source_bytes, openshift, storage_class))
    if not options.wait:
        job = manifests.populate_job(spec)
        cluster.create(job)
        name = job["metadata"]["name"]
        sink.emit(Event("step", {"message": f"Job {name} created; follow it with: oc logs -f job/{name} -n "
                                            f"{spec.namespace}, or re-run populate: it follows the running Job"}))
        return PopulateResult(JobResult(name), {})
    result, summary = jobs.fill_claim(cluster, spec, sink, options.timeout, options.pending_grace)
    return PopulateResult(result, summary)


def resolve_source(cluster: Cluster, spec: ModelSpec, sink: ProgressSink, source_check: str = "auto",
                   pending_grace: float = PENDING_GRACE) -> tuple[ModelSpec, Listing | None]:
    """The spec with its Secret's keys, endpoint and region and the source's size; and the source's listing,
    from here or from a probe Job inside the cluster (None: not listed)."""
    return preflight.source(cluster, spec, sink, lambda s: jobs.probe_source(cluster, s, sink, pending_grace),
                            source_check)


def import_first(cluster: Cluster, spec: ModelSpec, sink: ProgressSink, timeout: float,
                 pending_grace: float = PENDING_GRACE) -> dict[str, Any]:
    """The import Job (Hub -> bucket) in front of the populate Job: the secret's keys and endpoint as for the
    populate Job, the Hub token from ``spec.hub_secret``; returns the import's summary."""
    spec, _listing = resolve_source(cluster, spec, sink, source_check="skip")
    if spec.hub_secret:
        secret = cluster.get("Secret", spec.hub_secret, spec.namespace)
        if secret is None or "HF_TOKEN" not in o.secret_values(secret):
            check(sink, False, f"secret {spec.hub_secret} with key HF_TOKEN not found in {spec.namespace}")
            raise ConfigError(f"--hub-secret {spec.hub_secret!r}: no Secret with a key HF_TOKEN in {spec.namespace}",
                              hint=f"oc create secret generic {spec.hub_secret} --from-literal=HF_TOKEN=hf_... "
                                   f"-n {spec.namespace}")
        check(sink, True, f"secret {spec.hub_secret} has HF_TOKEN")
    result = jobs.run_job(cluster, manifests.import_job(spec, followed=True), sink, timeout, pending_grace)
    summary = result.last("summary") or {}
    what = "already there, nothing uploaded" if summary.get("noop") else \
        f"{summary.get('uploaded_files', 0)} files uploaded ({human_bytes(int(summary.get('bytes_sent', 0)))})"
    sink.emit(Event("step", {"message": f"imported {spec.import_from} into {spec.source}: {what}"}))
    return summary
