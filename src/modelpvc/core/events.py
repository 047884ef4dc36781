"""Progress events the library emits; the CLI decides how to show them (TTY, JSON lines, nothing)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class Event:
    kind: str  # "plan", "file_start", "file_done", "retry", "tick", "summary", "warning"
    data: dict[str, Any] = field(default_factory=dict)


class ProgressSink(Protocol):
    def emit(self, event: Event) -> None: ...


class NullSink:
    def emit(self, event: Event) -> None:
        return None


class ListSink:
    """Collects events; handy in tests and for programs embedding the library."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def emit(self, event: Event) -> None:
        self.events.append(event)

    def kinds(self, kind: str) -> list[Event]:
        return [e for e in self.events if e.kind == kind]
