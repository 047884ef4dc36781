"""``update --populator``: a new model revision is a new ModelSource and a new claim naming it.

Nothing is rewritten: the new claim is born complete by the volume populator (kube/populator.py) and the old
one stays as it was. ``storageUri`` is switched at once: KServe rolls out surge-first, so the new predictor pod
is the new claim's first consumer (a WaitForFirstConsumer claim is provisioned where the scheduler puts it)
and waits, Pending, while the old pod keeps serving; once the claim binds it starts, and the old pod goes.
A failed populate switches ``storageUri`` back and says why.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from modelpvc.core.errors import ClusterError, ConfigError, PodBlocked, SourceError
from modelpvc.core.events import Event, ProgressSink
from modelpvc.kube import manifests
from modelpvc.kube import modelsource as ms
from modelpvc.kube import objects as o
from modelpvc.kube.cluster import Cluster
from modelpvc.kube.gitops import argo_managed
from modelpvc.kube.serving import served, switch_storage_uri, wait_serving
from modelpvc.kube.spec import Facts, ModelSpec


def revision_name(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")


def _populated(cluster: Cluster, spec: ModelSpec, sink: ProgressSink, timeout: float) -> None:
    """Until the new claim is Bound; the populator's events on it are the progress, a failure the error."""
    deadline = time.monotonic() + timeout
    told: set[str] = set()
    while True:
        pvc = cluster.get("PersistentVolumeClaim", spec.pvc, spec.namespace)
        if pvc is not None and (pvc.get("status") or {}).get("phase") == "Bound":
            return
        for e in sorted(cluster.events(spec.pvc, spec.namespace), key=lambda e: str(e.get("lastTimestamp") or "")):
            key = f"{e.get('reason')}: {e.get('message')}"
            if key in told or (e.get("involvedObject") or {}).get("kind") != "PersistentVolumeClaim":
                continue
            told.add(key)
            if e.get("reason") == "PopulateFailed":
                raise SourceError(f"populating claim {spec.pvc}: {e.get('message')}",
                                  hint=f"fix the cause; the populator keeps retrying (oc describe pvc {spec.pvc})")
            sink.emit(Event("step", {"message": f"claim {spec.pvc}: {key}"}))
        if time.monotonic() > deadline:
            raise ClusterError(f"claim {spec.pvc} was not populated within {timeout:.0f}s",
                               hint=f"oc describe pvc {spec.pvc} -n {spec.namespace}; is `modelpvc populator` "
                                    "running (render --populator --install)?")
        time.sleep(1.0)


def _declared(cluster: Cluster, claim: o.Obj, spec: ModelSpec) -> Facts:
    """What the served claim's ModelSource declares, for what was not asked."""
    ref = claim["spec"].get("dataSourceRef") or {}
    current = cluster.get("ModelSource", ref["name"], spec.namespace) if ref.get("kind") == ms.KIND else None
    if current is None:
        return Facts()
    was = ms.parse(current)
    return Facts(source=None if spec.source else was.uri, secret=None if spec.secret else was.secret,
                 endpoint_url=spec.endpoint_url or was.endpoint, region=spec.region or was.region)


def update_by_populator(cluster: Cluster, asked: ModelSpec, sink: ProgressSink, revision: str | None,
                        timeout: float, pending_grace: float) -> ModelSpec:
    """Declare revision ``revision`` (default: now, UTC) of the model and serve it; returns its spec."""
    isvc, spec = served(cluster, asked)
    if argo_managed(isvc):
        raise ConfigError(f"InferenceService {spec.name} is managed by Argo CD: declare the new revision in Git",
                          hint="render --populator --model-source NAME --pvc NAME into your checkout, commit, and "
                               "point the InferenceService at the new claim there")
    old = cluster.get("PersistentVolumeClaim", spec.pvc, spec.namespace)
    if old is None:
        raise ConfigError(f"PVC {spec.pvc!r} (from the storageUri) not found")
    spec = spec.resolved(_declared(cluster, old, spec))
    if not spec.source or not spec.secret:
        raise ConfigError("update --populator needs --source and --secret (the served claim names no ModelSource)")
    name = f"{spec.name}-{revision or revision_name()}"[:63].rstrip("-")
    new = spec.on_claim(old, name)
    if cluster.get("PersistentVolumeClaim", name, spec.namespace) is not None:
        raise ConfigError(f"claim {name} exists already: revisions are immutable", hint="pass another --revision")
    cluster.apply(manifests.model_source(new))
    cluster.apply(manifests.pvc(new))
    sink.emit(Event("step", {"message": f"declared ModelSource {name} ({new.source}) and claim {name}; the populator "
                                        "fills it for the new predictor pod, the old one serves meanwhile"}))
    switch_storage_uri(cluster, spec, new.storage_uri)
    sink.emit(Event("step", {"message": f"switched storageUri to {new.storage_uri}"}))
    try:
        _populated(cluster, new, sink, timeout)
        wait_serving(cluster, new, sink, timeout=1800, pending_grace=pending_grace)
    except (SourceError, PodBlocked, ClusterError) as e:
        switch_storage_uri(cluster, spec, spec.storage_uri)
        e.message = f"{e.message}; switched storageUri back to {spec.storage_uri}, which still serves"
        raise
    sink.emit(Event("step", {"message": f"serving {new.storage_uri}; the old claim {spec.pvc} is no longer "
                                        f"mounted: remove it when you no longer want to roll back (oc delete pvc "
                                        f"{spec.pvc} -n {spec.namespace})"}))
    return new
