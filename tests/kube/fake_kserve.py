"""KServe's part of the fake: the predictor pod KServe would create for an InferenceService, and whether
the vLLM server in it would load the files it finds — decided here, from the files, not by modelpvc's own
``verify``.

The pod (KServe's pod mutator and storage initializer injector): the ServingRuntime's kserve-container
(image, args, env, volumes) with the InferenceService's args appended and its resources, node selector,
tolerations, affinity and service account; a ``pvc://CLAIM/PATH`` storageUri becomes the claim mounted at
/mnt/models with subPath PATH, read-only unless ``storage.kserve.io/readonly: "false"``. An ``s3://``
storageUri gets an EmptyDir ``kserve-provision-location`` at /mnt/models and the storage-initializer init
container of the first ClusterStorageContainer whose ``supportedUriFormats`` match (prefix, or a regex
searched as Go's MatchString does), with the arguments [URI, /mnt/models] and the S3 environment of the
service account's secret (``s3_env``). Without a match KServe would use its own initializer; that one is
not simulated (the init container fails saying so).

The load (vLLM's DefaultModelLoader._prepare_weights and the safetensors library's header checks): the
config it reads (config.json, or params.json with --config-format/--load-format mistral), the weight files
it globs at the top level (*.safetensors, else *.bin, else *.pt; consolidated*.safetensors in Mistral mode),
filtered by the index when there is one, each safetensors header parsed and the file length checked, and a
tokenizer unless --tokenizer or --skip-tokenizer-init is given.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

Obj = dict[str, Any]
MOUNT = "/mnt/models"


def _flag(args: list[str], name: str) -> str | None:
    for i, a in enumerate(args):
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
        if a == name and i + 1 < len(args):
            return args[i + 1]
    return None


PROVISION = "kserve-provision-location"  # KServe's StorageInitializerVolumeName
DEFAULT_INITIALIZER = "kserve/storage-initializer:v0.15.0"
# The secret keys KServe reads for a service account's S3 credentials. Upstream's default is
# awsAccessKeyID/awsSecretAccessKey; OpenShift AI configures the data-connection names, as here.
S3_KEY_NAMES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")


def s3_env(secret: Obj) -> list[Obj]:
    """The env KServe's BuildSecretEnvs/BuildS3EnvVars give the initializer for a service account's secret."""
    name = secret["metadata"]["name"]
    ann = secret["metadata"].get("annotations") or {}
    env: list[Obj] = [{"name": n, "valueFrom": {"secretKeyRef": {"name": name, "key": k}}}
                      for n, k in zip(("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"), S3_KEY_NAMES, strict=True)]
    host = ann.get("serving.kserve.io/s3-endpoint")
    if host:
        https = ann.get("serving.kserve.io/s3-usehttps")
        if https is not None:
            env.append({"name": "S3_USE_HTTPS", "value": https})
        env += [{"name": "S3_ENDPOINT", "value": host},
                {"name": "AWS_ENDPOINT_URL", "value": ("http://" if https == "0" else "https://") + host}]
    for key, var in (("s3-verifyssl", "S3_VERIFY_SSL"), ("s3-useanoncredential", "awsAnonymousCredential"),
                     ("s3-region", "AWS_DEFAULT_REGION"), ("s3-cabundle", "AWS_CA_BUNDLE")):
        if f"serving.kserve.io/{key}" in ann:
            env.append({"name": var, "value": ann[f"serving.kserve.io/{key}"]})
    return env


def storage_container(uri: str, cscs: list[Obj]) -> Obj | None:
    for csc in cscs:
        for fmt in csc["spec"].get("supportedUriFormats") or []:
            if ("prefix" in fmt and uri.startswith(fmt["prefix"])) or \
                    ("regex" in fmt and re.search(fmt["regex"], uri)):
                return copy.deepcopy(csc["spec"]["container"])
    return None


def predictor_pod_spec(isvc: Obj, runtime: Obj, cscs: list[Obj] | None = None,
                       credentials: list[Obj] | None = None) -> tuple[Obj, str, str]:
    """(pod spec, claim, subPath) of the predictor; claim is "" for an s3:// storageUri."""
    pred = isvc["spec"]["predictor"]
    model = pred["model"]
    if str(model["storageUri"]).startswith("s3://"):
        return _s3_predictor(isvc, runtime, cscs or [], credentials or []), "", ""
    claim, _, sub = str(model["storageUri"]).removeprefix("pvc://").partition("/")
    container = copy.deepcopy(runtime["spec"]["containers"][0])
    container["name"] = "kserve-container"
    container["args"] = [*container.get("args", []), *model.get("args", [])]
    if model.get("resources"):
        container["resources"] = copy.deepcopy(model["resources"])
    readonly = (isvc["metadata"].get("annotations") or {}).get("storage.kserve.io/readonly", "true") != "false"
    mount: Obj = {"name": "kserve-pvc-source", "mountPath": MOUNT, "readOnly": readonly}
    if sub.strip("/"):
        mount["subPath"] = sub.strip("/")
    container["volumeMounts"] = [*container.get("volumeMounts", []), mount]
    spec: Obj = {
        "containers": [container],
        "volumes": [
            *copy.deepcopy(runtime["spec"].get("volumes", [])),
            {"name": "kserve-pvc-source", "persistentVolumeClaim": {"claimName": claim, "readOnly": readonly}},
        ],
    }
    for k in ("nodeSelector", "tolerations", "affinity", "serviceAccountName", "securityContext"):
        if pred.get(k):
            spec[k] = copy.deepcopy(pred[k])
    return spec, claim, sub.strip("/")


def _kserve_container(isvc: Obj, runtime: Obj) -> Obj:
    model = isvc["spec"]["predictor"]["model"]
    container = copy.deepcopy(runtime["spec"]["containers"][0])
    container["name"] = "kserve-container"
    container["args"] = [*container.get("args", []), *model.get("args", [])]
    if model.get("resources"):
        container["resources"] = copy.deepcopy(model["resources"])
    return container


def _s3_predictor(isvc: Obj, runtime: Obj, cscs: list[Obj], credentials: list[Obj]) -> Obj:
    pred = isvc["spec"]["predictor"]
    uri = str(pred["model"]["storageUri"])
    container = _kserve_container(isvc, runtime)
    container["volumeMounts"] = [*container.get("volumeMounts", []),
                                 {"name": PROVISION, "mountPath": MOUNT, "readOnly": True}]
    init = storage_container(uri, cscs) or {"name": "storage-initializer", "image": DEFAULT_INITIALIZER}
    init["name"] = "storage-initializer"
    init["args"] = [uri, MOUNT]
    init["env"] = [*init.get("env", []), *credentials]
    init["volumeMounts"] = [{"name": PROVISION, "mountPath": MOUNT}]
    spec: Obj = {"initContainers": [init], "containers": [container],
                 "volumes": [*copy.deepcopy(runtime["spec"].get("volumes", [])), {"name": PROVISION, "emptyDir": {}}]}
    for k in ("nodeSelector", "tolerations", "affinity", "serviceAccountName", "securityContext"):
        if pred.get(k):
            spec[k] = copy.deepcopy(pred[k])
    return spec


def would_load(model_dir: Path, args: list[str]) -> str | None:
    """None when vLLM would start serving this directory, else the error it would die with: the process
    kubelet's vLLM stand-in decides it, with the real safetensors library (one home for the rule)."""
    from tests.cluster.vllm_standin import load_error

    return load_error(model_dir, args)
