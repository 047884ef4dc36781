"""Range arithmetic: how an object is cut into GETs, and which bytes a set of ranges covers."""

from __future__ import annotations

from collections.abc import Iterable


def split(size: int, part: int) -> list[tuple[int, int]]:
    """Half-open ranges of at most ``part`` bytes covering [0, size); one empty range for size 0."""
    if size == 0:
        return [(0, 0)]
    if part <= 0 or part >= size:
        return [(0, size)]
    return [(s, min(s + part, size)) for s in range(0, size, part)]


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
