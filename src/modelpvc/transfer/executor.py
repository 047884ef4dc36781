"""Runs the fetches of a plan: a bounded pool of worker threads, one buffer each, writing at offsets.

Memory is ``workers x buffer_size`` whatever the model size. Ranges are handed out round-robin over a
few open files, so several whole-file digests advance in parallel on different cores.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from modelpvc.core.errors import Interrupted, ModelpvcError, SourceError, TransientError
from modelpvc.core.events import Event, ProgressSink
from modelpvc.core.models import FileRecord
from modelpvc.core.retry import backoff_delay
from modelpvc.core.settings import S3Settings, TransferSettings
from modelpvc.store.base import ObjectSource
from modelpvc.store.localfs import fsync_dir, syncfs
from modelpvc.transfer.digest import pread_into
from modelpvc.transfer.filejob import FileJob
from modelpvc.transfer.journal import Journal

log = logging.getLogger(__name__)


class _Cancelled(Exception):
    pass


FINISH = -1  # a task's start offset meaning "all ranges are on disk: verify and publish the file"


@dataclass
class RunStats:
    bytes_fetched: int = 0
    files_published: int = 0
    retries: int = 0
    refetched_files: list[str] = field(default_factory=list)
    seconds_waiting_source: float = 0.0
    seconds_writing: float = 0.0


class _Scheduler:
    """Hands out (job, start, end); knows when nothing is queued or in flight any more."""

    def __init__(self, jobs: list[FileJob], active: int) -> None:
        self.cond = threading.Condition()
        self.waiting: deque[FileJob] = deque(jobs)
        self.active: list[tuple[FileJob, deque[tuple[int, int]]]] = []
        self.max_active = active
        self.outstanding = 0
        self.rr = 0
        self.closed = False

    def add_ranges(self, job: FileJob, rngs: list[tuple[int, int]]) -> None:
        with self.cond:
            self.active.append((job, deque(rngs)))
            self.outstanding += len(rngs)
            self.cond.notify_all()

    def next(self, opener: Callable[[FileJob], list[tuple[int, int]]]) -> tuple[FileJob, int, int] | None:
        with self.cond:
            while True:
                if self.closed:
                    return None
                while len(self.active) < self.max_active and self.waiting:
                    job = self.waiting.popleft()
                    rngs = opener(job)  # cheap: open + fallocate
                    if not rngs:
                        # Every range is on disk already (a resumed run): verifying it means hashing the
                        # whole file, which must not happen under this lock.
                        return job, FINISH, FINISH
                    self.active.append((job, deque(rngs)))
                    self.outstanding += len(rngs)
                if self.active:
                    self.rr = (self.rr + 1) % len(self.active)
                    job, q = self.active[self.rr]
                    s, e = q.popleft()
                    if not q:
                        self.active.pop(self.rr)
                    return job, s, e
                if self.outstanding == 0 and not self.waiting:
                    return None
                self.cond.wait(0.5)

    def range_finished(self) -> None:
        with self.cond:
            self.outstanding -= 1
            # Workers only wait at the tail (nothing queued, something in flight): wake them when the
            # last range is done. Waking all on every range cost ~80 futex calls per small file.
            if self.outstanding == 0:
                self.cond.notify_all()

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()


class Executor:
    def __init__(
        self,
        source: ObjectSource,
        dest: Path,
        jobs: list[FileJob],
        journal: Journal,
        s3: S3Settings,
        settings: TransferSettings,
        sink: ProgressSink,
        stop: threading.Event,
    ) -> None:
        self.source = source
        self.dest = dest
        self.jobs = jobs
        self.journal = journal
        self.s3 = s3
        self.settings = settings
        self.sink = sink
        self.stop = stop
        self.cancel = threading.Event()
        self.failure: BaseException | None = None
        self.stats = RunStats()
        self.records: dict[str, FileRecord] = {}
        self.dirs: set[Path] = set()
        self._counters = [0] * settings.workers
        # Per-worker seconds spent waiting for bytes vs writing and hashing them: which side is slower.
        self._wait = [0.0] * settings.workers
        self._busy = [0.0] * settings.workers
        self._lock = threading.Lock()
        self._to_journal: list[tuple[FileJob, int, int]] = []
        self._published: list[FileRecord] = []  # large files: durable; journalled at the next flush
        self._unsynced: list[FileRecord] = []  # small files: journalled after the next syncfs
        self._finished = threading.Event()
        self._running = 0
        self.sched = _Scheduler(jobs, active=max(2, min(4, settings.workers // 2)))

    # -- worker side ---------------------------------------------------------------------------
    def _open(self, job: FileJob) -> list[tuple[int, int]]:
        job.open()
        self.sink.emit(Event("file_start", {"path": job.obj.rel, "size": job.obj.size}))
        todo = job.todo()
        job.left = len(todo)
        return todo

    def _worker(self, wid: int) -> None:
        buf = memoryview(bytearray(self.settings.buffer_size))
        try:
            while not self.cancel.is_set():
                task = self.sched.next(self._open)
                if task is None:
                    break
                job, start, end = task
                if start == FINISH:
                    self._finish_file(job)
                    continue
                self._fetch_range(wid, buf, job, start, end)
                self.sched.range_finished()
        except _Cancelled:
            pass
        except BaseException as e:
            self._fail(e)
        finally:
            with self._lock:
                self._running -= 1
                if self._running == 0:
                    self._finished.set()

    def _fetch_range(self, wid: int, buf: memoryview, job: FileJob, start: int, end: int) -> None:
        pos = start
        part = hashlib.md5(usedforsecurity=False) if job.exp.kind == "multipart-etag" else None
        counters = self._counters
        cancel = self.cancel

        busy = self._busy

        def on_data(offset: int, data: memoryview) -> None:
            nonlocal pos
            if cancel.is_set():
                raise _Cancelled
            t = time.monotonic()
            job.write(start, offset, data)
            if part is not None:
                part.update(data)
            n = len(data)
            counters[wid] += n
            pos = offset + n
            busy[wid] += time.monotonic() - t

        attempt = 0
        while True:
            t0 = time.monotonic()
            b0 = busy[wid]
            try:
                self.source.read(job.obj, pos, end, buf, on_data)
                self._wait[wid] += time.monotonic() - t0 - (busy[wid] - b0)
                break
            except TransientError as e:
                attempt += 1
                if attempt >= self.s3.max_attempts:
                    raise SourceError(f"{e} (gave up after {attempt} attempts)",
                                      hint="the endpoint keeps failing; re-run later to resume") from e
                with self._lock:
                    self.stats.retries += 1
                self.sink.emit(Event("retry", {"path": job.obj.rel, "attempt": attempt, "error": str(e)}))
                deadline = time.monotonic() + backoff_delay(attempt, self.s3.backoff_base, self.s3.backoff_cap)
                while time.monotonic() < deadline:
                    if cancel.is_set():
                        raise _Cancelled from None
                    time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
                if part is not None and pos > start:
                    # The part's MD5 restarts; bytes already written are hashed from the page cache.
                    part = hashlib.md5(usedforsecurity=False)
                    assert job.fd is not None
                    pread_into(job.fd, part, start, pos)
        job.range_done(start, end, part.digest() if part is not None else None)
        with self._lock:
            if len(job.all_ranges) > 1:  # a one-range file is published right away: nothing to resume
                self._to_journal.append((job, start, end))
            job.left -= 1
            last = job.left == 0
        if last:
            self._finish_file(job)

    def _finish_file(self, job: FileJob) -> None:
        ok, digest = job.digest_matches()
        if not ok:
            expected = job.exp.expected
            detail = f"{job.exp.kind} {digest} != expected {expected}"
            if job.refetches >= 1:
                raise job.fail(detail)
            log.warning("%s failed verification (%s); fetching it again", job.obj.rel, detail)
            self.sink.emit(Event("warning", {"path": job.obj.rel,
                                             "message": f"verification failed ({job.exp.kind}); fetching again"}))
            with self._lock:
                self.stats.refetched_files.append(job.obj.rel)
                rngs = job.restart()
                job.left = len(rngs)
                self._to_journal = [t for t in self._to_journal if t[0] is not job]
            self.sched.add_ranges(job, rngs)
            return
        record = job.publish()
        record.digest = digest
        with self._lock:
            (self._unsynced if job.small else self._published).append(record)
            self.records[record.path] = record
            self.dirs.add(job.final.parent)
            self.stats.files_published += 1
        self.sink.emit(Event("file_done", {"path": record.path, "size": record.size,
                                           "verified": record.verified}))

    def _fail(self, e: BaseException) -> None:
        with self._lock:
            if self.failure is None:
                self.failure = e
        self.cancel.set()
        self.sched.close()

    # -- main thread ---------------------------------------------------------------------------
    def bytes_done(self) -> int:
        return sum(self._counters)

    def _flush_journal(self, final: bool = False) -> None:
        with self._lock:
            items, self._to_journal = self._to_journal, []
            published, self._published = self._published, []
            unsynced = self._unsynced
            if unsynced and (final or len(unsynced) >= 64):
                self._unsynced = []
            else:
                unsynced = []
        if unsynced:
            syncfs(self.dest)
        self.journal.published_many(published + unsynced)
        synced: set[int] = set()
        lines = []
        for job, s, e in items:
            if id(job) not in synced:
                job.datasync()
                synced.add(id(job))
            lines.append((job.obj.rel, job.obj.etag, job.obj.size, s, e))
        self.journal.ranges_done(lines)

    def run(self, tick: Callable[[int], None]) -> None:
        n = max(1, self.settings.workers)
        self._running = n
        threads = [threading.Thread(target=self._worker, args=(i,), daemon=True, name=f"fetch-{i}")
                   for i in range(n)]
        for t in threads:
            t.start()
        if hasattr(self.stop, "polled"):
            self.stop.polled = True  # signals now just set the flag; this loop turns them into a clean stop
        last_flush = time.monotonic()
        while not self._finished.wait(0.1):
            if self.stop.is_set():
                self._interrupt()
            now = time.monotonic()
            if now - last_flush >= self.settings.journal_interval:
                self._flush_journal()
                last_flush = now
            tick(self.bytes_done())
        self.stats.bytes_fetched = self.bytes_done()
        self.stats.seconds_waiting_source = sum(self._wait)
        self.stats.seconds_writing = sum(self._busy)
        tick(self.stats.bytes_fetched)
        self._flush_journal(final=True)
        if self.stop.is_set() and self.failure is None:
            self._interrupt()
        if self.failure is not None:
            for job in self.jobs:
                job.discard()
            if isinstance(self.failure, ModelpvcError):
                raise self.failure
            raise self.failure
        for d in sorted(self.dirs):
            fsync_dir(d)

    def _interrupt(self) -> None:
        """Stop promptly: workers see ``cancel`` within one buffer; what completed is journalled."""
        self.cancel.set()
        self.sched.close()
        self._finished.wait(1.0)
        self._flush_journal(final=True)
        signum = getattr(self.stop, "signum", 15)
        raise Interrupted(int(signum))
