"""Parts of multipart ETags waiting for their MD5, across every file being fetched: hashed sixteen at a time.

The multi-buffer MD5 (core.md5_native) costs one pass per sixteen parts, however many lanes are filled,
and each lane runs at 1/16 of the pass, so parts are pooled across files rather than per file (a file of
eight parts would waste half of every pass, and every file would hash all of its parts at its end). A
part joins the pool once its bytes are on the file and is read back from the page cache.

The pool's own threads hash: a batch as soon as sixteen parts wait, or, when a file is being finished,
its waiting parts with whatever else waits by the time a thread is free (files of one model tend to end
together, and their tails then share one pass). The threads that land bytes never hash, nor wait for a
hash: a file's last range hands its finishing to ``settle_then``. A writer thread that hashed, or waited,
held back its worker's next writes for the whole pass (0.38 s of a 1.1 s copy, decisions §19).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from modelpvc.core import md5_native
from modelpvc.store.volume.hashing import md5_of_spans, range_digest

log = logging.getLogger(__name__)

# One batch under way while the next fills; at the end of a copy, the last files' parts on both cores.
# Side by side on the MinIO MD5 dataset (2 GB, 7 rounds): one thread 1.12 s, two 1.08 (decisions §19).
THREADS = 2


class PartOwner(Protocol):
    def hashed(self, start: int, end: int, value: bytes | OSError) -> None: ...


@dataclass(eq=False)
class _Part:
    owner: PartOwner
    fd: int
    start: int
    end: int


class Md5Pool:
    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.waiting: list[_Part] = []
        self.hashing: dict[PartOwner, int] = {}  # owner -> its parts in a batch under way
        self.urgent: list[PartOwner] = []  # owners being finished, first asked first: no waiting for sixteen
        self.then: dict[PartOwner, Callable[[], None]] = {}  # owner -> what to run once its parts are hashed
        self._threads: list[threading.Thread] = []

    def add(self, owner: PartOwner, fd: int, start: int, end: int) -> None:
        """Part [start, end) of ``fd`` is on the file; hash it with fifteen others when they are there."""
        with self.cond:
            self.waiting.append(_Part(owner, fd, start, end))
            self._serve()

    def settle(self, owner: PartOwner) -> None:
        """Hash every part of ``owner`` still waiting; return once none of its parts is being hashed."""
        with self.cond:
            self._hurry(owner)
            while self._busy(owner):
                self.cond.wait()

    def settle_then(self, owner: PartOwner, then: Callable[[], None]) -> bool:
        """Hash every part of ``owner`` still waiting and return at once: True, and the pool's thread calls
        ``then`` once they are hashed; False (``then`` is not called) if none of them is waiting or hashing."""
        with self.cond:
            if not self._busy(owner):
                return False
            self.then[owner] = then
            self._hurry(owner)
            return True

    def drop(self, owner: PartOwner) -> None:
        """Forget ``owner``'s waiting parts and wait out any of its parts being hashed: its file may be
        closed (and its descriptor's number reused) once this returns."""
        with self.cond:
            self.waiting = [p for p in self.waiting if p.owner is not owner]
            if owner in self.urgent:
                self.urgent.remove(owner)
            self.then.pop(owner, None)
            while self.hashing.get(owner):
                self.cond.wait()

    def _waits(self, owner: PartOwner) -> bool:
        return any(p.owner is owner for p in self.waiting)

    def _busy(self, owner: PartOwner) -> bool:
        return self._waits(owner) or bool(self.hashing.get(owner))

    def _hurry(self, owner: PartOwner) -> None:
        """``owner``'s waiting parts go in the next batch, full or not (the caller holds the condition)."""
        if owner not in self.urgent and self._waits(owner):
            self.urgent.append(owner)
            self._serve()

    def _serve(self) -> None:
        """Wake the hashing threads, started on first use (the caller holds the condition)."""
        if len(self._threads) < THREADS:
            t = threading.Thread(target=self._hash_batches, name="md5-lanes", daemon=True)
            self._threads.append(t)
            t.start()
        self.cond.notify_all()

    def _hash_batches(self) -> None:
        while True:
            with self.cond:
                while len(self.waiting) < md5_native.LANES and not self.urgent:
                    self.cond.wait()
                batch = self._take()
            self._run(batch)

    def _take(self) -> list[_Part]:
        """The next batch, moved from waiting to being hashed: urgent owners' parts first, then the oldest
        others in the lanes they leave (the caller holds the condition)."""
        rank = {owner: i for i, owner in enumerate(self.urgent)}
        order = sorted(self.waiting, key=lambda p: rank.get(p.owner, len(rank)))  # stable: oldest first
        batch = order[:md5_native.LANES]
        self.waiting = order[md5_native.LANES:]
        self.urgent = [o for o in self.urgent if self._waits(o)]
        for p in batch:
            self.hashing[p.owner] = self.hashing.get(p.owner, 0) + 1
        return batch

    def _run(self, batch: list[_Part]) -> None:
        try:
            values = _hash(batch)
        except Exception as e:  # never leave a file waiting on a thread that died
            log.debug("md5 lanes failed", exc_info=True)
            values = [OSError(f"MD5 of a part failed: {e}") for _ in batch]
        try:
            for p, value in zip(batch, values, strict=True):
                p.owner.hashed(p.start, p.end, value)
        finally:
            with self.cond:
                for p in batch:
                    left = self.hashing[p.owner] - 1
                    if left:
                        self.hashing[p.owner] = left
                    else:
                        del self.hashing[p.owner]
                done = [self.then.pop(o) for o in {p.owner: None for p in batch}
                        if o in self.then and not self._busy(o)]
                self.cond.notify_all()
            for then in done:
                try:
                    then()
                except Exception:  # the thread goes on: other files wait on it
                    log.exception("a file's follow-up after its MD5s failed")


def _hash(batch: list[_Part]) -> list[bytes | OSError]:
    try:
        return list(md5_of_spans([(p.fd, p.start, p.end) for p in batch]))
    except OSError:
        pass
    # One part's file failed to read: hash each alone, so the error reaches its own file only.
    out: list[bytes | OSError] = []
    for p in batch:
        try:
            out.append(range_digest(p.fd, "md5", p.start, p.end))
        except OSError as e:
            out.append(e)
    return out


_lock = threading.Lock()
_shared: list[Md5Pool | None] = []


def shared() -> Md5Pool | None:
    """The process's pool, where the multi-buffer MD5 works here; None: hash each part with hashlib."""
    if not _shared:
        with _lock:
            if not _shared:
                _shared.append(Md5Pool() if md5_native.lanes() is not None else None)
    return _shared[0]
