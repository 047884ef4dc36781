"""The small files' lane: whole objects read several at a time by one thread (``ObjectSource.read_many``).

Fresh files of one range up to ``LANE_MAX`` go here; the ranged workers take the rest of the plan. A
lane file is the same ``FileJob`` the workers would have fetched (opened, digested, checked and published
by the executor's own steps); only its bytes come another way. One the lane could not read goes to the
workers from its start, as does every file when the source reads one object at a time only.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import TYPE_CHECKING

from modelpvc.core.events import Event
from modelpvc.core.models import ObjectInfo
from modelpvc.core.settings import MiB
from modelpvc.transfer.filejob import FileJob

if TYPE_CHECKING:
    from modelpvc.transfer.executor import Executor

log = logging.getLogger(__name__)

# Up to here a file's time is its request's round trip and its per-file work, not its bytes; 2,000 files of
# 64 KiB took a third less client CPU over one thread's connections than over a worker each (decisions §19).
LANE_MAX = 1 * MiB


def for_lane(job: FileJob) -> bool:
    return 0 < job.obj.size <= LANE_MAX and len(job.all_ranges) == 1 and not job.resumed and job.adopt is None


class Lane:
    """``store.sources.base.WholeReads`` over the executor's files; ``run`` is the lane's thread."""

    def __init__(self, ex: Executor, jobs: list[FileJob], counter: int) -> None:
        self.ex = ex
        self.queue = deque(jobs)
        self.fetching: dict[ObjectInfo, FileJob] = {}
        self.counter = counter  # its slot in the executor's byte counters

    def run(self) -> None:
        ex = self.ex
        try:
            # As many connections as workers: 4, 8 and 16 read 2,000 small objects from MinIO equally fast.
            ex.source.read_many(self, max(1, ex.settings.workers), ex.cancel.is_set)
        except BaseException as e:
            ex.fail(e)
        finally:
            # Not started (stopped, or the source reads one by one): the workers fetch them.
            ex.sched.add_files(list(self.queue))
            self.queue.clear()
            ex.sched.task_done()
            ex.thread_ended()

    def next(self) -> tuple[ObjectInfo, bool] | None:
        if not self.queue or self.ex.cancel.is_set():
            return None
        job = self.queue.popleft()
        self.ex.open_file(job)
        job.begin_range(0, job.obj.size)
        self.ex.writing(job)
        self.fetching[job.obj] = job
        return job.obj, job.exp.from_answer

    def started(self, obj: ObjectInfo, checksum: tuple[str, str] | None) -> None:
        job = self.fetching[obj]
        if job.exp.from_answer:
            job.answered(checksum)

    def data(self, obj: ObjectInfo, offset: int, view: memoryview) -> None:
        self.fetching[obj].write(0, offset, view)
        self.ex.counted(self.counter, len(view))

    def done(self, obj: ObjectInfo) -> None:
        job = self.fetching.pop(obj)
        self.ex.range_landed(job, 0, obj.size)

    def failed(self, obj: ObjectInfo, error: Exception) -> None:
        job = self.fetching.pop(obj)
        log.debug("%s: not read in the lane (%s); a worker fetches it", obj.rel, error)
        self.ex.sink.emit(Event("retry", {"path": obj.rel, "attempt": 1, "error": str(error)}))
        rngs = job.restart(counted=False)
        self.ex.refetch(job, rngs, retried=True)
