"""The preflight's lines: one event per check, passed, failed, or passed with a risk to act on."""

from __future__ import annotations

from modelpvc.core.events import Event, ProgressSink


def check(sink: ProgressSink, ok: bool, message: str, hint: str | None = None, warn: bool = False) -> None:
    sink.emit(Event("check", {"ok": ok, "message": message, "hint": hint, "warn": warn}))
