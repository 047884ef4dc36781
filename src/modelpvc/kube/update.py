"""``update``: refresh the weights, with zero downtime where capacity and access mode allow.

Zero-downtime: populate ``revisions/<id>/`` beside the served revision (unchanged files hard-linked from
it, so only changed bytes are fetched), verify, switch the InferenceService's ``storageUri``, wait for
Ready, then remove the old revision once no pod uses it. Otherwise the runbook's stop-the-world sequence,
automated and waited: delete the InferenceService, wait for its pods to go, populate, redeploy, wait.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from modelpvc.core.errors import ConfigError, DestinationError
from modelpvc.core.events import Event, ProgressSink
from modelpvc.core.manifest import revision_id
from modelpvc.core.secretkeys import find_pair
from modelpvc.kube import manifests
from modelpvc.kube import objects as o
from modelpvc.kube.cluster import Cluster
from modelpvc.kube.deploy import wait_ready
from modelpvc.kube.jobs import run_job
from modelpvc.kube.populate import SECRET_ANNOTATION, SOURCE_ANNOTATION, populate
from modelpvc.kube.source import list_selected
from modelpvc.kube.spec import MOUNT, ModelSpec


@dataclass
class UpdateResult:
    path: str  # "zero-downtime" or "stop-the-world"
    why: str
    revision: str | None
    storage_uri: str


def spec_from_isvc(isvc: o.Obj, base: ModelSpec) -> ModelSpec:
    model = isvc["spec"]["predictor"]["model"]
    claim, _, path = str(model["storageUri"]).removeprefix("pvc://").partition("/")
    res = model.get("resources") or {}
    gpus = int((res.get("limits") or {}).get("nvidia.com/gpu", base.gpus))
    return replace(base, pvc=claim, path=path.strip("/"), runtime=model.get("runtime", base.runtime),
                   args=tuple(model.get("args", base.args)), gpus=gpus,
                   deployment_mode=((isvc["metadata"].get("annotations") or {})
                                    .get("serving.kserve.io/deploymentMode", base.deployment_mode)))


def _source_revision(cluster: Cluster, spec: ModelSpec) -> str | None:
    secret = cluster.get("Secret", spec.secret, spec.namespace)
    values = o.secret_values(secret or {})
    pair = find_pair(values)
    if pair is None:
        return None
    chosen, _skipped = list_selected(spec, values, pair)
    return revision_id([(x.rel, x.size, x.etag) for x in chosen])


def update(cluster: Cluster, base: ModelSpec, sink: ProgressSink, *, stop_the_world: bool = False,
           timeout: float = 6 * 3600) -> UpdateResult:
    isvc = cluster.get("InferenceService", base.name, base.namespace)
    if isvc is None:
        raise ConfigError(f"InferenceService {base.name!r} not found in {base.namespace!r}",
                          hint="deploy it first with modelpvc deploy")
    spec = spec_from_isvc(isvc, base)
    pvc = cluster.get("PersistentVolumeClaim", spec.pvc, spec.namespace)
    if pvc is None:
        raise ConfigError(f"PVC {spec.pvc!r} (from the storageUri) not found")
    ann = (pvc.get("metadata") or {}).get("annotations") or {}
    if not spec.source:
        if not ann.get(SOURCE_ANNOTATION):
            raise ConfigError("no --source given and none recorded on the PVC", hint="pass --source s3://...")
        spec = replace(spec, source=ann[SOURCE_ANNOTATION])
    if not spec.secret:
        if not ann.get(SECRET_ANNOTATION):
            raise ConfigError("no --secret given and none recorded on the PVC", hint="pass --secret NAME")
        spec = replace(spec, secret=ann[SECRET_ANNOTATION])
    spec = spec.validate()
    modes = (pvc.get("spec") or {}).get("accessModes") or []
    rev = _source_revision(cluster, spec)
    if rev is None:
        rev = "next"
    if spec.path == f"revisions/{rev}":
        sink.emit(Event("step", {"message": f"{spec.storage_uri} already serves revision {rev}; nothing to do"}))
        return UpdateResult("none", "already up to date", rev, spec.storage_uri)
    if stop_the_world:
        return _stop_the_world(cluster, spec, sink, timeout, "asked for with --stop-the-world", rev)
    if "ReadWriteOncePod" in modes:
        return _stop_the_world(cluster, spec, sink, timeout,
                               "the claim is ReadWriteOncePod: no Job can mount it while the server does", rev)
    new = replace(spec, path=f"revisions/{rev}")
    sink.emit(Event("step", {"message": f"zero-downtime: populating {new.storage_uri} beside {spec.storage_uri} "
                                        "(unchanged files hard-linked)"}))
    try:
        result = populate(cluster, new, sink, timeout=timeout, link_dest=spec.path)
    except DestinationError as e:
        sink.emit(Event("warning", {"path": spec.pvc, "message": f"no room for a second revision ({e.message})"}))
        return _stop_the_world(cluster, spec, sink, timeout, f"not enough space for a second revision: {e.message}",
                               rev)
    cluster.apply(manifests.inference_service(new))
    sink.emit(Event("step", {"message": f"switched storageUri to {new.storage_uri}"}))
    wait_ready(cluster, new, sink, timeout=1800)
    _retire(cluster, spec, new, sink)
    return UpdateResult("zero-downtime", "capacity and access mode allow a second revision",
                        result.summary.get("revision"), new.storage_uri)


def _retire(cluster: Cluster, old: ModelSpec, new: ModelSpec, sink: ProgressSink) -> None:
    """Remove the old revision's files once no serving pod of the old revision is left."""
    def old_pods_gone() -> bool:
        pods = cluster.list("Pod", old.namespace, labels={"serving.kserve.io/inferenceservice": old.name})
        return len(pods) <= 1
    cluster.poll("the old revision's pods to go", old_pods_gone, timeout=600, interval=0.3)
    spec = replace(old, mirror_args=())
    job = manifests.populate_job(spec)
    job["metadata"]["name"] = f"{old.name}-gc"[:63]
    job["spec"]["template"]["spec"]["containers"][0]["args"] = ["gc", f"{MOUNT}/{old.path}".rstrip("/")]
    o.pin_to_node(job, o.holder_node(cluster.list("Pod", old.namespace), old.pvc))  # RWO: join the server's node
    run_job(cluster, job, sink, timeout=600)
    cluster.delete("Job", job["metadata"]["name"], old.namespace)
    sink.emit(Event("step", {"message": f"removed the old revision at {old.storage_uri}"}))


def _stop_the_world(cluster: Cluster, spec: ModelSpec, sink: ProgressSink, timeout: float, why: str,
                    rev: str) -> UpdateResult:
    sink.emit(Event("step", {"message": f"stop-the-world: {why}"}))
    isvc_obj = manifests.inference_service(spec)
    cluster.delete("InferenceService", spec.name, spec.namespace)
    cluster.poll("the InferenceService's pods to go", lambda: not cluster.list(
        "Pod", spec.namespace, labels={"serving.kserve.io/inferenceservice": spec.name}), timeout=600, interval=0.3)
    sink.emit(Event("step", {"message": f"InferenceService {spec.name} deleted; its pods are gone"}))
    result = populate(cluster, spec, sink, timeout=timeout)
    cluster.apply(isvc_obj)
    wait_ready(cluster, spec, sink, timeout=1800)
    return UpdateResult("stop-the-world", why, result.summary.get("revision"), spec.storage_uri)
