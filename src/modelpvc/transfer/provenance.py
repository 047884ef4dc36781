"""``mirror`` and a source prefix's ``.modelpvc/source.json`` (written by ``import``): split it from the
listing, check the listing still is what it recorded, and verify each file against its SHA-256.

A prefix whose objects no longer match the record (replaced, removed) is refused rather than copied with
a provenance it does not have; objects the record does not cover are copied and reported.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from modelpvc.core.digests import Expectation
from modelpvc.core.errors import IntegrityError, SourceNotFound
from modelpvc.core.events import Event, ProgressSink
from modelpvc.core.models import ObjectInfo
from modelpvc.core.provenance import SOURCE_KEY, SourceRecord, sha256_b64
from modelpvc.store.sources.base import ObjectSource, read_bytes

KIND = "source-sha256"  # what the manifest records as ``verified``


@dataclass
class Provenance:
    record: SourceRecord
    etag: str  # of source.json itself
    uncovered: list[str] = field(default_factory=list)  # objects the record does not list

    def expectation(self, rel: str) -> Expectation | None:
        rec = self.record.by_path().get(rel)
        if rec is None:
            return None
        return Expectation(KIND, "whole", "sha256", sha256_b64(rec.sha256))

    def to_manifest(self) -> dict[str, object]:
        return {"source_json": SOURCE_KEY, "etag": self.etag, "origin": self.record.origin,
                "created_at": self.record.created_at, "tool": self.record.tool,
                "files": {f.path: f.sha256 for f in self.record.files}}


def load_record(source: ObjectSource, obj: ObjectInfo, objects: list[ObjectInfo]) -> Provenance:
    where = f"{source.uri}{SOURCE_KEY}"
    try:
        record = SourceRecord.from_json(json.loads(read_bytes(source, obj, 0, obj.size)))
    except (ValueError, KeyError, TypeError) as e:
        raise IntegrityError(f"{where} is not a source record modelpvc can read ({e})",
                             hint="re-run `modelpvc import` for this prefix, or delete that object") from e
    listed = {o.rel: o for o in objects}
    problems = []
    for f in record.files:
        o = listed.get(f.path)
        if o is None:
            problems.append(f"{f.path} is recorded but missing")
        elif o.size != f.size or (f.etag and o.etag != f.etag):
            problems.append(f"{f.path} was replaced after the import (size {o.size}, ETag {o.etag}; recorded "
                            f"{f.size}, {f.etag})")
    if problems:
        raise IntegrityError(f"{source.uri} no longer matches its {SOURCE_KEY} ({len(problems)} problem(s): "
                             + "; ".join(problems[:3]) + ")",
                             hint="re-run `modelpvc import` to bring the prefix and its record together, or delete "
                                  f"{SOURCE_KEY} to copy the prefix without provenance")
    covered = {f.path for f in record.files}
    return Provenance(record, obj.etag, sorted(rel for rel in listed if rel not in covered))


def wait_for_record(source: ObjectSource, timeout: float, sink: ProgressSink, poll: float = 5.0,
                    sleep: Callable[[float], None] = time.sleep) -> None:
    """Block until an import has written the prefix's source.json (last, so the prefix is complete then).

    A populate Job rendered beside an import Job starts at the same time under plain ``kubectl apply``;
    this is how it waits for the import instead of copying a half-filled prefix."""
    deadline = time.monotonic() + timeout
    told = 0.0
    lister = getattr(source, "list_all", source.list_objects)
    while True:
        try:
            objects = lister()
        except SourceNotFound:
            objects = []
        if any(o.rel == SOURCE_KEY for o in objects):
            return
        now = time.monotonic()
        if now >= deadline:
            raise SourceNotFound(f"no import finished into {source.uri} within {timeout:.0f}s ({SOURCE_KEY} is "
                                 "not there)", hint="look at the import Job's log (kubectl logs job/NAME-import)")
        if now - told >= 60 or not told:
            sink.emit(Event("waiting", {"message": f"waiting for an import into {source.uri} to write {SOURCE_KEY}",
                                        "seconds_left": round(deadline - now)}))
            told = now
        sleep(min(poll, max(0.0, deadline - now)))
