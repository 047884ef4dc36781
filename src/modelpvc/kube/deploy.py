"""``deploy``: refuse an unverified claim, apply the InferenceService, wait until the pods that serve the
claim are Ready (serving.py), explain failures.
"""

from __future__ import annotations

import json
import re
from typing import Any

from modelpvc.core.errors import ClusterError, ConfigError, IntegrityError
from modelpvc.core.events import Event, ProgressSink
from modelpvc.kube import manifests
from modelpvc.kube import objects as o
from modelpvc.kube.claimrecord import annotation_key
from modelpvc.kube.cluster import Cluster
from modelpvc.kube.gitops import argo_managed, refuse_argo
from modelpvc.kube.jobs import run_job
from modelpvc.kube.podstate import PENDING_GRACE
from modelpvc.kube.serving import (
    CSC_HINT,
    refuse_missing_runtime,
    refuse_serverless_without_knative,
    wait_serving,
)
from modelpvc.kube.spec import Facts, ModelSpec, Placement


def verify_claim(cluster: Cluster, spec: ModelSpec, sink: ProgressSink, timeout: float = 900,
                 pending_grace: float = PENDING_GRACE) -> dict[str, Any]:
    """The claim's verdict: the populate result recorded on the PVC, else a verify Job's JSON report."""
    pvc = cluster.get("PersistentVolumeClaim", spec.pvc, spec.namespace)
    if pvc is None:
        raise ConfigError(f"PVC {spec.pvc!r} not found in {spec.namespace!r}", hint="run modelpvc populate first")
    recorded = ((pvc.get("metadata") or {}).get("annotations") or {}).get(annotation_key(spec.path))
    if recorded:
        sink.emit(Event("check", {"ok": True, "message": f"{spec.storage_uri} holds verified revision {recorded} "
                                                         "(recorded by populate)"}))
        return {"ok": True, "revision": recorded}

    holders = o.pods_using_claim(cluster.list("Pod", spec.namespace), spec.pvc)
    node = o.holder_node(holders, spec.pvc)
    tolerations = tuple(t for h in holders for t in h["spec"].get("tolerations") or [])
    job = manifests.verify_job(spec.resolved(Facts(placement=Placement(node=node, tolerations=tolerations))))
    try:
        result = run_job(cluster, job, sink, timeout, pending_grace)
    except IntegrityError as e:
        raise IntegrityError(f"{spec.storage_uri} does not hold a verified model: {e.message}",
                             hint="run modelpvc populate for this claim and path") from e
    finally:
        cluster.delete("Job", job["metadata"]["name"], spec.namespace)
    report = result.last("verify") or {}
    sink.emit(Event("check", {"ok": True, "message": f"{spec.storage_uri} verified by Job "
                                                     f"{job['metadata']['name']}"}))
    return report


def ensure_initializer(cluster: Cluster, spec: ModelSpec, sink: ProgressSink) -> None:
    """KServe uses the first ClusterStorageContainer whose formats match the URI, else its own initializer."""
    try:
        cscs = cluster.list("ClusterStorageContainer")
    except ClusterError:
        sink.emit(Event("check", {"ok": True, "message": "cannot list ClusterStorageContainers (no permission); "
                                                         "assuming modelpvc's is installed"}))
        return
    for csc in cscs:
        for fmt in (csc.get("spec") or {}).get("supportedUriFormats") or []:
            if ("prefix" in fmt and spec.source.startswith(fmt["prefix"])) or \
                    ("regex" in fmt and re.search(fmt["regex"], spec.source)):
                image = ((csc.get("spec") or {}).get("container") or {}).get("image", "")
                ours = "modelpvc" in image
                sink.emit(Event("check", {"ok": ours, "message": f"ClusterStorageContainer "
                                          f"{csc['metadata']['name']} handles {spec.source} (image {image})"}))
                if not ours:
                    raise ConfigError(f"{spec.source} would be downloaded by ClusterStorageContainer "
                                      f"{csc['metadata']['name']} ({image}), not by modelpvc",
                                      hint="narrow that one's supportedUriFormats, or render ours for this bucket")
                return
    raise ConfigError(f"no ClusterStorageContainer handles {spec.source}: KServe's own initializer would copy it",
                      hint=CSC_HINT)


def deploy(cluster: Cluster, spec: ModelSpec, sink: ProgressSink, *, timeout: float = 1800,
           skip_verify: bool = False, pending_grace: float = PENDING_GRACE) -> o.Obj:
    current = cluster.get("InferenceService", spec.name, spec.namespace)
    desired = manifests.inference_service(spec)
    refuse_serverless_without_knative(cluster, desired)
    refuse_missing_runtime(cluster, desired)
    if current is not None and argo_managed(current):
        refuse_argo(current, desired)
    if spec.pattern == "storage-initializer":
        ensure_initializer(cluster, spec, sink)
        if desired["spec"]["predictor"].get("serviceAccountName") == spec.service_account:
            cluster.apply(manifests.service_account(spec))
    elif not skip_verify:
        report = verify_claim(cluster, spec, sink, pending_grace=pending_grace)
        if not report.get("ok", False):
            raise IntegrityError(f"{spec.storage_uri} does not verify: {json.dumps(report.get('findings'))}")
    # Server-side apply with our field manager: fields another manager (kubectl, the dashboard) set are a
    # conflict to resolve, not something to overwrite silently.
    cluster.apply(desired)
    sink.emit(Event("step", {"message": f"InferenceService {spec.name} applied with storageUri {spec.storage_uri}"}))
    return wait_serving(cluster, spec, sink, timeout, pending_grace)
