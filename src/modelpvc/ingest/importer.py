"""``import``: a model from the Hub or a local directory into ``s3://bucket/prefix/``, with provenance.

Steps, around an ImportRequest: list the origin and apply the same selection as ``mirror``; survey the
bucket (listing, the previous source.json, pending multipart uploads, HEADs of objects a killed run
completed); plan; then, unless nothing changes, remove the previous source.json (so nobody trusts it while
objects change), abort superseded uploads, upload, and write the new source.json last.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from modelpvc import __version__
from modelpvc.core.errors import (
    AccessDenied,
    DestinationDenied,
    DestinationMissing,
    IntegrityError,
    SourceError,
    SourceNotFound,
    UnsafeKey,
)
from modelpvc.core.events import Event, NullSink, ProgressSink
from modelpvc.core.models import ObjectInfo, Selection
from modelpvc.core.provenance import SOURCE_KEY, FileProvenance, SourceRecord
from modelpvc.core.settings import ImportSettings, S3Settings
from modelpvc.ingest.plan import ImportPlan, Step, plan_import
from modelpvc.ingest.pool import PoolStats, UploadPool
from modelpvc.ingest.upload import Checksums
from modelpvc.store.bucket.s3_write import ObjectHead, PendingUpload, S3Writer
from modelpvc.store.origins.origin import Origin, OriginFile
from modelpvc.store.sources.base import SourceURI, read_bytes
from modelpvc.store.sources.s3 import S3Source

log = logging.getLogger(__name__)
Selector = Callable[[list[ObjectInfo]], Selection]


@dataclass
class ImportRequest:
    origin: Origin
    bucket: str
    prefix: str  # "" or ending in "/"
    s3: S3Settings
    settings: ImportSettings
    select: Selector | None = None


@dataclass
class ImportResult:
    plan: ImportPlan
    origin: str = ""
    record: SourceRecord | None = None
    stats: PoolStats = field(default_factory=PoolStats)
    seconds: float = 0.0
    noop: bool = False
    workers: int = 0
    workers_basis: str = ""
    checksum: str | None = None
    checksum_note: str = ""

    def summary(self) -> dict[str, Any]:
        s = self.stats
        sent = s.bytes_sent
        return {
            "origin": self.origin,
            "files": len(self.plan.ops),
            "uploaded_files": len([o for o in self.plan.ops if o.step is not Step.SKIP]) - len(s.failures),
            "unchanged_files": len(self.plan.of(Step.SKIP)),
            "skipped_files": len(self.plan.skipped),
            "bytes_read": s.bytes_read,
            "bytes_sent": sent,
            "bytes_kept": s.bytes_kept,
            "seconds": round(self.seconds, 3),
            "mb_per_s": round(s.bytes_read / 1e6 / self.seconds, 1) if self.seconds > 0 else 0.0,
            "retries": s.retries,
            "noop": self.noop,
            "workers": self.workers,
            "workers_basis": self.workers_basis,
            "checksum": self.checksum,
            "checksum_note": self.checksum_note,
            "bottleneck": self.bottleneck(),
        }

    def bottleneck(self) -> str | None:
        r, w = self.stats.seconds_reading, self.stats.seconds_sending
        if self.stats.bytes_read < 16 * 1024 * 1024 or r + w <= 0:
            return None
        if r >= 2 * w:
            return f"the origin ({100 * r / (r + w):.0f} % of worker time reading)"
        if w >= 2 * r:
            return f"the bucket ({100 * w / (r + w):.0f} % of worker time uploading)"
        return None


def _check_paths(files: list[OriginFile]) -> None:
    bad = [f.rel for f in files if f.rel.startswith("/") or ".." in f.rel.split("/") or "\\" in f.rel
           or f.rel.split("/")[0] == ".modelpvc" or "" in f.rel.split("/")]
    if bad:
        raise UnsafeKey(f"{len(bad)} file name(s) cannot be object keys below the prefix: {', '.join(bad[:5])}",
                        hint="nothing was uploaded; leave them out with --exclude GLOB")


def _select(req: ImportRequest, files: list[OriginFile]) -> tuple[list[OriginFile], dict[str, str], list[str]]:
    if req.select is None:
        return files, {}, []
    sel = req.select([f.as_object() for f in files])
    return [f for f in files if f.rel not in sel.skips], dict(sel.skips), list(sel.notes)


@dataclass
class _Survey:
    existing: dict[str, ObjectInfo]
    record: SourceRecord | None
    pending: list[PendingUpload]
    heads: dict[str, ObjectHead]
    notes: list[str]


def _survey(req: ImportRequest, writer: S3Writer, files: list[OriginFile]) -> _Survey:
    listing = S3Source(SourceURI("s3", req.bucket, req.prefix), req.s3)
    try:
        objects = listing.list_all()
    except SourceNotFound as e:
        raise DestinationMissing(f"bucket {req.bucket!r} does not exist on {writer.endpoint}",
                                 hint="create it first (mc mb / aws s3 mb) or check the bucket name") from e
    except AccessDenied as e:
        raise DestinationDenied(f"access denied listing s3://{req.bucket}/{req.prefix} ({e})",
                                hint="the credentials need s3:ListBucket and s3:PutObject on this bucket") from e
    existing = {o.key: o for o in objects}
    notes: list[str] = []
    record = None
    src = existing.get(req.prefix + SOURCE_KEY)
    if src is not None:
        try:
            record = SourceRecord.from_json(json.loads(read_bytes(listing, src, 0, src.size)))
        except (ValueError, KeyError, TypeError) as e:
            notes.append(f"the existing {SOURCE_KEY} is not usable ({e}); it will be replaced")
    pending = writer.list_uploads(req.prefix)
    recorded = record.by_path() if record else {}
    need_head = [f for f in files if f.published.sha256 and (o := existing.get(req.prefix + f.rel)) is not None
                 and o.size == f.size and f.rel not in recorded]
    heads: dict[str, ObjectHead] = {}
    if need_head:
        with ThreadPoolExecutor(max_workers=8) as pool:
            for f, h in zip(need_head, pool.map(lambda f: writer.head(req.prefix + f.rel), need_head), strict=True):
                if h is not None:
                    heads[req.prefix + f.rel] = h
    listing.close()
    return _Survey(existing, record, pending, heads, notes)


def _record(req: ImportRequest, plan: ImportPlan, results: dict[str, FileProvenance]) -> SourceRecord:
    files = [o.done if o.step is Step.SKIP and o.done is not None else results[o.file.rel] for o in plan.ops]
    return SourceRecord(dict(req.origin.origin), tuple(files),
                        datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), f"modelpvc {__version__}",
                        tuple({"path": p, "reason": r} for p, r in sorted(plan.skipped.items())))


def _same_record(old: SourceRecord | None, new_files: list[FileProvenance], origin: dict[str, Any]) -> bool:
    if old is None:
        return False
    keep = ("type", "repo", "commit", "path")
    return ({k: old.origin.get(k) for k in keep} == {k: origin.get(k) for k in keep}
            and sorted(f.to_json()["path"] for f in old.files) == sorted(f.path for f in new_files)
            and all(old.by_path()[f.path] == f for f in new_files))


def prepare(req: ImportRequest, writer: S3Writer, sink: ProgressSink) -> ImportPlan:
    """List, select and survey: the plan ``--dry-run`` prints and ``run`` carries out."""
    files = req.origin.files()
    chosen, skipped, notes = _select(req, files)
    if not chosen:
        raise SourceError(f"nothing to import from {req.origin.describe()}: the selection left out every file",
                          hint="check --include/--exclude, or use --select all")
    _check_paths(chosen)
    survey = _survey(req, writer, chosen)
    plan = plan_import(chosen, req.prefix, survey.existing, survey.record, survey.heads, survey.pending)
    plan.skipped = skipped
    plan.notes = notes + survey.notes + plan.notes
    plan.previous = survey.record
    sink.emit(Event("plan", {"origin": req.origin.describe(), "destination": f"s3://{req.bucket}/{req.prefix}",
                             "notes": plan.notes, **{s.value: len(plan.of(s)) for s in Step},
                             "bytes_to_send": plan.bytes_to_send}))
    return plan


def run_import(req: ImportRequest, sink: ProgressSink | None = None,
               stop: threading.Event | None = None) -> ImportResult:
    sink = sink or NullSink()
    stop = stop or threading.Event()
    t0 = time.monotonic()
    writer = S3Writer(req.bucket, req.s3)
    try:
        plan = prepare(req, writer, sink)
        result = ImportResult(plan, origin=req.origin.describe(), workers=req.settings.workers,
                              workers_basis=req.settings.workers_basis, checksum=req.settings.checksum)
        if req.settings.dry_run:
            return result
        previous = plan.previous
        todo = [o for o in plan.ops if o.step is not Step.SKIP]
        if not todo and not plan.stale_uploads:
            done = [o.done for o in plan.ops if o.done is not None]
            if _same_record(previous, done, req.origin.origin):
                result.noop, result.record = True, previous
                result.seconds = time.monotonic() - t0
                return result
        src_key = req.prefix + SOURCE_KEY
        if previous is not None or any(o.key == src_key for o in plan.ops):
            writer.delete(src_key)  # from here on the prefix changes: nobody may trust the old record
        for u in plan.stale_uploads:
            writer.abort(u.key, u.upload_id)
        checksums = Checksums(req.settings.checksum)
        pool = UploadPool(todo, req.origin, writer, req.settings, req.s3, checksums, sink, stop)
        result.workers = pool.workers
        total = sum(o.file.size for o in todo)
        started = time.monotonic()

        def tick(done: int) -> None:
            sink.emit(Event("tick", {"bytes_done": done, "bytes_total": total,
                                     "seconds": time.monotonic() - started}))

        try:
            pool.run(tick)
        finally:
            result.stats = pool.stats
            result.checksum, result.checksum_note = checksums.algorithm, checksums.refused
        if pool.stats.failures:
            names = ", ".join(rel for rel, _ in pool.stats.failures[:5])
            first = pool.stats.failures[0][1]
            raise IntegrityError(f"{len(pool.stats.failures)} file(s) did not match what "
                                 f"{req.origin.describe()} published: {names}; {SOURCE_KEY} was not written "
                                 f"({first})", hint="nothing was stored under their keys; re-run to try again")
        record = _record(req, plan, pool.results)
        _note_checksums(result, record, req.settings.checksum)
        body = json.dumps(record.to_json(), indent=1, sort_keys=True).encode()
        writer.put(src_key, body, {"Content-Type": "application/json"})
        result.record = record
        result.seconds = time.monotonic() - t0
        return result
    finally:
        writer.close()
        req.origin.close()


def _note_checksums(result: ImportResult, record: SourceRecord, wanted: str | None) -> None:
    if not wanted or result.checksum_note:
        return
    missing = [f.path for f in record.files if wanted not in f.checksum]
    if missing:
        result.checksum_note = (f"the server did not keep the {wanted.upper()} checksum of {len(missing)} object(s) "
                                f"(e.g. {missing[0]}); mirror verifies them by ETag and source.json's SHA-256")
