"""The ``ModelSource`` API (modelpvc.io/v1alpha1): what a populate needs, and nothing about the cluster.

A PersistentVolumeClaim whose ``spec.dataSourceRef`` names a ModelSource is provisioned and filled by
``modelpvc populator`` (kube/populator.py) before it binds. The CRD and the ``VolumePopulator``
registration (read by the volume-data-source-validator, which OpenShift 4.20 ships) are built here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modelpvc.core.errors import ConfigError

GROUP = "modelpvc.io"
VERSION = "v1alpha1"
KIND = "ModelSource"
PLURAL = "modelsources"
LOADERS = ("vllm", "vllm-mistral")
VERIFY = ("auto", "full", "size")
SELECT = ("auto", "all")

Obj = dict[str, Any]


@dataclass(frozen=True)
class Source:
    """A ModelSource's spec, checked."""

    name: str
    uri: str
    secret: str
    endpoint: str | None = None
    region: str | None = None
    select: str = "auto"
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    loader: str = "vllm"
    verify: str = "auto"

    def mirror_args(self) -> tuple[str, ...]:
        """The selection and verification flags of `mirror`, as the ModelSource asks for them."""
        args: list[str] = []
        if self.select != "auto":
            args += ["--select", self.select]
        for p in self.include:
            args += ["--include", p]
        for p in self.exclude:
            args += ["--exclude", p]
        if self.verify != "auto":
            args += ["--verify", self.verify]
        return tuple(args)


def parse(obj: Obj) -> Source:
    """The ModelSource ``obj`` as a Source; ConfigError names the field that is wrong."""
    name = str(obj["metadata"]["name"])
    spec = obj.get("spec") or {}
    where = f"ModelSource {name}"
    uri = str(spec.get("uri") or "")
    if not uri.startswith("s3://") or len(uri) <= 5:
        raise ConfigError(f"{where}: spec.uri {uri!r} is not an s3:// URI", hint="s3://BUCKET/PREFIX/")
    secret = str((spec.get("secretRef") or {}).get("name") or "")
    if not secret:
        raise ConfigError(f"{where}: spec.secretRef.name is missing",
                          hint="name the Secret holding the S3 keys (an OpenShift AI data connection works)")
    for field_name, value, allowed in (("select", spec.get("select", "auto"), SELECT),
                                       ("for", spec.get("for", "vllm"), LOADERS),
                                       ("verify", spec.get("verify", "auto"), VERIFY)):
        if value not in allowed:
            raise ConfigError(f"{where}: spec.{field_name} {value!r}: choose {', '.join(allowed)}")
    return Source(name=name, uri=uri.rstrip("/") + "/", secret=secret, endpoint=spec.get("endpoint") or None,
                  region=spec.get("region") or None, select=str(spec.get("select", "auto")),
                  include=tuple(spec.get("include") or ()), exclude=tuple(spec.get("exclude") or ()),
                  loader=str(spec.get("for", "vllm")), verify=str(spec.get("verify", "auto")))


def model_source(name: str, namespace: str, uri: str, secret: str, endpoint: str | None = None,
                 region: str | None = None, loader: str = "vllm", labels: dict[str, str] | None = None) -> Obj:
    spec: Obj = {"uri": uri, "secretRef": {"name": secret}}
    if endpoint:
        spec["endpoint"] = endpoint
    if region:
        spec["region"] = region
    if loader != "vllm":
        spec["for"] = loader
    meta: Obj = {"name": name, "namespace": namespace}
    if labels:
        meta["labels"] = dict(labels)
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "metadata": meta, "spec": spec}


def _string(description: str, **extra: Any) -> Obj:
    return {"type": "string", "description": description, **extra}


def crd() -> Obj:
    """The CustomResourceDefinition, with its OpenAPI schema and printer columns."""
    spec_schema: Obj = {
        "type": "object", "required": ["uri", "secretRef"],
        "properties": {
            "uri": _string("s3://BUCKET/PREFIX/ of the model", pattern="^s3://[^/]+/.*$"),
            "endpoint": _string("the S3 endpoint URL the populate pod reaches; default: the Secret's "
                                "AWS_S3_ENDPOINT (an OpenShift AI data connection), else AWS"),
            "secretRef": {"type": "object", "required": ["name"], "description": "the Secret with the S3 keys, in "
                          "the claim's namespace (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or accesskey/secretkey)",
                          "properties": {"name": _string("the Secret's name")}},
            "region": _string("the S3 region; default: the Secret's AWS_DEFAULT_REGION"),
            "select": _string("auto: the weight set the loader reads; all: every file", enum=list(SELECT)),
            "include": {"type": "array", "items": {"type": "string"}, "description": "glob patterns to copy"},
            "exclude": {"type": "array", "items": {"type": "string"}, "description": "glob patterns to leave out"},
            "for": _string("the loader the copy is for (selection and severity follow it)", enum=list(LOADERS)),
            "verify": _string("auto: the source's checksum or a recorded digest; full: fail without one; size: "
                              "lengths only", enum=list(VERIFY)),
        }}
    status_schema: Obj = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    columns = [
        {"name": "URI", "type": "string", "jsonPath": ".spec.uri"},
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        {"name": "Files", "type": "integer", "jsonPath": ".status.files"},
        {"name": "Bytes", "type": "integer", "jsonPath": ".status.bytesTotal"},
        {"name": "Revision", "type": "string", "jsonPath": ".status.revision"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}", "labels": {"app.kubernetes.io/managed-by": "modelpvc"}},
        "spec": {"group": GROUP, "scope": "Namespaced",
                 "names": {"kind": KIND, "listKind": f"{KIND}List", "plural": PLURAL, "singular": "modelsource",
                           "shortNames": ["msrc"]},
                 "versions": [{"name": VERSION, "served": True, "storage": True,
                               "subresources": {"status": {}}, "additionalPrinterColumns": columns,
                               "schema": {"openAPIV3Schema": {"type": "object", "required": ["spec"], "properties": {
                                   "spec": spec_schema, "status": status_schema}}}}]},
    }


def volume_populator() -> Obj:
    """The registration the volume-data-source-validator reads: without it, a claim naming a ModelSource
    gets a "not a registered populator" warning event."""
    return {"apiVersion": "populator.storage.k8s.io/v1beta1", "kind": "VolumePopulator",
            "metadata": {"name": "modelpvc-modelsource", "labels": {"app.kubernetes.io/managed-by": "modelpvc"}},
            "sourceKind": {"group": GROUP, "kind": KIND}}
