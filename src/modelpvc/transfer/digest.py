"""What a file's bytes are checked against, and the hashers that compute it while ranges arrive.

A whole-object MD5 or checksum is sequential, but ranges complete out of order. The range that starts
at the hash cursor is hashed as it streams; other ranges are hashed from the page cache (``pread``)
once the cursor reaches them. Hashing one file never blocks a receiving thread: a busy hasher lock
means "skip, catch up later". Multipart ETags hash each part independently, in the worker itself.
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
import zlib
from dataclasses import dataclass
from typing import Any, Protocol

from modelpvc.transfer import ranges

_READ = 4 * 1024 * 1024


class Hasher(Protocol):
    def update(self, data: Any, /) -> None: ...
    def digest(self) -> bytes: ...


class _Crc32:
    def __init__(self) -> None:
        self.value = 0

    def update(self, data: Any) -> None:
        self.value = zlib.crc32(data, self.value)

    def digest(self) -> bytes:
        return self.value.to_bytes(4, "big")


def _crt_hasher(name: str) -> Hasher | None:
    try:
        from awscrt import checksums  # type: ignore[import-not-found,import-untyped,unused-ignore]
    except ImportError:
        return None
    fn: Any = checksums.crc32c if name == "crc32c" else getattr(checksums, "crc64nvme", None)
    if fn is None:
        return None
    width = 4 if name == "crc32c" else 8

    class _Crt:
        def __init__(self) -> None:
            self.value = 0

        def update(self, data: Any) -> None:
            self.value = fn(data, self.value)

        def digest(self) -> bytes:
            return int(self.value).to_bytes(width, "big")

    return _Crt()


def new_hasher(algorithm: str) -> Hasher | None:
    """A hasher for md5, sha1, sha256, crc32 (stdlib) or crc32c/crc64nvme (awscrt, when installed)."""
    if algorithm in ("md5", "sha1", "sha256"):
        h: Hasher = hashlib.new(algorithm, usedforsecurity=False)
        return h
    if algorithm == "crc32":
        return _Crc32()
    if algorithm in ("crc32c", "crc64nvme"):
        return _crt_hasher(algorithm)
    return None


@dataclass(frozen=True)
class Expectation:
    """How one file will be verified: ``kind`` is recorded in the manifest as what was checked."""

    kind: str  # "md5", "checksum-<algo>", "multipart-etag", "digest-md5" (nothing to compare), "size"
    algorithm: str | None = None  # hasher of a sequential digest
    expected: str | None = None  # hex (md5, multipart etag) or base64 (checksums)
    part_size: int | None = None  # multipart ETags: ranges are cut on part boundaries

    @property
    def sequential(self) -> bool:
        return self.algorithm is not None


def render(exp: Expectation, raw: bytes) -> str:
    if exp.kind.startswith("checksum-"):
        return base64.b64encode(raw).decode()
    return raw.hex()


_tls = threading.local()


def _scratch() -> memoryview:
    """A per-thread read buffer: a fresh 4 MiB ``bytes`` per read costs page faults (measured: ~2 s of
    system time per GB)."""
    buf: memoryview | None = getattr(_tls, "buf", None)
    if buf is None:
        buf = memoryview(bytearray(_READ))
        _tls.buf = buf
    return buf


def pread_into(fd: int, hasher: Hasher, start: int, end: int) -> None:
    """Hash bytes [start, end) of ``fd`` through the thread's scratch buffer."""
    buf = _scratch()
    pos = start
    while pos < end:
        n = os.preadv(fd, [buf[: min(len(buf), end - pos)]], pos)
        if not n:
            raise OSError(f"short read at {pos}")
        hasher.update(buf[:n])
        pos += n


class SequentialDigest:
    """A whole-file digest over ranges that complete in any order."""

    def __init__(self, algorithm: str) -> None:
        hasher = new_hasher(algorithm)
        if hasher is None:
            raise ValueError(f"no hasher for {algorithm}")
        self.algorithm = algorithm
        self.hasher = hasher
        self.cursor = 0
        self.done: list[tuple[int, int]] = []
        self.written: dict[int, int] = {}  # in-flight range start -> bytes written up to
        self.lock = threading.Lock()  # held while hashing; receivers only ever try it
        self.meta = threading.Lock()  # guards ``done``; held for microseconds

    def feed(self, range_start: int, offset: int, data: memoryview) -> None:
        """Note bytes just written; hash them in-stream when they sit exactly at the cursor."""
        end = offset + len(data)
        self.written[range_start] = end
        if offset != self.cursor or not self.lock.acquire(blocking=False):
            return
        try:
            if offset == self.cursor:
                self.hasher.update(data)
                self.cursor = end
        finally:
            self.lock.release()

    def completed(self, fd: int, start: int, end: int) -> None:
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
        while self.lock.acquire(blocking=False):
            try:
                self._hash_forward(fd)
            finally:
                self.lock.release()
            # Re-check after releasing: a range may have completed while we held the lock.
            with self.meta:
                if ranges.contiguous_end(self.done, self.cursor) <= self.cursor:
                    return

    def _hash_forward(self, fd: int) -> None:
        limit = self._limit()
        if self.cursor < limit:
            pread_into(fd, self.hasher, self.cursor, limit)
            self.cursor = limit

    def finish(self, fd: int, size: int) -> bytes:
        """The digest once every range is written; waits for a concurrent catch-up to finish."""
        with self.lock:
            self._hash_forward(fd)
            if self.cursor != size:
                raise OSError(f"digest covers {self.cursor} of {size} bytes")
            return self.hasher.digest()


def multipart_etag(part_md5s: list[bytes]) -> str:
    return hashlib.md5(b"".join(part_md5s), usedforsecurity=False).hexdigest() + f"-{len(part_md5s)}"
