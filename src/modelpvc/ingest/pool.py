"""The import's workers: each holds one part-sized buffer and takes the next part in file order.

Memory is ``workers x part size`` whatever the model size. Parts are handed out in order, so a worker
waiting for its turn to hash waits only on parts other workers already hold: the wait is bounded and
cannot deadlock. A file whose bytes do not match what the origin published fails alone (its upload is
aborted) and the others go on; any other error stops the run and leaves pending uploads to resume.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from modelpvc.core.errors import IntegrityError, Interrupted, TransientError
from modelpvc.core.events import Event, ProgressSink
from modelpvc.core.provenance import FileProvenance
from modelpvc.core.retry import call_with_retries
from modelpvc.core.settings import ImportSettings, S3Settings
from modelpvc.ingest.plan import Op
from modelpvc.ingest.upload import Abandoned, Checksums, FileUpload
from modelpvc.store.bucket.s3_write import S3Writer
from modelpvc.store.origins.origin import Origin

log = logging.getLogger(__name__)


@dataclass
class PoolStats:
    bytes_read: int = 0
    bytes_sent: int = 0
    bytes_kept: int = 0  # parts of resumed uploads not sent again
    files_done: int = 0
    retries: int = 0
    seconds_reading: float = 0.0
    seconds_sending: float = 0.0
    failures: list[tuple[str, BaseException]] = field(default_factory=list)


class UploadPool:
    def __init__(self, ops: list[Op], origin: Origin, writer: S3Writer, settings: ImportSettings, s3: S3Settings,
                 checksums: Checksums, sink: ProgressSink, stop: threading.Event) -> None:
        self.s3 = s3
        self.sink = sink
        self.stop = stop
        self.stats = PoolStats()
        self.uploads = [FileUpload(op, settings.part_size, writer, origin, checksums, self._retry) for op in ops]
        self.queue: deque[tuple[FileUpload, int, int, int]] = deque(
            (u, n, s, e) for u in self.uploads for n, s, e in u.ranges)
        self.buffer = max((u.part for u in self.uploads), default=0)
        per_part = max(1, self.buffer)
        self.workers = max(1, min(settings.workers, settings.memory // per_part, len(self.queue) or 1))
        self.lock = threading.Lock()
        self.cancel = threading.Event()
        self.fatal: BaseException | None = None
        self.results: dict[str, FileProvenance] = {}
        self._finishing: set[str] = set()
        self._started: set[str] = set()
        self._running = 0
        self._finished = threading.Event()

    # -- retries ---------------------------------------------------------------------------------
    def _retry(self, fn: Callable[[], object], what: str) -> object:
        def on_retry(attempt: int, e: TransientError) -> None:
            with self.lock:
                self.stats.retries += 1
            self.sink.emit(Event("retry", {"path": what, "attempt": attempt, "error": str(e)}))

        s = self.s3
        return call_with_retries(fn, attempts=s.max_attempts, base=s.backoff_base, cap=s.backoff_cap,
                                 on_retry=on_retry, sleep=self._sleep)

    def _sleep(self, seconds: float) -> None:
        if self.cancel.wait(seconds):
            raise Abandoned()

    # -- work ------------------------------------------------------------------------------------
    def _next(self) -> tuple[FileUpload, int, int, int] | None:
        with self.lock:
            while self.queue and not self.cancel.is_set():
                item = self.queue.popleft()
                if item[0].failed is None:
                    if item[0].op.key not in self._started:
                        self._started.add(item[0].op.key)
                        self.sink.emit(Event("file_start", {"path": item[0].f.rel, "size": item[0].f.size}))
                    return item
            return None

    def _worker(self) -> None:
        buf = memoryview(bytearray(self.buffer)) if self.buffer else memoryview(bytearray(1))
        try:
            while (item := self._next()) is not None:
                u, number, start, end = item
                try:
                    self._one(u, number, start, buf[: end - start])
                except Abandoned:
                    continue
                except IntegrityError as e:
                    u.fail(e)
                    with self.lock:
                        self.stats.failures.append((u.f.rel, e))
                    self.sink.emit(Event("warning", {"path": u.f.rel, "message": str(e)}))
                except BaseException as e:
                    u.fail(e)
                    with self.lock:
                        if self.fatal is None:
                            self.fatal = e
                    self.cancel.set()
        finally:
            with self.lock:
                self._running -= 1
                if self._running == 0:
                    self._finished.set()

    def _one(self, u: FileUpload, number: int, start: int, view: memoryview) -> None:
        t0 = time.monotonic()
        u.read(start, view)
        t1 = time.monotonic()
        if u.single:
            sent = u.put_single(view)
            self._count(len(view), sent, 0, t1 - t0, time.monotonic() - t1)
            self._done(u)
            return
        u.hash_in_turn(number, view)
        if self.cancel.is_set():
            raise Abandoned()
        sent = u.send_part(number, view)
        self._count(len(view), sent, len(view) - sent, t1 - t0, time.monotonic() - t1)
        if u.complete_parts:
            with self.lock:
                if u.op.key in self._finishing:
                    return
                self._finishing.add(u.op.key)
            u.result = u.finish_multipart()
            self._done(u)

    def _count(self, read: int, sent: int, kept: int, reading: float, sending: float) -> None:
        with self.lock:
            self.stats.bytes_read += read
            self.stats.bytes_sent += sent
            self.stats.bytes_kept += kept
            self.stats.seconds_reading += reading
            self.stats.seconds_sending += sending

    def _done(self, u: FileUpload) -> None:
        assert u.result is not None
        with self.lock:
            self.results[u.f.rel] = u.result
            self.stats.files_done += 1
        verified = "sha256" if u.f.published.sha256 else ("git-oid" if u.f.published.git_oid else "computed")
        self.sink.emit(Event("file_done", {"path": u.f.rel, "size": u.f.size, "verified": verified,
                                           "sha256": u.result.sha256}))

    def bytes_done(self) -> int:
        with self.lock:
            return self.stats.bytes_read

    def run(self, tick: Callable[[int], None]) -> None:
        if not self.queue:
            return
        self._running = self.workers
        threads = [threading.Thread(target=self._worker, daemon=True, name=f"upload-{i}")
                   for i in range(self.workers)]
        for t in threads:
            t.start()
        if hasattr(self.stop, "polled"):
            self.stop.polled = True  # signals set the flag; this loop stops cleanly
        while not self._finished.wait(0.1):
            if self.stop.is_set():
                self.cancel.set()
                self._finished.wait(2.0)
                raise Interrupted(int(getattr(self.stop, "signum", 15)))
            tick(self.bytes_done())
        tick(self.bytes_done())
        if self.stop.is_set() and self.fatal is None:
            raise Interrupted(int(getattr(self.stop, "signum", 15)))
        if self.fatal is not None:
            raise self.fatal
