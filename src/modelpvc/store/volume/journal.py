"""The resume journal: which byte ranges of which ``.partial`` files are written, and which files were
published under their final names.

The invariant: a record is believed only if the bytes it describes survive whatever stopped the run.

* Workers append a record as soon as their bytes are written (``pwrite`` returned), without waiting for
  the disk, every few MiB of a range and at its end. A killed process (SIGKILL, OOM, a pod deleted) loses
  nothing that is in the page cache, so these records are true after a kill on the same machine.
* Every second the run makes the open files durable (fdatasync, syncfs) and appends a ``sync`` marker:
  everything before the last marker is on the disk, and true after a power loss or a node crash too.
* Each run stamps its records with the kernel's boot id. On load, records after the last ``sync`` are
  believed only when written since the current boot (the page cache they rely on is still there).

A resumed run first makes the believed state durable (one syncfs), rewrites the journal compactly, then
appends. Losing the journal only costs work: files are verified before they are published, and files
found complete on disk are hashed and adopted rather than fetched.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from modelpvc.core.models import FileRecord
from modelpvc.store.volume.fs import destination_error, syncfs, write_atomic

JOURNAL_NAME = "journal.jsonl"
RangeKey = tuple[str, str, int]  # (path, etag, size): a range only counts for the same object version


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""  # unknown: only records behind a sync marker are believed


@dataclass
class JournalState:
    ranges: dict[RangeKey, list[tuple[int, int]]] = field(default_factory=dict)
    published: dict[str, FileRecord] = field(default_factory=dict)
    unsynced: bool = False  # believed records not yet known to be on disk


def _merge(rs: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for s, e in sorted(rs):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(e, out[-1][1]))
        else:
            out.append((s, e))
    return out


class Journal:
    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / JOURNAL_NAME
        self._lock = threading.Lock()
        self._fh: TextIO | None = None
        self._lines = 0  # lines in the file: sync markers name how many they cover
        self._held = threading.local()  # this thread's records inside ``together``

    def load(self) -> JournalState:
        """What the journal can be believed to say (see the module docstring). A torn last line is ignored."""
        try:
            lines = self.path.read_text().splitlines()
        except FileNotFoundError:
            return JournalState()
        records: list[tuple[int, dict[str, Any]]] = []  # (line number, record): markers count lines
        for i, line in enumerate(lines):
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict):
                records.append((i, rec))
        # A marker covers the records appended before its run started syncing ("upto"), not those
        # appended while it synced.
        last_sync = max((int(r.get("upto", i)) for i, r in records if r.get("t") == "sync"), default=-1)
        now = boot_id()
        boot = None
        raw: dict[RangeKey, list[tuple[int, int]]] = {}
        state = JournalState()
        for i, rec in records:
            kind = rec.get("t")
            if kind == "boot":
                boot = rec.get("id")
                continue
            durable = i < last_sync
            if not durable and not (now and boot == now):
                continue
            try:
                if kind == "range":
                    raw.setdefault((rec["path"], rec["etag"], int(rec["size"])), []).append(
                        (int(rec["start"]), int(rec["end"])))
                elif kind == "drop":  # a file that failed verification: its written ranges are not the object
                    for key in [k for k in raw if k[0] == rec["path"]]:
                        del raw[key]
                elif kind == "published":
                    record = FileRecord.from_json(rec["file"])
                    state.published[rec["path"]] = record
                    raw.pop((rec["path"], record.etag, record.size), None)
                else:
                    continue
            except (KeyError, TypeError, ValueError):
                continue
            state.unsynced |= not durable
        state.ranges = {k: _merge(v) for k, v in raw.items()}
        return state

    def begin(self, dest: Path) -> JournalState:
        """Load, make what is believed durable, rewrite compactly, and start appending for this run."""
        state = self.load()
        if state.unsynced:
            syncfs(dest)
        lines = [{"t": "range", "path": p, "etag": e, "size": z, "start": s, "end": n}
                 for (p, e, z), rs in sorted(state.ranges.items()) for s, n in rs]
        lines += [{"t": "published", "path": r.path, "file": r.to_json()} for r in state.published.values()]
        if lines:
            lines.append({"t": "sync", "upto": len(lines)})
            write_atomic(self.path, "".join(json.dumps(x, separators=(",", ":")) + "\n" for x in lines).encode())
        else:
            self.path.unlink(missing_ok=True)
        self._lines = len(lines)
        self._append([{"t": "boot", "id": boot_id(), "pid": os.getpid()}])
        state.unsynced = False
        return state

    @contextlib.contextmanager
    def together(self) -> Iterator[None]:
        """Records this thread appends inside go to the file in one write when it ends (sixteen small
        files published together: one line each, one system call). Appended later, a record only says
        less after a kill: a file published but not journalled is hashed again, never trusted."""
        held: list[dict[str, Any]] = []
        self._held.records = held
        try:
            yield
        finally:
            self._held.records = None
            self._append(held)

    def _append(self, records: list[dict[str, Any]]) -> None:
        held = getattr(self._held, "records", None)
        if held is not None:
            held += records
            return
        if not records:
            return  # nothing to say: no empty write
        with self._lock:
            try:
                if self._fh is None:
                    self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
                self._fh.write("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records))
                self._fh.flush()  # into the page cache now: a kill must not lose it
                self._lines += len(records)
            except OSError as e:
                raise destination_error(e, self.path, "writing the journal") from e

    def ranges_written(self, items: list[tuple[str, str, int, int, int]]) -> None:
        """(path, etag, size, start, end): bytes written into the ``.partial`` (not necessarily durable)."""
        self._append([{"t": "range", "path": p, "etag": et, "size": sz, "start": s, "end": e}
                      for p, et, sz, s, e in items])

    def published(self, records: list[FileRecord]) -> None:
        self._append([{"t": "published", "path": r.path, "file": r.to_json()} for r in records])

    def dropped(self, path: str) -> None:
        """The ranges written for ``path`` so far do not hold the object (it failed verification)."""
        self._append([{"t": "drop", "path": path}])

    def mark(self) -> int:
        """Take before making files durable; pass to ``synced`` after."""
        with self._lock:
            return self._lines

    def synced(self, upto: int) -> None:
        """The records appended before ``mark()`` returned ``upto`` describe durable bytes."""
        self._append([{"t": "sync", "upto": upto}])

    def close(self) -> None:
        with self._lock:
            if self._fh is not None:
                with contextlib.suppress(OSError):
                    self._fh.close()
                self._fh = None

    def remove(self) -> None:
        self.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
