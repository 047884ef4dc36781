"""InferenceServices that Argo CD manages: we do not fight it. Changing one in the cluster would be
reverted by self-heal or leave the application OutOfSync; the change belongs in Git.

Argo CD marks what it tracks with the ``argocd.argoproj.io/tracking-id`` annotation (annotation tracking,
the default since Argo CD 3.0) or the ``app.kubernetes.io/instance`` label it sets (label tracking),
and its controller is the field manager of what it applied (``argocd-controller``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from modelpvc.core.errors import ConfigError
from modelpvc.kube import objects as o

TRACKING = "argocd.argoproj.io/tracking-id"


def argo_managed(obj: o.Obj) -> str | None:
    """The Argo CD application tracking ``obj``, or None."""
    meta = obj.get("metadata") or {}
    tracking = (meta.get("annotations") or {}).get(TRACKING)
    if tracking:
        return str(tracking).split(":", 1)[0]
    managers = {str(e.get("manager", "")) for e in meta.get("managedFields") or []}
    instance = (meta.get("labels") or {}).get("app.kubernetes.io/instance")
    if instance and any(m.startswith("argocd") for m in managers):
        return str(instance)
    return None


def storage_uri(obj: o.Obj) -> str:
    return str((((obj.get("spec") or {}).get("predictor") or {}).get("model") or {}).get("storageUri", ""))


def refuse_argo(current: o.Obj, new_uri: str | o.Obj) -> None:
    uri = new_uri if isinstance(new_uri, str) else storage_uri(new_uri)
    app = argo_managed(current)
    name = current["metadata"]["name"]
    raise ConfigError(
        f"InferenceService {name} is managed by Argo CD (application {app}); a change made here would be "
        f"reverted at the next sync or leave the application OutOfSync. Change it in Git instead:\n"
        f"    spec.predictor.model.storageUri: {storage_uri(current)}  ->  {uri}",
        hint="edit your manifest, commit and push (or pass --gitops PATH, the manifest or its directory in your "
             "checkout, to have it written there); "
             "the new revision is populated and verified already, so the sync only switches the URI")


@dataclass(frozen=True)
class Served:
    """Where a model is served from, as the manifests in Git say it."""

    name: str  # the InferenceService
    claim: str
    storage_uri: str  # pvc://claim/path/
    model_dir: str  # the same directory as our Jobs mount it: /mnt/models/path


def _documents(text: str) -> list[str]:
    """A YAML stream's documents, each with its separator line, so that joining them gives the text back."""
    return re.split(r"(?m)^(?=---\s*$)", text)


def _our_hook(doc: str, served: Served) -> str | None:
    """The component of a Job modelpvc rendered for this model (by its labels and its claim), else None."""
    try:
        obj = yaml.safe_load(doc)
    except yaml.YAMLError:
        return None
    if not isinstance(obj, dict) or obj.get("kind") != "Job":
        return None
    labels = (obj.get("metadata") or {}).get("labels") or {}
    claims = {(v.get("persistentVolumeClaim") or {}).get("claimName")
              for v in ((obj.get("spec") or {}).get("template") or {}).get("spec", {}).get("volumes") or []}
    ours = labels.get("app.kubernetes.io/managed-by") == "modelpvc" and \
        labels.get("app.kubernetes.io/name") == served.name and served.claim in claims
    return str(labels.get("app.kubernetes.io/component", "")) if ours else None


def _rewrite_hook(doc: str, component: str, old: Served, new: Served) -> str:
    """The served directory in a hook's args: the populate and verify hooks' DIR, a list item that is exactly
    it; the gc hook's --keep (its DIR is the claim's mount, which stays)."""
    flag = "--keep=" if component == "gc" else ""
    item = re.compile(r"^(\s*-\s*)([\"']?)" + re.escape(flag + old.model_dir) + r"\2(\s*)$", re.MULTILINE)
    return item.sub(lambda m: f"{m.group(1)}{m.group(2)}{flag}{new.model_dir}{m.group(2)}{m.group(3)}", doc)


def _manifest_files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())
    return [path]


def write_served(path: Path, old: Served, new: Served) -> list[Path]:
    """Point the manifests in ``path`` (a file, or a directory of them) at ``new``: the storageUri line of the
    InferenceService and the served directory in the hooks modelpvc rendered for it, keeping formatting and
    comments (a YAML round trip would drop them). Returns the files changed."""
    uri = re.compile(r"^(\s*storageUri:\s*)([\"']?)" + re.escape(old.storage_uri.rstrip("/")) + r"/?\2(\s*(#.*)?)$",
                     re.MULTILINE)
    texts: dict[Path, str] = {}
    uri_lines = 0
    for f in _manifest_files(path):
        try:
            text = f.read_text()
        except OSError as e:
            raise ConfigError(f"--gitops {f}: {e}") from e
        docs = _documents(text)
        for i, doc in enumerate(docs):
            if f"name: {old.name}" in doc and uri.search(doc):
                uri_lines += len(uri.findall(doc))
                docs[i] = uri.sub(lambda m: f"{m.group(1)}{m.group(2)}{new.storage_uri}{m.group(2)}{m.group(3)}", doc)
            elif (component := _our_hook(doc, old)) in ("populate", "verify", "gc"):
                docs[i] = _rewrite_hook(doc, str(component), old, new)
        if "".join(docs) != text:
            texts[f] = "".join(docs)
    if uri_lines != 1:
        raise ConfigError(f"--gitops {path}: no single `storageUri: {old.storage_uri}` line of InferenceService "
                          f"{old.name} found" + (f" ({uri_lines})" if uri_lines else ""),
                          hint="pass the file (or the directory) that holds it, or edit it by hand: set storageUri "
                               "to " + new.storage_uri)
    for f, text in texts.items():
        f.write_text(text)
    return sorted(texts)
