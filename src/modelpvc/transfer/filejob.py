"""One file being fetched: its ``.partial``, its ranges, its digest, and how it is published."""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable
from pathlib import Path

from modelpvc.core.digests import Expectation
from modelpvc.core.errors import IntegrityError
from modelpvc.core.models import FileRecord, ObjectInfo
from modelpvc.store.volume import direct_io
from modelpvc.store.volume.destination import Destination
from modelpvc.store.volume.fs import destination_error
from modelpvc.store.volume.hashing import fd_digest
from modelpvc.transfer import digest, ranges

SMALL_FILE = 8 * 1024 * 1024


class FileJob:
    def __init__(self, dest: Destination, obj: ObjectInfo, exp: Expectation, part_size: int,
                 done: list[tuple[int, int]] | None = None, adopt: Path | None = None,
                 direct: bool = False) -> None:
        self.obj = obj
        self.exp = exp
        self.final = dest.final(obj.rel)
        self.partial = dest.partial(obj.rel)
        self.lock = threading.Lock()
        self.fd: int | None = None
        self.direct = direct and obj.size > SMALL_FILE  # try O_DIRECT for aligned writes (store.direct_io)
        self.dfd: int | None = None  # the O_DIRECT descriptor while it is used
        self._dfd_open: int | None = None  # closed only with the file: another worker may be writing to it
        self.wrote_direct = False  # some bytes went around the page cache (for the summary)
        self.refetches = 0
        self.left = 0  # ranges not yet written in this run; the executor owns it
        self.workers = 0  # workers on this file right now; the scheduler owns it
        # Per-part values are hashed from their buffers when each range is one upload part; otherwise our
        # own part size. ``part_size`` 0 (whole objects, for a server that ignores Range) wins: the parts are
        # then hashed from the page cache after the one GET.
        self.part_size = exp.part_size if exp.form == "parts" and exp.part_size and part_size > 0 else part_size
        self.all_ranges = ranges.split(obj.size, self.part_size)
        self.resumed = ranges.merge(done or [])
        self.adopt = adopt  # a complete-looking local copy to hash instead of fetching
        self.digest = digest.for_expectation(exp, obj.size)
        # Written direct, a pooled part streams into the buffers its digest lends (one GET a part); through
        # the page cache, the digest may want its parts fetched in another order (rows of pieces).
        if self.digest is not None and not self.resumed and self.part_size > 0 and not self.lends_buffers:
            self.all_ranges = self.digest.fetch_order() or self.all_ranges
        self.asked = False  # a whole GET asked for the stored checksum (exp.from_answer)
        self.answer: tuple[str, str] | None = None  # what it answered
        self._rehash = False  # the settled expectation is not what the digest computed: hash from disk

    def todo(self) -> list[tuple[int, int]]:
        """Ranges still to fetch: the gaps an earlier run left, cut on the part grid, in offset order."""
        if not self.resumed:
            return list(self.all_ranges)
        grid = self.part_size if 0 < self.part_size < self.obj.size else self.obj.size or 1
        out: list[tuple[int, int]] = []
        for gs, ge in ranges.gaps(self.resumed, self.obj.size):
            cut = gs
            while cut < ge:
                nxt = min(ge, (cut // grid + 1) * grid)
                out.append((cut, nxt))
                cut = nxt
        return out

    def open(self) -> None:
        """Open (or reuse) the ``.partial`` and preallocate it, so "no space" shows before any byte."""
        with self.lock:
            if self.fd is not None:
                return
            flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
            if not self.resumed:
                flags |= os.O_TRUNC
            try:
                try:
                    fd = os.open(self.partial, flags, 0o644)
                except FileNotFoundError:  # its directory is new: created on the first miss, no stat per file
                    self.final.parent.mkdir(parents=True, exist_ok=True)
                    fd = os.open(self.partial, flags, 0o644)
            except OSError as e:
                raise destination_error(e, self.partial, "creating") from e
            try:
                if self.obj.size > SMALL_FILE:
                    try:
                        os.posix_fallocate(fd, 0, self.obj.size)
                    except OSError as unsupported:
                        if unsupported.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                            raise
                        os.ftruncate(fd, self.obj.size)  # the filesystem cannot preallocate
            except OSError as e:
                os.close(fd)
                raise destination_error(e, self.partial, "allocating") from e
            self.fd = fd
            if self.direct:
                try:
                    self.dfd = self._dfd_open = direct_io.open_direct(self.partial)
                except OSError:
                    self.dfd = None  # buffered writes still work
            if self.digest is not None and self.resumed:
                self.digest.resumed(self.resumed)

    @property
    def lends_buffers(self) -> bool:
        """Whether its ranges are received into buffers its digest lends, and hashed there (``lender``)."""
        return self.direct and self.digest is not None and self.digest.lender() is not None

    def lender(self) -> direct_io.Lender | None:
        """Buffers to receive this file's ranges into, where its digest hashes them in place (written direct)."""
        return self.digest.lender() if self.digest is not None and self.dfd is not None else None

    def begin_range(self, start: int, end: int) -> None:
        if self.digest is not None:
            self.digest.begin(start, end)

    def write(self, range_start: int, offset: int, data: memoryview,
              behind: direct_io.WriteBehind | None = None) -> None:
        """Write at ``offset``: around the page cache when aligned and allowed, else through it.

        With ``behind`` (the worker's write-behind ring, whose buffer ``data`` is), an aligned direct write
        is handed to its thread and this returns at once. The direct path needs ``data`` at a page-aligned
        address (the executor's buffers are); the kernel says EINVAL otherwise, and the file continues
        with buffered writes."""
        dfd = self.dfd
        aligned = direct_io.aligned(offset, len(data))
        # Bytes the digest will read back later (ahead of an MD5 cursor, a part pooled for its MD5 and not
        # kept in the buffer the pool lent) go through the page cache, so the read-back is a cache hit and
        # not a disk read. Kept bytes go to ``behind`` with their buffer, which nothing writes into after.
        if dfd is not None and self.digest is not None and not self.digest.streams(offset):
            kept = behind is not None and aligned and self.fd is not None and self.digest.keep(self.fd, offset, data)
            if not kept:
                dfd = None
        if dfd is not None and behind is not None and aligned:
            if self.digest is not None:  # from memory, before the buffer is handed on
                self.digest.feed(range_start, offset, data, behind.safe(offset))
            behind.submit(self._write_direct, data, offset)
            return
        if dfd is not None:
            self._write_direct(data, offset)
        else:
            self._write_buffered(data, offset)
        if self.digest is not None:
            end = offset + len(data)
            self.digest.feed(range_start, offset, data, behind.safe(end) if behind is not None else end)

    def write_unhashed(self, offset: int, data: memoryview) -> None:
        """Write through the page cache and leave the digest to read the bytes back when the range is done
        (the small files' lane: another thread hashes them)."""
        self._write_buffered(data, offset)

    def _write_direct(self, data: memoryview, offset: int) -> None:
        view, pos = data, offset
        while view and direct_io.aligned(pos, len(view)):
            dfd = self.dfd
            if dfd is None:
                break
            try:
                n = os.pwrite(dfd, view, pos)
            except OSError as e:
                if e.errno == errno.EINVAL:
                    self.dfd = None  # the device wants another alignment: buffered from here on
                    break
                raise destination_error(e, self.partial, "writing") from e
            self.wrote_direct = True
            view, pos = view[n:], pos + n
        if view:
            self._write_buffered(view, pos)  # an unaligned tail

    def _write_buffered(self, data: memoryview, offset: int) -> None:
        fd = self.fd
        assert fd is not None
        view, pos = data, offset
        try:
            while view:
                n = os.pwrite(fd, view, pos)
                view, pos = view[n:], pos + n
        except OSError as e:
            raise destination_error(e, self.partial, "writing") from e

    def range_restart(self, start: int, pos: int) -> None:
        if self.digest is not None and self.fd is not None:
            self.digest.range_restart(self.fd, start, pos)

    def range_done(self, start: int, end: int) -> None:
        if self.fd is not None:
            # What went through the page cache (--buffered-io, a filesystem without O_DIRECT, bytes a
            # digest reads back) starts for the disk now, not all at the final fsync: 2 GB from MinIO
            # --buffered-io took 0.93 s, not 1.51 (decisions §19). Pages written direct are clean: a no-op.
            direct_io.start_writeback(self.fd, start, end - start)
        if self.digest is not None and self.fd is not None:
            self.digest.range_done(self.fd, start, end)

    def _close(self) -> None:
        """Close both descriptors (the caller holds the lock; no worker writes any more)."""
        self.dfd = None
        if self._dfd_open is not None:
            os.close(self._dfd_open)
            self._dfd_open = None
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def datasync(self) -> None:
        with self.lock:
            if self.fd is not None:
                os.fdatasync(self.fd)

    def answered(self, found: tuple[str, str] | None) -> None:
        """The whole-object GET's stored checksum (store.base.ChecksumCallback)."""
        self.asked = True
        self.answer = found

    def settle(self, exp: Expectation) -> None:
        """Replace a ``from_answer`` expectation by what the source said (transfer.expectations.settle)."""
        old = self.exp
        self.exp = exp
        self._rehash = (exp.algorithm, exp.form, exp.part_size) != (old.algorithm, old.form, old.part_size)

    def hashed_later(self, then: Callable[[], None]) -> bool:
        """Every range is on the file: True if bytes read back are still being hashed elsewhere and ``then``
        runs once they are (transfer.md5_pool); False: check() may run now."""
        return self.digest is not None and self.digest.hashed_later(then)

    def check(self) -> tuple[bool, dict[str, str]]:
        """(matches the expectation, digest to record), once every range is on disk."""
        assert self.fd is not None
        if self.digest is None:
            return True, {}
        value = self.digest.finish(self.fd, self.obj.size)
        if self._rehash:  # rare: the GET's answer named another algorithm; the bytes are in the page cache
            value = fd_digest(self.fd, self.obj.size, self.exp) or ""
        return self.exp.expected is None or value == self.exp.expected, self.exp.record(value)

    def check_adoptable(self) -> tuple[bool, dict[str, str]]:
        """Hash the local copy against what the source promises (cheaper than the network)."""
        assert self.adopt is not None
        try:
            fd = os.open(self.adopt, os.O_RDONLY)
        except OSError as e:
            raise destination_error(e, self.adopt, "reading") from e
        try:
            if os.fstat(fd).st_size != self.obj.size:
                return False, {}
            value = fd_digest(fd, self.obj.size, self.exp)
        finally:
            os.close(fd)
        ok = value is not None and self.exp.expected is not None and value == self.exp.expected
        return ok, self.exp.record(value) if value is not None else {}

    def publish_adopted(self) -> FileRecord:
        """Make the adopted copy durable under its final name."""
        assert self.adopt is not None
        try:
            fd = os.open(self.adopt, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            if self.adopt != self.final:
                os.replace(self.adopt, self.final)
            st = os.stat(self.final)
        except OSError as e:
            raise destination_error(e, self.final, "publishing") from e
        self.adopt = None
        return self._record(st.st_mtime_ns)

    def restart(self, *, counted: bool = True) -> list[tuple[int, int]]:
        """Forget everything fetched (after an integrity failure) and return all ranges again."""
        if counted:
            self.refetches += 1
        self.adopt = None
        self.resumed = []
        if self.digest is not None:
            self.digest.abandon()
        self.digest = digest.for_expectation(self.exp, self.obj.size)
        self._rehash = False
        return list(self.all_ranges)

    @property
    def small(self) -> bool:
        """Small files skip their own fsync: the executor makes them durable with one syncfs before
        journalling them as synced, and before the manifest (2,000 fsyncs cost more than the copy)."""
        return self.obj.size <= SMALL_FILE

    def publish(self) -> FileRecord:
        """fsync (large files), rename into place. The directory fsync is batched by the caller."""
        with self.lock:
            fd = self.fd
            assert fd is not None
            try:
                if not self.small:
                    os.fsync(fd)
            except OSError as e:
                raise destination_error(e, self.partial, "flushing") from e
            finally:
                self._close()
        try:
            os.replace(self.partial, self.final)
            st = os.stat(self.final)
        except OSError as e:
            raise destination_error(e, self.final, "publishing") from e
        return self._record(st.st_mtime_ns)

    def _record(self, mtime_ns: int) -> FileRecord:
        return FileRecord(path=self.obj.rel, key=self.obj.key, size=self.obj.size, etag=self.obj.etag,
                          verified=self.exp.kind, mtime_ns=mtime_ns)

    def fail(self, detail: str) -> IntegrityError:
        return IntegrityError(
            f"{self.obj.rel}: content does not match the source ({detail}) after {self.refetches + 1} "
            "downloads; it was not published",
            hint="the source object or the network corrupts data; check the object in the bucket",
        )

    def discard(self) -> None:
        if self.digest is not None:
            self.digest.abandon()  # before the descriptor closes: nothing may read it later
        with self.lock:
            self._close()
