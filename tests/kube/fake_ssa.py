"""Server-side apply and managed fields for the fake API server, as Kubernetes documents them
(https://kubernetes.io/docs/reference/using-api/server-side-apply/):

* every write records which manager set which fields (``metadata.managedFields``, operation Apply or
  Update);
* an Apply sets the fields of the applied configuration; a field the same manager applied before and now
  omits is removed (unless another manager owns it too);
* applying a value that differs from one another manager owns is a 409 Conflict naming the field and the
  manager, unless ``force=true``, which takes the field over; applying an equal value shares ownership;
* an Update (create, merge patch, replace) takes the fields it changes from their previous owners.

Simpler than the real thing, on purpose and written down: lists are atomic (the real server merges lists
marked ``x-kubernetes-list-type: map`` by key; our commands never apply into a list), and ownership is
tracked for leaf fields only.
"""

from __future__ import annotations

import copy
from typing import Any

Path = tuple[str, ...]
IGNORED = {
    ("apiVersion",),
    ("kind",),
    ("status",),
    ("metadata", "name"),
    ("metadata", "namespace"),
    ("metadata", "_attached"),
    ("metadata", "_deleted_at"),
    ("metadata", "_started"),
    ("metadata", "uid"),
    ("metadata", "resourceVersion"),
    ("metadata", "generation"),
    ("metadata", "creationTimestamp"),
    ("metadata", "managedFields"),
    ("metadata", "deletionTimestamp"),
}


class Conflict(Exception):
    def __init__(self, conflicts: list[tuple[Path, str]]) -> None:
        self.conflicts = conflicts
        names = ", ".join(f'"{m}" owns .{".".join(p)}' for p, m in conflicts)
        super().__init__(f"Apply failed with {len(conflicts)} conflict(s): conflict with {names}")


def leaves(obj: Any, prefix: Path = ()) -> dict[Path, Any]:
    """Leaf fields of an object: maps are walked, lists and scalars are leaves."""
    out: dict[Path, Any] = {}
    if isinstance(obj, dict) and obj:
        for k, v in obj.items():
            p = (*prefix, str(k))
            if any(p[: len(i)] == i for i in IGNORED):
                continue
            out.update(leaves(v, p))
    elif prefix:
        out[prefix] = obj
    return out


def _get(obj: Any, path: Path) -> Any:
    for k in path:
        if not isinstance(obj, dict) or k not in obj:
            return _MISSING
        obj = obj[k]
    return obj


def _set(obj: dict[str, Any], path: Path, value: Any) -> None:
    for k in path[:-1]:
        nxt = obj.get(k)
        if not isinstance(nxt, dict):
            nxt = obj[k] = {}
        obj = nxt
    obj[path[-1]] = copy.deepcopy(value)


def _unset(obj: dict[str, Any], path: Path) -> None:
    parents = []
    cur: Any = obj
    for k in path[:-1]:
        if not isinstance(cur, dict) or k not in cur:
            return
        parents.append((cur, k))
        cur = cur[k]
    if isinstance(cur, dict):
        cur.pop(path[-1], None)
    for parent, k in reversed(parents):  # drop maps the removal emptied
        if parent[k] == {}:
            del parent[k]


_MISSING = object()


def _entries(obj: dict[str, Any]) -> list[dict[str, Any]]:
    return obj.setdefault("metadata", {}).setdefault("managedFields", [])


def owned(entry: dict[str, Any]) -> set[Path]:
    return {tuple(p) for p in entry.get("_paths", [])}


def _entry(obj: dict[str, Any], manager: str, operation: str) -> dict[str, Any]:
    for e in _entries(obj):
        if e["manager"] == manager and e["operation"] == operation:
            return e
    e = {
        "manager": manager,
        "operation": operation,
        "apiVersion": obj.get("apiVersion", "v1"),
        "fieldsType": "FieldsV1",
        "fieldsV1": {},
        "_paths": [],
    }
    _entries(obj).append(e)
    return e


def _store(e: dict[str, Any], paths: set[Path]) -> None:
    e["_paths"] = sorted(list(p) for p in paths)
    fields: dict[str, Any] = {}
    for p in paths:
        cur = fields
        for k in p:
            cur = cur.setdefault(f"f:{k}", {})
    e["fieldsV1"] = fields


def _prune(obj: dict[str, Any]) -> None:
    obj["metadata"]["managedFields"] = [e for e in _entries(obj) if e.get("_paths")]


def record_update(current: dict[str, Any] | None, new: dict[str, Any], manager: str) -> dict[str, Any]:
    """A create/replace/merge patch by ``manager``: it owns what it changed; previous owners lose it."""
    new = copy.deepcopy(new)
    new.setdefault("metadata", {})["managedFields"] = copy.deepcopy(
        (current or {}).get("metadata", {}).get("managedFields", [])
    )
    before = leaves(current or {})
    after = leaves(new)
    changed = {p for p, v in after.items() if before.get(p, _MISSING) != v}
    for e in _entries(new):
        _store(e, {p for p in owned(e) - changed if p in after})
    mine = _entry(new, manager, "Update")
    _store(mine, owned(mine) | changed)
    _prune(new)
    return new


def apply(current: dict[str, Any] | None, applied: dict[str, Any], manager: str, force: bool) -> dict[str, Any]:
    """Server-side apply of ``applied`` by ``manager`` onto ``current`` (None: create)."""
    base = copy.deepcopy(current) if current is not None else {"metadata": dict(applied.get("metadata", {}))}
    base.setdefault("metadata", {}).setdefault("managedFields", [])
    want = leaves(applied)
    have = leaves(base)
    mine = _entry(base, manager, "Apply")
    conflicts = []
    for p, v in want.items():
        if have.get(p, _MISSING) == v:
            continue
        for e in _entries(base):
            if e is not mine and p in owned(e):
                conflicts.append((p, e["manager"]))
    if conflicts and not force:
        raise Conflict(conflicts)
    taken = {p for p, _m in conflicts}
    for e in _entries(base):
        if e is not mine:
            _store(e, owned(e) - taken)
    others = set().union(*(owned(e) for e in _entries(base) if e is not mine))
    for p in owned(mine) - set(want):
        if p not in others:
            _unset(base, p)  # applied before, omitted now, owned by nobody else: removed
    for p, v in want.items():
        _set(base, p, v)
    _store(mine, set(want))
    _prune(base)
    for k in ("apiVersion", "kind"):
        if k in applied:
            base[k] = applied[k]
    return base


def public(obj: dict[str, Any]) -> dict[str, Any]:
    """The object as the API returns it: managedFields without our bookkeeping."""
    out = copy.deepcopy(obj)
    meta = out.get("metadata", {})
    for k in [k for k in meta if k.startswith("_")]:  # the fake's own bookkeeping
        del meta[k]
    for e in meta.get("managedFields", []) or []:
        e.pop("_paths", None)
    return out
