"""MD5 of many spans of a file at once: the parts of a multipart ETag, sixteen in the lanes of one SIMD register.

A multipart upload's ETag is ``md5(md5(p1)|md5(p2)|...)-N``: every part needs its own MD5, and hashlib's
(OpenSSL) runs one at a time at ~0.7 GB/s per core here, 1.4 CPU-s/GB — the whole cost of verifying a
source that stores no checksum (old ``mc mirror`` and SDK uploads). The parts are independent, so our C
module (``_md5lanes.c``, built by ``pip install`` when a compiler is there) hashes sixteen together:
4.3 GB/s on one core with AVX-512, reading the file itself (docs/decisions.md §19).

A span may also be a piece of a message: the state a previous piece handed back goes in, and the next
state (or, for the last piece, the MD5) comes out, so parts are hashed while they still arrive
(transfer.md5_pool). And a span may name a buffer instead of a file: bytes still in memory are hashed
where they are, never read back.

It is used only where it is faster — x86-64 with AVX2 or AVX-512, enough spans at a time (one lane alone
runs at 1/16 of the register) — and only after it gave hashlib's values on spans of every padding case,
read from two files, and on a message hashed in pieces, from a file and from memory.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
import threading
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import NamedTuple

Span = tuple[int, int, int]
"""``(fd, start, end)``: a whole message, read with pread."""
Piece = tuple[int | memoryview, int, int, bytes | None, int, bool]
"""``(where, start, end, state, prior, last)``: a piece of a message — of a file descriptor's bytes (read
with pread) or of a buffer's (hashed in place) — ``prior`` bytes (whole 64-byte blocks) of which were hashed
into ``state`` (None: none); one that is not ``last`` is whole blocks too."""
SpansMd5 = Callable[[Sequence[Span | Piece]], list[bytes]]
"""``fn(spans)``: the raw MD5 of each span, or a piece's state (its last piece: the MD5), spans of one
file or of several."""

LANES = 16
# Fewest spans worth a pass: each lane runs at 1/16 of it, against hashlib's 0.73 GB/s here. Measured over
# 16 x 64 MiB from the page cache: AVX-512 4.3 GB/s a pass (3 lanes break even), AVX2 1.7 (7 lanes).
MIN_SPANS = {"avx512f": 4, "avx2": 8}


class Lanes(NamedTuple):
    md5: SpansMd5
    min_spans: int  # below this many spans, hash one at a time with hashlib


log = logging.getLogger(__name__)
_lock = threading.Lock()
_chosen: list[Lanes | None] = []  # empty until probed


def lanes() -> Lanes | None:
    """The multi-buffer function where it is built, fast on this CPU and correct; else None (use hashlib)."""
    if not _chosen:
        with _lock:
            if not _chosen:
                _chosen.append(_probe())
    return _chosen[0]


def isa() -> str:
    """The instruction set the lanes would run on here, or why they are not used (for the bench)."""
    module = _module()
    return module.isa() if module is not None else "not built"


def _module() -> ModuleType | None:
    try:
        from modelpvc.core import _md5lanes
    except ImportError:
        return None
    return _md5lanes


def _probe() -> Lanes | None:
    module = _module()
    if module is None or module.isa() not in MIN_SPANS:
        return None
    fn: SpansMd5 = module.md5_spans
    # Every padding case (a tail of 0, 55, 56 and 63 bytes; one and two tail blocks), lanes of unequal
    # lengths, a span longer than one read, and more spans than lanes.
    sizes = [0, 1, 55, 56, 63, 64, 65, 119, 120, 128, 1000, 70_000, 4096, 3, 200, 64 * 1024 + 7, 9]
    # A period of 251 bytes (prime): no span repeats another's content at its lane offsets. Built in
    # microseconds; a byte-by-byte generator cost 11 ms of the first run that hashes MD5.
    data = (bytes(range(251)) * 797)[:200_000]
    spans = [(i * 997, i * 997 + size) for i, size in enumerate(sizes)]
    expected = [hashlib.md5(data[s:e], usedforsecurity=False).digest() for s, e in spans]
    expected += [hashlib.md5(data[:70_007], usedforsecurity=False).digest()] * 2
    try:
        with tempfile.TemporaryFile() as f, tempfile.TemporaryFile() as g:
            f.write(data)
            f.flush()
            g.write(data)
            g.flush()
            got = fn([((f, g)[i % 2].fileno(), s, e) for i, (s, e) in enumerate(spans)])
            # Resumed: the same message in two and in three pieces, the state handed back between them;
            # two of the pieces from memory.
            held = memoryview(bytearray(data[:64_000]))
            first = fn([(f.fileno(), 0, 640, None, 0, False), (held, 0, 64 * 1000, None, 0, False)])
            second = fn([(memoryview(data), 640, 70_007, first[0], 640, True),
                         (f.fileno(), 64_000, 69_952, first[1], 64_000, False)])
            got += [second[0], *fn([(f.fileno(), 69_952, 70_007, second[1], 69_952, True)])]
    except (OSError, TypeError, ValueError) as e:  # TypeError: a module built before pieces existed
        log.warning("multi-buffer MD5 failed its self-test (%s); using hashlib", e)
        return None
    if got != expected:
        log.warning("multi-buffer MD5 gives wrong values here; using hashlib")
        return None
    log.debug("md5: %d lanes on %s", LANES, module.isa())
    return Lanes(fn, MIN_SPANS[module.isa()])
