"""``deploy``: refuse an unverified claim, apply the InferenceService, wait for Ready, explain failures."""

from __future__ import annotations

import json
from typing import Any

from modelpvc.core.errors import ClusterError, ConfigError, IntegrityError
from modelpvc.core.events import Event, ProgressSink
from modelpvc.kube import manifests
from modelpvc.kube import objects as o
from modelpvc.kube.cluster import Cluster
from modelpvc.kube.jobs import run_job
from modelpvc.kube.populate import annotation_key
from modelpvc.kube.spec import ModelSpec


def verify_claim(cluster: Cluster, spec: ModelSpec, sink: ProgressSink, timeout: float = 900) -> dict[str, Any]:
    """The claim's verdict: the populate result recorded on the PVC, else a verify Job's JSON report."""
    pvc = cluster.get("PersistentVolumeClaim", spec.pvc, spec.namespace)
    if pvc is None:
        raise ConfigError(f"PVC {spec.pvc!r} not found in {spec.namespace!r}", hint="run modelpvc populate first")
    recorded = ((pvc.get("metadata") or {}).get("annotations") or {}).get(annotation_key(spec.path))
    if recorded:
        sink.emit(Event("check", {"ok": True, "message": f"{spec.storage_uri} holds verified revision {recorded} "
                                                         "(recorded by populate)"}))
        return {"ok": True, "revision": recorded}
    job = o.pin_to_node(manifests.verify_job(spec), o.holder_node(cluster.list("Pod", spec.namespace), spec.pvc))
    try:
        result = run_job(cluster, job, sink, timeout)
    except IntegrityError as e:
        raise IntegrityError(f"{spec.storage_uri} does not hold a verified model: {e.message}",
                             hint="run modelpvc populate for this claim and path") from e
    finally:
        cluster.delete("Job", job["metadata"]["name"], spec.namespace)
    report = result.last("verify") or {}
    sink.emit(Event("check", {"ok": True, "message": f"{spec.storage_uri} verified by Job "
                                                     f"{job['metadata']['name']}"}))
    return report


def wait_ready(cluster: Cluster, spec: ModelSpec, sink: ProgressSink, timeout: float) -> o.Obj:
    def ready() -> o.Obj | None:
        isvc = cluster.get("InferenceService", spec.name, spec.namespace)
        if isvc is None:
            return None
        gen = (isvc.get("metadata") or {}).get("generation")
        status = isvc.get("status") or {}
        if gen is not None and status.get("observedGeneration") not in (None, gen):
            return None
        if o.is_true(isvc, "Ready"):
            return isvc
        if (status.get("modelStatus") or {}).get("transitionStatus") in ("BlockedByFailedLoad", "InvalidSpec"):
            raise _not_ready(cluster, spec, isvc)
        return None

    try:
        isvc: o.Obj = cluster.poll(f"InferenceService {spec.name} to be Ready", ready, timeout, interval=0.3)
    except ClusterError as e:
        if "timed out" not in e.message:
            raise
        current = cluster.get("InferenceService", spec.name, spec.namespace) or {}
        raise _not_ready(cluster, spec, current, timed_out=timeout) from e
    sink.emit(Event("step", {"message": f"InferenceService {spec.name} is Ready at "
                                        f"{(isvc.get('status') or {}).get('url')}"}))
    return isvc


def _not_ready(cluster: Cluster, spec: ModelSpec, isvc: o.Obj, timed_out: float | None = None) -> ClusterError:
    cond = o.conditions(isvc).get("Ready", {})
    failure = ((isvc.get("status") or {}).get("modelStatus") or {}).get("lastFailureInfo") or {}
    lines = [f"condition Ready={cond.get('status', '?')} {cond.get('reason', '')}: {cond.get('message', '')}"]
    if failure:
        lines.append(f"last failure: {failure.get('reason')}: {failure.get('message')}")
    pods = [p for p in cluster.list("Pod", spec.namespace,
                                    labels={"serving.kserve.io/inferenceservice": spec.name})]
    for p in pods[-1:]:
        pname = p["metadata"]["name"]
        for ev in cluster.events(pname, spec.namespace)[-3:]:
            lines.append(f"event on {pname}: {ev.get('reason')}: {ev.get('message')}")
        try:
            tail = list(cluster.log(pname, spec.namespace))[-3:]
        except ClusterError:
            tail = []
        lines += [f"log {pname}: {t.rstrip()}" for t in tail]
    what = f"did not become Ready within {timed_out:.0f}s" if timed_out else "failed to load the model"
    return ClusterError(f"InferenceService {spec.name} {what}:\n  " + "\n  ".join(lines),
                        hint="run `modelpvc doctor --isvc " + spec.name + "` for a diagnosis")


def deploy(cluster: Cluster, spec: ModelSpec, sink: ProgressSink, *, timeout: float = 1800,
           skip_verify: bool = False) -> o.Obj:
    if not skip_verify:
        report = verify_claim(cluster, spec, sink)
        if not report.get("ok", False):
            raise IntegrityError(f"{spec.storage_uri} does not verify: {json.dumps(report.get('findings'))}")
    cluster.apply(manifests.inference_service(spec))
    sink.emit(Event("step", {"message": f"InferenceService {spec.name} applied with storageUri {spec.storage_uri}"}))
    return wait_ready(cluster, spec, sink, timeout)
