"""A local directory as a source (``file:///dir``), for development and tests without a server."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

from modelpvc.core.errors import SourceError, SourceNotFound
from modelpvc.core.models import ObjectInfo
from modelpvc.store.sources.base import Buffers, ChecksumCallback, DataCallback, SourceURI, WholeReads


class LocalSource:
    """Lists a directory tree; the "ETag" is size and mtime, enough to notice a change."""

    def __init__(self, uri: SourceURI) -> None:
        self.uri = uri
        self.root = Path(uri.bucket)

    @property
    def endpoint(self) -> str:
        return "file://"

    def list_objects(self) -> list[ObjectInfo]:
        if not self.root.is_dir():
            raise SourceNotFound(f"directory {self.root} does not exist")
        out: list[ObjectInfo] = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = [d for d in dirnames if d != ".modelpvc"]
            for name in filenames:
                p = Path(dirpath, name)
                st = p.stat()
                rel = p.relative_to(self.root).as_posix()
                tag = hashlib.md5(f"{st.st_size}:{st.st_mtime_ns}".encode(), usedforsecurity=False)
                out.append(ObjectInfo(key=rel, rel=rel, size=st.st_size, etag="local:" + tag.hexdigest()))
        if not out:
            raise SourceNotFound(f"directory {self.root} holds no files")
        return sorted(out, key=lambda o: o.rel)

    def read(
        self, obj: ObjectInfo, start: int, end: int, bufs: Buffers, on_data: DataCallback,
        on_checksum: ChecksumCallback | None = None,
    ) -> None:
        if on_checksum is not None and start == 0 and end == obj.size:
            on_checksum(None)  # files carry no stored checksum
        try:
            fd = os.open(self.root / obj.rel, os.O_RDONLY)
        except OSError as e:
            raise SourceError(f"cannot read {self.root / obj.rel}: {e.strerror}") from e
        try:
            pos = start
            while pos < end:
                view = bufs.next(end - pos)
                n = os.preadv(fd, [view], pos)
                if not n:
                    raise SourceError(f"{self.root / obj.rel} shrank while being copied")
                on_data(pos, view[:n])
                pos += n
        finally:
            os.close(fd)

    def read_many(self, reads: WholeReads, connections: int, stop: Callable[[], bool]) -> bool:
        return False  # a local read costs no round trip: one by one

    def part_size(self, obj: ObjectInfo) -> int | None:
        return None

    def full_checksum(self, obj: ObjectInfo) -> tuple[str, str] | None:
        return None

    def nearest_prefixes(self, limit: int = 5) -> list[str]:
        return []

    def close(self) -> None:
        return None
