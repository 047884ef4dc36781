"""The revisions of a model on one claim: the served directory, ``revisions/<id>/`` beside it, and
``revisions/latest.json``, which names the directory holding the source's revision as last populated.

A served directory is never rewritten in place: a new source revision goes to ``revisions/<id>/``
(unchanged files hard-linked), and only once nothing serves the old one is it removed, file by file, as
its manifest lists them (``Destination.remove_revision``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from modelpvc.core.errors import DestinationError
from modelpvc.core.manifest import REVISIONS_DIR
from modelpvc.store.volume.destination import Destination
from modelpvc.store.volume.fs import destination_error, write_atomic

LATEST = "latest.json"


def revision_dir(root: Path, revision: str) -> Path:
    return root / REVISIONS_DIR / revision


@dataclass(frozen=True)
class Latest:
    revision: str
    path: Path  # the directory that holds it: the served one, or revisions/<id>/


def read_latest(root: Path) -> Latest | None:
    p = root / REVISIONS_DIR / LATEST
    try:
        data = json.loads(p.read_text())
        return Latest(str(data["revision"]), root / str(data["path"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DestinationError(f"{p} is unreadable ({e})", hint=f"remove {p}; the next populate writes it again") \
            from e


def write_latest(root: Path, revision: str, path: Path) -> None:
    """Name the directory holding the source's current revision (relative to ``root``)."""
    d = root / REVISIONS_DIR
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise destination_error(e, d, "creating") from e
    rel = path.relative_to(root).as_posix()
    write_atomic(d / LATEST, json.dumps({"revision": revision, "path": rel}).encode() + b"\n")


@dataclass(frozen=True)
class Collected:
    path: Path
    revision: str
    files: int


def collectable(root: Path, keep: Path) -> list[tuple[Path, str]]:
    """Complete revisions on the claim that neither serve (``keep``) nor are the latest: the claim's root
    when it holds one, and each ``revisions/<id>/``. Incomplete copies stay (a later populate resumes them)."""
    latest = read_latest(root)
    spared = {keep.resolve()} | ({latest.path.resolve()} if latest else set())
    found: list[tuple[Path, str]] = []
    below = root / REVISIONS_DIR
    candidates = [root, *sorted(p for p in below.iterdir() if p.is_dir())] if below.is_dir() else [root]
    for d in candidates:
        if d.resolve() in spared:
            continue
        m = Destination(d).read_manifest()
        if m is not None:
            found.append((d, m.revision))
    return found


def collect(root: Path, keep: Path) -> list[Collected]:
    """Remove every collectable revision (see ``collectable``), each under its own lock."""
    if not keep.is_dir():
        raise DestinationError(f"{keep} (the served revision) is not a directory; refusing to collect beside it",
                               hint="pass the directory the InferenceService's storageUri names")
    out = []
    for d, _revision in collectable(root, keep):
        dest = Destination(d)
        with dest.lock():
            removed, revision = dest.remove_revision()
        out.append(Collected(d, revision, removed))
    return out
