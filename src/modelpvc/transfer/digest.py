"""Digests computed while ranges arrive, in whichever order and thread they arrive.

* ``PieceDigest`` (full-object CRCs, multipart ETags, composite checksums): each range is hashed by the
  thread that received it, straight from its buffer; pieces combine at the end (core.digests). Pieces a
  previous run wrote, or a retry left half-hashed, are hashed from disk. A multipart ETag's part MD5s,
  where the multi-buffer module works (core.md5_native), are all hashed from the page cache instead,
  sixteen parts at a time across files, in pieces as they land (transfer.md5_pool): a second read of
  the bytes costs far less than MD5 one part at a time. Written around the page cache, a range is instead
  received into a buffer the pool lends (``lender``), and hashed there (``keep``), while it has one free.
* ``SequentialDigest`` (MD5 of a single-part ETag, SHA-1/SHA-256): bytes must be hashed in offset order.
  The range that starts at the hash cursor is hashed as it streams; bytes written ahead of the cursor
  are hashed from the page cache once the cursor reaches them. The scheduler gives each file one worker
  when it can, so the cursor's range is nearly always the one streaming. A busy hasher lock means "skip,
  catch up later": hashing never stalls a socket.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol

from modelpvc.core import digests, md5_native
from modelpvc.core.digests import Expectation, Hasher
from modelpvc.store.volume import direct_io
from modelpvc.store.volume.hashing import md5_of_spans, pread_into, range_digest, spans_digests
from modelpvc.transfer import md5_pool, ranges


class FileDigest(Protocol):
    reread: int  # bytes hashed from the file instead of from the receive buffer (each costs a second pass)

    def begin(self, start: int, end: int) -> None: ...
    def streams(self, offset: int) -> bool: ...
    def lender(self) -> direct_io.Lender | None: ...
    def keep(self, fd: int, offset: int, data: memoryview) -> bool: ...
    def fetch_order(self) -> list[tuple[int, int]] | None: ...
    def feed(self, range_start: int, offset: int, data: memoryview, on_file: int) -> None: ...
    def range_restart(self, fd: int, start: int, pos: int) -> None: ...
    def range_done(self, fd: int, start: int, end: int) -> None: ...
    def hashed_later(self, then: Callable[[], None]) -> bool: ...
    def finish(self, fd: int, size: int) -> str: ...
    def resumed(self, done: list[tuple[int, int]]) -> None: ...
    def abandon(self) -> None: ...


def hash_whole_files(files: list[tuple[FileDigest, int, int]]) -> None:
    """Files written whole and not hashed yet (``(digest, fd, size)``, the small files' lane): their MD5s
    together (sixteen in one pass), where the multi-buffer module works (core.md5_native). Files it does
    not take hash themselves when their range is done, as ever; so do all of them if one cannot be read
    here (each then reports its own error)."""
    if md5_native.lanes() is None:
        return
    todo = [(d, fd, size) for d, fd, size in files
            if isinstance(d, SequentialDigest) and d.algorithm == "md5" and d.cursor == 0 and size > 0]
    try:
        raws = md5_of_spans([(fd, 0, size) for _d, fd, size in todo])
    except OSError:
        return
    for (d, _fd, size), raw in zip(todo, raws, strict=True):
        d.take_whole(raw, size)


def for_expectation(exp: Expectation, size: int) -> FileDigest | None:
    if exp.algorithm is None:
        return None
    if exp.combinable:
        return PieceDigest(exp, size)
    return SequentialDigest(exp.algorithm)


class PieceDigest:
    """Per-range values, combined at the end. Ranges of a per-part value are cut on part boundaries."""

    def __init__(self, exp: Expectation, size: int) -> None:
        assert exp.algorithm is not None
        self.exp = exp
        self.size = size
        self.algorithm = exp.algorithm
        self.live: dict[int, tuple[int, Hasher]] = {}  # range start -> (end, hasher); one worker per range
        self.pieces: dict[int, tuple[int, bytes]] = {}  # start -> (end, raw digest)
        self.reread = 0
        # Pooled across files (lanes filled from several), so even a file of two parts gains.
        parts = -(-size // exp.part_size) if exp.form == "parts" and exp.part_size else 0
        self.pool = md5_pool.shared() if exp.algorithm == "md5" and parts > 1 else None
        self.error: OSError | None = None  # a part the pool could not read back
        self.earlier: list[tuple[int, int]] = []  # bytes an earlier run wrote: their parts are hashed from disk
        self.meta = threading.Lock()  # guards ``pieces`` (ranges land in several threads)

    def _useful(self, start: int, end: int) -> bool:
        """A per-part value needs exactly one part per piece; a CRC takes any piece."""
        part = self.exp.part_size
        return self.exp.form != "parts" or (part is not None and start % part == 0 and
                                            end == min(start + part, self.size))

    def streams(self, offset: int) -> bool:
        return self.pool is None  # pooled, a part is kept in memory or read back from the page cache

    def lender(self) -> direct_io.Lender | None:
        """Pooled: the pool, whose buffers this file's ranges may be received into, and hashed in."""
        return self.pool

    def keep(self, fd: int, offset: int, data: memoryview) -> bool:
        """Pooled: whether ``data`` (at ``offset`` of ``fd``, in a buffer the pool lent) is kept there to be
        hashed (the caller writes it around the page cache, from that buffer, and receives into it no more);
        False: it must be written through the page cache."""
        if self.pool is None:
            return False
        part = self._part_of(offset, offset + len(data))
        return part is not None and self.pool.keep(self, fd, part, offset, data)

    def fetch_order(self) -> list[tuple[int, int]] | None:
        """The ranges to fetch the whole object in, if this digest wants its own: pooled and through the page
        cache, every part in pieces, row by row, so that sixteen parts have a piece landed to hash all along
        (transfer.md5_pool)."""
        part = self.exp.part_size
        if self.pool is None or part is None:
            return None
        return ranges.interleave(self.size, part, md5_pool.PIECE)

    def begin(self, start: int, end: int) -> None:
        if self._useful(start, end) and self.pool is None:
            self.live[start] = (end, digests.new_hasher(self.algorithm))

    def feed(self, range_start: int, offset: int, data: memoryview, on_file: int) -> None:
        cur = self.live.get(range_start)
        if cur is not None:
            cur[1].update(data)

    def range_restart(self, fd: int, start: int, pos: int) -> None:
        cur = self.live.get(start)
        if cur is not None:
            h = digests.new_hasher(self.algorithm)
            pread_into(fd, h, start, pos)  # a retry continues mid-range: re-hash what is already written
            self.reread += pos - start
            self.live[start] = (cur[0], h)

    def range_done(self, fd: int, start: int, end: int) -> None:
        if self.pool is not None:
            part = self._part_of(start, end)
            if part is not None:
                self.pool.landed(self, fd, part, start, end)
            return
        cur = self.live.pop(start, None)
        if cur is not None and cur[0] == end:
            self.pieces[start] = (end, cur[1].digest())

    def _part_of(self, start: int, end: int) -> tuple[int, int] | None:
        """The part [start, end) lies in, if it is one the pool can hash whole: none of it from an earlier
        run (a gap no range of this run fills)."""
        part = self.exp.part_size
        if not part or end <= start:
            return None
        ps = start // part * part
        pe = min(ps + part, self.size)
        if end > pe or ranges.clip(self.earlier, ps, pe):
            return None
        return ps, pe

    def abandon(self) -> None:
        """The file is fetched again or given up: its parts leave the pool unhashed."""
        if self.pool is not None:
            self.pool.drop(self)

    def hashed_later(self, then: Callable[[], None]) -> bool:
        """Every range is on the file: True if parts are still to be hashed in the pool, whose thread then
        calls ``then`` (finish() no longer waits); False: finish() may be called now."""
        return self.pool is not None and self.pool.settle_then(self, then)

    def hashed(self, start: int, end: int, value: bytes | OSError, read_back: int) -> None:
        """The pool's result for one part."""
        with self.meta:
            if isinstance(value, OSError):
                self.error = value
            else:
                self.pieces[start] = (end, value)
                self.reread += read_back

    def _hash(self, fd: int, spans: list[tuple[int, int]]) -> None:
        raw = spans_digests(fd, self.algorithm, spans)
        with self.meta:
            self.reread += sum(e - s for s, e in spans)
            for (s, e), value in zip(spans, raw, strict=True):
                self.pieces[s] = (e, value)

    def resumed(self, done: list[tuple[int, int]]) -> None:
        self.earlier = ranges.merge([*self.earlier, *done])  # their parts are hashed from disk in finish()

    def _cover(self, fd: int, size: int) -> list[tuple[int, int, bytes]]:
        """Pieces in offset order covering [0, size); missing spans hashed from disk, together."""
        missing: list[tuple[int, int]] = []
        pos = 0
        for start in sorted(self.pieces):
            end = self.pieces[start][0]
            if start < pos:
                continue
            missing += self._cut(pos, start)
            pos = end
        missing += self._cut(pos, size)
        if missing:
            self._hash(fd, missing)
        pieces = sorted(self.pieces.items())
        out: list[tuple[int, int, bytes]] = []
        pos = 0
        for start, (end, raw) in pieces:
            if start == pos:
                out.append((start, end, raw))
                pos = end
        return out or [(0, 0, range_digest(fd, self.algorithm, 0, 0))]

    def _cut(self, start: int, end: int) -> list[tuple[int, int]]:
        """[start, end) as one span, or one per part (gaps between parts are part-aligned); none if empty."""
        if start >= end:
            return []
        step = (self.exp.part_size or end - start) if self.exp.form == "parts" else end - start
        return [(s, min(s + step, end)) for s in range(start, end, step)]

    def finish(self, fd: int, size: int) -> str:
        if self.pool is not None:
            self.pool.settle(self)
            if self.error is not None:
                raise self.error
        pieces = self._cover(fd, size)
        if self.exp.form == "parts":
            return digests.of_parts(self.algorithm, [raw for _s, _e, raw in pieces])
        raw = digests.combine_ranges(self.algorithm, [(e - s, r) for s, e, r in pieces])
        return digests.encode(self.algorithm, raw)


class SequentialDigest:
    """A whole-file digest over ranges that complete in any order."""

    def __init__(self, algorithm: str) -> None:
        self.algorithm = algorithm
        self.hasher = digests.new_hasher(algorithm)
        self.cursor = 0
        self.reread = 0
        self.done: list[tuple[int, int]] = []
        self.written: dict[int, int] = {}  # in-flight range start -> bytes written up to
        self.lock = threading.Lock()  # held while hashing; receivers only ever try it
        self.meta = threading.Lock()  # guards ``done``; held for microseconds
        self.whole: bytes | None = None  # the value, when hashed with other files' (hash_whole_files)

    def begin(self, start: int, end: int) -> None:
        return None

    def abandon(self) -> None:
        return None  # nothing of it is held elsewhere

    def fetch_order(self) -> list[tuple[int, int]] | None:
        return None  # the file's own ranges, in offset order: the cursor follows them

    def hashed_later(self, then: Callable[[], None]) -> bool:
        return False  # whatever is left is hashed by finish(), from the cursor on

    def take_whole(self, raw: bytes, size: int) -> None:
        """The value of all ``size`` bytes on the file, computed by hash_whole_files."""
        with self.lock:
            self.whole = raw
            self.cursor = size
            self.reread += size

    def streams(self, offset: int) -> bool:
        """Whether bytes written at ``offset`` are likely hashed from the buffer (at the cursor) rather
        than read back later. A hint only: read-back is correct whichever way the bytes were written."""
        return offset == self.cursor

    def lender(self) -> direct_io.Lender | None:
        return None

    def keep(self, fd: int, offset: int, data: memoryview) -> bool:
        return False  # bytes ahead of the cursor are read back from the page cache

    def resumed(self, done: list[tuple[int, int]]) -> None:
        with self.meta:
            self.done = ranges.merge([*self.done, *done])

    def feed(self, range_start: int, offset: int, data: memoryview, on_file: int) -> None:
        """Hash ``data`` in-stream when it sits exactly at the cursor; note that the range's bytes before
        ``on_file`` can be read back. Written behind, the data itself is not on the file yet: a catch-up
        that read it back now would hash what the file held before."""
        end = offset + len(data)
        self.written[range_start] = on_file
        if offset != self.cursor or not self.lock.acquire(blocking=False):
            return
        try:
            if offset == self.cursor:
                self.hasher.update(data)
                self.cursor = end
        finally:
            self.lock.release()

    def range_restart(self, fd: int, start: int, pos: int) -> None:
        return None  # the written bytes stay on disk; the cursor catches up over them

    def range_done(self, fd: int, start: int, end: int) -> None:
        """Mark [start, end) written and hash forward from the cursor as far as written data allows."""
        with self.meta:
            self.written.pop(start, None)
            self.done = ranges.merge([*self.done, (start, end)])
        self.catch_up(fd)

    def _limit(self) -> int:
        with self.meta:
            limit = ranges.contiguous_end(self.done, self.cursor)
        # Follow into a range still streaming, up to what it wrote: then its worker hashes in-stream.
        for s, w in list(self.written.items()):
            if s <= limit < w:
                limit = w
        return limit

    def catch_up(self, fd: int) -> None:
        # Only when written bytes wait behind the cursor. Taking the lock without need would make the
        # worker streaming the next range skip its in-stream hash (the lock is busy) and leave the cursor
        # behind it: that range, and every one after it, would be hashed from the page cache instead.
        # (A range completes in the writer thread while its worker already streams the next one.)
        # The loop re-checks after releasing: a range may have completed while we held the lock.
        while self._behind() and self.lock.acquire(blocking=False):
            try:
                self._hash_forward(fd)
            finally:
                self.lock.release()

    def _behind(self) -> bool:
        with self.meta:
            return ranges.contiguous_end(self.done, self.cursor) > self.cursor

    def _hash_forward(self, fd: int) -> None:
        limit = self._limit()
        if self.cursor < limit:
            pread_into(fd, self.hasher, self.cursor, limit)
            self.reread += limit - self.cursor
            self.cursor = limit

    def finish(self, fd: int, size: int) -> str:
        """The value once every range is written; waits for a concurrent catch-up to finish."""
        with self.lock:
            self._hash_forward(fd)
            if self.cursor != size:
                raise OSError(f"digest covers {self.cursor} of {size} bytes")
            return digests.encode(self.algorithm, self.whole if self.whole is not None else self.hasher.digest())
