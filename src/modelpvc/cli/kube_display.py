"""Output of the cluster commands: one line per preflight check, steps, warnings, and the Job's progress."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from modelpvc.cli.progress import TtyDisplay, count, human_seconds
from modelpvc.core.events import Event
from modelpvc.core.units import human_bytes


class KubeDisplay:
    """``summaries``: print a one-line summary of each Job's copy; a command that ends with its own verdict on
    the same copy (populate's "done:") turns it off, so that one copy is summed up once besides its log."""

    def __init__(self, stream: TextIO | None = None, tty: bool | None = None, summaries: bool = True) -> None:
        self.stream = stream or sys.stdout
        self.summaries = summaries
        self.tty = self.stream.isatty() if tty is None else tty
        self.live = TtyDisplay(self.stream) if self.tty else None
        self._last = 0.0

    def _print(self, text: str) -> None:
        if self.live is not None:
            self.live.close()
        self.stream.write(text + "\n")
        self.stream.flush()

    def emit(self, event: Event) -> None:
        d = event.data
        if event.kind == "check":
            self._print(f"  {'!' if d.get('warn') else '✓' if d['ok'] else '✗'} {d['message']}")
            if d.get("hint") and not d["ok"]:
                self._print(f"      {d['hint']}")
        elif event.kind == "step":
            self._print(f"==> {d['message']}")
        elif event.kind == "warning":
            self._print(f"  ! {d.get('path', '')}: {d.get('message')}")
        elif event.kind == "log":
            self._print(f"    | {d['line']}")
        elif event.kind == "summary" and self.summaries:
            verified = ", ".join(f"{n} by {how}" for how, n in (d.get("verified") or {}).items()) or "none"
            copied = count(d.get("fetched_files", 0), "file")
            self._print(f"    copied {copied} ({human_bytes(d.get('bytes_fetched', 0))}), "
                        f"{d.get('kept_files', 0)} unchanged, {d.get('linked_files', 0)} hard-linked, "
                        f"verified {verified}, revision {d.get('revision')}")
        elif event.kind == "tick":
            if self.live is not None:
                self.live.emit(event)
                return
            now = time.monotonic()
            if now - self._last < 5 and d["bytes_done"] < d["bytes_total"]:
                return
            self._last = now
            pct = 100.0 * d["bytes_done"] / max(1, d["bytes_total"])
            eta = d.get("eta_s")
            self._print(f"    {pct:5.1f}%  {human_bytes(d['bytes_done'])} / {human_bytes(d['bytes_total'])}  "
                        f"{d.get('mb_per_s') or 0:.0f} MB/s  ETA {human_seconds(eta) if eta is not None else '?'}")

    def close(self) -> None:
        if self.live is not None:
            self.live.close()
