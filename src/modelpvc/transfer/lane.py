"""The small files' lane: whole objects read several at a time by one thread (``ObjectSource.read_many``).

Fresh files of one range up to ``LANE_MAX`` go here; the ranged workers take the rest of the plan. A
lane file is the same ``FileJob`` the workers would have fetched (opened, digested, checked and published
by the executor's own steps); only its bytes come another way. One the lane could not read goes to the
workers from its start, as does every file when the source reads one object at a time only.

The lane's thread only sends, receives and writes. Two threads do its file system work: ``lane-create``
creates the next files ahead (150-300 µs each on ext4, more than a request and its bytes) and
``lane-publish`` hashes the written files back from the page cache, checks and publishes them, sixteen at a
time. Those system calls and the hashing let go of the GIL, so they run beside the lane's Python on the
other core: 2,000 x 64 KiB took 5-8 % less wall time than with all of it on the lane's thread (decisions §19).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import TYPE_CHECKING

from modelpvc.core import md5_native
from modelpvc.core.events import Event
from modelpvc.core.models import ObjectInfo
from modelpvc.core.settings import MiB
from modelpvc.transfer import digest
from modelpvc.transfer.filejob import FileJob

if TYPE_CHECKING:
    from modelpvc.transfer.executor import Executor

log = logging.getLogger(__name__)

# Up to here a file's time is its request's round trip and its per-file work, not its bytes; 2,000 files of
# 64 KiB took a third less client CPU over one thread's connections than over a worker each (decisions §19).
LANE_MAX = 1 * MiB


# A small GET's time is mostly the server's fixed work per request, so the lane needs more of them in flight
# than the workers need ranges to keep the server's cores busy; each costs the lane a socket and a buffer.
# 2,000 x 64 KiB from MinIO on 2 cores: 4 connections 1.23 s, 8 1.15, 16 1.09, 32 and 64 the same as 16
# (decisions §19).
LANE_CONNECTIONS_PER_WORKER = 4
LANE_CONNECTIONS_MAX = 64


def lane_connections(workers: int) -> int:
    return max(1, min(LANE_CONNECTIONS_MAX, LANE_CONNECTIONS_PER_WORKER * workers))


def for_lane(job: FileJob) -> bool:
    return 0 < job.obj.size <= LANE_MAX and len(job.all_ranges) == 1 and not job.resumed and job.adopt is None


class Lane:
    """``store.sources.base.WholeReads`` over the executor's files; ``run`` is the lane's thread."""

    def __init__(self, ex: Executor, jobs: list[FileJob], counter: int) -> None:
        self.ex = ex
        self.queue = deque(jobs)  # not opened yet
        self.opened: deque[FileJob] = deque()  # created ahead by ``lane-create``
        self.landed: deque[FileJob] = deque()  # every byte written: ``lane-publish`` checks and publishes them
        self.fetching: dict[ObjectInfo, FileJob] = {}
        self.counter = counter  # its slot in the executor's byte counters
        self.connections = lane_connections(ex.settings.workers)
        lock = threading.Lock()
        self._cond = threading.Condition(lock)  # files to create, created, and the end of creating
        self._batch = threading.Condition(lock)  # a batch has landed, or the reads are over
        self._files: list[threading.Thread] = []  # started by the first ``next``: a source may read none
        self._reading = True  # until ``read_many`` returns
        self._creating = True
        self._opening = False  # a file is being created

    def run(self) -> None:
        ex = self.ex
        try:
            ex.source.read_many(self, self.connections, ex.cancel.is_set)
        except BaseException as e:
            ex.fail(e)
        finally:
            self._end_files()
            # Not read (stopped, or the source reads one by one): the workers fetch them.
            for job in self.opened:
                ex.refetch(job, job.todo())
            ex.sched.add_files(list(self.queue))
            self.opened.clear()
            self.queue.clear()
            ex.sched.task_done()
            ex.thread_ended()

    def next(self) -> tuple[ObjectInfo, bool] | None:
        with self._cond:
            if not self._files:
                self._files = [threading.Thread(target=self._create_ahead, daemon=True, name="lane-create"),
                               threading.Thread(target=self._publish_landed, daemon=True, name="lane-publish")]
                for t in self._files:
                    t.start()
            while not self.opened and self._creating and (self.queue or self._opening):
                if self.ex.cancel.is_set():
                    return None
                self._cond.wait(0.1)  # ``lane-create`` stops on cancel without a word
            if not self.opened or self.ex.cancel.is_set():
                return None
            job = self.opened.popleft()
            self._cond.notify_all()
        self.ex.writing(job)
        self.fetching[job.obj] = job
        return job.obj, job.exp.from_answer

    def started(self, obj: ObjectInfo, checksum: tuple[str, str] | None) -> None:
        job = self.fetching[obj]
        if job.exp.from_answer:
            job.answered(checksum)

    def data(self, obj: ObjectInfo, offset: int, view: memoryview) -> None:
        self.fetching[obj].write_unhashed(offset, view)
        self.ex.counted(self.counter, len(view))

    def done(self, obj: ObjectInfo) -> None:
        job = self.fetching.pop(obj)
        with self._batch:
            self.landed.append(job)
            if len(self.landed) == md5_native.LANES:
                self._batch.notify()

    def failed(self, obj: ObjectInfo, error: Exception) -> None:
        job = self.fetching.pop(obj)
        log.debug("%s: not read in the lane (%s); a worker fetches it", obj.rel, error)
        self.ex.sink.emit(Event("retry", {"path": obj.rel, "attempt": 1, "error": str(error)}))
        rngs = job.restart(counted=False)
        self.ex.refetch(job, rngs, retried=True)

    # -- the two file system threads -----------------------------------------------------------
    def _create_ahead(self) -> None:
        """Create the next files, a few per connection ahead of the reads (so creation runs in bursts)."""
        ahead = 2 * self.connections
        try:
            while True:
                with self._cond:
                    while self._reading and self.queue and len(self.opened) >= ahead:
                        self._cond.wait()
                    if not (self._reading and self.queue) or self.ex.cancel.is_set():
                        return
                    job = self.queue.popleft()
                    self._opening = True
                try:
                    self.ex.open_file(job)
                except BaseException:
                    with self._cond:
                        self.queue.appendleft(job)  # the run fails; discarded with the others
                    raise
                with self._cond:
                    self.opened.append(job)
                    self._opening = False
                    self._cond.notify_all()
        except BaseException as e:
            self.ex.fail(e)
        finally:
            with self._cond:
                self._opening = False
                self._creating = False
                self._cond.notify_all()

    def _publish_landed(self) -> None:
        """Hash the landed files back from the page cache, check and publish them, sixteen at a time (their
        MD5s in one pass of the SIMD lanes, transfer.digest); after the last read, the rest; then end.
        Waiting for sixteen wakes this thread once per batch, not per file (each wake takes the GIL); a
        run killed meanwhile fetches at most fifteen small files again."""
        try:
            while True:
                with self._batch:
                    while self._reading and len(self.landed) < md5_native.LANES:
                        self._batch.wait()
                    if not self.landed:
                        return
                    batch = [self.landed.popleft() for _ in range(min(len(self.landed), md5_native.LANES))]
                digest.hash_whole_files([(j.digest, j.fd, j.obj.size) for j in batch
                                         if j.digest is not None and j.fd is not None])
                with self.ex.journal.together():
                    for job in batch:
                        self.ex.range_landed(job, 0, job.obj.size)
        except BaseException as e:
            self.ex.fail(e)

    def _end_files(self) -> None:
        """The reads are over: what landed is published, then both threads end."""
        with self._cond:
            self._reading = False
            self._cond.notify_all()
            self._batch.notify_all()
        for t in self._files:
            t.join()
