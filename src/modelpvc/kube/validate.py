"""Offline validation: core kinds against Kubernetes' OpenAPI (kubernetes-validate, strict), KServe kinds
against the CRD's openAPIV3Schema (jsonschema), every pod against the restricted profile."""

from __future__ import annotations

import functools
import gzip
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from modelpvc.core.errors import ConfigError
from modelpvc.kube.podsecurity import pod_spec_of, violations

CORE_GROUPS = ("v1", "batch/v1", "apps/v1", "rbac.authorization.k8s.io/v1", "apiextensions.k8s.io/v1")
# The VolumePopulator registration's schema, as its CRD in kubernetes-csi/volume-data-source-validator
# (client/config/crd/populator.storage.k8s.io_volumepopulators.yaml) declares it.
_VOLUME_POPULATOR = {"type": "object", "required": ["sourceKind"], "properties": {
    "sourceKind": {"type": "object", "required": ["group", "kind"],
                   "properties": {"group": {"type": "string"}, "kind": {"type": "string"}}}}}
# The C loader parses the 2 MB InferenceService CRD ~10x faster than the pure-Python one.
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@functools.lru_cache(maxsize=1)
def _bundled() -> dict[tuple[str, str], dict[str, Any]]:
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for entry in resources.files("modelpvc.kube").joinpath("schemas").iterdir():
        if entry.name.endswith(".yaml.gz"):
            out.update(_schemas(list(yaml.load_all(gzip.decompress(entry.read_bytes()), Loader=_Loader))))
    return out


def bundled_crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """The KServe CRDs shipped with modelpvc (InferenceService, ServingRuntime, ClusterServingRuntime,
    ClusterStorageContainer, LocalModelCache) and our own kinds (ModelSource, VolumePopulator), so ``render
    --validate`` works offline; ``--crd`` files from the cluster (``oc get crd ... -o yaml``) take precedence."""
    from modelpvc.kube import modelsource as ms

    return {**_bundled(), **_schemas([ms.crd()]),
            ("populator.storage.k8s.io/v1beta1", "VolumePopulator"): _VOLUME_POPULATOR}


def load_crd_schemas(paths: list[Path]) -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> openAPIV3Schema: the bundled CRDs, overridden by CRD YAML files given."""
    out = bundled_crd_schemas()
    for p in paths:
        try:
            docs = list(yaml.safe_load_all(p.read_text()))
        except (OSError, yaml.YAMLError) as e:
            raise ConfigError(f"cannot read CRD {p}: {e}") from e
        out.update(_schemas(docs))
    return out


def _schemas(docs: list[Any]) -> dict[tuple[str, str], dict[str, Any]]:
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for crd in docs:
        if not crd or crd.get("kind") != "CustomResourceDefinition":
            continue
        group = crd["spec"]["group"]
        kind = crd["spec"]["names"]["kind"]
        for v in crd["spec"]["versions"]:
            schema = (v.get("schema") or {}).get("openAPIV3Schema")
            if schema:
                out[(f"{group}/{v['name']}", kind)] = schema
    return out


def validate_objects(objs: list[dict[str, Any]], k8s_version: str = "1.31",
                     crds: dict[tuple[str, str], dict[str, Any]] | None = None) -> list[str]:
    """Problems found, as "Kind/name: message" lines; empty when everything validates."""
    try:
        import jsonschema
        import kubernetes_validate
    except ImportError as e:
        raise ConfigError("validation needs the optional packages", hint="pip install 'modelpvc[validate]'") from e
    problems: list[str] = []
    for obj in objs:
        ref = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
        api = obj.get("apiVersion", "")
        if api in CORE_GROUPS:
            try:
                kubernetes_validate.validate(obj, k8s_version, strict=True)
            except kubernetes_validate.ValidationError as e:
                path = ".".join(str(p) for p in e.path)
                problems.append(f"{ref}: {path}: {e.message}")
        else:
            schema = (crds or {}).get((api, obj.get("kind", "")))
            if schema is None:
                problems.append(f"{ref}: no schema for {api} {obj.get('kind')} (pass its CRD with --crd FILE)")
            else:
                validator = jsonschema.Draft7Validator(schema)
                for err in sorted(validator.iter_errors(obj), key=lambda e: list(e.path)):
                    path = ".".join(str(p) for p in err.path)
                    problems.append(f"{ref}: {path}: {err.message}")
        pod = pod_spec_of(obj)
        if pod is not None:
            problems += [f"{ref}: restricted profile: {v}" for v in violations(pod)]
    return problems
