"""Parts of multipart ETags being hashed, across every file being fetched: sixteen parts advance in one pass.

The multi-buffer MD5 (core.md5_native) costs one pass per sixteen lanes, however many are filled, and each
lane runs at 1/16 of the pass, so parts are pooled across files rather than per file (a file of eight
parts would waste half of every pass). A part is hashed in pieces, each as soon as it is on the file and
fifteen other parts have one too: the lane's state is kept between pieces (the kernel resumes from it),
and the last piece pads. Through the page cache, a file cuts its parts into ranges fetched row by row
(``ranges.interleave``), so all its parts grow together and pieces are there for the lanes all along.

Why pieces, and why their pages are then given back (``direct_io.release_pages``): these bytes go through
the page cache to be read back, and a page the cache takes fresh can cost ten times the copy into it (on a
VM whose balloon reports free pages to the host, every first touch of a reported page faults in the
host; decisions §19). Whole parts had to wait, sixteen at a time, 1 GiB of fresh pages; pieces hashed and
released as they land keep a few hundred MiB, and the cache reuses them.

Where the file is written around the page cache (store.direct_io), each part is fetched by one GET and
streamed: every piece is received into a buffer the pool lends (``lend``: the worker's write-behind ring
asks it first), kept there (``keep``) and hashed in place in its pass, while the ring's thread writes it
direct; the buffer is free again once both are done. That spares the copy into the page cache, the read
back and the pages given back, and the GETs of a part cut in rows (MinIO spent 0.5 CPU-s more serving 2 GB
in 4 MiB ranges than in 32 MiB ones, the client 0.35: decisions §19). A pass takes one piece of each part,
so a worker streaming one part may keep only ``HELD`` pieces not hashed yet: ``lend`` waits for the pass
(or for a free buffer), and the buffers go to the parts a pass needs. When every borrower that could bring
a piece is waiting, the parts that have one are hashed in a pass not full (the last parts of a run, or
fewer workers than lanes).

The pool's own threads hash: a batch as soon as sixteen parts have a piece, or, when a file is being
finished, its parts' rest with whatever else waits by the time a thread is free (files of one model tend
to end together, and their tails then share one pass). The threads that land bytes (the rings' writers)
never hash, nor wait for a hash: a file's last range hands its finishing to ``settle_then``; a worker
waits only in ``lend``, for a pass over its own part. A writer thread that hashed, or
waited, held back its worker's next writes for the whole pass (decisions §19).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from modelpvc.core import md5_native
from modelpvc.store.volume import direct_io
from modelpvc.transfer import ranges

log = logging.getLogger(__name__)

# One batch under way while the next fills; at the end of a copy, the last files' parts on both cores.
# Side by side on the MinIO MD5 dataset (2 GB, 7 rounds): one thread 1.12 s, two 1.08 (decisions §19).
THREADS = 2
# A lane's share of one pass: the size of a buffer the pool lends, and the ranges a pooled part is fetched in
# through the page cache. 4 MiB keeps enough of them under the run's 200 MB (decisions §19).
PIECE = 4 * 1024 * 1024
_BLOCK = 64  # MD5's block: a piece that does not end the part ends on one
# The page cache drops a large folio only whole: a piece's pages are released from the start of the folio
# the piece before ended in (hashed now too), so no folio straddling two pieces stays behind.
_FOLIO = 2 * 1024 * 1024
# Buffers lent to receive pieces into (``lend``), each until its piece is written and hashed: a full pass of
# sixteen and the pieces received while it runs. Allocated as used (at most 128 MiB), then reused.
LOANS = 32
# Pieces a borrower may keep not hashed yet before ``lend`` waits: the one a pass takes and the next one.
HELD = 2


class PartOwner(Protocol):
    def hashed(self, start: int, end: int, value: bytes | OSError, read_back: int) -> None:
        """A part's MD5 (or why it could not be computed), and how many of its bytes were read back."""


@dataclass(eq=False)
class _Part:
    owner: PartOwner
    fd: int
    start: int
    end: int
    hashed: int  # the state covers [start, hashed)
    state: bytes | None = None
    landed: list[tuple[int, int]] = field(default_factory=list)  # on the file, through the page cache
    held: dict[int, tuple[int, memoryview]] = field(default_factory=dict)  # kept: start -> (end, its buffer)
    busy: bool = False  # in a batch under way
    read_back: int = 0  # bytes hashed from the file

    def reach(self) -> int:
        """Where the bytes this part can be hashed from next (on the file, or kept) stop."""
        at = self.hashed
        while True:
            on_file = ranges.contiguous_end(self.landed, at)
            nxt = self.held[on_file][0] if on_file in self.held else on_file
            if nxt == at:
                return at
            at = nxt

    def piece(self) -> tuple[int | memoryview, int, bool] | None:
        """The next piece: where its bytes are (the fd, or the buffer that holds them from ``hashed`` on),
        where it ends and whether it is the last; None if nothing new can be hashed."""
        if self.hashed in self.held:
            end, buf = self.held[self.hashed]
            return buf, end, end == self.end
        # Kept bytes were written around the page cache: the file is read only up to them.
        ready = min(ranges.contiguous_end(self.landed, self.hashed),
                    min((s for s in self.held if s > self.hashed), default=self.end))
        if ready == self.end:
            return self.fd, self.end, True
        upto = self.hashed + (ready - self.hashed) // _BLOCK * _BLOCK
        return (self.fd, upto, False) if upto > self.hashed else None


class Md5Pool:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)  # the hashing threads, and files waiting for their parts
        self.parts: dict[PartOwner, dict[int, _Part]] = {}  # owner -> part start -> part not hashed yet
        self.urgent: list[PartOwner] = []  # owners being finished, first asked first: no waiting for sixteen
        self.then: dict[PartOwner, Callable[[], None]] = {}  # owner -> what to run once its parts are hashed
        self.finished: dict[PartOwner, set[int]] = {}  # owner -> parts hashed: later landings are not news
        self._buffers: dict[int, memoryview] = {}  # every buffer of ours, by its mapping's id
        self.free: list[memoryview] = []
        self.out: set[int] = set()  # buffers lent and not given back
        self.kept: set[int] = set()  # buffers holding a piece not hashed yet
        self.lent_to: dict[int, int] = {}  # buffer -> the thread it was lent to, until it is free
        self.holding: dict[int, int] = {}  # borrowing thread -> its pieces kept and not hashed yet
        self.waiting: dict[int, threading.Condition] = {}  # borrowing threads waiting in ``lend``
        self._threads: list[threading.Thread] = []

    def lend(self) -> memoryview:
        """A buffer to receive a piece into (store.direct_io.Lender). The borrower is the calling thread; it
        waits while it keeps ``HELD`` pieces not hashed yet, or while every buffer is in use."""
        me = threading.get_ident()
        with self.lock:
            while not self._may_lend(me):
                wake = self.waiting[me] = threading.Condition(self.lock)
                self.cond.notify_all()  # the hashing threads: a pass not full may now be due
                try:
                    wake.wait()  # ``_wake`` takes it out of ``waiting`` first
                finally:
                    self.waiting.pop(me, None)
            if self.free:
                buf = self.free.pop()
            else:
                buf = direct_io.aligned_buffer(PIECE)
                self._buffers[id(buf.obj)] = buf
            self.out.add(id(buf.obj))
            self.lent_to[id(buf.obj)] = me
            return buf

    def _may_lend(self, borrower: int) -> bool:
        return (bool(self.free) or len(self._buffers) < LOANS) and self.holding.get(borrower, 0) < HELD

    def _stalled(self) -> bool:
        """Borrowers wait and no piece is on its way: nothing more comes until a pass is run (the caller
        holds the lock). A buffer lent and not kept is being received into, or written from once hashed."""
        return bool(self.waiting) and all(k in self.kept for k in self.out)

    def given_back(self, buf: memoryview) -> None:
        """The borrower is done with ``buf`` (its bytes are written): free unless a piece in it waits to be
        hashed."""
        with self.lock:
            self.out.discard(id(buf.obj))
            self._free_if_idle(buf)
            if self.waiting:
                self.cond.notify_all()  # one piece fewer on its way: a pass not full may be due

    def keep(self, owner: PartOwner, fd: int, part: tuple[int, int], offset: int, data: memoryview) -> bool:
        """Keep ``data``, bytes at ``offset`` of the part ``part`` of ``fd`` received into a buffer this pool
        lent (from its first byte), to hash it there: True, and the borrower must not write into the buffer
        again. False (nothing kept) if it is not in one, would split a 64-byte block, or does not follow what
        the part can be hashed from (a piece that could not be hashed before its range ends would hold the
        buffer while its borrower waits in ``lend``): the caller then writes it through the page cache."""
        end = offset + len(data)
        if not data or (offset - part[0]) % _BLOCK or (end != part[1] and end % _BLOCK):
            return False
        key = id(data.obj)
        with self.lock:
            if key not in self.out or key in self.kept:
                return False
            p = self._part(owner, fd, part)
            if p is None or offset != p.reach():
                return False
            p.held[offset] = (end, self._buffers[key])
            self.kept.add(key)
            borrower = self.lent_to[key]
            self.holding[borrower] = self.holding.get(borrower, 0) + 1
            self._serve()
        return True

    def _unkeep(self, buf: memoryview) -> None:
        """``buf``'s piece is hashed or forgotten: free once its borrower gave it back (the caller holds the
        lock)."""
        key = id(buf.obj)
        self.kept.discard(key)
        borrower = self.lent_to[key]
        self.holding[borrower] -= 1
        if not self.holding[borrower]:
            del self.holding[borrower]
        self._free_if_idle(buf)
        self._wake(borrower)

    def _free_if_idle(self, buf: memoryview) -> None:
        """A buffer neither lent out nor holding a piece is free (the caller holds the lock)."""
        key = id(buf.obj)
        if key not in self.out and key not in self.kept:
            self.free.append(buf)
            del self.lent_to[key]
            self._wake(next((b for b in self.waiting if self._may_lend(b)), None))

    def _wake(self, borrower: int | None) -> None:
        """Wake ``borrower`` if it waits in ``lend`` and may now borrow: one thread, not all of them. It
        leaves ``waiting`` at once, so the next buffer freed before it runs wakes another."""
        if borrower is not None and borrower in self.waiting and self._may_lend(borrower):
            self.waiting.pop(borrower).notify()

    def _part(self, owner: PartOwner, fd: int, part: tuple[int, int]) -> _Part | None:
        """The part being hashed, added if new; None if it is hashed already (the caller holds the lock)."""
        if part[0] in self.finished.get(owner, ()):
            return None
        mine = self.parts.setdefault(owner, {})
        p = mine.get(part[0])
        if p is None:
            p = mine[part[0]] = _Part(owner, fd, part[0], part[1], part[0])
        return p

    def _let_go(self, parts: Iterable[_Part]) -> None:
        """The buffers these parts still keep are free again (the caller holds the lock; none of
        them is in a batch)."""
        for p in parts:
            for _end, buf in p.held.values():
                self._unkeep(buf)
            p.held.clear()

    def landed(self, owner: PartOwner, fd: int, part: tuple[int, int], start: int, end: int) -> None:
        """Bytes [start, end) of the part ``part`` (its [start, end)) of ``fd`` are on the file."""
        with self.cond:
            p = self._part(owner, fd, part)
            if p is not None:
                p.landed = ranges.merge([*p.landed, (start, end)])
                self._serve()

    def settle(self, owner: PartOwner) -> None:
        """Hash the rest of every part of ``owner``; return once none of its parts is in the pool."""
        with self.cond:
            self.finished.pop(owner, None)  # every range has landed: nothing more comes
            self._hurry(owner)
            while owner in self.parts:
                self.cond.wait()

    def settle_then(self, owner: PartOwner, then: Callable[[], None]) -> bool:
        """Hash the rest of every part of ``owner`` and return at once: True, and the pool's thread calls
        ``then`` once they are hashed; False (``then`` is not called) if none of them is in the pool."""
        with self.cond:
            self.finished.pop(owner, None)  # every range has landed: nothing more comes
            if owner not in self.parts:
                return False
            self.then[owner] = then
            self._hurry(owner)
            return True

    def drop(self, owner: PartOwner) -> None:
        """Forget ``owner``'s parts and wait out any of them being hashed: its file may be closed (and its
        descriptor's number reused) once this returns."""
        with self.cond:
            if owner in self.urgent:
                self.urgent.remove(owner)
            self.then.pop(owner, None)
            self.finished.pop(owner, None)
            while any(p.busy for p in self.parts.get(owner, {}).values()):
                self.cond.wait()
            self._let_go(self.parts.pop(owner, {}).values())

    def _hurry(self, owner: PartOwner) -> None:
        """``owner``'s parts go in the next batch, full or not (the caller holds the lock)."""
        if owner not in self.urgent:
            self.urgent.append(owner)
            self._serve()

    def _serve(self) -> None:
        """Wake the hashing threads, started on first use (the caller holds the lock)."""
        if len(self._threads) < THREADS:
            t = threading.Thread(target=self._hash_batches, name="md5-lanes", daemon=True)
            self._threads.append(t)
            t.start()
        self.cond.notify_all()

    def _hash_batches(self) -> None:
        while True:
            with self.cond:
                while not (batch := self._take()) and not (stuck := self._forget_stuck()):
                    self.cond.wait()
            if batch:
                self._run(batch)
            else:
                for then in stuck:
                    _call(then)

    def _take(self) -> list[tuple[_Part, int | memoryview, int, bool]]:
        """The next batch (part, piece end, last), its parts marked busy; empty if none is due: fewer than
        sixteen parts have a piece and no file being finished has one (the caller holds the lock)."""
        urgent: list[tuple[_Part, int | memoryview, int, bool]] = []
        for owner in self.urgent:
            for p in self.parts.get(owner, {}).values():
                if not p.busy and (piece := p.piece()) is not None:
                    urgent.append((p, *piece))
        others: list[tuple[_Part, int | memoryview, int, bool]] = []
        rank = set(self.urgent)
        for owner, mine in self.parts.items():
            if owner not in rank:
                others += [(p, *piece) for p in mine.values() if not p.busy and (piece := p.piece()) is not None]
        if not urgent and len(others) < md5_native.LANES and not (others and self._stalled()):
            return []
        batch = (urgent + others)[:md5_native.LANES]
        for p, *_piece in batch:
            p.busy = True
        return batch

    def _forget_stuck(self) -> list[Callable[[], None]]:
        """Files being finished whose parts can go no further (none of them has a piece or is being hashed:
        a gap no range of this run fills): those parts leave the pool unhashed, and each file hashes them
        from disk. Returns the follow-ups to run (the caller holds the lock, called when no batch is
        due, so an urgent owner here has nothing left the pool could hash)."""
        stuck = [o for o in self.urgent if not any(p.busy for p in self.parts.get(o, {}).values())]
        for owner in stuck:
            self.urgent.remove(owner)
            self._let_go(self.parts.pop(owner, {}).values())
        if stuck:
            self.cond.notify_all()
        return [then for o in stuck if (then := self.then.pop(o, None)) is not None]

    def _run(self, batch: list[tuple[_Part, int | memoryview, int, bool]]) -> None:
        try:
            values = _hash(batch)
        except Exception as e:  # never leave a file waiting on a thread that died
            log.debug("md5 lanes failed", exc_info=True)
            values = [OSError(f"MD5 of a part failed: {e}") for _ in batch]
        done: list[tuple[_Part, bytes | OSError]] = []
        kept: list[tuple[_Part, int]] = []  # pieces hashed from the pool's buffers: (part, their start)
        for (p, where, end, last), value in zip(batch, values, strict=True):
            if isinstance(value, bytes):
                if isinstance(where, memoryview):
                    kept.append((p, p.hashed))
                else:  # read back: the cache may reuse their pages
                    p.read_back += end - p.hashed
                    since = max(p.start, p.hashed // _FOLIO * _FOLIO)  # with the folio the last piece ended in
                    direct_io.release_pages(p.fd, since, end - since)
            if isinstance(value, OSError) or last:
                done.append((p, value))
            else:
                p.state, p.hashed = value, end
        try:
            for p, value in done:
                p.owner.hashed(p.start, p.end, value, p.read_back)
        finally:
            with self.cond:
                for p, *_piece in batch:
                    p.busy = False
                for p, at in kept:
                    self._unkeep(p.held.pop(at)[1])
                for p, _value in done:
                    self._let_go([p])
                    mine = self.parts.get(p.owner)
                    if mine is not None and mine.get(p.start) is p:
                        del mine[p.start]
                        self.finished.setdefault(p.owner, set()).add(p.start)
                        if not mine:
                            del self.parts[p.owner]
                self.urgent = [o for o in self.urgent if o in self.parts]
                follow = [self.then.pop(o) for o in {p.owner: None for p, *_piece in batch}
                          if o in self.then and o not in self.parts]
                self.cond.notify_all()
            for then in follow:
                _call(then)


def _call(then: Callable[[], None]) -> None:
    try:
        then()
    except Exception:  # the thread goes on: other files wait on it
        log.exception("a file's follow-up after its MD5s failed")


def _hash(batch: list[tuple[_Part, int | memoryview, int, bool]]) -> list[bytes | OSError]:
    lanes = md5_native.lanes()
    assert lanes is not None  # the pool exists only where they work (shared)
    pieces: list[md5_native.Piece] = [
        (where, *((0, end - p.hashed) if isinstance(where, memoryview) else (p.hashed, end)), p.state,
         p.hashed - p.start, last)
        for p, where, end, last in batch]
    try:
        return list(lanes.md5(pieces))
    except OSError:
        pass
    # One part's file failed to read: hash each alone, so the error reaches its own file only.
    out: list[bytes | OSError] = []
    for piece in pieces:
        try:
            out += lanes.md5([piece])
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
