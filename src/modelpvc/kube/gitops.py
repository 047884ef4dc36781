"""InferenceServices that Argo CD manages: we do not fight it. Changing one in the cluster would be
reverted by self-heal or leave the application OutOfSync; the change belongs in Git.

Argo CD marks what it tracks with the ``argocd.argoproj.io/tracking-id`` annotation (annotation tracking,
the default since Argo CD 3.0) or the ``app.kubernetes.io/instance`` label it sets (label tracking),
and its controller is the field manager of what it applied (``argocd-controller``).
"""

from __future__ import annotations

import re
from pathlib import Path

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
        hint="edit your manifest, commit and push (or pass --gitops FILE to have it written into your checkout); "
             "the new revision is populated and verified already, so the sync only switches the URI")


def write_storage_uri(path: Path, name: str, old: str, new: str) -> None:
    """Replace the storageUri line of InferenceService ``name`` in a manifest file, keeping its formatting
    and comments (a YAML round trip would drop them)."""
    try:
        manifest = path.read_text()
    except OSError as e:
        raise ConfigError(f"--gitops {path}: {e}") from e
    pattern = re.compile(r"^(\s*storageUri:\s*)([\"']?)" + re.escape(old.rstrip("/")) + r"/?\2(\s*(#.*)?)$",
                         re.MULTILINE)
    if f"name: {name}" not in manifest or len(pattern.findall(manifest)) != 1:
        raise ConfigError(f"--gitops {path}: no single `storageUri: {old}` line of InferenceService {name} found",
                          hint="edit the manifest by hand: set storageUri to " + new)
    path.write_text(pattern.sub(lambda m: f"{m.group(1)}{m.group(2)}{new}{m.group(2)}{m.group(3)}", manifest))
