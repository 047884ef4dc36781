"""Range arithmetic: how an object is cut into GETs, and which bytes a set of ranges covers."""

from __future__ import annotations

from collections.abc import Iterable


def one_get(size: int, part: int) -> bool:
    """Whether ``split`` cuts an object of ``size`` bytes into a single range (``part`` <= 0: never cut)."""
    return part <= 0 or part >= size


def split(size: int, part: int) -> list[tuple[int, int]]:
    """Half-open ranges of at most ``part`` bytes covering [0, size); one empty range for size 0."""
    if size == 0:
        return [(0, 0)]
    if one_get(size, part):
        return [(0, size)]
    return [(s, min(s + part, size)) for s in range(0, size, part)]


def interleave(size: int, part: int, piece: int) -> list[tuple[int, int]]:
    """``split(size, part)`` with each part cut into ranges of at most ``piece`` bytes, in rows: the first
    range of every part, then every part's second, and so on. Fetched in this order, all the parts grow
    together (the MD5 pool hashes sixteen parts' landed pieces in one pass, transfer.md5_pool)."""
    parts = split(size, part)
    out: list[tuple[int, int]] = []
    row = 0
    while True:
        cut = [(s + row * piece, min(s + (row + 1) * piece, e)) for s, e in parts if s + row * piece < e]
        if not cut:
            return out
        out += cut
        row += 1


def merge(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted, coalesced half-open ranges."""
    out: list[tuple[int, int]] = []
    for s, e in sorted(ranges):
        if out and s <= out[-1][1]:
            if e > out[-1][1]:
                out[-1] = (out[-1][0], e)
        else:
            out.append((s, e))
    return out


def covered(ranges: Iterable[tuple[int, int]]) -> int:
    return sum(e - s for s, e in merge(ranges))


def contiguous_end(ranges: list[tuple[int, int]], cursor: int) -> int:
    """The furthest offset reachable from ``cursor`` through merged ranges (cursor if none)."""
    end = cursor
    for s, e in ranges:
        if s <= end < e:
            end = e
        elif s > end:
            break
    return end


def clip(rs: Iterable[tuple[int, int]], start: int, end: int) -> list[tuple[int, int]]:
    """The parts of ``rs`` inside [start, end)."""
    return [(max(s, start), min(e, end)) for s, e in rs if s < end and e > start]


def gaps(rs: Iterable[tuple[int, int]], size: int) -> list[tuple[int, int]]:
    """The parts of [0, size) that ``rs`` does not cover."""
    out = []
    pos = 0
    for s, e in merge(rs):
        if s > pos:
            out.append((pos, min(s, size)))
        pos = max(pos, e)
    if pos < size:
        out.append((pos, size))
    return [(s, e) for s, e in out if s < e]
