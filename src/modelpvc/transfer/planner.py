"""The pure planner: source listing + destination state -> Plan. No I/O, so it is tested directly."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from modelpvc.core.errors import ModelsBelow
from modelpvc.core.models import Action, FileRecord, LocalFile, ObjectInfo, Operation, Plan, Selection
from modelpvc.transfer import ranges

# Decides which listed objects are wanted.
Selector = Callable[[list[ObjectInfo]], Selection]


@dataclass
class LocalState:
    """What the destination holds, gathered by the caller."""

    files: dict[str, LocalFile] = field(default_factory=dict)  # final names, below the destination
    partials: dict[str, LocalFile] = field(default_factory=dict)  # rel of the final name -> .partial
    published: dict[str, FileRecord] = field(default_factory=dict)  # from the manifest and journal
    journal_ranges: dict[tuple[str, str, int], list[tuple[int, int]]] = field(default_factory=dict)
    # --link-dest: files of another verified revision on the same filesystem, by path
    link_candidates: dict[str, FileRecord] = field(default_factory=dict)
    # Unrecorded local copies can be hashed against what the source promises (not with --verify size).
    can_adopt: bool = True


def plan_mirror(
    source: str,
    objects: list[ObjectInfo],
    local: LocalState,
    *,
    delete: bool = False,
    delete_excluded: bool = False,
    select: Selector | None = None,
) -> Plan:
    try:
        chosen = select(objects) if select is not None else Selection()
    except ModelsBelow as e:
        root = source.rstrip("/") + "/"
        e.message = e.message.split(": ", 1)[0] + ": " + ", ".join(root + d for d in e.dirs)
        e.hint = f"did you mean {root + e.dirs[0]}? " + (e.hint or "")
        raise
    ops: list[Operation] = []
    excluded_on_disk: list[Operation] = []
    for obj in sorted(objects, key=lambda o: o.rel):
        if obj.rel in chosen.skips:
            skip = Operation(Action.SKIP, obj.rel, obj.size, obj, reason=chosen.skips[obj.rel])
            ops.append(skip)
            if obj.rel in local.files:
                lf = local.files[obj.rel]
                if delete_excluded:
                    ops.append(Operation(Action.DELETE, obj.rel, lf.size, None,
                                         reason=f"left out by the selection ({chosen.skips[obj.rel]})"))
                else:
                    excluded_on_disk.append(skip)
            continue
        ops.append(_decide(obj, local))
    if delete:
        # Judged against the whole listing, not the selection: a file another shard (or an --exclude)
        # leaves alone is still in the source.
        listed = {o.rel for o in objects}
        for rel, lf in sorted(local.files.items()):
            if rel not in listed:
                ops.append(Operation(Action.DELETE, rel, lf.size, None, reason="not in the source"))
    return Plan(source=source, operations=tuple(ops), notes=tuple(chosen.notes), layout=chosen.layout,
                excluded_on_disk=tuple(excluded_on_disk))


def _decide(obj: ObjectInfo, local: LocalState) -> Operation:
    rec = local.published.get(obj.rel)
    have = local.files.get(obj.rel)
    if rec is not None and have is not None and rec.etag == obj.etag and rec.size == obj.size:
        if have.size == obj.size and have.mtime_ns == rec.mtime_ns:
            return Operation(Action.KEEP, obj.rel, obj.size, obj, reason="unchanged")
        return Operation(Action.FETCH, obj.rel, obj.size, obj, reason="local file was modified")
    partial = local.partials.get(obj.rel)
    done = local.journal_ranges.get((obj.rel, obj.etag, obj.size))
    if partial is not None and partial.size == obj.size and done:
        return Operation(
            Action.RESUME, obj.rel, obj.size, obj, reason="resuming", done_bytes=ranges.covered(done)
        )
    other = local.link_candidates.get(obj.rel)
    if other is not None and other.etag == obj.etag and other.size == obj.size and have is None:
        return Operation(Action.LINK, obj.rel, obj.size, obj, reason="unchanged in --link-dest")
    if local.can_adopt and rec is None:
        # Found complete-looking but unrecorded: killed before its record, or copied by another tool.
        # Hashing it locally is cheaper than fetching it; a mismatch falls back to a fetch.
        if have is not None and have.size == obj.size:
            return Operation(Action.ADOPT, obj.rel, obj.size, obj, local="final",
                             reason="on disk but not recorded: hashed against the source's digest")
        if partial is not None and partial.size == obj.size:
            return Operation(Action.ADOPT, obj.rel, obj.size, obj, local="partial",
                             reason="an unrecorded .partial of full length: hashed against the source's digest")
    if rec is not None:
        reason = "changed in the source"
    elif have is not None:
        reason = "not recorded as complete"
    else:
        reason = "new"
    return Operation(Action.FETCH, obj.rel, obj.size, obj, reason=reason)
