"""Data the layers hand each other: listed objects, plans, manifests. No I/O."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ObjectInfo:
    """One object as listed by the source. ``rel`` is its path below the source prefix."""

    key: str
    rel: str
    size: int
    etag: str  # without quotes; a change detector even when it is not an MD5
    last_modified: str = ""
    checksum_algorithm: str = ""  # listed by AWS for objects uploaded with a checksum

    @property
    def etag_is_md5(self) -> bool:
        return len(self.etag) == 32 and all(c in "0123456789abcdef" for c in self.etag.lower())

    @property
    def multipart_parts(self) -> int | None:
        head, sep, tail = self.etag.rpartition("-")
        if sep and tail.isdigit() and len(head) == 32:
            return int(tail)
        return None


@dataclass(frozen=True)
class LocalFile:
    """A file found on the destination."""

    size: int
    mtime_ns: int


class Action(enum.Enum):
    FETCH = "fetch"  # nothing usable locally
    RESUME = "resume"  # a partial file with journalled ranges
    KEEP = "keep"  # already complete and unchanged
    ADOPT = "adopt"  # complete on disk but not recorded (a kill, another tool): hashed locally, not fetched
    LINK = "link"  # unchanged in another revision on the same volume: hard-linked, not fetched
    DELETE = "delete"  # local file the source no longer has (only with --delete)
    SKIP = "skip"  # not selected (duplicate format, excluded)

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Operation:
    """One line of a plan: what happens to one path and why."""

    action: Action
    rel: str
    size: int
    obj: ObjectInfo | None = None
    reason: str = ""
    done_bytes: int = 0  # for RESUME: bytes already on disk
    local: str = ""  # for ADOPT: "final" or "partial", the copy to hash


@dataclass
class Selection:
    """Which listed objects a run leaves out ({rel: reason}) and what it chose and why (for the plan)."""

    skips: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    layout: str = ""  # the weight layout kept, e.g. "hf-safetensors" ("" when not a model)


@dataclass(frozen=True)
class Plan:
    """What a mirror run will do. Printed by ``--dry-run``; executed as is otherwise."""

    source: str
    operations: tuple[Operation, ...]
    notes: tuple[str, ...] = ()
    layout: str = ""
    # Files the selection leaves out that are on disk and stay there (a volume another tool filled).
    excluded_on_disk: tuple[Operation, ...] = ()

    def of(self, *actions: Action) -> list[Operation]:
        return [op for op in self.operations if op.action in actions]

    @property
    def bytes_to_fetch(self) -> int:
        return sum(op.size - op.done_bytes for op in self.of(Action.FETCH, Action.RESUME))

    @property
    def selected(self) -> list[Operation]:
        return self.of(Action.FETCH, Action.RESUME, Action.ADOPT, Action.KEEP, Action.LINK)

    @property
    def selected_bytes(self) -> int:
        return sum(op.size for op in self.selected)

    def summary(self) -> dict[str, Any]:
        counts: dict[str, Any] = {}
        for action in Action:
            ops = self.of(action)
            counts[action.value] = {"files": len(ops), "bytes": sum(op.size for op in ops)}
        counts["bytes_to_fetch"] = self.bytes_to_fetch
        return counts


@dataclass
class FileRecord:
    """A published file as the manifest records it."""

    path: str
    key: str
    size: int
    etag: str
    verified: str  # what was checked: "md5", "multipart-etag", "checksum-crc32c", "size"
    digest: dict[str, str] = field(default_factory=dict)  # {"md5": hex} or {"multipart-etag": ...}
    mtime_ns: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "key": self.key,
            "size": self.size,
            "etag": self.etag,
            "verified": self.verified,
            "digest": self.digest,
            "mtime_ns": self.mtime_ns,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FileRecord:
        return cls(
            path=str(data["path"]),
            key=str(data["key"]),
            size=int(data["size"]),
            etag=str(data["etag"]),
            verified=str(data.get("verified", "size")),
            digest={str(k): str(v) for k, v in dict(data.get("digest", {})).items()},
            mtime_ns=int(data.get("mtime_ns", 0)),
        )
