"""The limits a copy cannot beat on this machine, measured on the same bytes as the tools:

* the server read to /dev/null: one ``s5cmd cat`` per file, all files at once (what the source can give);
* MD5 of the same bytes from the page cache, one thread per file (what verifying an MD5 ETag costs at
  least: the CPU a verified copy cannot avoid);
* the destination disk alone: as many bytes written with no network and no hashing, one file per shard,
  8 MiB direct writes (buffered where the filesystem refuses O_DIRECT), then fsync (what any copy must wait
  for: every tool's wall time here includes a final ``sync``).
"""

from __future__ import annotations

import hashlib
import os
import resource
import subprocess
import threading
import time
from pathlib import Path

from modelpvc.devtools.s3server import RcloneS3, find_binary


def server_to_devnull(srv: RcloneS3, env: dict[str, str], prefix: str, files: list[Path]) -> tuple[float, float]:
    """(wall s, client CPU s) of reading every file from the server into /dev/null, all at once."""
    subprocess.run(["sync"], check=False)
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    procs = [subprocess.Popen([find_binary("s5cmd"), "--endpoint-url", srv.endpoint, "cat",
                               f"s3://bench/{prefix}/{f.name}"], env=env, stdout=subprocess.DEVNULL)
             for f in files]
    for p in procs:
        p.wait()
    wall = time.perf_counter() - t
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)


def md5_from_page_cache(files: list[Path]) -> tuple[float, float]:
    """(wall s, CPU s) of MD5 over the files, one thread each (hashlib releases the GIL), page cache warm."""
    def one(p: Path) -> None:
        h = hashlib.md5(usedforsecurity=False)
        buf = bytearray(4 << 20)
        view = memoryview(buf)
        with open(p, "rb", buffering=0) as fh:
            while n := fh.readinto(buf):
                h.update(view[:n])

    for p in files:  # warm
        with open(p, "rb") as fh:
            while fh.read(8 << 20):
                pass
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t = time.perf_counter()
    threads = [threading.Thread(target=one, args=(p,)) for p in files]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.perf_counter() - t
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    return wall, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)


def disk_alone(files: list[Path], dest: Path) -> tuple[float, float]:
    """(wall s, CPU s) of writing len(file) bytes per file into ``dest``, one thread per file, then fsync."""
    from modelpvc.store.volume.direct_io import CHUNK, aligned_buffer

    dest.mkdir(parents=True, exist_ok=True)

    def one(i: int, size: int) -> None:
        path = dest / f"disk-{i}.bin"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:  # what modelpvc does: aligned chunks around the page cache, the unaligned tail through it
            dfd = os.open(path, os.O_WRONLY | getattr(os, "O_DIRECT", 0))
        except OSError:
            dfd = fd
        buf = aligned_buffer(CHUNK)
        buf[:] = os.urandom(CHUNK)
        try:
            os.posix_fallocate(fd, 0, size)
            pos = 0
            while pos < size:
                n = min(CHUNK, size - pos)
                pos += os.pwrite(dfd if n % 4096 == 0 else fd, buf[:n], pos)
            os.fsync(fd)
        finally:
            if dfd != fd:
                os.close(dfd)
            os.close(fd)

    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t = time.perf_counter()
    threads = [threading.Thread(target=one, args=(i, p.stat().st_size)) for i, p in enumerate(files)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    subprocess.run(["sync"], check=False)
    wall = time.perf_counter() - t
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    for p in dest.glob("disk-*.bin"):
        p.unlink()
    return wall, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)


def shards(root: Path) -> list[Path]:
    """The weight files (what the limits move); a small --size-gb makes shards of tens of MB."""
    return sorted(p for p in root.iterdir() if p.is_file() and os.path.getsize(p) > 1024 * 1024)


def read_through(tree: Path) -> None:
    """Every file under ``tree`` read once, so that the runs after find it in the page cache."""
    for p in sorted(tree.rglob("*")):
        if p.is_file():
            with p.open("rb", buffering=0) as f:
                while f.read(8 << 20):
                    pass
