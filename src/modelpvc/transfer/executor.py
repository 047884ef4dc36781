"""Runs the fetches of a plan: a bounded pool of worker threads, one buffer each, writing at offsets.

Memory is ``workers x buffer_size``, plus each worker's write-behind ring for direct writes (at most
``direct_io.RINGS_MEMORY`` together), whatever the model size. Files are admitted up to ``workers`` at a
time and each free worker takes the next range of the file with the fewest workers on it, so with enough
files every file has a worker of its own: its ranges arrive in order and a sequential digest (MD5) is
computed from the receive buffer, never from the page cache. Only a model of fewer files than workers
puts several workers on one file (its ranges are then hashed once the cursor reaches them).

Writing behind (store.direct_io.WriteBehind), a worker moves on when its range is received; the range is
journalled, and its file published, by the ring's writer thread once the bytes are on the file.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from modelpvc.core.errors import Interrupted, SourceError, TransientError
from modelpvc.core.events import Event, ProgressSink
from modelpvc.core.models import FileRecord
from modelpvc.core.retry import RetryPolicy, call_with_retries
from modelpvc.core.settings import MiB, TransferSettings
from modelpvc.core.stop import StopToken
from modelpvc.store.sources.base import Buffers, ObjectSource, OneBuffer
from modelpvc.store.volume import direct_io
from modelpvc.store.volume.destination import Destination
from modelpvc.store.volume.fs import fsync_dir
from modelpvc.store.volume.journal import Journal
from modelpvc.transfer.expectations import settle
from modelpvc.transfer.filejob import FileJob
from modelpvc.transfer.lane import Lane, for_lane
from modelpvc.transfer.stats import RunStats

log = logging.getLogger(__name__)


class _Cancelled(Exception):
    pass


OPEN = -1  # "a new file: open it (or hash the copy found on disk) and fetch its first range"
FINISH = -2  # "every byte of this file is on it and hashed: check and publish it"


class _Scheduler:
    """Hands out work; knows when nothing is queued or in flight any more.

    A free worker first opens a new file (while fewer than ``files_in_flight`` are open) and fetches its
    first range itself; only then does it join a file that already has workers, the one with the fewest.
    Opening (open, fallocate) happens outside the lock: under it, every other worker waited.
    """

    def __init__(self, jobs: list[FileJob], files_in_flight: int) -> None:
        self.cond = threading.Condition()
        self.waiting: deque[FileJob] = deque(jobs)
        self.active: list[tuple[FileJob, deque[tuple[int, int]]]] = []  # files with ranges not handed out
        self.finishing: deque[FileJob] = deque()  # hashed in another thread, to be checked and published
        self.opening = 0
        self.max_files = max(1, files_in_flight)
        self.outstanding = 0  # tasks handed out or queued, not yet done
        self.closed = False

    def add_ranges(self, job: FileJob, rngs: list[tuple[int, int]]) -> None:
        with self.cond:
            self.active.append((job, deque(rngs)))
            self.outstanding += len(rngs)
            self.cond.notify_all()

    def add_files(self, jobs: list[FileJob]) -> None:
        """Files to open (the lane's, when it could not start them)."""
        if jobs:
            with self.cond:
                self.waiting.extend(jobs)
                self.cond.notify_all()

    def hold(self) -> None:
        """A task outside the queue (the lane) that may still add work: no worker stops before it is done."""
        with self.cond:
            self.outstanding += 1

    def finish(self, job: FileJob) -> None:
        """``job`` is ready to publish; its task was counted by ``hold`` when its last range landed."""
        with self.cond:
            self.finishing.append(job)
            self.cond.notify()

    def opened(self, job: FileJob, rngs: list[tuple[int, int]]) -> None:
        """The opener takes ``rngs[0]`` itself; the rest are queued for whoever joins the file."""
        with self.cond:
            self.opening -= 1
            if not rngs:
                return
            self.outstanding += len(rngs)
            job.workers += 1
            if len(rngs) > 1:
                self.active.append((job, deque(rngs[1:])))
                self.cond.notify_all()

    def next(self) -> tuple[FileJob, int, int] | None:
        with self.cond:
            while True:
                if self.closed:
                    return None
                if self.finishing:
                    return self.finishing.popleft(), FINISH, FINISH
                if self.waiting and len(self.active) + self.opening < self.max_files:
                    job = self.waiting.popleft()
                    self.opening += 1
                    self.outstanding += 1
                    return job, OPEN, OPEN
                if self.active:
                    # The file with the fewest workers; among equals the oldest, so files finish in turn.
                    i = min(range(len(self.active)), key=lambda k: self.active[k][0].workers)
                    job, q = self.active[i]
                    s, e = q.popleft()
                    if not q:
                        self.active.pop(i)
                    job.workers += 1
                    return job, s, e
                if self.outstanding == 0 and not self.waiting:
                    return None
                self.cond.wait(0.5)

    def left(self, job: FileJob) -> None:
        """A worker is done receiving a range of ``job`` (its bytes may still be going to the disk). Counted
        at once: a worker between ranges must not make its file look busier than the others, or the next
        free worker joins it and both fetch out of order."""
        with self.cond:
            job.workers -= 1

    def task_done(self) -> None:
        """A task is finished: a file opened, or a range on the file (and journalled)."""
        with self.cond:
            self.outstanding -= 1
            # Workers only wait at the tail (nothing queued, something in flight): wake them when the
            # last task is done. Waking all on every range cost ~80 futex calls per small file.
            if self.outstanding == 0:
                self.cond.notify_all()

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()


def journal_step(bytes_to_fetch: int, workers: int) -> int:
    """Bytes a worker writes before journalling them: a kill costs at most ~1 % of the model again
    (workers x step), within [1, 64] MiB."""
    return int(min(64 * MiB, max(1 * MiB, 0.01 * bytes_to_fetch / max(1, workers))))


class Executor:
    def __init__(
        self,
        source: ObjectSource,
        dest: Destination,
        jobs: list[FileJob],
        journal: Journal,
        retry: RetryPolicy,
        settings: TransferSettings,
        sink: ProgressSink,
        stop: StopToken,
    ) -> None:
        self.source = source
        self.dest = dest
        self.jobs = jobs
        self.journal = journal
        self.retry = retry
        self.settings = settings
        self.sink = sink
        self.stop = stop
        # Bytes a worker writes into a range before it journals them: a kill re-fetches at most
        # workers x journal_step bytes of partly written ranges.
        self.journal_step = journal_step(sum(j.obj.size for j in jobs), settings.workers)
        self.cancel = threading.Event()
        self.failure: BaseException | None = None
        self.stats = RunStats()
        self.records: dict[str, FileRecord] = {}
        self.dirs: set[Path] = set()
        n = max(1, settings.workers)
        in_lane = [for_lane(j) for j in jobs]
        self.lane_jobs = [j for j, lane in zip(jobs, in_lane, strict=True) if lane]
        self._counters = [0] * (n + 1)  # the last one is the lane's
        # Per-worker seconds spent waiting for bytes vs writing and hashing them: which side is slower.
        self._wait = [0.0] * n
        self._busy = [0.0] * n
        self._lock = threading.Lock()
        self._dirty: set[FileJob] = set()  # written since the last sync
        self._small_unsynced = False  # small files published without their own fsync since the last sync
        self._pub_dirs: set[Path] = set()  # directories of renames since the last sync
        self._finished = threading.Event()
        self._running = 0
        ranged = [j for j, lane in zip(jobs, in_lane, strict=True) if not lane]
        self.sched = _Scheduler(ranged, files_in_flight=settings.files_in_flight or n)

    # -- worker side ---------------------------------------------------------------------------
    def open_file(self, job: FileJob) -> list[tuple[int, int]]:
        job.open()
        self.sink.emit(Event("file_start", {"path": job.obj.rel, "size": job.obj.size}))
        todo = job.todo()
        job.left = len(todo)
        return todo

    def _worker(self, wid: int) -> None:
        buf = OneBuffer(direct_io.aligned_buffer(self.settings.buffer_size))
        # Direct writes are synchronous: a ring written by a thread of its own keeps disk and network busy.
        behind = (direct_io.WriteBehind(direct_io.chunk_for(self.settings.workers))
                  if any(j.direct for j in self.jobs) else None)
        try:
            while not self.cancel.is_set():
                task = self.sched.next()
                if task is None:
                    break
                job, start, end = task
                if start >= 0:
                    self._fetch_range(wid, buf, behind, job, start, end)  # it says when the task is done
                    continue
                try:
                    if start == OPEN:
                        self._start_file(wid, buf, behind, job)
                    elif not self.cancel.is_set():  # a stopping run publishes no more
                        self._finish_file(job)
                finally:
                    self.sched.task_done()
        except _Cancelled:
            pass
        except BaseException as e:
            self.fail(e)
        finally:
            if behind is not None:
                behind.close()
                with self._lock:  # the ring counted its waits for the disk
                    self.stats.seconds_waiting_disk += behind.waited
            self.thread_ended()

    def thread_ended(self) -> None:
        with self._lock:
            self._running -= 1
            if self._running == 0:
                self._finished.set()

    def _start_file(self, wid: int, buf: OneBuffer, behind: direct_io.WriteBehind | None, job: FileJob) -> None:
        if job.adopt is not None:
            self.sched.opened(job, [])
            self._adopt(job)
            return
        rngs = self.open_file(job)
        self.sched.opened(job, rngs)
        if not rngs:
            self._finish_file(job)  # every range was written by an earlier run
            return
        self._fetch_range(wid, buf, behind, job, *rngs[0])

    def _fetch_range(self, wid: int, buf: OneBuffer, behind: direct_io.WriteBehind | None, job: FileJob,
                     start: int, end: int) -> None:
        """Fetch one range and mark its task done: at once, or, writing behind, once its bytes are on the
        file. Only then is it journalled as written, and the last range of a file publishes it."""
        if behind is None or job.dfd is None:
            try:
                self._fetch_range_via(wid, buf, None, job, start, end)
                self.range_landed(job, start, end)
            finally:
                self.sched.left(job)
                self.sched.task_done()
            return
        try:
            self._fetch_range_via(wid, buf, behind, job, start, end)
        except BaseException:
            behind.drain(raise_error=False)  # nothing of this range in flight once the worker moves on
            self.sched.task_done()
            raise
        finally:
            self.sched.left(job)

        def landed(error: BaseException | None) -> None:
            try:
                if error is not None:
                    self.fail(error)
                else:  # landed bytes are journalled even when stopping; a stopping run publishes no more
                    self.range_landed(job, start, end, publish=not self.cancel.is_set())
            except BaseException as e:
                self.fail(e)
            finally:
                self.sched.task_done()

        behind.then(landed)  # the worker goes on receiving while the disk catches up

    def _fetch_range_via(self, wid: int, buf: OneBuffer, behind: direct_io.WriteBehind | None, job: FileJob,
                         start: int, end: int) -> None:
        bufs: Buffers = behind if behind is not None else buf  # writing behind: the ring's next free buffer
        pos = start
        logged = start  # journalled up to here
        step = self.journal_step
        obj = job.obj
        counters = self._counters
        cancel = self.cancel
        busy = self._busy
        journal = self.journal
        job.begin_range(start, end)
        if behind is not None:
            behind.lender = job.lender()
        self.writing(job)

        def on_data(offset: int, data: memoryview) -> None:
            nonlocal pos, logged
            if cancel.is_set():
                raise _Cancelled
            t = time.monotonic()
            job.write(start, offset, data, behind)
            n = len(data)
            counters[wid] += n
            pos = offset + n
            if pos - logged >= step and pos < end:
                on_file = behind.safe(pos) if behind is not None else pos  # only what has landed
                if on_file > logged:
                    journal.ranges_written([(obj.rel, obj.etag, obj.size, start, on_file)])
                    logged = on_file
            busy[wid] += time.monotonic() - t

        def once() -> None:
            t0 = time.monotonic()
            b0 = busy[wid]
            r0 = behind.waited if behind is not None else 0.0
            ask = job.answered if job.exp.from_answer else None  # heard only on a whole read
            self.source.read(obj, pos, end, bufs, on_data, ask)
            # Waiting for a ring buffer happens inside the read but is the disk's time, not the source's.
            ring = behind.waited - r0 if behind is not None else 0.0
            busy[wid] += ring
            self._wait[wid] += time.monotonic() - t0 - (busy[wid] - b0)

        def again(attempt: int, e: TransientError) -> None:
            with self._lock:
                self.stats.retries += 1
            self.sink.emit(Event("retry", {"path": obj.rel, "attempt": attempt, "error": str(e)}))
            if pos > start:
                if behind is not None:
                    behind.drain()  # the digest re-reads what was written
                job.range_restart(start, pos)

        try:
            self._retrying(once, again)
        finally:
            if behind is not None:
                behind.give_back()

    def _retrying(self, once: Callable[[], None], again: Callable[[int, TransientError], None]) -> None:
        """``once`` until it succeeds, ``again`` before each retry; a backoff ends at once when stopping."""
        def pause(seconds: float) -> None:
            if self.cancel.wait(seconds):
                raise _Cancelled

        policy = self.retry
        try:
            call_with_retries(once, attempts=policy.attempts, base=policy.base, cap=policy.cap, on_retry=again,
                              sleep=pause)
        except TransientError as e:
            raise SourceError(f"{e} (gave up after {policy.attempts} attempts)",
                              hint="the endpoint keeps failing; re-run later to resume") from e

    def range_landed(self, job: FileJob, start: int, end: int, publish: bool = True) -> None:
        """Every byte of [start, end) is on the file: journal it; the file's last range publishes it."""
        obj = job.obj
        job.range_done(start, end)
        if len(job.all_ranges) > 1:  # a one-range file is journalled as published right away
            self.journal.ranges_written([(obj.rel, obj.etag, obj.size, start, end)])
        with self._lock:
            job.left -= 1
            last = job.left == 0
        if not (last and publish):
            return
        # Parts still being hashed elsewhere: a worker finishes the file once they are, and this thread (the
        # one writing behind a worker, often) goes on landing bytes meanwhile.
        self.sched.hold()
        if job.hashed_later(lambda: self.sched.finish(job)):
            return
        try:
            self._finish_file(job)
        finally:
            self.sched.task_done()

    def writing(self, job: FileJob) -> None:
        """``job`` has bytes on its way to the file: the next sync makes them durable."""
        with self._lock:
            self._dirty.add(job)

    def counted(self, slot: int, n: int) -> None:
        self._counters[slot] += n

    def refetch(self, job: FileJob, rngs: list[tuple[int, int]], retried: bool = False) -> None:
        """Fetch ``rngs`` of an open file again, by the workers."""
        with self._lock:
            job.left = len(rngs)
            self.stats.retries += retried
        self.sched.add_ranges(job, rngs)

    def _settle(self, job: FileJob) -> None:
        if job.exp.from_answer:
            job.settle(settle(self.source, job.obj, self.settings.verify, job.exp, job.asked, job.answer))

    def _finish_file(self, job: FileJob) -> None:
        self._settle(job)
        ok, digest = job.check()
        if not ok:
            detail = f"{job.exp.kind} {next(iter(digest.values()), '?')} != expected {job.exp.expected}"
            if job.refetches >= 1:
                raise job.fail(detail)
            log.warning("%s failed verification (%s); fetching it again", job.obj.rel, detail)
            self.sink.emit(Event("warning", {"path": job.obj.rel,
                                             "message": f"verification failed ({job.exp.kind}); fetching again"}))
            self.journal.dropped(job.obj.rel)
            with self._lock:
                self.stats.refetched_files.append(job.obj.rel)
            self.refetch(job, job.restart())
            return
        self._published(job, job.publish(), digest)

    def _adopt(self, job: FileJob) -> None:
        self._settle(job)  # nothing was fetched: a HEAD asks for the stored checksum
        ok, digest = job.check_adoptable()
        if ok:
            with self._lock:
                self.stats.adopted_files += 1
                self.stats.adopted_bytes += job.obj.size
            self._published(job, job.publish_adopted(), digest, adopted=True)
            return
        self.sink.emit(Event("warning", {"path": job.obj.rel,
                                         "message": "the copy found on disk differs from the source; fetching it"}))
        job.restart(counted=False)
        rngs = self.open_file(job)
        self.sched.add_ranges(job, rngs)

    def _published(self, job: FileJob, record: FileRecord, digest: dict[str, str], adopted: bool = False) -> None:
        record.digest = digest
        self.journal.published([record])
        with self._lock:
            self._dirty.discard(job)
            self.records[record.path] = record
            self.dirs.add(job.final.parent)
            self._pub_dirs.add(job.final.parent)
            self._small_unsynced |= job.small
            self.stats.files_published += 1
            self.stats.direct_files += job.wrote_direct
            self.stats.bytes_hashed_again += job.digest.reread if job.digest is not None and not adopted else 0
        self.sink.emit(Event("file_done", {"path": record.path, "size": record.size, "verified": record.verified,
                                           **({"adopted": True} if adopted else {})}))

    def fail(self, e: BaseException) -> None:
        with self._lock:
            if self.failure is None:
                self.failure = e
        self.cancel.set()
        self.sched.close()

    # -- main thread ---------------------------------------------------------------------------
    def bytes_done(self) -> int:
        return sum(self._counters)

    def _sync(self) -> None:
        """Make what was written durable, then say so in the journal (see store.journal)."""
        upto = self.journal.mark()
        with self._lock:
            dirty, self._dirty = self._dirty, set()
            small, self._small_unsynced = self._small_unsynced, False
            dirs, self._pub_dirs = self._pub_dirs, set()
        if not (dirty or small or dirs):
            return
        for job in dirty:
            job.datasync()
        if small:
            self.dest.make_durable()
        for d in sorted(dirs):
            fsync_dir(d)
        self.journal.synced(upto)

    def run(self, tick: Callable[[int], None]) -> None:
        n = max(1, self.settings.workers)
        threads = [threading.Thread(target=self._worker, args=(i,), daemon=True, name=f"fetch-{i}")
                   for i in range(n)]
        if self.lane_jobs:
            self.sched.hold()  # until the lane has handed back what it did not read
            threads.append(threading.Thread(target=Lane(self, self.lane_jobs, n).run, daemon=True, name="lane"))
        self._running = len(threads)
        for t in threads:
            t.start()
        self.stop.polled = True  # signals now just set the token; this loop turns them into a clean stop
        last_sync = time.monotonic()
        while not self._finished.wait(0.1):
            if self.stop.is_set():
                self._interrupt()
            now = time.monotonic()
            if now - last_sync >= self.settings.journal_interval:
                self._sync()
                last_sync = now
            tick(self.bytes_done())
        self.stats.bytes_fetched = self.bytes_done()
        self.stats.seconds_waiting_source = sum(self._wait)
        self.stats.seconds_writing = sum(self._busy)
        tick(self.stats.bytes_fetched)
        self._sync()
        if self.stop.is_set() and self.failure is None:
            self._interrupt()
        if self.failure is not None:
            for job in self.jobs:
                job.discard()
            raise self.failure
        for d in sorted(self.dirs):
            fsync_dir(d)

    def _interrupt(self) -> None:
        """Stop promptly: workers see ``cancel`` within one buffer; what was written is journalled."""
        self.cancel.set()
        self.sched.close()
        self._finished.wait(1.0)
        self._sync()
        raise Interrupted(self.stop.signum)

