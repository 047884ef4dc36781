"""Object keys to local paths, refusing anything that could land outside the destination."""

from __future__ import annotations

from modelpvc.core.errors import UnsafeKey
from modelpvc.core.manifest import STATE_DIR
from modelpvc.core.models import ObjectInfo
from modelpvc.store.volume.destination import PARTIAL_SUFFIX


def unsafe_reason(rel: str) -> str | None:
    """Why a relative key cannot be a path below the destination, or None when it can."""
    if "\0" in rel:
        return "contains a NUL byte"
    if rel.startswith("/"):
        return "is an absolute path"
    if "\\" in rel:
        return "contains a backslash"
    parts = rel.split("/")
    if any(p == ".." for p in parts):
        return "contains a '..' segment"
    if any(p in ("", ".") for p in parts):
        return "contains an empty or '.' segment"
    if parts[0] == STATE_DIR:
        return f"would overwrite modelpvc's own {STATE_DIR}/ directory"
    if rel.endswith(PARTIAL_SUFFIX):
        return f"ends in {PARTIAL_SUFFIX}, the suffix of unfinished downloads"
    return None


def check_keys(objects: list[ObjectInfo], source: str) -> None:
    """Refuse the whole run before the first byte when any key is unsafe (documented in README)."""
    bad = [(o.key, r) for o in objects if (r := unsafe_reason(o.rel)) is not None]
    rels = {o.rel for o in objects}
    dirs = {rel.rsplit("/", i)[0] for rel in rels for i in range(1, rel.count("/") + 1)}
    bad += [(o.key, "is both a file and a directory of other keys") for o in objects if o.rel in dirs]
    if bad:
        listed = "; ".join(f"{k!r} {r}" for k, r in bad[:5])
        more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
        raise UnsafeKey(
            f"{len(bad)} object key(s) under {source} cannot be written safely: {listed}{more}",
            hint="nothing was written; rename those objects or leave them out with --exclude GLOB",
        )
