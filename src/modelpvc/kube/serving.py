"""The predictor, as KServe runs it: wait until the pods that serve a storage URI are Ready, and say why
when they cannot be (a refused runtime, Knative missing, a storage initializer that failed, a pod that
cannot start).

Readiness is what KServe really reports, not its counters: ``status.observedGeneration`` is copied from
the predictor Deployment (KServe's PropagateRawStatus), not the InferenceService's generation, and ``Ready``
stays True during a surge-first rollout while the old pod serves. So we wait for the predictor pods that
mount the new storage URI (claim and subPath at /mnt/models) to be Ready.
"""

from __future__ import annotations

import json
import time

from modelpvc.core.errors import ClusterError, ConfigError, ModelpvcError, PodBlocked, from_record
from modelpvc.core.events import Event, ProgressSink
from modelpvc.kube import manifests
from modelpvc.kube import objects as o
from modelpvc.kube.cluster import Cluster
from modelpvc.kube.podstate import (
    INITIALIZER,
    PENDING_GRACE,
    Watch,
    downloads,
    foreign_initializer,
    is_ready,
    serves,
)
from modelpvc.kube.spec import ModelSpec, spec_from_isvc

CSC_HINT = ("apply modelpvc's: modelpvc render --pattern storage-initializer --kinds csc ... | oc apply -f - "
            "(a cluster admin)")

SWITCH_MANAGER = "modelpvc-update"


def wait_serving(cluster: Cluster, spec: ModelSpec, sink: ProgressSink, timeout: float,
                 pending_grace: float = PENDING_GRACE) -> o.Obj:
    """Until the predictor pods that mount ``spec.storage_uri`` are Ready (as many as minReplicas) and the
    InferenceService is Ready; a pod that cannot start or crashes fails it with the reason."""
    deadline = time.monotonic() + timeout
    watch = Watch(cluster, pending_grace)
    while True:
        isvc = cluster.get("InferenceService", spec.name, spec.namespace)
        if isvc is None:
            raise ClusterError(f"InferenceService {spec.name} disappeared while waiting for it")
        ready_cond = o.conditions(isvc).get("Ready", {})
        if ready_cond.get("reason") == "RuntimeNotRecognized" or \
                ((isvc.get("status") or {}).get("modelStatus") or {}).get("transitionStatus") == "InvalidSpec":
            raise _not_ready(cluster, spec, isvc, None)
        want = max(1, int(isvc["spec"]["predictor"].get("minReplicas") or 1))
        pods = [p for p in cluster.list("Pod", spec.namespace, labels={o.PREDICTOR_LABEL: spec.name})
                if _serves(p, spec) and not p["metadata"].get("deletionTimestamp")]
        if not pods and (refused := predictor_refusal(cluster, spec)) is not None:
            missing_sa = "error looking up service account" in refused
            raise PodBlocked(f"InferenceService {spec.name}: its predictor pods cannot be created: {refused}",
                             hint=("create that service account in the namespace, or drop serviceAccountName from "
                                   "the predictor") if missing_sa else
                             "a ResourceQuota, LimitRange or the namespace's security constraints refused them; "
                             f"run `modelpvc doctor -n {spec.namespace} --isvc {spec.name}`")
        for p in pods:
            if spec.pattern == "storage-initializer" and (image := foreign_initializer(p)) is not None:
                # What ensure_initializer could not check for a user who may not list ClusterStorageContainers.
                raise ConfigError(f"pod {p['metadata']['name']}: {spec.source} is being copied by {image}, not "
                                  "by modelpvc: no ClusterStorageContainer of ours handles it", hint=CSC_HINT)
            blocked = watch.check(p)
            if blocked is not None and blocked.reason == "init":
                raise initializer_error(cluster, spec, p)
            if blocked is not None:
                raise _not_ready(cluster, spec, isvc, p, blocked.message)
        if sum(1 for p in pods if is_ready(p)) >= want and o.is_true(isvc, "Ready"):
            sink.emit(Event("step", {"message": f"InferenceService {spec.name} serves {spec.storage_uri}: "
                                                f"{want} pod(s) Ready at {(isvc.get('status') or {}).get('url')}"}))
            return isvc
        if time.monotonic() > deadline:
            raise _not_ready(cluster, spec, isvc, pods[-1] if pods else None, f"not Ready within {timeout:.0f}s")
        time.sleep(0.3)


def predictor_refusal(cluster: Cluster, spec: ModelSpec) -> str | None:
    """Why the predictor's pods were refused before they existed (no pod state says it): the ReplicaFailure
    condition the Deployment controller keeps on KServe's ``NAME-predictor`` Deployment while its
    ReplicaSet's creates fail (missing service account, quota, admission), cleared once one succeeds."""
    dep = cluster.get("Deployment", f"{spec.name}-predictor", spec.namespace) or {}
    cond = o.conditions(dep).get("ReplicaFailure") or {}
    if cond.get("status") != "True" or cond.get("reason") != "FailedCreate":
        return None
    sa = (((dep.get("spec") or {}).get("template") or {}).get("spec") or {}).get("serviceAccountName")
    if sa and "error looking up service account" in str(cond.get("message")) and \
            cluster.get("ServiceAccount", sa, spec.namespace) is not None:
        return None  # created since: the ReplicaSet controller retries on its own backoff
    return str(cond.get("message") or "")


def _serves(pod: o.Obj, spec: ModelSpec) -> bool:
    if spec.pattern == "storage-initializer":
        return downloads(pod, spec.source)
    return serves(pod, spec.pvc, spec.path)


def initializer_error(cluster: Cluster, spec: ModelSpec, pod: o.Obj) -> ModelpvcError:
    """The storage initializer's own error, from the typed record it logs last (modelpvc's initializer), or
    its log's tail (another initializer)."""
    name = pod["metadata"]["name"]
    try:
        lines = list(cluster.log(name, spec.namespace, container=INITIALIZER))
    except ClusterError:
        lines = []
    prefix = f"InferenceService {spec.name}: the storage initializer of pod {name} failed"
    for line in reversed(lines):
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("event") == "error":
            return from_record(record, prefix)
    tail = "; ".join(t.strip() for t in lines[-3:]) or "no log"
    return PodBlocked(f"{prefix}: {tail}", hint=f"oc logs {name} -c {INITIALIZER} -n {spec.namespace}")


def _not_ready(cluster: Cluster, spec: ModelSpec, isvc: o.Obj, pod: o.Obj | None,
               why: str | None = None) -> ClusterError:
    cond = o.conditions(isvc).get("Ready", {})
    failure = ((isvc.get("status") or {}).get("modelStatus") or {}).get("lastFailureInfo") or {}
    lines = [why] if why else []
    lines.append(f"condition Ready={cond.get('status', '?')} {cond.get('reason', '')}: {cond.get('message', '')}")
    if failure:
        lines.append(f"last failure: {failure.get('reason')}: {failure.get('message')}")
    if pod is not None:
        pname = pod["metadata"]["name"]
        for ev in cluster.events(pname, spec.namespace)[-3:]:
            lines.append(f"event on {pname}: {ev.get('reason')}: {ev.get('message')}")
        try:
            tail = list(cluster.log(pname, spec.namespace))[-3:] if pod["status"].get("phase") != "Pending" else []
        except ClusterError:
            tail = []
        lines += [f"log {pname}: {t.rstrip()}" for t in tail]
    cls = PodBlocked if why and pod is not None else ClusterError
    return cls(f"InferenceService {spec.name} does not serve {spec.storage_uri}:\n  " + "\n  ".join(lines),
               hint=f"run `modelpvc doctor -n {spec.namespace} --isvc {spec.name}` for a diagnosis")


SERVERLESS = ("Serverless", "Knative")


def refuse_serverless_without_knative(cluster: Cluster, isvc: o.Obj) -> None:
    """KServe fails a Serverless InferenceService on a cluster without Knative Serving as a terminal
    reconcile error and writes no status at all: waiting for Ready would wait out the timeout."""
    mode = ((isvc.get("metadata") or {}).get("annotations") or {}).get("serving.kserve.io/deploymentMode")
    if mode not in SERVERLESS:
        return  # unset: the cluster's default (inferenceservice-config, not readable by a project admin)
    if cluster.serves("serving.knative.dev/v1") is False:
        raise ConfigError(f"InferenceService {isvc['metadata']['name']} asks for deploymentMode {mode}, and this "
                          "cluster has no Knative Serving (serving.knative.dev is not served): KServe would refuse "
                          "it without a status",
                          hint="pass --deployment-mode RawDeployment (Standard in KServe >= 0.16), or install "
                               "OpenShift Serverless")


def missing_runtime(cluster: Cluster, ns: str, runtime: str | None) -> list[str] | None:
    """The ServingRuntimes of ``ns`` when ``runtime`` is not one of them (nor a ClusterServingRuntime this
    user can see), else None: KServe would leave the InferenceService at RuntimeNotRecognized."""
    if not runtime or cluster.get("ServingRuntime", runtime, ns) is not None:
        return None
    try:
        if cluster.get("ClusterServingRuntime", runtime) is not None:
            return None
    except ClusterError:
        pass  # not served, or not readable by a project admin: the namespace's runtimes decide
    return sorted(r["metadata"]["name"] for r in cluster.list("ServingRuntime", ns))


def runtime_fix(here: list[str]) -> str:
    if len(here) == 1:
        return f"deploy with --runtime {here[0]}"
    if here:
        return "deploy with --runtime NAME, one of those"
    return ("add one (OpenShift AI: Settings > Serving runtimes, the vLLM NVIDIA template), or oc apply the "
            "ServingRuntime your InferenceService names")


def refuse_missing_runtime(cluster: Cluster, isvc: o.Obj) -> None:
    runtime = isvc["spec"]["predictor"].get("model", {}).get("runtime")
    here = missing_runtime(cluster, isvc["metadata"]["namespace"], runtime)
    if here is not None:
        raise ConfigError(f"ServingRuntime {runtime} is not in namespace {isvc['metadata']['namespace']} "
                          f"(it has: {', '.join(here) or 'none'})", hint=runtime_fix(here))


def served(cluster: Cluster, asked: ModelSpec) -> tuple[o.Obj, ModelSpec]:
    """The InferenceService ``asked`` names and the spec of what it serves."""
    isvc = cluster.get("InferenceService", asked.name, asked.namespace)
    if isvc is None:
        raise ConfigError(f"InferenceService {asked.name!r} not found in {asked.namespace!r}",
                          hint="deploy it first with modelpvc deploy")
    return isvc, spec_from_isvc(isvc, asked)


def switch_storage_uri(cluster: Cluster, spec: ModelSpec, uri: str) -> None:
    """Point ``spec``'s InferenceService at ``uri``. Under a field manager of its own: applied as "modelpvc"
    (deploy's manager) the fields deploy set would be removed; forced, as whoever created it owns storageUri."""
    cluster.apply(manifests.storage_uri_patch(spec, uri), force=True, manager=SWITCH_MANAGER)
