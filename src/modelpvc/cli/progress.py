"""Progress display: a live line on a TTY, JSON lines for programs, lines for people reading a pod's log,
or nothing."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import threading
import time
from typing import Any, TextIO

from modelpvc.core.events import Event, NullSink, ProgressSink
from modelpvc.core.units import human_bytes


def count(n: object, noun: str) -> str:
    """ "1 file", "2 files": people read the summaries."""
    return f"{n} {noun}" + ("" if n == 1 else "s")


def rate_and_eta(tick: dict[str, Any]) -> tuple[float, float | None]:
    """(bytes/s, seconds left) of a tick: the copier's own figures when it sent them (a populate Job's pod
    does; the command following it only knows when the lines arrived), else from its elapsed seconds."""
    if tick.get("mb_per_s") is not None:
        return float(tick["mb_per_s"]) * 1e6, tick.get("eta_s")
    rate = tick["bytes_done"] / max(float(tick.get("seconds") or 0.0), 1e-6) if tick.get("seconds") else 0.0
    left = max(0, tick["bytes_total"] - tick["bytes_done"])
    return rate, (left / rate if rate > 0 else None)


def human_seconds(s: float) -> str:
    s = max(0, int(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class JsonLines:
    """One JSON object per line on stderr: a tick every ``interval`` seconds, every file, the summary."""

    def __init__(self, stream: TextIO | None = None, interval: float = 2.0) -> None:
        self.stream = stream or sys.stderr
        self.interval = interval
        self._last = 0.0
        self._lock = threading.Lock()  # workers and the main loop emit concurrently

    def _write(self, obj: dict[str, Any]) -> None:
        self.stream.write(json.dumps(obj, separators=(",", ":")) + "\n")
        self.stream.flush()

    def emit(self, event: Event) -> None:
        with self._lock:
            self._emit(event)

    def _emit(self, event: Event) -> None:
        if event.kind == "tick":
            now = time.monotonic()
            if now - self._last < self.interval:
                return
            self._last = now
            d = event.data
            rate, eta = rate_and_eta(d)
            self._write({"event": "progress", "bytes_done": d["bytes_done"], "bytes_total": d["bytes_total"],
                         "mb_per_s": round(rate / 1e6, 1), "eta_s": round(eta, 1) if eta is not None else None})
            return
        self._write({"event": event.kind, **event.data})


class TtyDisplay:
    """A single refreshing status line (total, rate, ETA, current files) plus a line per finished file."""

    def __init__(self, stream: TextIO | None = None, verbose: bool = False) -> None:
        self.stream = stream or sys.stderr
        self.current: dict[str, int] = {}
        self.verbose = verbose
        self._last = 0.0
        self._width = 0
        self._lock = threading.Lock()

    def _line(self, text: str) -> None:
        text = text[: max(20, shutil.get_terminal_size().columns - 1)]
        pad = max(0, self._width - len(text))
        self.stream.write("\r" + text + " " * pad)
        self._width = len(text)
        self.stream.flush()

    def _println(self, text: str) -> None:
        self._line("")
        self.stream.write("\r" + text + "\n")
        self._width = 0

    def emit(self, event: Event) -> None:
        with self._lock:
            self._emit(event)

    def _emit(self, event: Event) -> None:
        d = event.data
        if event.kind == "file_start":
            self.current[d["path"]] = d["size"]
        elif event.kind == "file_done":
            self.current.pop(d["path"], None)
            if self.verbose:
                self._println(f"  done {d['path']} ({human_bytes(d['size'])}, verified: {d['verified']})")
        elif event.kind in ("retry", "warning"):
            self._println(f"  {event.kind}: {d.get('path', '')}: {d.get('error') or d.get('message')}")
        elif event.kind == "tick":
            now = time.monotonic()
            if now - self._last < 0.2 and d["bytes_done"] < d["bytes_total"]:
                return
            self._last = now
            rate, left = rate_and_eta(d)
            total = max(d["bytes_total"], 1)
            pct = 100.0 * d["bytes_done"] / total
            eta = human_seconds(left) if left is not None else "?"
            names = ", ".join(sorted(self.current)[:2]) + (" …" if len(self.current) > 2 else "")
            self._line(f"{pct:5.1f}%  {human_bytes(d['bytes_done'])} / {human_bytes(total)}  "
                       f"{human_bytes(rate)}/s  ETA {eta}  {names}"[:160])

    def close(self) -> None:
        if self._width:
            self._line("")
            self.stream.write("\r")
            self.stream.flush()


class LogLines:
    """Lines for someone reading ``oc logs -f`` on a Job nobody follows from a terminal: the plan, a progress
    line every ``interval`` seconds, retries and warnings; no ``\\r``, no JSON (the run's summary and error
    records still end the log, for programs)."""

    def __init__(self, stream: TextIO | None = None, interval: float = 10.0, verbose: bool = False) -> None:
        self.stream = stream or sys.stderr
        self.interval = interval
        self.verbose = verbose
        self._last = 0.0
        self._lock = threading.Lock()

    def _write(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def emit(self, event: Event) -> None:
        with self._lock:
            self._emit(event)

    def _emit(self, event: Event) -> None:
        d = event.data
        if event.kind == "tick":
            now = time.monotonic()
            if now - self._last < self.interval and d["bytes_done"] < d["bytes_total"]:
                return
            self._last = now
            rate, left = rate_and_eta(d)
            total = max(d["bytes_total"], 1)
            eta = f", about {human_seconds(left)} left" if left is not None and d["bytes_done"] < total else ""
            self._write(f"{100.0 * d['bytes_done'] / total:5.1f} %  {human_bytes(d['bytes_done'])} of "
                        f"{human_bytes(total)} at {human_bytes(rate)}/s{eta}")
        elif event.kind == "plan":
            self._write(_plan_line(d))
            for note in d.get("notes") or []:
                self._write(f"note: {note}")
        elif event.kind in ("retry", "warning"):
            self._write(f"{event.kind}: {d.get('path', '')}: {d.get('error') or d.get('message')}")
        elif event.kind in ("step", "waiting"):
            self._write(str(d.get("message", "")))
        elif event.kind == "file_done" and self.verbose:
            self._write(f"done {d['path']} ({human_bytes(d['size'])}, verified: {d['verified']})")


def _plan_line(d: dict[str, Any]) -> str:
    if "origin" in d:  # import
        return (f"plan: {d['origin']} -> {d['destination']}: {human_bytes(d.get('bytes_to_send', 0))} to send")
    fetch = d["fetch"]["files"] + d["resume"]["files"]
    return (f"plan: {d['source']}: {count(fetch, 'file')} to fetch ({human_bytes(d['bytes_to_fetch'])}), "
            f"{d['keep']['files']} unchanged, {d['link']['files']} hard-linked, {d['skip']['files']} not selected")


def choose_sink(args: argparse.Namespace) -> tuple[ProgressSink, bool]:
    """(sink, whether the run ends with its JSON summary record) from --progress/-q/-v: a live line on a
    terminal, JSON lines for programs (also off a terminal, by default), lines for a pod's log."""
    mode = "none" if args.quiet else args.progress
    if mode == "auto":
        mode = "tty" if sys.stderr.isatty() else "json"
    if mode == "json":
        return JsonLines(interval=args.progress_interval or 2.0), True
    if mode == "log":
        return LogLines(interval=args.progress_interval or 10.0, verbose=args.verbose), True
    if mode == "tty":
        return TtyDisplay(verbose=args.verbose), False
    return NullSink(), False


def json_errors(args: argparse.Namespace) -> bool:
    """Whether a failure also ends the output with its JSON error record (after the message for people)."""
    return args.progress in ("json", "log") or (args.progress == "auto" and not sys.stderr.isatty()
                                                 and not args.quiet)


def add_output_arguments(g: argparse._ArgumentGroup) -> None:
    """--progress, --progress-interval, -q, -v: the same for every long-running command."""
    g.add_argument("--progress", choices=["auto", "tty", "json", "log", "none"], default="auto",
                   help="auto: a live line on a terminal, JSON lines on stderr otherwise; log: plain lines for "
                        "people reading a pod's log (oc logs -f), ending with the JSON summary record")
    g.add_argument("--progress-interval", type=float, default=None, metavar="S",
                   help="seconds between progress records (default 2 for json, 10 for log)")
    g.add_argument("-q", "--quiet", action="store_true", help="no progress and no summary; errors only")
    g.add_argument("-v", "--verbose", action="store_true", help="a line per finished file")


def write_summary_record(summary: dict[str, Any]) -> None:
    """The run's last JSON line on stderr: what populate and other programs read from a pod's log, which
    interleaves stdout and stderr as they are written (stdout to a pipe is block-buffered: flushed first)."""
    sys.stdout.flush()
    sys.stderr.write(json.dumps({"event": "summary", **summary}, separators=(",", ":")) + "\n")
