"""``verify``: a directory against its structure, its manifest, its digests, and optionally its source."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from modelpvc.core.manifest import Manifest
from modelpvc.core.models import FileRecord, ObjectInfo
from modelpvc.model.findings import Finding
from modelpvc.model.layout import check_directory
from modelpvc.store.localfs import read_manifest
from modelpvc.verify.report import VerifyReport

_BLOCK = 8 * 1024 * 1024


def _local_names(root: Path) -> list[str]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        if dirpath == str(root):
            dirnames[:] = [d for d in dirnames if d != ".modelpvc"]
        for n in filenames:
            rel = os.path.relpath(os.path.join(dirpath, n), root).replace(os.sep, "/")
            out.append(rel)
    return sorted(out)


def verify_directory(root: Path, *, deep: bool = False, require_manifest: bool = False,
                     source_objects: list[ObjectInfo] | None = None, source_uri: str | None = None,
                     workers: int = 4, on_hashed: Callable[[FileRecord, bool], None] | None = None) -> VerifyReport:
    """Structure, manifest, optionally every digest (``on_hashed`` is told as each file finishes) and the
    source. A deep check of 100 GB takes minutes; the callback lets a caller show progress."""
    names = _local_names(root)
    manifest = read_manifest(root)
    partials = [n for n in names if n.endswith(".partial")]
    names = [n for n in names if not n.endswith(".partial")]
    report = VerifyReport(directory=str(root), structure=check_directory(root, names), deep=deep,
                          source=source_uri)
    for p in partials:
        report.findings.append(Finding(p, "partial", "an unfinished download is present (a copy was interrupted)"))
    if manifest is None:
        sev = "error" if require_manifest else "warning"
        report.findings.append(Finding(".modelpvc/manifest.json", "no-manifest",
                                       "no manifest: this directory was not completed by `modelpvc mirror`",
                                       severity=sev))
    else:
        report.manifest = {"revision": manifest.revision, "source": manifest.source,
                           "files": len(manifest.files), "bytes": manifest.total_bytes,
                           "completed_at": manifest.completed_at}
        _against_manifest(root, manifest, set(names), report)
        if deep:
            _deep(root, manifest, report, workers, on_hashed)
    if source_objects is not None:
        _against_source(manifest, names, source_objects, report)
    return report


def _against_manifest(root: Path, m: Manifest, names: set[str], report: VerifyReport) -> None:
    for f in m.files:
        p = root / f.path
        if f.path not in names:
            report.findings.append(Finding(f.path, "missing", "listed in the manifest but missing"))
            continue
        size = p.stat().st_size
        if size != f.size:
            report.findings.append(Finding(f.path, "size", f"{size} bytes, the manifest says {f.size}"))
    listed = {f.path for f in m.files}
    for n in sorted(names - listed):
        report.findings.append(Finding(n, "extra", "not in the manifest", severity="warning"))


def file_digest(path: Path, rec: FileRecord) -> tuple[str, str] | None:
    """(kind, value) recomputed the way the manifest recorded it, or None if it recorded none."""
    d = rec.digest
    if "multipart-etag" in d:
        part = int(d.get("part_size", "0")) or _BLOCK
        md5s = []
        size = path.stat().st_size
        with open(path, "rb", buffering=0) as fh:
            for start in range(0, size, part):
                h = hashlib.md5(usedforsecurity=False)
                left = min(part, size - start)
                while left:
                    chunk = fh.read(min(_BLOCK, left))
                    if not chunk:
                        break
                    h.update(chunk)
                    left -= len(chunk)
                md5s.append(h.digest())
        return "multipart-etag", hashlib.md5(b"".join(md5s), usedforsecurity=False).hexdigest() + f"-{len(md5s)}"
    for algo in ("md5", "sha256", "sha1"):
        if algo in d:
            h = hashlib.new(algo, usedforsecurity=False)
            with open(path, "rb", buffering=0) as fh:
                buf = bytearray(_BLOCK)
                mv = memoryview(buf)
                while n := fh.readinto(buf):
                    h.update(mv[:n])
            raw = h.digest()
            return algo, raw.hex() if algo == "md5" else base64.b64encode(raw).decode()
    if "crc32" in d:
        import zlib

        v = 0
        with open(path, "rb", buffering=0) as fh:
            while chunk := fh.read(_BLOCK):
                v = zlib.crc32(chunk, v)
        return "crc32", base64.b64encode(v.to_bytes(4, "big")).decode()
    return None


def _deep(root: Path, m: Manifest, report: VerifyReport, workers: int,
          on_hashed: Callable[[FileRecord, bool], None] | None) -> None:
    """Re-hash every file in parallel (hashlib releases the GIL) and compare with the manifest."""
    todo = [f for f in m.files if (root / f.path).is_file() and (root / f.path).stat().st_size == f.size]

    def one(rec: FileRecord) -> tuple[FileRecord, tuple[str, str] | None]:
        return rec, file_digest(root / rec.path, rec)

    # Largest first, so the last file to finish is a small one.
    todo.sort(key=lambda f: -f.size)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for rec, got in pool.map(one, todo):
            if got is None:
                report.findings.append(Finding(rec.path, "no-digest", "the manifest records no digest",
                                               severity="warning"))
                continue
            kind, value = got
            report.files_hashed += 1
            report.bytes_hashed += rec.size
            ok = rec.digest.get(kind) == value
            if not ok:
                report.findings.append(Finding(rec.path, "digest",
                                               f"{kind} is {value}, the manifest says {rec.digest.get(kind)}"))
            if on_hashed is not None:
                on_hashed(rec, ok)


def _against_source(m: Manifest | None, names: list[str], objects: list[ObjectInfo], report: VerifyReport) -> None:
    have = m.by_path() if m else {}
    local = set(names)
    skipped = {str(s.get("path")) for s in (m.skipped if m else [])}
    for o in objects:
        rec = have.get(o.rel)
        if o.rel in skipped:
            continue
        if o.rel not in local:
            report.findings.append(Finding(o.rel, "source-missing-here", "in the source, not in this directory"))
        elif rec is not None and (rec.etag != o.etag or rec.size != o.size):
            report.findings.append(Finding(o.rel, "stale", "the source object changed since it was copied"))
    src = {o.rel for o in objects}
    for n in sorted(local - src):
        report.findings.append(Finding(n, "not-in-source", "not in the source any more", severity="warning"))
    for n in sorted(skipped & src):
        report.findings.append(Finding(n, "skipped", "in the source, left out by selection", severity="warning"))
