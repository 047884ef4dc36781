"""Parts of multipart ETags waiting for their MD5, across every file being fetched: hashed sixteen at a time.

The multi-buffer MD5 (core.md5_native) costs one pass per sixteen parts, however many lanes are filled,
and each lane runs at 1/16 of the pass, so parts are pooled across files rather than per file (a file of
eight parts would waste half of every pass, and every file would hash all of its parts at its end). A
part joins the pool once its bytes are on the file and is read back from the page cache. Whoever adds the
sixteenth waiting part hashes the batch; a file being finished hashes its own waiting parts at once, with
other files' parts in the lanes it leaves free, then waits for any of its parts another thread is hashing.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Protocol

from modelpvc.core import md5_native
from modelpvc.store.volume.hashing import md5_of_spans, range_digest


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

    def add(self, owner: PartOwner, fd: int, start: int, end: int) -> None:
        """Part [start, end) of ``fd`` is on the file; hash it with fifteen others when they are there."""
        with self.cond:
            self.waiting.append(_Part(owner, fd, start, end))
            batch = self._take(self.waiting[:md5_native.LANES]) if len(self.waiting) >= md5_native.LANES else []
        self._run(batch)

    def settle(self, owner: PartOwner) -> None:
        """Hash every part of ``owner`` still waiting; return once none of its parts is being hashed."""
        with self.cond:
            mine = [p for p in self.waiting if p.owner is owner]
            free = -len(mine) % md5_native.LANES  # lanes of the last pass the file leaves empty
            batch = self._take(mine + [p for p in self.waiting if p.owner is not owner][:free]) if mine else []
        self._run(batch)
        with self.cond:
            self._wait_out(owner)

    def drop(self, owner: PartOwner) -> None:
        """Forget ``owner``'s waiting parts and wait out any of its parts being hashed: its file may be
        closed (and its descriptor's number reused) once this returns."""
        with self.cond:
            self.waiting = [p for p in self.waiting if p.owner is not owner]
            self._wait_out(owner)

    def _wait_out(self, owner: PartOwner) -> None:
        """Until no part of ``owner`` is in a batch under way (the caller holds the condition)."""
        while self.hashing.get(owner):
            self.cond.wait()

    def _take(self, batch: list[_Part]) -> list[_Part]:
        """Move ``batch`` from waiting to being hashed (the caller holds the condition)."""
        taken = set(map(id, batch))
        self.waiting = [p for p in self.waiting if id(p) not in taken]
        for p in batch:
            self.hashing[p.owner] = self.hashing.get(p.owner, 0) + 1
        return batch

    def _run(self, batch: list[_Part]) -> None:
        if not batch:
            return
        try:
            for p, value in zip(batch, _hash(batch), strict=True):
                p.owner.hashed(p.start, p.end, value)
        finally:
            with self.cond:
                for p in batch:
                    left = self.hashing[p.owner] - 1
                    if left:
                        self.hashing[p.owner] = left
                    else:
                        del self.hashing[p.owner]
                self.cond.notify_all()


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
