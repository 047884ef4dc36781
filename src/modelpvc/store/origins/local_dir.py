"""A local directory as an import origin: one that ``huggingface-cli download --local-dir`` filled, a
Hugging Face cache snapshot, or any model directory.

What the Hub already said about the files is used, not recomputed, wherever it was kept:
* a cache snapshot (``models--ORG--NAME/snapshots/<commit>/...``) links each file to ``blobs/<id>``,
  where the id is the LFS SHA-256 or the git blob id; the directory names give the repository and commit;
* a ``--local-dir`` download keeps ``.cache/huggingface/download/<path>.metadata`` (commit, etag = SHA-256
  or git blob id, timestamp); like ``huggingface_hub`` we trust it only while the file's mtime is not newer
  than the timestamp (``_local_folder.read_download_metadata``).
Files without either are hashed while they stream, and recorded with what was computed.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from modelpvc.core.errors import SourceError, SourceNotFound, TransientError
from modelpvc.core.provenance import Published
from modelpvc.store.origins.origin import OriginFile

_HEX40 = re.compile(r"^[0-9a-f]{40}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_SKIP_DIRS = {".cache", ".git", ".modelpvc", ".huggingface"}


def _published(digest: str) -> Published:
    digest = digest.strip().strip('"').lower()
    if _HEX64.match(digest):
        return Published(sha256=digest)
    if _HEX40.match(digest):
        return Published(git_oid=digest)
    return Published()


class DirectoryOrigin:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve() if root.exists() else root
        self.origin: dict[str, Any] = {"type": "directory", "path": str(self.root)}
        snap = _snapshot(self.root)
        if snap is not None:
            self.origin.update(repo=snap[0], commit=snap[1], layout="huggingface-cache")

    def describe(self) -> str:
        return str(self.root)

    def files(self) -> list[OriginFile]:
        if not self.root.is_dir():
            raise SourceNotFound(f"directory {self.root} does not exist")
        out: list[OriginFile] = []
        commits: set[str] = set()
        for dirpath, dirnames, filenames in os.walk(self.root, followlinks=True):
            here = Path(dirpath)
            dirnames[:] = sorted(d for d in dirnames if not (here == self.root and d in _SKIP_DIRS))
            for name in sorted(filenames):
                p = here / name
                rel = p.relative_to(self.root).as_posix()
                try:
                    st = p.stat()
                except OSError as e:
                    raise SourceError(f"cannot read {p}: {e.strerror}") from e
                pub, commit = self._published(p, rel, st)
                if commit:
                    commits.add(commit)
                out.append(OriginFile(rel, st.st_size, pub, st.st_mtime_ns))
        if not out:
            raise SourceNotFound(f"directory {self.root} holds no files")
        if len(commits) == 1 and "commit" not in self.origin:
            self.origin["commit"] = commits.pop()
            self.origin["layout"] = "huggingface-local-dir"
        return out

    def _published(self, p: Path, rel: str, st: os.stat_result) -> tuple[Published, str | None]:
        if p.is_symlink():
            target = Path(os.readlink(p))
            if target.parent.name == "blobs":
                return _published(target.name), None
        meta = self.root / ".cache" / "huggingface" / "download" / f"{rel}.metadata"
        try:
            lines = meta.read_text().splitlines()
            commit, etag, stamp = lines[0].strip(), lines[1], float(lines[2])
        except (OSError, IndexError, ValueError):
            return Published(), None
        if st.st_mtime > stamp + 1:  # edited after the download: the recorded digest says nothing now
            return Published(), None
        return _published(etag), commit if _HEX40.match(commit) else None

    def read_into(self, f: OriginFile, start: int, out: memoryview) -> None:
        path = self.root / f.rel
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as e:
            raise SourceError(f"cannot read {path}: {e.strerror}") from e
        try:
            pos = 0
            while pos < len(out):
                n = os.preadv(fd, [out[pos:]], start + pos)
                if not n:
                    raise SourceError(f"{path} shrank while it was being uploaded")
                pos += n
        except InterruptedError as e:
            raise TransientError(f"{path}: read interrupted") from e
        finally:
            os.close(fd)

    def close(self) -> None:
        return None


def _snapshot(root: Path) -> tuple[str, str] | None:
    """(ORG/NAME, commit) when ``root`` is ``.../models--ORG--NAME/snapshots/<commit>``."""
    if root.parent.name != "snapshots" or not _HEX40.match(root.name):
        return None
    repo_dir = root.parent.parent.name
    if not repo_dir.startswith("models--"):
        return None
    return repo_dir.removeprefix("models--").replace("--", "/"), root.name
