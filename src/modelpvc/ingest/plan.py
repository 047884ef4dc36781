"""What an import will do, per file, from what the origin lists and what the bucket holds. Pure: the
importer gathers the listing, the previous source.json, HEADs and pending uploads, and prints this plan
for ``--dry-run`` exactly as it runs it."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from modelpvc.core.models import ObjectInfo
from modelpvc.core.provenance import FileProvenance, SourceRecord
from modelpvc.store.bucket.s3_write import META_SHA256, ObjectHead, PendingUpload
from modelpvc.store.origins.origin import OriginFile


class Step(enum.Enum):
    UPLOAD = "upload"
    RESUME = "resume"  # a multipart upload of this key is pending: keep its parts
    SKIP = "skip"  # the object is already what the origin has


@dataclass(frozen=True)
class Op:
    file: OriginFile
    key: str
    step: Step
    reason: str
    upload_id: str | None = None  # RESUME
    done: FileProvenance | None = None  # SKIP: what source.json records for it


@dataclass
class ImportPlan:
    ops: list[Op]
    stale_uploads: list[PendingUpload] = field(default_factory=list)  # ours to abort: superseded
    skipped: dict[str, str] = field(default_factory=dict)  # rel -> why selection left it out
    notes: list[str] = field(default_factory=list)
    previous: SourceRecord | None = None  # the source.json found under the prefix

    def of(self, step: Step) -> list[Op]:
        return [o for o in self.ops if o.step is step]

    @property
    def bytes_to_send(self) -> int:
        return sum(o.file.size for o in self.ops if o.step is not Step.SKIP)


def _unchanged(f: OriginFile, obj: ObjectInfo | None, rec: FileProvenance | None) -> bool:
    """The object is the one source.json recorded, and the origin's file is the one it was made from."""
    if obj is None or rec is None or obj.size != f.size or rec.size != f.size:
        return False
    if rec.etag and obj.etag != rec.etag:
        return False  # replaced since the import
    pub = f.published
    if pub.sha256:
        return rec.sha256 == pub.sha256
    if pub.git_oid:
        return rec.git_oid == pub.git_oid
    return f.mtime_ns is not None and rec.mtime_ns == f.mtime_ns


def _uploaded_before(f: OriginFile, head: ObjectHead | None) -> FileProvenance | None:
    """An object a killed run completed (no source.json yet): it carries the SHA-256 it was checked against."""
    if head is None or head.size != f.size or not f.published.sha256:
        return None
    if head.metadata.get(META_SHA256, "").lower() != f.published.sha256:
        return None
    return FileProvenance(f.rel, f.size, f.published.sha256, head.etag, f.published.git_oid, head.checksums,
                          f.mtime_ns)


def plan_import(files: list[OriginFile], prefix: str, existing: dict[str, ObjectInfo],
                record: SourceRecord | None, heads: dict[str, ObjectHead],
                pending: list[PendingUpload]) -> ImportPlan:
    recorded = record.by_path() if record else {}
    by_key: dict[str, list[PendingUpload]] = {}
    for u in pending:
        by_key.setdefault(u.key, []).append(u)
    ops: list[Op] = []
    stale: list[PendingUpload] = []
    wanted = set()
    for f in files:
        key = prefix + f.rel
        wanted.add(key)
        uploads = sorted(by_key.get(key, []), key=lambda u: u.initiated)
        obj = existing.get(key)
        rec = recorded.get(f.rel)
        if _unchanged(f, obj, rec):
            assert rec is not None
            ops.append(Op(f, key, Step.SKIP, "unchanged since the import recorded in source.json", done=rec))
            stale += uploads
            continue
        before = _uploaded_before(f, heads.get(key))
        if before is not None:
            ops.append(Op(f, key, Step.SKIP, "already uploaded and checked against the published SHA-256",
                          done=before))
            stale += uploads
            continue
        if uploads:
            latest = uploads[-1]
            stale += uploads[:-1]
            ops.append(Op(f, key, Step.RESUME, "an interrupted upload of it is pending", upload_id=latest.upload_id))
            continue
        reason = "new" if obj is None else ("different size" if obj.size != f.size else "changed or unverified")
        ops.append(Op(f, key, Step.UPLOAD, reason))
    others = [u for k, us in by_key.items() if k not in wanted for u in us]
    notes = [f"{len(others)} pending multipart upload(s) under the prefix are not part of this import and were left "
             "alone (another writer may own them; an AbortIncompleteMultipartUpload lifecycle rule cleans up "
             "abandoned ones)"] if others else []
    return ImportPlan(ops, stale, notes=notes)
