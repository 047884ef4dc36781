"""``verify``: a directory against its structure, its manifest, its digests, and optionally its source."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from modelpvc.core import digests
from modelpvc.core.manifest import Manifest
from modelpvc.core.models import FileRecord, ObjectInfo
from modelpvc.model.findings import Finding
from modelpvc.model.layout import check_directory
from modelpvc.store.volume.destination import Destination
from modelpvc.store.volume.hashing import file_digest
from modelpvc.verify.report import VerifyReport


def verify_directory(root: Path, *, deep: bool = False, require_manifest: bool = False, strict: bool = False,
                     loader: str = "vllm", source: tuple[str, list[ObjectInfo]] | None = None, workers: int = 4,
                     on_hashed: Callable[[FileRecord, bool], None] | None = None) -> VerifyReport:
    """Structure, manifest, optionally every digest (``on_hashed`` is told as each file finishes) and the
    source. A deep check of 100 GB takes minutes; the callback lets a caller show progress."""
    dest = Destination(root)
    scan = dest.scan()
    names = sorted(scan.files)
    manifest = dest.read_manifest()
    report = VerifyReport(directory=str(root), structure=check_directory(root, names, loader), deep=deep,
                          source=source[0] if source else None, strict=strict)
    writer = dest.lock().holder() if scan.partials else None
    for p in sorted(scan.partials):
        why = (f"a copy is in progress (modelpvc pid {writer} is writing this directory): verify when it ends"
               if writer else "a copy was interrupted: re-run the mirror to finish it")
        report.findings.append(Finding(p + ".partial", "partial", f"an unfinished download is present ({why})"))
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
    if source is not None:
        _against_source(manifest, names, source[1], report)
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


def _deep(root: Path, m: Manifest, report: VerifyReport, workers: int,
          on_hashed: Callable[[FileRecord, bool], None] | None) -> None:
    """Re-hash every file in parallel (the hashers release the GIL) through the same code mirror uses."""
    todo = [f for f in m.files if (root / f.path).is_file() and (root / f.path).stat().st_size == f.size]

    def one(rec: FileRecord) -> tuple[FileRecord, str | None, str | None]:
        exp = digests.from_record(rec.digest)
        if exp is None:
            return rec, None, None
        return rec, exp.key, file_digest(root / rec.path, exp)

    # Largest first, so the last file to finish is a small one.
    todo.sort(key=lambda f: -f.size)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for rec, key, value in pool.map(one, todo):
            if key is None:
                # Copied with --verify size: nothing recorded, nothing to compare. Say so; never pass it silently.
                report.findings.append(Finding(rec.path, "no-digest", "the manifest records no digest for it (copied "
                                                                      "with --verify size): not re-hashed",
                                               severity="warning"))
                continue
            report.files_hashed += 1
            report.bytes_hashed += rec.size
            ok = rec.digest.get(key) == value
            if not ok:
                report.findings.append(Finding(rec.path, "digest", f"{key} is {value}, the manifest says "
                                                                   f"{rec.digest.get(key)}"))
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
        report.findings.append(Finding(n, "skipped", "in the source, left out by selection", severity="info"))
