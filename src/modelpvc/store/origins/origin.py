"""Where ``import`` reads a model from: a Hugging Face repository or a local directory (the Origin
protocol), and what it knows about each file before reading it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from modelpvc.core.models import ObjectInfo
from modelpvc.core.provenance import Published


@dataclass(frozen=True)
class OriginFile:
    rel: str  # path below the model's root, "/"-separated
    size: int
    published: Published = field(default_factory=Published)
    mtime_ns: int | None = None  # local files only

    def as_object(self) -> ObjectInfo:
        """For the selection rules shared with ``mirror`` (model.select)."""
        return ObjectInfo(key=self.rel, rel=self.rel, size=self.size, etag="")


class Origin(Protocol):
    origin: dict[str, Any]  # what source.json records as the origin; never a token

    def describe(self) -> str: ...

    def files(self) -> list[OriginFile]:
        """Every file of the model; raises SourceNotFound / SourceGated / AccessDenied as it can tell."""
        ...

    def read_into(self, f: OriginFile, start: int, out: memoryview) -> None:
        """One attempt to fill ``out`` with bytes [start, start + len(out)); TransientError to retry."""
        ...

    def close(self) -> None: ...
