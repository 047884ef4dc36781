"""How a file is cut into upload parts. S3's rules: parts of at least 5 MiB except the last, at most
10,000 of them (AWS S3 "Multipart upload limits"; MinIO and Ceph RGW follow them)."""

from __future__ import annotations

MiB = 1024 * 1024
MIN_PART = 5 * MiB
MAX_PARTS = 10_000


def part_size(size: int, preferred: int) -> int:
    """The part size for a file: ``preferred``, grown (in whole MiB) until 10,000 parts cover the file.
    The same inputs always give the same answer: a resumed upload's parts line up with the new run's."""
    p = max(MIN_PART, preferred)
    need = -(-size // MAX_PARTS)
    if need > p:
        p = -(-need // MiB) * MiB
    return p


def single_put(size: int, part: int) -> bool:
    """One PUT (bytes in memory, checked before anything is sent) instead of a multipart upload."""
    return size <= part


def ranges(size: int, part: int) -> list[tuple[int, int, int]]:
    """(part number from 1, start, end) covering the file."""
    return [(i + 1, s, min(s + part, size)) for i, s in enumerate(range(0, size, part))]
