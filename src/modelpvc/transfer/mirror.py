"""``mirror``: make a directory an exact, verified copy of a source's selected objects.

The library entry point. A run is four steps around one request: prepare (list, refuse unsafe keys,
plan against what the destination holds), apply the local changes the plan needs (mark the destination
incomplete, check space, remove stale partials, delete, hard-link), fetch (the executor), publish
(check the model's structure, write the manifest last).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelpvc import __version__
from modelpvc.core.errors import ConfigError, DestinationError, DestinationFull, IntegrityError
from modelpvc.core.events import Event, NullSink, ProgressSink
from modelpvc.core.manifest import Manifest
from modelpvc.core.models import Action, FileRecord, ObjectInfo, Plan, Selection
from modelpvc.core.provenance import split_record
from modelpvc.core.settings import S3Settings, TransferSettings, VerifyLevel
from modelpvc.core.stop import StopToken
from modelpvc.core.units import human_bytes
from modelpvc.store.sources.base import ObjectSource
from modelpvc.store.volume.destination import Destination
from modelpvc.store.volume.journal import Journal, JournalState
from modelpvc.transfer.keys import check_keys
from modelpvc.transfer.planner import LocalState, Selector, plan_mirror
from modelpvc.transfer.provenance import Provenance, load_record
from modelpvc.transfer.stats import RunStats

if TYPE_CHECKING:
    from modelpvc.transfer.filejob import FileJob

log = logging.getLogger(__name__)

# Checks a published directory before the manifest is written: returns a JSON-able report (findings with
# their severity) and raises IntegrityError when the model would not load. Supplied by the caller.
StructureCheck = Callable[[Path, list[str]], dict[str, Any]]


@dataclass(frozen=True)
class MirrorRequest:
    source: ObjectSource
    dest: Path
    s3: S3Settings
    settings: TransferSettings
    select: Selector | None = None
    structure_check: StructureCheck | None = None
    objects: list[ObjectInfo] | None = None  # the listing, when the caller has it already
    link_dest: Path | None = None  # another completed revision on the same filesystem
    shard: tuple[int, int] | None = None  # (i, n): this pod's share of a parallel populate


@dataclass
class MirrorResult:
    plan: Plan
    stats: RunStats = field(default_factory=RunStats)
    manifest: Manifest | None = None
    seconds: float = 0.0
    noop: bool = False
    deleted: list[str] = field(default_factory=list)
    removed_partials: list[str] = field(default_factory=list)
    workers: int = 0
    workers_basis: str = ""

    @property
    def warnings(self) -> list[dict[str, Any]]:
        found = (self.manifest.structure if self.manifest else {}).get("findings") or []
        return [f for f in found if f.get("severity") == "warning"]

    def summary(self) -> dict[str, Any]:
        mb = self.stats.bytes_fetched / 1e6
        verified: dict[str, int] = {}
        for f in self.manifest.files if self.manifest else []:
            verified[f.verified] = verified.get(f.verified, 0) + 1
        return {
            "files": len(self.plan.selected),
            "bytes": self.plan.selected_bytes,
            "fetched_files": len(self.plan.of(Action.FETCH, Action.RESUME, Action.ADOPT)) - self.stats.adopted_files,
            "bytes_fetched": self.stats.bytes_fetched,
            "adopted_files": self.stats.adopted_files,
            "kept_files": len(self.plan.of(Action.KEEP)),
            "linked_files": len(self.plan.of(Action.LINK)),
            "skipped_files": len(self.plan.of(Action.SKIP)),
            "skipped_bytes": sum(op.size for op in self.plan.of(Action.SKIP)),
            "deleted_files": len(self.deleted),
            "excluded_on_disk_files": len(self.plan.excluded_on_disk),
            "excluded_on_disk_bytes": sum(op.size for op in self.plan.excluded_on_disk),
            "seconds": round(self.seconds, 3),
            "mb_per_s": round(mb / self.seconds, 1) if self.seconds > 0 else 0.0,
            "retries": self.stats.retries,
            "refetched": self.stats.refetched_files,
            "verified": verified,
            "revision": self.manifest.revision if self.manifest else None,
            "noop": self.noop,
            "layout": self.plan.layout,
            "warnings": len(self.warnings),
            "workers": self.workers,
            "workers_basis": self.workers_basis,
            "direct_io_files": self.stats.direct_files,
            "bytes_hashed_again": self.stats.bytes_hashed_again,
            "bottleneck": self.bottleneck(),
        }

    def bottleneck(self) -> str | None:
        """Which side the workers waited on, when the split is clear (at least 2:1)."""
        wait, busy = self.stats.seconds_waiting_source, self.stats.seconds_writing
        if self.stats.bytes_fetched < 16 * 1024 * 1024 or wait + busy <= 0:
            return None
        if wait >= 2 * busy:
            return f"source or network ({100 * wait / (wait + busy):.0f} % of worker time waiting for bytes)"
        if busy >= 2 * wait:
            disk = self.stats.seconds_waiting_disk
            if disk >= busy / 2:
                return (f"destination disk ({100 * disk / (wait + busy):.0f} % of worker time waiting for the disk "
                        "to take the bytes)")
            return (f"destination disk or verification ({100 * busy / (wait + busy):.0f} % of worker time "
                    "writing and hashing)")
        return None


@dataclass
class _Run:
    """What the steps of one run hand each other."""

    req: MirrorRequest
    dest: Destination
    objects: list[ObjectInfo]
    select: Selector | None
    structure_check: StructureCheck | None
    links: dict[str, tuple[FileRecord, Path]]
    adopted_shards: dict[str, FileRecord]
    started: str
    t0: float
    journal: Journal | None = None
    jstate: JournalState = field(default_factory=JournalState)
    old: Manifest | None = None
    plan: Plan = field(default_factory=lambda: Plan("", ()))
    result: MirrorResult | None = None
    fresh: dict[str, FileRecord] = field(default_factory=dict)  # linked or fetched by this run
    provenance: Provenance | None = None  # the source prefix's source.json

    @property
    def uri(self) -> str:
        return str(self.req.source.uri)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def mirror(req: MirrorRequest, sink: ProgressSink | None = None, stop: StopToken | None = None) -> MirrorResult:
    """Make ``req.dest`` an exact, verified copy of the source's selected objects.

    ``req.shard=(i, n)``: copy only this pod's share of a parallel populate; lock, journal and a partial
    manifest live in ``.modelpvc/shards/i/``. A later run without ``shard`` adopts what the shards
    published (nothing is fetched again), checks the whole model and writes the one manifest.
    """
    sink = sink or NullSink()
    stop = stop or StopToken()
    run = _prepare(req)
    if req.settings.dry_run:
        run.jstate = run.dest.journal().load()
        run.old = run.dest.read_manifest()
        return MirrorResult(plan=_plan(run))
    run.dest.prepare()
    with run.dest.lock():
        run.journal = run.dest.journal()
        run.jstate = run.journal.begin(run.dest.root)  # read once: ranges to resume, files a killed run published
        run.old = run.dest.read_manifest()
        run.plan = _plan(run)
        sink.emit(Event("plan", {"source": run.uri, "layout": run.plan.layout, "notes": list(run.plan.notes),
                                 **run.plan.summary()}))
        run.result = MirrorResult(plan=run.plan, workers=req.settings.workers,
                                  workers_basis=req.settings.workers_basis)
        try:
            if _is_noop(run):
                run.result.noop = True
                run.result.manifest = run.old
                run.journal.remove()
                return _finished(run)
            _apply_local_changes(run)
            _fetch(run, sink, stop)
            return _publish(run, sink)
        finally:
            run.journal.close()


def _prepare(req: MirrorRequest) -> _Run:
    dest = Destination(req.dest, req.shard[0] if req.shard else None)
    if req.dest.exists() and not req.dest.is_dir():
        raise DestinationError(f"{req.dest} exists and is not a directory")
    listed = req.objects if req.objects is not None else req.source.list_objects()
    objects, record = split_record(listed)
    check_keys(objects, str(req.source.uri))
    prov = load_record(req.source, record, objects) if record is not None else None
    select, structure_check = req.select, req.structure_check
    if req.shard is not None:
        select = shard_selector(select, *req.shard)
        structure_check = None  # a share of a model is not a whole model
    return _Run(req=req, dest=dest, objects=objects, select=select, structure_check=structure_check,
                links=_link_candidates(req.link_dest, dest) if req.link_dest is not None else {},
                adopted_shards={} if req.shard else {r.path: r for m in dest.shard_manifests() for r in m.files},
                started=_now(), t0=time.monotonic(), provenance=prov)


def _plan(run: _Run) -> Plan:
    scan = run.dest.scan()
    published = {**run.adopted_shards, **(run.old.by_path() if run.old else {}), **run.jstate.published}
    local = LocalState(files=scan.files, partials=scan.partials, published=published,
                       journal_ranges=run.jstate.ranges,
                       link_candidates={k: v[0] for k, v in run.links.items()},
                       can_adopt=run.req.settings.verify is not VerifyLevel.SIZE)
    return plan_mirror(run.uri, run.objects, local, delete=run.req.settings.delete,
                       delete_excluded=run.req.settings.delete_excluded, select=run.select)


def _is_noop(run: _Run) -> bool:
    work = run.plan.of(Action.FETCH, Action.RESUME, Action.ADOPT, Action.DELETE, Action.LINK)
    return (not work and run.old is not None and run.old.source == run.uri
            and {f.path for f in run.old.files} == {op.rel for op in run.plan.selected})


def _apply_local_changes(run: _Run) -> None:
    assert run.result is not None
    run.dest.remove_manifest()
    _check_space(run)
    # A shard owns only its share's partials; the others belong to pods running beside it.
    owned = {op.rel for op in run.plan.of(Action.FETCH)} if run.req.shard else None
    keep = {op.rel for op in run.plan.of(Action.RESUME)} | \
        {op.rel for op in run.plan.of(Action.ADOPT) if op.local == "partial"}
    stale = [rel for rel in run.dest.scan().partials if rel not in keep and (owned is None or rel in owned)]
    run.result.removed_partials = run.dest.remove_partials(stale)
    run.result.deleted = run.dest.delete([op.rel for op in run.plan.of(Action.DELETE)])
    for op in run.plan.of(Action.LINK):
        rec, src = run.links[op.rel]
        mtime = run.dest.link(op.rel, src)
        run.fresh[op.rel] = FileRecord(path=op.rel, key=op.obj.key if op.obj else rec.key, size=rec.size,
                                        etag=rec.etag, verified=rec.verified, digest=dict(rec.digest),
                                        mtime_ns=mtime)


def _fetch(run: _Run, sink: ProgressSink, stop: StopToken) -> None:
    # The fetching machinery is imported when there is something to fetch: a no-op re-run's budget is
    # 0.3 s, most of it start-up (decisions §14).
    from modelpvc.store.volume import direct_io
    from modelpvc.transfer.executor import Executor
    from modelpvc.transfer.expectations import expectations
    from modelpvc.transfer.filejob import FileJob

    assert run.result is not None and run.journal is not None
    settings = run.req.settings
    fetch = run.plan.of(Action.FETCH, Action.RESUME, Action.ADOPT)
    # Objects fetched by one GET (transfer.filejob: ranges of part_size; 0 = whole) take their stored
    # checksum from its answer; an adopted or resumed one, fetched by no whole GET, asks with a HEAD later.
    exps = expectations(run.req.source, [op.obj for op in fetch if op.obj is not None], settings.verify,
                        max(0, settings.part_size))
    if run.provenance is not None and settings.verify is not VerifyLevel.SIZE:
        # The publisher's SHA-256 is the end-to-end check: it proves the copy is what import verified.
        exps = [run.provenance.expectation(op.rel) or exp for op, exp in zip(fetch, exps, strict=True)]
    jobs = []
    direct = settings.direct_io and direct_io.direct_io_suits(str(run.dest.root))
    for op, exp in zip(fetch, exps, strict=True):
        assert op.obj is not None
        done = run.jstate.ranges.get((op.rel, op.obj.etag, op.obj.size)) if op.action is Action.RESUME else None
        adopt = None
        if op.action is Action.ADOPT:
            adopt = run.dest.final(op.rel) if op.local == "final" else run.dest.partial(op.rel)
        jobs.append(FileJob(run.dest, op.obj, exp, max(0, settings.part_size), done, adopt, direct=direct))
    settings = _lanes_filled(settings, jobs)
    run.result.workers, run.result.workers_basis = settings.workers, settings.workers_basis
    total = run.plan.bytes_to_fetch
    execu = Executor(run.req.source, run.dest, jobs, run.journal, run.req.s3.retry, settings, sink, stop)
    t_fetch = time.monotonic()

    def tick(done: int) -> None:
        sink.emit(Event("tick", {"bytes_done": done, "bytes_total": total, "seconds": time.monotonic() - t_fetch}))

    try:
        execu.run(tick)
    finally:
        run.result.stats = execu.stats
    run.fresh.update(execu.records)


def _lanes_filled(settings: TransferSettings, jobs: list[FileJob]) -> TransferSettings:
    """As many workers as MD5 lanes when multipart ETags are hashed as their parts stream in: a pass hashes
    one piece of each part being fetched, so fewer workers leave lanes empty (transfer.md5_pool; measured
    against 4 workers fetching the parts in rows of 4 MiB ranges in decisions §19). Unless the user chose."""
    from modelpvc.core import md5_native

    lanes = md5_native.LANES
    if settings.workers_given or settings.workers >= lanes or not any(j.lends_buffers for j in jobs):
        return settings
    return replace(settings, workers=lanes,
                   workers_basis=f"{lanes}, one part per MD5 lane, for multipart ETags; override with --workers")


def _publish(run: _Run, sink: ProgressSink) -> MirrorResult:
    assert run.result is not None and run.journal is not None
    records = _collect_records(run.plan, {**run.adopted_shards, **run.jstate.published, **run.fresh}, run.old)
    structure = run.structure_check(run.dest.root, sorted(records)) if run.structure_check else {}
    for f in structure.get("findings") or []:
        if f.get("severity") == "warning":
            sink.emit(Event("warning", {"path": f.get("path"), "message": f.get("message"), "code": f.get("code")}))
    manifest = Manifest(
        source=run.uri, endpoint=run.req.source.endpoint, files=list(records.values()),
        tool_version=__version__, started_at=run.started, completed_at=_now(),
        verify_level=str(run.req.settings.verify),
        skipped=[{"path": op.rel, "size": op.size, "reason": op.reason} for op in run.plan.of(Action.SKIP)],
        structure=structure,
        provenance=run.provenance.to_manifest() if run.provenance else {},
    )
    run.dest.write_manifest(manifest)
    run.journal.remove()
    if run.req.shard is None and run.adopted_shards:
        run.dest.clear_shards()
    run.result.manifest = manifest
    return _finished(run)


def _finished(run: _Run) -> MirrorResult:
    assert run.result is not None
    run.result.seconds = time.monotonic() - run.t0
    return run.result


def _link_candidates(link_dest: Path, dest: Destination) -> dict[str, tuple[FileRecord, Path]]:
    """Files of a verified revision (its manifest) that are still intact by size and mtime."""
    other = Destination(link_dest)
    m = other.read_manifest()
    if m is None:
        raise DestinationError(f"--link-dest {link_dest} has no manifest; only a completed mirror can be linked from")
    if not dest.same_filesystem(link_dest):
        raise DestinationError(f"--link-dest {link_dest} is on another filesystem than {dest.root}; hard links "
                               "need one")
    out = {}
    for rec in m.files:
        p = other.final(rec.path)
        try:
            st = os.stat(p)
        except FileNotFoundError:
            continue
        if st.st_size == rec.size and st.st_mtime_ns == rec.mtime_ns:
            out[rec.path] = (rec, p)
    return out


def shard_selector(base: Selector | None, index: int, count: int) -> Selector:
    """This pod's share: selected files dealt largest first to the least-loaded shard. Every pod lists
    the same source, so every pod computes the same split without talking to the others."""
    if not 0 <= index < count:
        raise ConfigError(f"--shard {index}/{count}: the index must be in 0..{count - 1}")

    def select(objects: list[ObjectInfo]) -> Selection:
        chosen = base(objects) if base else Selection()
        skips = dict(chosen.skips)
        load = [0] * count
        for o in sorted((o for o in objects if o.rel not in skips), key=lambda o: (-o.size, o.rel)):
            k = load.index(min(load))
            load[k] += max(1, o.size)
            if k != index:
                skips[o.rel] = f"in shard {k} of {count}"
        return Selection(skips=skips, notes=chosen.notes, layout=chosen.layout)

    return select


def _collect_records(plan: Plan, fresh: dict[str, FileRecord], old: Manifest | None) -> dict[str, FileRecord]:
    known: dict[str, FileRecord] = {**(old.by_path() if old else {}), **fresh}
    out: dict[str, FileRecord] = {}
    for op in plan.selected:
        rec = known.get(op.rel)
        if rec is None or op.obj is None or rec.etag != op.obj.etag:
            raise IntegrityError(f"{op.rel} was not published by this run", hint="re-run the mirror")
        out[op.rel] = rec
    return out


def _check_space(run: _Run) -> None:
    if not run.req.settings.check_space:
        return
    # RESUME partials are preallocated already; FETCH may replace an existing file of another size.
    need = sum(op.size for op in run.plan.of(Action.FETCH))
    limit = run.req.settings.space_limit
    if limit is not None and run.plan.selected_bytes > limit[0]:
        raise DestinationFull(
            f"{run.dest.root} may hold {human_bytes(limit[0])} ({limit[1]}) but the model is "
            f"{human_bytes(run.plan.selected_bytes)}; "
            "nothing was written",
            hint=run.req.settings.space_hint or "give the volume more room, or copy fewer files (--include)")
    free = run.dest.free_bytes()
    if need > free:
        raise DestinationFull(
            f"{run.dest.root} has {human_bytes(free)} free but {human_bytes(need)} must be fetched; "
            "nothing was written",
            hint="grow the volume (modelpvc plan recommends a PVC size) or free space",
        )

