"""The destination's manifest: written last, so a directory without a valid one is incomplete."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from modelpvc.core.models import FileRecord

MANIFEST_FORMAT = 1
STATE_DIR = ".modelpvc"
MANIFEST_NAME = "manifest.json"
# Newer revisions of a model, beside the one a claim serves: never part of the model (store/volume/revisions.py).
REVISIONS_DIR = "revisions"


def revision_id(records: list[tuple[str, int, str]]) -> str:
    """A short id of a source revision: hash of the sorted (path, size, etag) triples."""
    h = hashlib.sha256()
    for path, size, etag in sorted(records):
        h.update(f"{path}\0{size}\0{etag}\n".encode())
    return h.hexdigest()[:16]


@dataclass
class Manifest:
    source: str
    endpoint: str
    files: list[FileRecord]
    tool_version: str
    started_at: str
    completed_at: str
    verify_level: str
    skipped: list[dict[str, Any]] = field(default_factory=list)
    structure: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)  # the source prefix's source.json, when it had one

    @property
    def revision(self) -> str:
        return revision_id([(f.path, f.size, f.etag) for f in self.files])

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def by_path(self) -> dict[str, FileRecord]:
        return {f.path: f for f in self.files}

    def to_json(self) -> dict[str, Any]:
        return {
            "format": MANIFEST_FORMAT,
            "tool": f"modelpvc {self.tool_version}",
            "source": self.source,
            "endpoint": self.endpoint,
            "revision": self.revision,
            "started_at": self.started_at,
            "completed_at": self.completed_at,
            "verify_level": self.verify_level,
            "total_bytes": self.total_bytes,
            "files": [f.to_json() for f in sorted(self.files, key=lambda f: f.path)],
            "skipped": self.skipped,
            "structure": self.structure,
            **({"provenance": self.provenance} if self.provenance else {}),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Manifest:
        if data.get("format") != MANIFEST_FORMAT:
            raise ValueError(f"unknown manifest format {data.get('format')!r}")
        tool = str(data.get("tool", "modelpvc ?"))
        return cls(
            source=str(data["source"]),
            endpoint=str(data.get("endpoint", "")),
            files=[FileRecord.from_json(f) for f in data["files"]],
            tool_version=tool.split(" ", 1)[-1],
            started_at=str(data.get("started_at", "")),
            completed_at=str(data.get("completed_at", "")),
            verify_level=str(data.get("verify_level", "")),
            skipped=list(data.get("skipped", [])),
            structure=dict(data.get("structure", {})),
            provenance=dict(data.get("provenance", {})),
        )
