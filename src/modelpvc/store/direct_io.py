"""Writing large files around the page cache (``O_DIRECT``) where the filesystem does it well.

Why: a buffered write copies every byte into a freshly allocated page-cache page. perf on the 8 GB bench
(docs/decisions.md §14) puts that copy (``copy_folio_from_iter_atomic``) at 0.9-1.1 CPU-s/GB on this VM —
more than half of an unverified copy's CPU and a quarter of a verified one's — and the final fsync still
has to push every page to the disk. A direct write hands the aligned buffer to the block layer instead:
no copy, no dirty pages evicting the node's cache, and the fsync only flushes metadata.

Opt-in (``mirror --direct-io``): on this VM's disk, whose throughput follows its IOPS, synchronous 1 MiB
writes at a queue depth of one per worker were slower than the kernel's merged writeback (up to 4 MiB
requests), while saving ~1 CPU-s/GB; a CPU-limited pod on a fast disk gains, an IOPS-bound volume may not.

Where: only local block filesystems (ext4, xfs, btrfs: what a CSI block volume or a node's disk is
formatted with). On NFS/CephFS/FUSE ``O_DIRECT`` is accepted but turns each write into a synchronous round
trip, so those keep buffered writes. The mount's type comes from /proc/self/mountinfo (proc(5)).

Rules of ``O_DIRECT`` (open(2), "O_DIRECT"): buffer address, file offset and length aligned to the logical
block size. Our worker buffers are anonymous mmaps (page-aligned) and ranges start on MiB boundaries, so
only a range's unaligned tail goes through the ordinary descriptor. A filesystem or device that still says
EINVAL makes the file fall back to buffered writes.
"""

from __future__ import annotations

import errno
import mmap
import os
from functools import lru_cache
from pathlib import Path

ALIGN = 4096  # the largest logical block size in use (4Kn disks); 512-byte devices accept it too
DIRECT_FILESYSTEMS = frozenset({"ext4", "xfs", "btrfs"})
MOUNTINFO = Path("/proc/self/mountinfo")


def aligned_buffer(size: int) -> memoryview:
    """A page-aligned buffer (an anonymous mapping), usable for direct writes."""
    return memoryview(mmap.mmap(-1, size))


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
