"""The resume journal: ranges written into ``.partial`` files, and files published under final names.

Lines are appended only after the data they describe was fdatasync'ed, so a journal never claims more
than the disk holds; losing the journal only costs a re-download. It is removed once the manifest is
written.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections import defaultdict
from pathlib import Path
from typing import Any

from modelpvc.core.models import FileRecord
from modelpvc.store.localfs import destination_error

JOURNAL_NAME = "journal.jsonl"


class Journal:
    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / JOURNAL_NAME
        self._lock = threading.Lock()
        self._fh: Any = None

    def load(self) -> tuple[dict[tuple[str, str, int], list[tuple[int, int]]], dict[str, FileRecord]]:
        """(ranges per (path, etag, size), published records). A torn last line is ignored."""
        ranges: dict[tuple[str, str, int], list[tuple[int, int]]] = defaultdict(list)
        published: dict[str, FileRecord] = {}
        try:
            lines = self.path.read_text().splitlines()
        except FileNotFoundError:
            return {}, {}
        for line in lines:
            try:
                rec = json.loads(line)
                if rec["t"] == "range":
                    ranges[(rec["path"], rec["etag"], rec["size"])].append((rec["start"], rec["end"]))
                elif rec["t"] == "published":
                    published[rec["path"]] = FileRecord.from_json(rec["file"])
                    ranges.pop((rec["path"], rec["file"]["etag"], rec["file"]["size"]), None)
            except (ValueError, KeyError, TypeError):
                continue
        return dict(ranges), published

    def _append(self, records: list[dict[str, Any]]) -> None:
        with self._lock:
            try:
                if self._fh is None:
                    self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
                self._fh.write("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records))
                self._fh.flush()
            except OSError as e:
                raise destination_error(e, self.path, "writing the journal") from e

    def ranges_done(self, items: list[tuple[str, str, int, int, int]]) -> None:
        """Record (path, etag, size, start, end) ranges whose data is already durable."""
        if items:
            self._append([
                {"t": "range", "path": p, "etag": et, "size": sz, "start": s, "end": e}
                for p, et, sz, s, e in items
            ])

    def published(self, record: FileRecord) -> None:
        self._append([{"t": "published", "path": record.path, "file": record.to_json()}])

    def published_many(self, records: list[FileRecord]) -> None:
        if records:
            self._append([{"t": "published", "path": r.path, "file": r.to_json()} for r in records])

    def close(self) -> None:
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None

    def remove(self) -> None:
        self.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
