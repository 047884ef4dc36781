"""One file being fetched: its ``.partial``, its ranges, its digest, and how it is published."""

from __future__ import annotations

import errno
import hashlib
import os
import threading
from pathlib import Path

from modelpvc.core.errors import IntegrityError
from modelpvc.core.models import FileRecord, ObjectInfo
from modelpvc.store.localfs import destination_error
from modelpvc.transfer import ranges
from modelpvc.transfer.digest import Expectation, SequentialDigest, multipart_etag, pread_into, render
from modelpvc.transfer.keys import PARTIAL_SUFFIX

SMALL_FILE = 8 * 1024 * 1024


class FileJob:
    def __init__(self, dest: Path, obj: ObjectInfo, exp: Expectation, part_size: int,
                 done: list[tuple[int, int]] | None = None) -> None:
        self.obj = obj
        self.exp = exp
        self.final = dest / obj.rel
        self.partial = self.final.with_name(self.final.name + PARTIAL_SUFFIX)
        self.lock = threading.Lock()
        self.fd: int | None = None
        self.refetches = 0
        self.left = 0  # ranges not yet written in this run; the executor owns it
        self.part_size = exp.part_size if exp.part_size else part_size
        self.all_ranges = ranges.split(obj.size, self.part_size)
        self.resumed = ranges.merge(done or [])
        self._reset_digests()

    def _reset_digests(self) -> None:
        self.seq = SequentialDigest(self.exp.algorithm) if self.exp.algorithm else None
        self.part_md5: dict[int, bytes] = {}

    def todo(self) -> list[tuple[int, int]]:
        """Ranges still to fetch: the gaps a previous run left, cut to the part size.

        Multipart ETags need each part's MD5, so there a part is fetched whole unless fully present.
        """
        if not self.resumed:
            return list(self.all_ranges)
        if self.exp.part_size:
            return [(s, e) for s, e in self.all_ranges
                    if ranges.covered(ranges.clip(self.resumed, s, e)) < e - s]
        out: list[tuple[int, int]] = []
        for gs, ge in ranges.gaps(self.resumed, self.obj.size):
            out += [(gs + a, gs + b) for a, b in ranges.split(ge - gs, self.part_size)]
        return out

    def open(self) -> None:
        """Open (or reuse) the ``.partial`` and preallocate it, so "no space" shows before any byte."""
        with self.lock:
            if self.fd is not None:
                return
            try:
                if not self.final.parent.is_dir():
                    self.final.parent.mkdir(parents=True, exist_ok=True)
                flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
                if not self.resumed:
                    flags |= os.O_TRUNC
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
            if self.seq is not None and self.resumed:
                self.seq.done = ranges.merge([*self.seq.done, *self.resumed])

    def write(self, range_start: int, offset: int, data: memoryview) -> None:
        fd = self.fd
        assert fd is not None
        view = data
        while view:
            try:
                n = os.pwrite(fd, view, offset)
            except OSError as e:
                raise destination_error(e, self.partial, "writing") from e
            view = view[n:]
            offset += n
        if self.seq is not None:
            self.seq.feed(range_start, offset - len(data), data)

    def range_done(self, start: int, end: int, part_md5: bytes | None) -> None:
        if part_md5 is not None and self.exp.part_size:
            self.part_md5[start // self.exp.part_size] = part_md5
        if self.seq is not None and self.fd is not None:
            self.seq.completed(self.fd, start, end)

    def datasync(self) -> None:
        with self.lock:
            if self.fd is not None:
                os.fdatasync(self.fd)

    def digest_matches(self) -> tuple[bool, dict[str, str]]:
        """(matches the expectation, digest to record). Hashes any bytes the cursor has not reached."""
        exp = self.exp
        assert self.fd is not None
        if exp.kind == "multipart-etag":
            parts = [self.part_md5.get(i) for i in range(len(self.all_ranges))]
            if any(p is None for p in parts):
                # Ranges restored from the journal were not hashed in this process.
                parts = [p if p is not None else self._hash_range(i) for i, p in enumerate(parts)]
            value = multipart_etag([p for p in parts if p is not None])
            return value == exp.expected, {"multipart-etag": value, "part_size": str(exp.part_size)}
        if self.seq is not None:
            raw = self.seq.finish(self.fd, self.obj.size)
            value = render(exp, raw)
            ok = exp.expected is None or value == exp.expected
            return ok, {self.seq.algorithm: value}
        return True, {}

    def _hash_range(self, index: int) -> bytes:
        s, e = self.all_ranges[index]
        assert self.fd is not None
        h = hashlib.md5(usedforsecurity=False)
        pread_into(self.fd, h, s, e)
        return h.digest()

    def restart(self) -> list[tuple[int, int]]:
        """Forget everything fetched (after an integrity failure) and return all ranges again."""
        self.refetches += 1
        self.resumed = []
        self._reset_digests()
        return list(self.all_ranges)

    @property
    def small(self) -> bool:
        """Small files skip their own fsync: the executor makes them durable with one syncfs before
        journalling them, and before the manifest (2,000 fsyncs cost more than the copy itself)."""
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
                os.close(fd)
                self.fd = None
        try:
            os.replace(self.partial, self.final)
            st = os.stat(self.final)
        except OSError as e:
            raise destination_error(e, self.final, "publishing") from e
        return FileRecord(path=self.obj.rel, key=self.obj.key, size=self.obj.size, etag=self.obj.etag,
                          verified=self.exp.kind, mtime_ns=st.st_mtime_ns)

    def fail(self, detail: str) -> IntegrityError:
        return IntegrityError(
            f"{self.obj.rel}: content does not match the source ({detail}) after {self.refetches + 1} "
            "downloads; it was not published",
            hint="the source object or the network corrupts data; check the object in the bucket",
        )

    def discard(self) -> None:
        with self.lock:
            if self.fd is not None:
                os.close(self.fd)
                self.fd = None
