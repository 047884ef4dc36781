"""Pure builders of the Kubernetes objects we render: PVC, populate Job, verify Job, InferenceService.

The Job runs our own CLI from the product image, so it is idempotent (a populated volume is a fast
no-op) and therefore safe to re-apply and safe under GitOps.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from modelpvc.core.errors import ConfigError, ExitCode
from modelpvc.kube import modelsource as ms
from modelpvc.kube.spec import MOUNT, ModelSpec, Placement

Obj = dict[str, Any]
# Argo CD sync waves. The PVC shares the populate Job's wave: with a WaitForFirstConsumer class the claim
# stays Pending (Argo CD: Progressing) until a pod uses it, so a later wave would wait for it forever
# (argo-cd#12840); in the same wave the Job's pod binds it.
WAVES = {"import-job": "0", "csc": "0", "modelsource": "0", "sa": "1", "pvc": "1", "job": "1", "verify-job": "2",
         "isvc": "3", "gc-job": "4"}
INITIALIZER = "modelpvc-s3"  # the ClusterStorageContainer's name
EPHEMERAL_LIMIT_ENV = "MODELPVC_EPHEMERAL_LIMIT"  # read by `modelpvc storage-initializer`
IMPORT_MEMORY_MIB = 256  # part buffers of the import Job (modelpvc import --memory)
COPY_FLOOR_BPS = 50 * 1024 * 1024  # activeDeadlineSeconds assumes at least this copy rate
# Inside the pod, not on this machine: the Job mounts a private emptyDir there and points HOME at it.
POD_TMP = "/tmp"  # noqa: S108
# The S3 Secret as files, when the Job reads its key names itself (a path, not a password).
SECRET_DIR = "/var/run/secrets/modelpvc/s3"  # noqa: S105
OUR_LABEL = "modelpvc.io/claim"  # the one label we put on a user's InferenceService
DASHBOARD = {"opendatahub.io/dashboard": "true"}  # OpenShift AI lists only InferenceServices that carry it


def _meta(spec: ModelSpec, name: str, component: str, wave: str) -> Obj:
    labels = {"app.kubernetes.io/name": spec.name, "app.kubernetes.io/component": component,
              "app.kubernetes.io/part-of": "serving", "app.kubernetes.io/managed-by": "modelpvc", **spec.labels}
    return {"name": name, "namespace": spec.namespace, "labels": labels,
            "annotations": {"argocd.argoproj.io/sync-wave": wave}}


def pvc(spec: ModelSpec) -> Obj:
    body: Obj = {"accessModes": [spec.access_mode], "resources": {"requests": {"storage": spec.size}}}
    if spec.storage_class:
        body["storageClassName"] = spec.storage_class
    if spec.model_source:
        body["dataSourceRef"] = {"apiGroup": ms.GROUP, "kind": ms.KIND, "name": spec.model_source}
    meta = _meta(spec, spec.pvc, "model-storage", WAVES["pvc"])
    # Neither deleting the application nor pruning it may delete 100 GB of weights by accident.
    meta["annotations"]["argocd.argoproj.io/sync-options"] = "Delete=false,Prune=false"
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


def _secret_env(name: str, secret: str, key: str, optional: bool = False) -> Obj:
    ref: Obj = {"name": secret, "key": key}
    if optional:
        ref["optional"] = True
    return {"name": name, "valueFrom": {"secretKeyRef": ref}}


def _credentials_env(spec: ModelSpec) -> list[Obj]:
    # An arbitrary UID has no passwd entry and HOME=/ is read-only.
    env: list[Obj] = [{"name": "HOME", "value": POD_TMP}]
    if spec.secret_files:  # the key names, endpoint and region are read from the mounted Secret
        env += [{"name": "AWS_ENDPOINT_URL", "value": spec.endpoint_url}] if spec.endpoint_url else []
        env += [{"name": "AWS_DEFAULT_REGION", "value": spec.region}] if spec.region else []
        return env
    access, secret = spec.secret_keys
    env[:0] = [_secret_env("AWS_ACCESS_KEY_ID", spec.secret, access),
               _secret_env("AWS_SECRET_ACCESS_KEY", spec.secret, secret)]
    if spec.endpoint_url:
        env.append({"name": "AWS_ENDPOINT_URL", "value": spec.endpoint_url})
    else:
        # An OpenShift AI data connection carries the endpoint; `mirror` reads AWS_S3_ENDPOINT.
        env.append(_secret_env("AWS_S3_ENDPOINT", spec.secret, "AWS_S3_ENDPOINT", optional=True))
    if spec.region:
        env.append({"name": "AWS_DEFAULT_REGION", "value": spec.region})
    else:
        env.append(_secret_env("AWS_DEFAULT_REGION", spec.secret, "AWS_DEFAULT_REGION", optional=True))
    return env


def deadline_seconds(model_bytes: int | None) -> int:
    """Generous: twice the copy time at 50 MiB/s plus 10 minutes; 6 h when the size is unknown."""
    if not model_bytes:
        return 6 * 3600
    return int(2 * model_bytes / COPY_FLOOR_BPS) + 600


GPU_PRESENT = "nvidia.com/gpu.present"
GPU = "nvidia.com/gpu"
# The toleration OpenShift AI's NVIDIA accelerator profile gives a GPU predictor: GPU nodes are tainted with
# the resource's name (the GPU operator's convention, the seed's g6 nodes) so nothing else lands there.
GPU_TOLERATION = {"key": GPU, "operator": "Exists", "effect": "NoSchedule"}
DEFAULT_RUNTIME = "vllm-cuda-runtime"  # OpenShift AI's vLLM NVIDIA runtime template, the seed's
NEVER_RETRIED = (ExitCode.USAGE, ExitCode.SOURCE, ExitCode.INTEGRITY)


def place(pod: Obj, placement: Placement, predictor_label: str | None = None) -> Obj:
    """Put a Job's pod where it can mount the claim: pinned to the holder's node (tolerating its taints), in
    the serving nodes' zones (a WaitForFirstConsumer volume binds where its first pod lands), or near the
    predictor (GitOps, where the node is not known when rendering)."""
    if placement.node_name:
        pod["nodeName"] = placement.node_name
    elif placement.node:
        pod["nodeSelector"] = {"kubernetes.io/hostname": placement.node}
    elif placement.node_selector:
        pod["nodeSelector"] = dict(placement.node_selector)
    if placement.node_terms and not placement.zones:
        pod.setdefault("affinity", {})["nodeAffinity"] = {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [dict(t) for t in placement.node_terms]}}
    if placement.prefer_gpu_nodes:
        # NVIDIA's GPU feature discovery labels every GPU node so; a preference, scored by the scheduler.
        pod.setdefault("affinity", {}).setdefault("nodeAffinity", {})[
            "preferredDuringSchedulingIgnoredDuringExecution"] = [{"weight": 100, "preference": {
                "matchExpressions": [{"key": GPU_PRESENT, "operator": "In", "values": ["true"]}]}}]
    if placement.tolerations:
        pod["tolerations"] = [dict(t) for t in placement.tolerations]
    if placement.zones:
        pod.setdefault("affinity", {})["nodeAffinity"] = {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "topology.kubernetes.io/zone", "operator": "In",
                                                         "values": list(placement.zones)}]}]}}
    if placement.follow and predictor_label:
        pod.setdefault("affinity", {})["podAffinity"] = {"preferredDuringSchedulingIgnoredDuringExecution": [{
            "weight": 100, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname", "labelSelector": {
                "matchLabels": {predictor_label: placement.follow}}}}]}
    return pod


def _hub_env(spec: ModelSpec) -> list[Obj]:
    env: list[Obj] = [{"name": "HF_HOME", "value": f"{POD_TMP}/hf"}]  # nothing is cached there; it must be writable
    if spec.hub_secret:
        env.append(_secret_env("HF_TOKEN", spec.hub_secret, "HF_TOKEN"))
    if spec.hub_endpoint:
        env.append({"name": "HF_ENDPOINT", "value": spec.hub_endpoint})
    return env


@dataclass(frozen=True)
class Purpose:
    """What one of our Jobs is for, and so what it carries: nothing it does not need (a gc Job has no S3 keys)."""

    component: str  # the container's name and the component label: populate, import, verify, gc, probe
    claim: str | None  # "rw" or "ro": it mounts the model's claim; None: no volume
    fetches: bool  # it reads the bucket: the S3 keys, a deadline sized by the model, retries
    hub: bool = False  # it reads the Hugging Face Hub: the token, memory for the part buffers
    hook: str = "Sync"  # its Argo CD hook phase under GitOps
    name: str | None = None  # default: <InferenceService>-<component>
    wave: str | None = None  # default: the component's wave
    deadline: int | None = None  # seconds; default: by the model's size when it fetches, else 15 min
    retries: int | None = None  # the Job's backoffLimit; default: 3 when it fetches, else 0
    labels: Mapping[str, str] = field(default_factory=dict)  # beside ours, on the Job and its pods
    owner: Mapping[str, str] | None = None  # an owner reference: the Job goes when its owner does
    indexed: int | None = None  # an Indexed Job of this many pods, all at once


def copy_resources() -> Obj:
    """What a container running our copy asks for. It is I/O-bound, and its memory is bounded whatever the
    model size: workers x 1 MiB, 128 MiB of write-behind rings and, for a source whose only checksum is a
    multipart ETag, the 128 MiB the MD5 pool receives pieces into (transfer.md5_pool.LOANS), which the
    rings then leave untouched (peak 120-180 MB measured)."""
    return {"requests": {"cpu": "500m", "memory": "256Mi"}, "limits": {"cpu": "2", "memory": "1Gi"}}


def tool_job(spec: ModelSpec, purpose: Purpose, args: list[str]) -> Obj:
    """A Job running our CLI in the product image, restricted, for ``purpose``."""
    env = _credentials_env(spec) if purpose.fetches else [{"name": "HOME", "value": POD_TMP}]
    mounts: list[Obj] = [{"name": "tmp", "mountPath": POD_TMP}]
    volumes: list[Obj] = [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}]
    resources = copy_resources()
    if purpose.fetches and spec.secret_files:
        mounts.append({"name": "s3-credentials", "mountPath": SECRET_DIR, "readOnly": True})
        volumes.append({"name": "s3-credentials", "secret": {"secretName": spec.secret}})
    if purpose.claim is not None:
        ro = purpose.claim == "ro"
        mounts.insert(0, {"name": "model-storage", "mountPath": MOUNT, "readOnly": ro})
        volumes.insert(0, {"name": "model-storage", "persistentVolumeClaim": {"claimName": spec.pvc, "readOnly": ro}})
    if purpose.hub:
        env += _hub_env(spec)
        # Part buffers (--memory) plus the interpreter; no volume: the bytes stream from the Hub to the bucket.
        resources = {"requests": {"cpu": "1", "memory": f"{IMPORT_MEMORY_MIB + 256}Mi"},
                     "limits": {"cpu": "2", "memory": f"{IMPORT_MEMORY_MIB + 768}Mi"}}
    container: Obj = {"name": purpose.component, "image": spec.image, "args": args, "env": env,
                      "volumeMounts": mounts, "resources": resources,
                      "securityContext": restricted_container_security()}
    meta = _meta(spec, purpose.name or f"{spec.name}-{purpose.component}"[:63], purpose.component,
                 purpose.wave or WAVES.get(f"{purpose.component}-job", WAVES["job"]))
    meta["labels"].update(purpose.labels)
    if purpose.owner is not None:
        meta["ownerReferences"] = [dict(purpose.owner)]
    pod: Obj = {"restartPolicy": "Never", "securityContext": _pod_security(spec), "containers": [container],
                "volumes": volumes}
    if purpose.claim is not None:
        place(pod, spec.placement, "serving.kserve.io/inferenceservice")
    deadline = purpose.deadline or (deadline_seconds(spec.model_bytes) if purpose.fetches else 900)
    job_spec: Obj = {
        # A failed verification or removal will not pass on a retry; a copy resumes where it stopped.
        "backoffLimit": purpose.retries if purpose.retries is not None else (3 if purpose.fetches else 0),
        "activeDeadlineSeconds": deadline,
        # Exits that say "this will never succeed" (usage, source missing or denied, integrity) fail the
        # Job at once; a node drain does not count against the retries.
        "podFailurePolicy": {"rules": [
            {"action": "FailJob", "onExitCodes": {"containerName": purpose.component, "operator": "In",
                                                  "values": list(NEVER_RETRIED)}},
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}]},
        "template": {"metadata": {"labels": dict(meta["labels"])}, "spec": pod},
    }
    if purpose.indexed:
        job_spec.update(completionMode="Indexed", completions=purpose.indexed, parallelism=purpose.indexed)
    if spec.gitops == "argocd":
        # A hook: Argo CD deletes and recreates it on every sync (BeforeHookCreation) and waits for it
        # between the PVC and the InferenceService. Re-running is harmless: on a populated volume the Job is
        # a no-op that exits 0 in seconds. No TTL: the hook policy does the cleanup. The deadline bounds a
        # sync whose Job cannot start (a Multi-Attach it could not avoid).
        meta["annotations"]["argocd.argoproj.io/hook"] = purpose.hook
        meta["annotations"]["argocd.argoproj.io/hook-delete-policy"] = "BeforeHookCreation"
    else:
        job_spec["ttlSecondsAfterFinished"] = 86400
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": job_spec}


def _served(spec: ModelSpec) -> list[str]:
    """GitOps hooks re-run at every sync on a claim that may be serving: a source change goes beside the
    served directory (store/volume/revisions.py). One token, so `update --gitops` can tell it from the served path."""
    return [f"--revision-root={MOUNT}"] if spec.gitops == "argocd" else []


def _progress(followed: bool) -> list[str]:
    """A Job a modelpvc command follows writes JSON records for it to display; any other is read by people
    (oc logs -f): plain lines, ending with the summary record a later populate or doctor reads."""
    return ["--progress", "json" if followed else "log"]


def populate_args(spec: ModelSpec, followed: bool = False, link_dest: str | None = None) -> list[str]:
    """`mirror` as a populate Job runs it; ``link_dest``: another revision's directory on the claim, whose
    unchanged files are hard-linked."""
    loader = ["--for", spec.loader] if spec.loader != "vllm" else []
    # After an import Job, wait for its source.json (written last): with plain `kubectl apply` nothing
    # orders two Jobs, and under Argo CD the import hook's wave already has.
    wait = ["--wait-for-import", str(deadline_seconds(spec.model_bytes))] if spec.import_from else []
    creds = ["--credentials-dir", SECRET_DIR] if spec.secret_files else []
    link = ["--link-dest", f"{MOUNT}/{link_dest}".rstrip("/")] if link_dest is not None else []
    return ["mirror", spec.source, spec.model_dir, *_progress(followed), *loader, *wait, *_served(spec), *creds,
            *spec.mirror_args, *link]


def populate_job(spec: ModelSpec, followed: bool = False, link_dest: str | None = None) -> Obj:
    return tool_job(spec, Purpose("populate", claim="rw", fetches=True, name=spec.job_name),
                    populate_args(spec, followed, link_dest))


def import_job(spec: ModelSpec, followed: bool = False) -> Obj:
    """Hub -> bucket inside the cluster, for models too big for the operator's machine: no volume, memory
    bounded by --memory, the token from a Secret."""
    if not spec.import_from:
        raise ValueError("import_job needs spec.import_from")
    loader = ["--for", spec.loader] if spec.loader != "vllm" else []
    args = ["import", spec.import_from, spec.source, *_progress(followed), "--memory", str(IMPORT_MEMORY_MIB),
            *loader]
    return tool_job(spec, Purpose("import", claim=None, fetches=True, hub=True, name=spec.import_job_name), args)


def parallel_populate_job(spec: ModelSpec, link_dest: str | None = None) -> Obj:
    """An Indexed Job: pod i copies share i of N (Kubernetes schedules, retries and counts them; we add no
    scheduler). The Job controller sets JOB_COMPLETION_INDEX in each pod; args expand it. populate follows
    it."""
    # A share's selection leaves out the other shares' files: never delete what it leaves out. The shares
    # write the directory the populate Job names; only the final run chooses a revision.
    args = [a for a in populate_args(spec, True, link_dest) if a != "--delete-excluded" and a not in _served(spec)]
    purpose = Purpose("populate", claim="rw", fetches=True, name=f"{spec.job_name[:54]}-parallel",
                      indexed=spec.parallel)
    return tool_job(spec, purpose, [*args, "--shard", f"$(JOB_COMPLETION_INDEX)/{spec.parallel}"])


def verify_job(spec: ModelSpec) -> Obj:
    """Replaces the runbook's inspector pod: the claim read-only, one JSON verdict in the log."""
    args = ["verify", spec.model_dir, "--json", "--require-manifest", *_served(spec)]
    return tool_job(spec, Purpose("verify", claim="ro", fetches=False, name=spec.verify_job_name), args)


def probe_job(spec: ModelSpec) -> Obj:
    """Lists the source from inside the cluster (an endpoint only pods resolve): `plan --json`, one record. No
    claim (no Multi-Attach), no retry, five minutes."""
    loader = ["--for", spec.loader] if spec.loader != "vllm" else []
    purpose = Purpose("probe", claim=None, fetches=True, name=f"{spec.job_name[:56]}-probe", deadline=300, retries=0)
    return tool_job(spec, purpose, ["plan", spec.source, "--json", *loader])


def gc_job(spec: ModelSpec, args: list[str] | None = None) -> Obj:
    """A Job removing revisions from the claim: no S3 keys, the claim read-write. Rendered (``args`` None), the
    GitOps PostSync hook: once the InferenceService is healthy on the revision in Git, remove the revisions
    on the claim that neither serve nor are the source's latest. ``update`` passes its own ``gc`` args."""
    if args is None:
        if spec.gitops != "argocd":
            raise ConfigError("the gc Job is a GitOps hook (--gitops argocd); outside Argo CD, `modelpvc update` "
                              "removes the old revision once the new one serves")
        args = ["gc", MOUNT, f"--keep={spec.model_dir}", "--yes"]
    return tool_job(spec, Purpose("gc", claim="rw", fetches=False, hook="PostSync", name=spec.gc_job_name), args)


def storage_uri_patch(spec: ModelSpec, uri: str) -> Obj:
    """The InferenceService with only its storageUri: applied under a field manager of its own, every other
    field stays with whoever set it."""
    return {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
            "metadata": {"name": spec.name, "namespace": spec.namespace},
            "spec": {"predictor": {"model": {"storageUri": uri}}}}


def inference_service(spec: ModelSpec) -> Obj:
    """The user's InferenceService (``serving.base``) with only what we own set: ``storageUri`` and our
    label; or, without a base, one built from the flags. Serving flags given override the base."""
    sv = spec.serving
    if sv.base is not None:
        isvc = copy.deepcopy(sv.base)
        isvc.pop("status", None)
        meta = isvc.setdefault("metadata", {})
        for k in ("uid", "resourceVersion", "generation", "creationTimestamp", "managedFields"):
            meta.pop(k, None)
        meta["name"] = spec.name
        meta["namespace"] = spec.namespace
    else:
        meta = _meta(spec, spec.name, "inference", WAVES["isvc"])
        meta["labels"].update(DASHBOARD)
        isvc = {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService", "metadata": meta,
                "spec": {"predictor": {"model": {"modelFormat": {"name": "vLLM"}}}}}
    if spec.pvc:
        meta.setdefault("labels", {})[OUR_LABEL] = spec.pvc
    meta["labels"].update(sv.labels)
    if sv.annotations:
        meta.setdefault("annotations", {}).update(sv.annotations)
    if sv.deployment_mode:
        meta.setdefault("annotations", {})["serving.kserve.io/deploymentMode"] = sv.deployment_mode
    if spec.model_source:
        # Its pod is the claim's first consumer: in a later wave than a WaitForFirstConsumer claim, Argo CD
        # would wait for a claim that only binds once this pod is scheduled (argo-cd#12840).
        meta.setdefault("annotations", {})["argocd.argoproj.io/sync-wave"] = WAVES["pvc"]
    pred = isvc["spec"].setdefault("predictor", {})
    model = pred.setdefault("model", {})
    model["storageUri"] = spec.storage_uri
    if sv.runtime is not None or sv.base is None:
        model["runtime"] = sv.runtime or DEFAULT_RUNTIME
    if sv.args is not None:
        model["args"] = list(sv.args)
    gpus = sv.gpus if sv.gpus is not None else (None if sv.base is not None else 1)
    _resources(model, gpus, sv.cpu, sv.memory)
    if sv.min_replicas is not None:
        pred["minReplicas"] = sv.min_replicas
    if sv.max_replicas is not None:
        pred["maxReplicas"] = sv.max_replicas
    tolerations = [dict(t) for t in sv.tolerations]
    if gpus and sv.base is None and not any(t.get("key") == GPU for t in tolerations):
        tolerations.append(dict(GPU_TOLERATION))
    if tolerations:
        pred["tolerations"] = tolerations
    if sv.node_selector:
        pred["nodeSelector"] = dict(sv.node_selector)
    if spec.pattern == "storage-initializer":
        # The EmptyDir KServe downloads into counts against the pod's ephemeral storage: request it, so the
        # scheduler picks a node with room, and limit it, so the initializer knows its bound before a byte.
        if spec.ephemeral:
            for d in ("requests", "limits"):
                model.setdefault("resources", {}).setdefault(d, {})["ephemeral-storage"] = spec.ephemeral
        pred.setdefault("serviceAccountName", spec.service_account)
    return isvc


def cluster_storage_container(spec: ModelSpec) -> Obj:
    """modelpvc as KServe's storage initializer for s3:// URIs (all, or those of ``initializer_buckets``).
    KServe's pod mutator copies this container into the predictor as its init container and appends the
    URI and mount path as arguments (storage_initializer_injector.go)."""
    formats: list[Obj] = [{"prefix": "s3://"}]
    if spec.initializer_buckets:
        alt = "|".join(re.escape(b) for b in spec.initializer_buckets)
        formats = [{"regex": f"s3://({alt})/.*"}]
    container: Obj = {
        "name": "storage-initializer",
        "image": spec.image,
        "command": ["modelpvc-storage-initializer"],
        "env": [
            # The kubelet resolves another container's limit for an env var; unset, it is the node's
            # allocatable ephemeral storage (kubelet_pods.go: containerResourceRuntimeValue).
            {"name": EPHEMERAL_LIMIT_ENV, "valueFrom": {"resourceFieldRef": {
                "containerName": "kserve-container", "resource": "limits.ephemeral-storage", "divisor": "1"}}},
        ],
        "resources": copy_resources(),
        "securityContext": restricted_container_security(),
    }
    return {"apiVersion": "serving.kserve.io/v1alpha1", "kind": "ClusterStorageContainer",
            "metadata": {"name": INITIALIZER, "labels": {"app.kubernetes.io/managed-by": "modelpvc"},
                         "annotations": {"argocd.argoproj.io/sync-wave": WAVES["csc"]}},
            "spec": {"container": container, "supportedUriFormats": formats, "workloadType": "initContainer"}}


def service_account(spec: ModelSpec) -> Obj:
    """KServe's S3 credentials path for a storageUri: a service account listing the secret; KServe reads the
    keys from it and the endpoint from its serving.kserve.io/s3-* annotations (s3_secret.go)."""
    meta = _meta(spec, spec.service_account, "model-storage", WAVES["sa"])
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta, "secrets": [{"name": spec.secret}]}


def _resources(model: Obj, gpus: int | None, cpu: str | None, memory: str | None) -> None:
    res = model.setdefault("resources", {})
    requests, limits = res.setdefault("requests", {}), res.setdefault("limits", {})
    if gpus is not None:
        for d in (requests, limits):
            if gpus:
                d[GPU] = str(gpus)
            else:
                d.pop(GPU, None)
    if cpu:
        requests["cpu"] = cpu
    if memory:
        requests["memory"] = memory
        limits["memory"] = memory
    for k in ("requests", "limits"):
        if not res[k]:
            del res[k]
    if not res:
        del model["resources"]


def model_source(spec: ModelSpec) -> Obj:
    if not spec.model_source:
        raise ConfigError("a ModelSource is rendered with --populator")
    obj = ms.model_source(spec.model_source, spec.namespace, spec.source, spec.secret, spec.endpoint_url,
                          spec.region, spec.loader)
    obj["metadata"]["labels"] = _meta(spec, spec.model_source, "model-source", WAVES["modelsource"])["labels"]
    obj["metadata"]["annotations"] = {"argocd.argoproj.io/sync-wave": WAVES["modelsource"]}
    return obj


BUILDERS = {"import-job": import_job, "csc": cluster_storage_container, "sa": service_account, "pvc": pvc,
            "job": populate_job, "verify-job": verify_job, "isvc": inference_service, "gc-job": gc_job,
            "modelsource": model_source}


def expand_kinds(spec: ModelSpec, kinds: list[str]) -> list[str]:
    """The kinds asked for, with the import Job in front of a populate Job that needs one."""
    if spec.import_from and "job" in kinds and "import-job" not in kinds:
        return ["import-job", *kinds]
    return list(kinds)


def render(spec: ModelSpec, kinds: list[str]) -> list[Obj]:
    return [BUILDERS[k](spec) for k in expand_kinds(spec, kinds)]
