"""``mirror``: list -> plan -> fetch -> verify -> publish -> manifest. The library entry point."""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from modelpvc import __version__
from modelpvc.core.errors import ConfigError, DestinationError, DestinationFull, IntegrityError
from modelpvc.core.events import Event, NullSink, ProgressSink
from modelpvc.core.manifest import STATE_DIR, Manifest
from modelpvc.core.models import Action, FileRecord, ObjectInfo, Plan
from modelpvc.core.settings import S3Settings, TransferSettings
from modelpvc.store import localfs
from modelpvc.store.base import ObjectSource
from modelpvc.transfer.executor import Executor, RunStats
from modelpvc.transfer.expectations import expectations
from modelpvc.transfer.filejob import FileJob
from modelpvc.transfer.journal import Journal
from modelpvc.transfer.keys import PARTIAL_SUFFIX, check_keys
from modelpvc.transfer.planner import LocalFile, LocalState, Selector, plan_mirror

log = logging.getLogger(__name__)

# Checks a published directory before the manifest is written: returns a JSON-able report and raises
# IntegrityError when the model is not whole. Supplied by the caller (the model layer's checker).
StructureCheck = Callable[[Path, list[str]], dict[str, Any]]


@dataclass
class MirrorResult:
    plan: Plan
    stats: RunStats = field(default_factory=RunStats)
    manifest: Manifest | None = None
    seconds: float = 0.0
    noop: bool = False
    deleted: list[str] = field(default_factory=list)
    removed_partials: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        mb = self.stats.bytes_fetched / 1e6
        verified: dict[str, int] = {}
        for f in self.manifest.files if self.manifest else []:
            verified[f.verified] = verified.get(f.verified, 0) + 1
        return {
            "files": len(self.plan.selected),
            "bytes": self.plan.selected_bytes,
            "fetched_files": len(self.plan.of(Action.FETCH, Action.RESUME)),
            "bytes_fetched": self.stats.bytes_fetched,
            "kept_files": len(self.plan.of(Action.KEEP)),
            "linked_files": len(self.plan.of(Action.LINK)),
            "skipped_files": len(self.plan.of(Action.SKIP)),
            "skipped_bytes": sum(op.size for op in self.plan.of(Action.SKIP)),
            "deleted_files": len(self.deleted),
            "seconds": round(self.seconds, 3),
            "mb_per_s": round(mb / self.seconds, 1) if self.seconds > 0 else 0.0,
            "retries": self.stats.retries,
            "refetched": self.stats.refetched_files,
            "verified": verified,
            "revision": self.manifest.revision if self.manifest else None,
            "noop": self.noop,
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
            return (f"destination disk or verification ({100 * busy / (wait + busy):.0f} % of worker time "
                    "writing and hashing)")
        return None


def scan_destination(dest: Path) -> tuple[dict[str, LocalFile], dict[str, LocalFile]]:
    """(final files, partial files keyed by their final name), ignoring ``.modelpvc/``."""
    files: dict[str, LocalFile] = {}
    partials: dict[str, LocalFile] = {}
    if not dest.is_dir():
        return files, partials
    for dirpath, dirnames, filenames in os.walk(dest):
        if dirpath == str(dest):
            dirnames[:] = [d for d in dirnames if d != STATE_DIR]
        for name in filenames:
            p = os.path.join(dirpath, name)
            try:
                st = os.lstat(p)
            except FileNotFoundError:
                continue
            rel = os.path.relpath(p, dest).replace(os.sep, "/")
            if rel.startswith(".") and rel.endswith(".tmp"):
                continue
            lf = LocalFile(st.st_size, st.st_mtime_ns)
            if name.endswith(PARTIAL_SUFFIX):
                partials[rel[: -len(PARTIAL_SUFFIX)]] = lf
            else:
                files[rel] = lf
    return files, partials


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def mirror(
    source: ObjectSource,
    dest: Path,
    *,
    s3: S3Settings,
    settings: TransferSettings,
    sink: ProgressSink | None = None,
    stop: threading.Event | None = None,
    select: Selector | None = None,
    structure_check: StructureCheck | None = None,
    objects: list[ObjectInfo] | None = None,
    link_dest: Path | None = None,
    shard: tuple[int, int] | None = None,
) -> MirrorResult:
    """Make ``dest`` an exact, verified copy of the source's selected objects.

    ``shard=(i, n)``: copy only this pod's share of a parallel populate; lock, journal and a partial
    manifest live in ``.modelpvc/shards/i/``. A later run without ``shard`` adopts what the shards
    published (nothing is fetched again), checks the whole model and writes the one manifest.
    """
    sink = sink or NullSink()
    stop = stop or threading.Event()
    t0 = time.monotonic()
    started = _now()
    if dest.exists() and not dest.is_dir():
        raise DestinationError(f"{dest} exists and is not a directory")
    if objects is None:
        objects = source.list_objects()
    check_keys(objects, str(source.uri))
    links = _link_candidates(link_dest, dest) if link_dest is not None else {}
    if shard is not None:
        select = shard_selector(select, *shard)
        structure_check = None  # a share of a model is not a whole model
    state = localfs.shard_state_dir(dest, shard[0]) if shard else localfs.state_dir(dest)
    adopted = {} if shard else {r.path: r for m in localfs.shard_manifests(dest) for r in m.files}
    if settings.dry_run:
        jranges, jpub = Journal(state).load()
        return MirrorResult(plan=_plan(str(source.uri), dest, objects, settings, select,
                                       localfs.read_manifest(dest, state),
                                       jranges, jpub, links, adopted))
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise localfs.destination_error(e, dest, "creating") from e
    with localfs.DestinationLock(dest, state):
        journal = Journal(state)
        jranges, jpub = journal.load()  # read once: ranges to resume, files published by a killed run
        old = localfs.read_manifest(dest, state)
        plan = _plan(str(source.uri), dest, objects, settings, select, old, jranges, jpub, links, adopted)
        sink.emit(Event("plan", {"source": str(source.uri), **plan.summary()}))
        work = plan.of(Action.FETCH, Action.RESUME, Action.DELETE, Action.LINK)
        result = MirrorResult(plan=plan)
        wanted = {op.rel for op in plan.selected}
        if not work and old is not None and old.source == str(source.uri) and \
                {f.path for f in old.files} == wanted:
            result.noop = True
            result.manifest = old
            result.seconds = time.monotonic() - t0
            journal.remove()
            return result
        localfs.remove_manifest(dest, state)
        if shard:
            localfs.remove_manifest(dest)  # the whole destination is changing too
        _check_space(dest, plan, settings)
        # A shard owns only its share's partials; the others belong to pods running beside it.
        owned = {op.rel for op in plan.of(Action.FETCH)} if shard else None
        result.removed_partials = _remove_stale_partials(dest, plan, owned)
        result.deleted = _delete(dest, plan)
        linked = _link(dest, plan, links)
        fetch = plan.of(Action.FETCH, Action.RESUME)
        exps = expectations(source, [op.obj for op in fetch if op.obj is not None], settings.verify)
        jobs = []
        for op, exp in zip(fetch, exps, strict=True):
            assert op.obj is not None
            done = jranges.get((op.rel, op.obj.etag, op.obj.size)) if op.action is Action.RESUME else None
            jobs.append(FileJob(dest, op.obj, exp, settings.part_size if settings.part_size > 0 else 0, done))
        execu = Executor(source, dest, jobs, journal, s3, settings, sink, stop)
        total = plan.bytes_to_fetch
        t_fetch = time.monotonic()

        def tick(done: int) -> None:
            sink.emit(Event("tick", {"bytes_done": done, "bytes_total": total,
                                     "seconds": time.monotonic() - t_fetch}))

        try:
            execu.run(tick)
        finally:
            journal.close()
        result.stats = execu.stats
        records = _collect_records(plan, {**adopted, **jpub, **linked, **execu.records}, old)
        structure = structure_check(dest, sorted(records)) if structure_check else {}
        manifest = Manifest(
            source=str(source.uri), endpoint=source.endpoint, files=list(records.values()),
            tool_version=__version__, started_at=started, completed_at=_now(),
            verify_level=str(settings.verify),
            skipped=[{"path": op.rel, "size": op.size, "reason": op.reason} for op in plan.of(Action.SKIP)],
            structure=structure,
        )
        localfs.write_manifest(dest, manifest, state)
        journal.remove()
        if shard is None and adopted:
            shutil.rmtree(localfs.state_dir(dest) / "shards", ignore_errors=True)
        result.manifest = manifest
        result.seconds = time.monotonic() - t0
        return result


def _link_candidates(link_dest: Path, dest: Path) -> dict[str, tuple[FileRecord, Path]]:
    """Files of a verified revision (its manifest) that are still intact by size and mtime."""
    m = localfs.read_manifest(link_dest)
    if m is None:
        raise DestinationError(f"--link-dest {link_dest} has no manifest; only a completed mirror can be linked from")
    existing = dest
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if os.stat(link_dest).st_dev != os.stat(existing).st_dev:
        raise DestinationError(f"--link-dest {link_dest} is on another filesystem than {dest}; hard links need one")
    out = {}
    for rec in m.files:
        p = link_dest / rec.path
        try:
            st = os.stat(p)
        except FileNotFoundError:
            continue
        if st.st_size == rec.size and st.st_mtime_ns == rec.mtime_ns:
            out[rec.path] = (rec, p)
    return out


def _link(dest: Path, plan: Plan, links: dict[str, tuple[FileRecord, Path]]) -> dict[str, FileRecord]:
    """Hard-link unchanged files from the other revision: no bytes copied, the same inode shared."""
    out = {}
    for op in plan.of(Action.LINK):
        rec, src = links[op.rel]
        target = dest / op.rel
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(src, target)
        except OSError as e:
            raise localfs.destination_error(e, target, "hard-linking") from e
        out[op.rel] = FileRecord(path=op.rel, key=op.obj.key if op.obj else rec.key, size=rec.size, etag=rec.etag,
                                 verified=rec.verified, digest=dict(rec.digest), mtime_ns=rec.mtime_ns)
    return out


def shard_selector(base: Selector | None, index: int, count: int) -> Selector:
    """This pod's share: selected files dealt largest first to the least-loaded shard. Every pod lists
    the same source, so every pod computes the same split without talking to the others."""
    if not 0 <= index < count:
        raise ConfigError(f"--shard {index}/{count}: the index must be in 0..{count - 1}")

    def select(objects: list[ObjectInfo]) -> dict[str, str]:
        skips = dict(base(objects)) if base else {}
        load = [0] * count
        for o in sorted((o for o in objects if o.rel not in skips), key=lambda o: (-o.size, o.rel)):
            k = load.index(min(load))
            load[k] += max(1, o.size)
            if k != index:
                skips[o.rel] = f"in shard {k} of {count}"
        return skips

    return select


def _plan(uri: str, dest: Path, objects: list[ObjectInfo], settings: TransferSettings, select: Selector | None,
          manifest: Manifest | None, jranges: dict[tuple[str, str, int], list[tuple[int, int]]],
          jpub: dict[str, FileRecord], links: dict[str, tuple[FileRecord, Path]] | None = None,
          adopted: dict[str, FileRecord] | None = None) -> Plan:
    files, partials = scan_destination(dest)
    published = {**(adopted or {}), **(manifest.by_path() if manifest else {}), **jpub}
    local = LocalState(files=files, partials=partials, published=published, journal_ranges=jranges,
                       link_candidates={k: v[0] for k, v in (links or {}).items()})
    return plan_mirror(uri, objects, local, delete=settings.delete, select=select)


def _collect_records(plan: Plan, fresh: dict[str, FileRecord], old: Manifest | None) -> dict[str, FileRecord]:
    known: dict[str, FileRecord] = {**(old.by_path() if old else {}), **fresh}
    out: dict[str, FileRecord] = {}
    for op in plan.selected:
        rec = known.get(op.rel)
        if rec is None or op.obj is None or rec.etag != op.obj.etag:
            raise IntegrityError(f"{op.rel} was not published by this run", hint="re-run the mirror")
        out[op.rel] = rec
    return out


def _check_space(dest: Path, plan: Plan, settings: TransferSettings) -> None:
    if not settings.check_space:
        return
    # RESUME partials are preallocated already; FETCH may replace an existing file of another size.
    need = sum(op.size for op in plan.of(Action.FETCH))
    st = os.statvfs(dest)
    free = st.f_bavail * st.f_frsize
    if need > free:
        raise DestinationFull(
            f"{dest} has {_gb(free)} free but {_gb(need)} must be fetched; nothing was written",
            hint="grow the volume (modelpvc plan recommends a PVC size) or free space",
        )


def _gb(n: int) -> str:
    return f"{n / 1e9:.2f} GB"


def _remove_stale_partials(dest: Path, plan: Plan, owned: set[str] | None = None) -> list[str]:
    """Partials that this plan will not resume are leftovers of killed runs: remove them."""
    keep = {op.rel for op in plan.of(Action.RESUME)}
    _files, partials = scan_destination(dest)
    removed = []
    for rel in partials:
        if rel not in keep and (owned is None or rel in owned):
            (dest / (rel + PARTIAL_SUFFIX)).unlink(missing_ok=True)
            removed.append(rel + PARTIAL_SUFFIX)
    return removed


def _delete(dest: Path, plan: Plan) -> list[str]:
    out = []
    for op in plan.of(Action.DELETE):
        p = dest / op.rel
        try:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink(missing_ok=True)
        except OSError as e:
            raise localfs.destination_error(e, p, "deleting") from e
        out.append(op.rel)
    return out
