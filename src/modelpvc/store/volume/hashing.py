"""Hashing bytes that are already on local disk: ranges a previous run wrote, files found complete on the
destination (adopted instead of fetched), and ``verify --deep``. The algorithms live in core.digests."""

from __future__ import annotations

import os
import threading

from modelpvc.core import digests, md5_native
from modelpvc.core.digests import Expectation, Hasher

_READ = 4 * 1024 * 1024
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
    """Feed bytes [start, end) of ``fd`` to ``hasher`` through the thread's scratch buffer."""
    buf = _scratch()
    pos = start
    while pos < end:
        n = os.preadv(fd, [buf[: min(len(buf), end - pos)]], pos)
        if not n:
            raise OSError(f"short read at {pos}: the file ends before {end}")
        hasher.update(buf[:n])
        pos += n


def range_digest(fd: int, algorithm: str, start: int, end: int) -> bytes:
    h = digests.new_hasher(algorithm)
    pread_into(fd, h, start, end)
    return h.digest()


def spans_digests(fd: int, algorithm: str, spans: list[tuple[int, int]]) -> list[bytes]:
    """The raw digest of each [start, end) of ``fd``."""
    if algorithm == "md5":
        return md5_of_spans([(fd, s, e) for s, e in spans])
    return [range_digest(fd, algorithm, s, e) for s, e in spans]


def md5_of_spans(spans: list[tuple[int, int, int]]) -> list[bytes]:
    """The MD5 of each ``(fd, start, end)``: sixteen at a time where the multi-buffer module works
    (core.md5_native), one at a time where it does not or too few are left for a pass."""
    lanes = md5_native.lanes()
    out: list[bytes] = []
    for first in range(0, len(spans), md5_native.LANES):
        group = spans[first:first + md5_native.LANES]
        if lanes is not None and len(group) >= lanes.min_spans:
            out += lanes.md5(group)
        else:
            out += [range_digest(fd, "md5", s, e) for fd, s, e in group]
    return out


def fd_digest(fd: int, size: int, exp: Expectation) -> str | None:
    """The value ``exp`` describes, computed from the first ``size`` bytes of ``fd``; None for size-only."""
    if exp.algorithm is None:
        return None
    if exp.form == "parts":
        part = exp.part_size or size or 1
        parts = spans_digests(fd, exp.algorithm, [(s, min(s + part, size)) for s in range(0, size, part)])
        return digests.of_parts(exp.algorithm, parts or [range_digest(fd, exp.algorithm, 0, 0)])
    return digests.encode(exp.algorithm, range_digest(fd, exp.algorithm, 0, size))


def file_digest(path: str | os.PathLike[str], exp: Expectation) -> str | None:
    fd = os.open(path, os.O_RDONLY)
    try:
        return fd_digest(fd, os.fstat(fd).st_size, exp)
    finally:
        os.close(fd)
