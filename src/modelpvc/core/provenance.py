"""``PREFIX/.modelpvc/source.json``: where the objects under a prefix came from, written last by ``import``.

It names the origin (a Hugging Face repository at a commit, or a local directory) and, per file, the
object key, size, SHA-256 (the publisher's LFS digest when there is one, else computed while streaming),
the git blob id the Hub lists, the ETag and S3 checksum the upload got. ``mirror`` reads it from the
source prefix, checks the listing still matches it, verifies each file's SHA-256 on the way to the PVC and
keeps the record in the destination's manifest: the bytes served can be traced to a commit. Pure data.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from modelpvc.core.models import ObjectInfo

SOURCE_FORMAT = "modelpvc-source/1"
SOURCE_KEY = ".modelpvc/source.json"  # below the prefix


@dataclass(frozen=True)
class Published:
    """What the origin says a file's bytes hash to, before we read them."""

    sha256: str | None = None  # hex; the Hub's LFS oid, or a cache blob's name
    git_oid: str | None = None  # hex SHA-1 of "blob <size>\\0" + bytes: the Hub's id for every file

    @property
    def any(self) -> bool:
        return bool(self.sha256 or self.git_oid)


@dataclass(frozen=True)
class FileProvenance:
    path: str  # below the prefix
    size: int
    sha256: str  # hex, verified against ``published`` when it had one
    etag: str = ""  # of the object as uploaded, to notice it being replaced later
    git_oid: str | None = None
    checksum: dict[str, str] = field(default_factory=dict)  # algorithm -> base64, as the server stored it
    mtime_ns: int | None = None  # local files: with size, how a re-run knows the file is unchanged

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "size": self.size, "sha256": self.sha256, "etag": self.etag}
        if self.git_oid:
            out["git_oid"] = self.git_oid
        if self.checksum:
            out["checksum"] = dict(self.checksum)
        if self.mtime_ns is not None:
            out["mtime_ns"] = self.mtime_ns
        return out

    @staticmethod
    def from_json(d: dict[str, Any]) -> FileProvenance:
        sha = str(d["sha256"]).lower()
        if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise ValueError(f"{d.get('path')!r}: sha256 {sha!r} is not 64 hex digits")
        mt = d.get("mtime_ns")
        return FileProvenance(str(d["path"]), int(d["size"]), sha, str(d.get("etag") or ""),
                              d.get("git_oid") or None, {str(k): str(v) for k, v in (d.get("checksum") or {}).items()},
                              int(mt) if mt is not None else None)


@dataclass(frozen=True)
class SourceRecord:
    origin: dict[str, Any]  # {"type": "huggingface", "repo", "revision", "commit", "endpoint"} or a directory's
    files: tuple[FileProvenance, ...]
    created_at: str
    tool: str
    skipped: tuple[dict[str, str], ...] = ()
    # Indexed once: mirror asks it for every file it copies (a dict built per file was 0.2 ms each, a
    # quarter of the client's CPU on 2,000 small files).
    _index: Mapping[str, FileProvenance] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", MappingProxyType({f.path: f for f in self.files}))

    def by_path(self) -> Mapping[str, FileProvenance]:
        return self._index

    def describe(self) -> str:
        o = self.origin
        if o.get("type") == "huggingface":
            return f"hf://{o.get('repo')}@{str(o.get('commit', ''))[:12]}"
        where = f"directory {o.get('path')}"
        return where + (f" ({o['repo']}@{str(o.get('commit', ''))[:12]})" if o.get("repo") else "")

    def to_json(self) -> dict[str, Any]:
        return {"format": SOURCE_FORMAT, "tool": self.tool, "created_at": self.created_at, "origin": self.origin,
                "files": [f.to_json() for f in sorted(self.files, key=lambda f: f.path)],
                "skipped": list(self.skipped)}

    @staticmethod
    def from_json(d: dict[str, Any]) -> SourceRecord:
        if d.get("format") != SOURCE_FORMAT:
            raise ValueError(f"format {d.get('format')!r} is not {SOURCE_FORMAT}")
        if not isinstance(d.get("origin"), dict) or not isinstance(d.get("files"), list):
            raise ValueError("origin and files are required")
        return SourceRecord(dict(d["origin"]), tuple(FileProvenance.from_json(f) for f in d["files"]),
                            str(d.get("created_at", "")), str(d.get("tool", "")),
                            tuple(dict(s) for s in d.get("skipped") or ()))


def git_blob_oid(data: bytes | memoryview) -> str:
    """The id git (and the Hub) gives a file's content."""
    h = hashlib.sha1(f"blob {len(data)}\0".encode(), usedforsecurity=False)
    h.update(data)
    return h.hexdigest()


def sha256_b64(hex_digest: str) -> str:
    """The hex SHA-256 publishers print, as S3 and our manifest write it (base64)."""
    return base64.b64encode(bytes.fromhex(hex_digest)).decode()


def split_record(objects: list[ObjectInfo]) -> tuple[list[ObjectInfo], ObjectInfo | None]:
    """The model's objects, and the prefix's source.json when it has one: the one rule every command
    (mirror, plan, verify --source, populate's preflight) applies to the provenance record, which describes
    the files and is never one of them."""
    found = next((o for o in objects if o.rel == SOURCE_KEY), None)
    return [o for o in objects if o is not found], found
