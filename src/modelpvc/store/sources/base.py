"""The ObjectSource protocol: what ``transfer`` and ``model`` need from a place that holds objects."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from modelpvc.core.errors import ConfigError
from modelpvc.core.models import ObjectInfo

# Called with (offset in the object, bytes) as data arrives; the view is only valid during the call,
# unless the callback hands its buffer on (see Buffers).
DataCallback = Callable[[int, memoryview], None]
# Called with the checksum a whole-object GET answered with, (algorithm, base64 value), or None.
ChecksumCallback = Callable[[tuple[str, str] | None], None]


class Buffers(Protocol):
    """Where a read puts the next bytes: the same buffer again, or (writing behind) the next free one of a
    ring while earlier ones are still being written (store.direct_io.WriteBehind)."""

    def next(self, n: int) -> memoryview:
        """A buffer of at most ``n`` bytes (and at least one) to read into."""
        ...


class OneBuffer:
    def __init__(self, buf: memoryview) -> None:
        self.buf = buf

    def next(self, n: int) -> memoryview:
        return self.buf[:n]


class WholeReads(Protocol):
    """The reader's side of ``read_many``: small objects read whole, many at once, in one thread."""

    def next(self) -> tuple[ObjectInfo, bool] | None:
        """The next object, and whether to ask for its stored checksum; None when there is none."""
        ...

    def started(self, obj: ObjectInfo, checksum: tuple[str, str] | None) -> None:
        """Its answer arrived: what ``ChecksumCallback`` would be told (None when not asked)."""
        ...

    def data(self, obj: ObjectInfo, offset: int, view: memoryview) -> None: ...

    def done(self, obj: ObjectInfo) -> None: ...

    def failed(self, obj: ObjectInfo, error: Exception) -> None:
        """Not read here (what ``data`` got of it is void): read it with ``read``, which retries and explains."""
        ...


@dataclass(frozen=True)
class SourceURI:
    scheme: str  # "s3" or "file"
    bucket: str  # for file://, the directory
    prefix: str  # always "" or ending in "/"

    def __str__(self) -> str:
        if self.scheme == "file":
            return f"file://{self.bucket}/{self.prefix}".rstrip("/") + "/"
        return f"s3://{self.bucket}/{self.prefix}"


def parse_source(uri: str) -> SourceURI:
    """Parse ``s3://bucket/prefix/`` or ``file:///dir``. A prefix always names a directory."""
    if uri.startswith("s3://"):
        rest = uri[5:]
        bucket, _, prefix = rest.partition("/")
        if not bucket:
            raise ConfigError(f"source {uri!r} has no bucket", hint="write it as s3://BUCKET/PREFIX/")
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        return SourceURI("s3", bucket, prefix)
    if uri.startswith("file://"):
        path = uri[7:].rstrip("/") or "/"
        return SourceURI("file", path, "")
    raise ConfigError(
        f"unsupported source {uri!r}", hint="use s3://BUCKET/PREFIX/ (or file:///DIR for development)"
    )


class ObjectSource(Protocol):
    """A listing plus ranged reads. Implementations translate their errors into ``core.errors``."""

    uri: SourceURI

    @property
    def endpoint(self) -> str: ...

    def list_objects(self) -> list[ObjectInfo]:
        """Every object below the prefix; raises SourceNotFound when there is none."""
        ...

    def read(
        self, obj: ObjectInfo, start: int, end: int, bufs: Buffers, on_data: DataCallback,
        on_checksum: ChecksumCallback | None = None,
    ) -> None:
        """One attempt to stream bytes [start, end) of ``obj`` into ``on_data``.

        ``on_checksum``, for a read of the whole object: told, before any data, the full-object checksum
        the source stored, as ``full_checksum`` would answer (None when it has none or does not say).
        Raises TransientError (retry it, from where the data stopped) or a permanent error.
        """
        ...

    def read_many(self, reads: WholeReads, connections: int, stop: Callable[[], bool]) -> bool:
        """Read whole every object ``reads`` hands out, ``connections`` at a time, in the calling thread, until
        none is left or ``stop()``. False, having read nothing, when this source reads one object at a
        time only."""
        ...

    def part_size(self, obj: ObjectInfo) -> int | None:
        """The upload part size of a multipart object, when the endpoint reveals it."""
        ...

    def full_checksum(self, obj: ObjectInfo) -> tuple[str, str] | None:
        """A full-object checksum (algorithm, base64 value) when the source stores one."""
        ...

    def nearest_prefixes(self, limit: int = 5) -> list[str]:
        """Existing prefixes that look like the requested one, for "not found" messages."""
        ...

    def close(self) -> None: ...


def read_bytes(source: ObjectSource, obj: ObjectInfo, start: int, end: int) -> bytes:
    """A few bytes of an object (headers for ``plan``), retried like any metadata request."""
    from modelpvc.core.retry import call_with_retries

    out = bytearray(end - start)
    buf = memoryview(bytearray(min(1 << 20, max(1, end - start))))

    def put(off: int, data: memoryview) -> None:
        out[off - start: off - start + len(data)] = data

    def once() -> bytes:
        source.read(obj, start, end, OneBuffer(buf), put)
        return bytes(out)

    return call_with_retries(once, attempts=3, base=0.2, cap=2.0)
