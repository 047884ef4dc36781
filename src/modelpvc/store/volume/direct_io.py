"""Writing large files around the page cache (``O_DIRECT``) where the filesystem does it well.

Why: a buffered write copies every byte into a freshly allocated page-cache page. perf on the 8 GB bench
(docs/decisions.md §14) puts that copy (``copy_folio_from_iter_atomic``) at 0.9-1.1 CPU-s/GB on this VM —
more than half of an unverified copy's CPU and a quarter of a verified one's — and the final fsync still
has to push every page to the disk. A direct write hands the aligned buffer to the block layer instead:
no copy, no dirty pages evicting the node's cache, and the fsync only flushes metadata.

A direct write is synchronous: it returns when the device has the bytes. Done in the worker's own thread,
the disk idled while the worker received and hashed, and the network while it wrote (bench: 34.6 s vs
25.2 s buffered for 8 GB). So each worker writes behind (``WriteBehind``): a ring of aligned 8 MiB buffers
and a thread that writes them while the worker fills the next one. On this VM's disk, direct writes alone
(4-8 MiB, four in flight) moved 8 GB in 16-22 s, buffered writes with their final sync in 16.5-18.3 s, at
0.11-0.15 instead of 1.6-1.8 CPU-s/GB (docs/decisions.md §14).

Where: only local block filesystems (ext4, xfs, btrfs: what a CSI block volume or a node's disk is
formatted with). On NFS/CephFS/FUSE ``O_DIRECT`` is accepted but turns each write into a synchronous round
trip, so those keep buffered writes. The mount's type comes from /proc/self/mountinfo (proc(5)).

Rules of ``O_DIRECT`` (open(2), "O_DIRECT"): buffer address, file offset and length aligned to the logical
block size. Our worker buffers are anonymous mmaps (page-aligned) and ranges start on MiB boundaries, so
only a range's unaligned tail goes through the ordinary descriptor. A filesystem or device that still says
EINVAL makes the file fall back to buffered writes.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import queue
import threading
import time
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Protocol

# linux/fs.h: SYNC_FILE_RANGE_WRITE starts writeback of the range's dirty pages; with WAIT_BEFORE and
# WAIT_AFTER (1 and 4) the call returns once they are on the disk.
_SYNC_FILE_RANGE_WRITE = 2
_SYNC_FILE_RANGE_WRITTEN = 1 | 2 | 4
_sync_file_range: list[Callable[[int, int, int, int], None] | None] = []

ALIGN = 4096  # the largest logical block size in use (4Kn disks); 512-byte devices accept it too
# A write-behind buffer: fewer, larger requests suit an IOPS-bound volume. Measured on this VM (8 GB, 4
# workers, medians of 3, docs/decisions.md §14): 4 MiB 25.6-26.2 s, 8 MiB 21.8-22.2 s, 16 MiB 21.6 s.
CHUNK = 8 * 1024 * 1024
# Direct writes in flight per worker (the device's queue is workers x WRITERS deep): two per worker were
# no faster than one (22.5-25.6 s vs 21.8-22.2 s) and cost another ring buffer.
WRITERS = 1
RINGS_MEMORY = 128 * 1024 * 1024  # all workers' rings together: memory stays flat on a many-CPU node


def chunk_for(workers: int, writers: int = WRITERS) -> int:
    """The ring buffer size for ``workers`` rings within RINGS_MEMORY: CHUNK, down to 1 MiB."""
    per_buffer = RINGS_MEMORY // (max(1, workers) * (writers + 2))
    return max(1024 * 1024, min(CHUNK, per_buffer // (1024 * 1024) * 1024 * 1024))


DIRECT_FILESYSTEMS = frozenset({"ext4", "xfs", "btrfs"})
MOUNTINFO = Path("/proc/self/mountinfo")


def aligned_buffer(size: int) -> memoryview:
    """A page-aligned buffer (an anonymous mapping), usable for direct writes, in huge pages where the
    kernel has them.

    Private, not mmap's default shared mapping: shared anonymous memory is shmem, which takes no
    transparent huge pages unless the node enables them for shmem. In 2 MiB pages the buffer costs the
    kernel one page-table entry per 2 MiB wherever every byte passes: the socket copy into it, the pinning
    of its pages for each direct write, MD5's reads (decisions §19: 8 GB MD5-only copy from MinIO 5.8 s
    against 7.1). Their first touch costs more, once per run: about 0.4 CPU-s for the MD5 path's buffers
    on a VM whose balloon reports free memory to its host, 0.03 s elsewhere.
    """
    buf = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    if hasattr(mmap, "MADV_HUGEPAGE"):  # Linux only; a kernel without THP refuses it, and 4 KiB pages do
        with contextlib.suppress(OSError):
            buf.madvise(mmap.MADV_HUGEPAGE)
    return memoryview(buf)


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo octal
    out, i = [], 0
    while i < len(field):
        code = field[i + 1:i + 4]
        if field[i] == "\\" and len(code) == 3 and code.isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def filesystem_type(path: Path, mountinfo: Path = MOUNTINFO) -> str | None:
    """The type of the filesystem mounted deepest above ``path`` (None when unknown)."""
    try:
        lines = mountinfo.read_text().splitlines()
    except OSError:
        return None
    target = os.path.realpath(path)
    best, best_type = "", None
    for line in lines:
        left, sep, right = line.partition(" - ")
        fields = left.split()
        if not sep or len(fields) < 5 or not right:
            continue
        point = _unescape(fields[4])
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):  # later lines are mounted over earlier ones at the same point
            best, best_type = point, right.split()[0]
    return best_type


@lru_cache(maxsize=32)
def direct_io_suits(directory: str) -> bool:
    return filesystem_type(Path(directory)) in DIRECT_FILESYSTEMS


def open_direct(path: Path) -> int | None:
    """A second, write-only descriptor with O_DIRECT, or None where the filesystem refuses it."""
    flag = getattr(os, "O_DIRECT", 0)
    if not flag:
        return None
    try:
        return os.open(path, os.O_WRONLY | flag | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        if e.errno in (errno.EINVAL, errno.EOPNOTSUPP):
            return None
        raise


def aligned(offset: int, length: int) -> bool:
    return offset % ALIGN == 0 and length % ALIGN == 0 and length > 0


# A write of (bytes, offset in the file) that the writer thread performs; it raises what the worker should.
WriteCall = Callable[[memoryview, int], None]
# Run by the writer once the writes before it are done: with None, or with the error that stopped them.
AfterCall = Callable[[BaseException | None], None]


class Lender(Protocol):
    """Buffers a ring receives into before its own (transfer.md5_pool: bytes hashed where they landed)."""

    def lend(self) -> memoryview | None:
        """An aligned buffer, maybe after a wait for one; None: none for this ring (it uses its own)."""

    def given_back(self, buf: memoryview) -> None:
        """The ring is done with ``buf``: written, or never filled."""


class WriteBehind:
    """One worker's ring of aligned buffers and the threads that write them while the worker fills the next.

    The worker reads into ``next()``; to write a buffer behind, it ``submit``s it, and the buffer comes back
    to the ring once written; a buffer not submitted is simply filled again. Offsets are submitted in
    increasing order, so everything before the lowest offset still in flight is on the file (``safe``).
    ``drain`` waits for all of them; an error of a writer is raised to the worker at its next ``next`` or
    ``drain``. ``then`` queues a callback behind the writes submitted so far: the worker goes on to its next
    range while the last one's bytes are still going to the disk (draining there idled the network for up
    to two buffers' writes per range, and made 8 MiB parts fully synchronous).

    With a ``lender`` set (for the range being fetched), ``next`` takes the lender's buffers first and gives
    each back to it, not to the ring, once written.
    """

    def __init__(self, chunk: int = CHUNK, writers: int = WRITERS) -> None:
        # Last in, first out: a buffer just given back is taken again, so a ring that seldom needs more than
        # one (its worker mostly fills a lender's) touches the pages of one only.
        self._free: queue.LifoQueue[memoryview] = queue.LifoQueue()
        for _ in range(writers + 2):  # one per writer, one being filled, one ready
            self._free.put(aligned_buffer(chunk))
        self._current: memoryview | None = None
        self.lender: Lender | None = None  # asked first for a buffer; set by the worker for each range
        self._lent: Lender | None = None  # who lent ``_current`` (None: the ring's own)
        # Seconds the worker waited in ``next`` for a buffer the disk had not given back. It happens inside
        # the worker's S3 read, so without it a slow disk was reported as a slow source.
        self.waited = 0.0
        self._todo: queue.SimpleQueue[tuple[WriteCall, memoryview, int, memoryview, Lender | None] | AfterCall
                                      | None] = queue.SimpleQueue()
        self._cond = threading.Condition()
        self._inflight: set[int] = set()  # offsets submitted and not written (a failed one stays)
        self._pending = 0  # submitted writes not finished, written or failed
        self._error: BaseException | None = None  # handed to the worker once
        self._broken: BaseException | None = None  # stays until the range is abandoned: later writes are dropped
        self._threads = [threading.Thread(target=self._run, daemon=True, name="write-behind")
                         for _ in range(writers)]
        for t in self._threads:
            t.start()

    def next(self, n: int) -> memoryview:
        if self._lent is not None and self._lent is not self.lender:  # lent for another range
            self.give_back()
        if self.lender is not None and self._lent is None and (lent := self.lender.lend()) is not None:
            if self._current is not None:  # the ring's, filled and not submitted: back to the ring
                self._free.put(self._current)
            self._current, self._lent = lent, self.lender
        if self._current is None:
            try:
                self._current = self._free.get_nowait()
            except queue.Empty:  # every buffer is being written: the disk is behind the network
                t = time.monotonic()
                self._current = self._free.get()
                self.waited += time.monotonic() - t
        self._raise()
        return self._current[:n]

    def give_back(self) -> None:
        """The buffer being filled, if lent, goes back unwritten: its range is over. A worker holds no loan
        between ranges (transfer.md5_pool counts every lent buffer as a piece on its way)."""
        if self._current is not None and self._lent is not None:
            self._lent.given_back(self._current)
            self._current = self._lent = None

    def submit(self, write: WriteCall, data: memoryview, offset: int) -> None:
        """Write ``data`` (a view of the buffer ``next`` gave) at ``offset``, behind the caller."""
        buf, self._current = self._current, None
        lent, self._lent = self._lent, None
        assert buf is not None
        with self._cond:
            self._inflight.add(offset)
            self._pending += 1
        self._todo.put((write, data, offset, buf, lent))

    def then(self, after: AfterCall) -> None:
        """Call ``after`` in the writer thread once every write submitted so far is on the file (with None),
        or with the error that stopped them. It must not raise."""
        assert len(self._threads) == 1, "ordering after earlier writes needs a single writer"
        with self._cond:
            self._pending += 1
        self._todo.put(after)

    def safe(self, pos: int) -> int:
        """How far the bytes before ``pos`` are on the file (all of them once nothing is in flight). Writes
        of an earlier range, maybe of another file, may still be in flight: their offsets only lower it."""
        with self._cond:
            return min(pos, min(self._inflight, default=pos))

    def drain(self, *, raise_error: bool = True) -> None:
        """Wait until nothing is in flight; raise a writer's error, or forget it (the range is abandoned)."""
        with self._cond:
            self._cond.wait_for(lambda: self._pending == 0)
            self._inflight.clear()
        if raise_error:
            self._raise()
        else:
            self._error = self._broken = None

    def close(self) -> None:
        self.drain(raise_error=False)
        self.give_back()
        for _ in self._threads:
            self._todo.put(None)
        for t in self._threads:
            t.join()

    def _raise(self) -> None:
        err, self._error = self._error, None
        if err is not None:
            raise err

    def _run(self) -> None:
        while (item := self._todo.get()) is not None:
            if not isinstance(item, tuple):
                try:
                    item(self._broken)
                finally:
                    self._one_done()
                continue
            write, data, offset, buf, lent = item
            try:
                if self._broken is None:  # after a failure the rest is dropped: the range is fetched again
                    write(data, offset)
                    with self._cond:
                        self._inflight.discard(offset)
            except BaseException as e:  # handed to the worker
                self._error = self._broken = e
            finally:
                if lent is not None:
                    lent.given_back(buf)
                else:
                    self._free.put(buf)
                self._one_done()

    def _one_done(self) -> None:
        with self._cond:
            self._pending -= 1
            self._cond.notify_all()


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Start writing the range's dirty pages to the disk and return at once (sync_file_range(2)); the
    pages stay cached. Pages written direct are clean: nothing to do. A hint: failures show at fsync."""
    fn = _bound()
    if fn is not None:
        fn(fd, offset, length, _SYNC_FILE_RANGE_WRITE)


def release_pages(fd: int, offset: int, length: int) -> None:
    """Give the range's page-cache pages back once they are on the disk (bytes read back and done with).

    The next buffered write then takes pages just freed instead of fresh ones: on a VM whose balloon
    reports free pages to the host, a fresh page costs a fault in the host on first touch, and 2 GB
    written through the cache took 0.55 CPU-s into recycled pages against 3.3-5.5 into reported ones
    (decisions §19). Dirty pages are not dropped, so it waits for the range's writeback first (started
    when the range landed). A hint, like ``start_writeback``: errors show at fsync or not at all."""
    fn = _bound()
    try:
        if fn is not None:
            fn(fd, offset, length, _SYNC_FILE_RANGE_WRITTEN)
        os.posix_fadvise(fd, offset, length, os.POSIX_FADV_DONTNEED)
    except OSError:
        pass


def _bound() -> Callable[[int, int, int, int], None] | None:
    if not _sync_file_range:
        _sync_file_range.append(_bind_sync_file_range())
    return _sync_file_range[0]


def _bind_sync_file_range() -> Callable[[int, int, int, int], None] | None:
    import ctypes  # here (1 ms): only runs that write through the page cache pay for it

    try:
        raw = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):  # not Linux
        return None
    raw.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    raw.restype = ctypes.c_int

    def call(fd: int, offset: int, length: int, flags: int) -> None:
        raw(fd, offset, length, flags)

    return call
