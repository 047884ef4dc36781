"""Pure builders of the Kubernetes objects we render: PVC, populate Job, verify Job, InferenceService.

The Job runs our own CLI from the product image, so it is idempotent (a populated volume is a fast
no-op) and therefore safe to re-apply and safe under GitOps.
"""

from __future__ import annotations

from typing import Any

from modelpvc.kube.spec import MOUNT, ModelSpec

Obj = dict[str, Any]
WAVES = {"pvc": "1", "job": "2", "verify-job": "3", "isvc": "4"}  # PVC -> Job -> InferenceService
COPY_FLOOR_BPS = 50 * 1024 * 1024  # activeDeadlineSeconds assumes at least this copy rate
# Inside the pod, not on this machine: the Job mounts a private emptyDir there and points HOME at it.
POD_TMP = "/tmp"  # noqa: S108


def _meta(spec: ModelSpec, name: str, component: str, wave: str) -> Obj:
    labels = {"app.kubernetes.io/name": spec.name, "app.kubernetes.io/component": component,
              "app.kubernetes.io/part-of": "serving", "app.kubernetes.io/managed-by": "modelpvc", **spec.labels}
    return {"name": name, "namespace": spec.namespace, "labels": labels,
            "annotations": {"argocd.argoproj.io/sync-wave": wave}}


def pvc(spec: ModelSpec) -> Obj:
    body: Obj = {"accessModes": [spec.access_mode], "resources": {"requests": {"storage": spec.size}}}
    if spec.storage_class:
        body["storageClassName"] = spec.storage_class
    meta = _meta(spec, spec.pvc, "model-storage", WAVES["pvc"])
    # Deleting the application must not delete 100 GB of weights by accident.
    meta["annotations"]["argocd.argoproj.io/sync-options"] = "Delete=false"
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": meta, "spec": body}


def restricted_container_security() -> Obj:
    return {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, "runAsNonRoot": True,
            "readOnlyRootFilesystem": True, "seccompProfile": {"type": "RuntimeDefault"}}


def _pod_security(spec: ModelSpec) -> Obj:
    sc: Obj = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    if spec.fs_group is not None:
        sc["fsGroup"] = spec.fs_group
        sc["fsGroupChangePolicy"] = "OnRootMismatch"  # do not chown 100 GB on every start
    return sc


def _credentials_env(spec: ModelSpec) -> list[Obj]:
    access, secret = spec.secret_keys
    env: list[Obj] = [
        {"name": "AWS_ACCESS_KEY_ID", "valueFrom": {"secretKeyRef": {"name": spec.secret, "key": access}}},
        {"name": "AWS_SECRET_ACCESS_KEY", "valueFrom": {"secretKeyRef": {"name": spec.secret, "key": secret}}},
        {"name": "HOME", "value": POD_TMP},  # an arbitrary UID has no passwd entry and HOME=/ is read-only
    ]
    if spec.endpoint_url:
        env.append({"name": "AWS_ENDPOINT_URL", "value": spec.endpoint_url})
    return env


def deadline_seconds(model_bytes: int | None) -> int:
    """Generous: twice the copy time at 50 MiB/s plus 10 minutes; 6 h when the size is unknown."""
    if not model_bytes:
        return 6 * 3600
    return int(2 * model_bytes / COPY_FLOOR_BPS) + 600


def _job(spec: ModelSpec, name: str, component: str, wave: str, args: list[str], read_only: bool) -> Obj:
    container: Obj = {
        "name": component,
        "image": spec.image,
        "args": args,
        "env": _credentials_env(spec) if not read_only else [{"name": "HOME", "value": POD_TMP}],
        "volumeMounts": [{"name": "model-storage", "mountPath": MOUNT, "readOnly": read_only},
                         {"name": "tmp", "mountPath": POD_TMP}],
        # The copy is I/O-bound and its memory is bounded (workers x 1 MiB), whatever the model size.
        "resources": {"requests": {"cpu": "500m", "memory": "256Mi"}, "limits": {"cpu": "2", "memory": "1Gi"}},
        "securityContext": restricted_container_security(),
    }
    meta = _meta(spec, name, component, wave)
    job_spec: Obj = {
        "backoffLimit": 3 if not read_only else 0,  # a failed verification will not pass on a retry
        "activeDeadlineSeconds": deadline_seconds(spec.model_bytes) if not read_only else 900,
        "template": {
            "metadata": {"labels": dict(meta["labels"])},
            "spec": {
                "restartPolicy": "Never",
                "securityContext": _pod_security(spec),
                "containers": [container],
                "volumes": [{"name": "model-storage", "persistentVolumeClaim": {"claimName": spec.pvc,
                                                                                "readOnly": read_only}},
                            {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
            },
        },
    }
    if spec.gitops == "argocd":
        # A Sync-phase hook: Argo CD deletes and recreates it on every sync (BeforeHookCreation) and waits
        # for it between the PVC's wave and the InferenceService's. Re-running is harmless: on a populated
        # volume the Job is a no-op that exits 0 in seconds. No TTL: the hook policy does the cleanup.
        meta["annotations"]["argocd.argoproj.io/hook"] = "Sync"
        meta["annotations"]["argocd.argoproj.io/hook-delete-policy"] = "BeforeHookCreation"
    else:
        job_spec["ttlSecondsAfterFinished"] = 86400
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": job_spec}


def populate_job(spec: ModelSpec) -> Obj:
    args = ["mirror", spec.source, spec.model_dir, "--progress", "json", *spec.mirror_args]
    return _job(spec, spec.job_name, "populate", WAVES["job"], args, read_only=False)


def parallel_populate_job(spec: ModelSpec) -> Obj:
    """An Indexed Job: pod i copies share i of N (Kubernetes schedules, retries and counts them; we add no
    scheduler). The Job controller sets JOB_COMPLETION_INDEX in each pod; args expand it."""
    job = populate_job(spec)
    job["metadata"]["name"] = f"{spec.job_name[:54]}-parallel"
    job["spec"].update(completionMode="Indexed", completions=spec.parallel, parallelism=spec.parallel)
    c = job["spec"]["template"]["spec"]["containers"][0]
    c["args"] = [*c["args"], "--shard", f"$(JOB_COMPLETION_INDEX)/{spec.parallel}"]
    return job


def verify_job(spec: ModelSpec) -> Obj:
    """Replaces the runbook's inspector pod: the claim read-only, one JSON verdict in the log."""
    args = ["verify", spec.model_dir, "--json", "--require-manifest"]
    return _job(spec, spec.verify_job_name, "verify", WAVES["verify-job"], args, read_only=True)


def inference_service(spec: ModelSpec) -> Obj:
    resources: Obj = {"requests": {}, "limits": {}}
    if spec.gpus:
        resources["requests"]["nvidia.com/gpu"] = str(spec.gpus)
        resources["limits"]["nvidia.com/gpu"] = str(spec.gpus)
    if spec.cpu:
        resources["requests"]["cpu"] = spec.cpu
    if spec.memory:
        resources["requests"]["memory"] = spec.memory
        resources["limits"]["memory"] = spec.memory
    # Weights live on the PVC: no large ephemeral-storage request (the seed's predictor still asked 80Gi).
    model: Obj = {"modelFormat": {"name": "vLLM"}, "runtime": spec.runtime, "storageUri": spec.storage_uri}
    if spec.args:
        model["args"] = list(spec.args)
    if resources["requests"] or resources["limits"]:
        model["resources"] = {k: v for k, v in resources.items() if v}
    meta = _meta(spec, spec.name, "inference", WAVES["isvc"])
    if spec.deployment_mode:
        meta["annotations"]["serving.kserve.io/deploymentMode"] = spec.deployment_mode
    return {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService", "metadata": meta,
            "spec": {"predictor": {"model": model}}}


BUILDERS = {"pvc": pvc, "job": populate_job, "verify-job": verify_job, "isvc": inference_service}


def render(spec: ModelSpec, kinds: list[str]) -> list[Obj]:
    return [BUILDERS[k](spec) for k in kinds]
