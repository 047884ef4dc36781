"""``modelpvc gc DIR``: remove a superseded revision — only the files its manifest lists."""

from __future__ import annotations

import argparse
import contextlib
import os
from pathlib import Path
from typing import Any

from modelpvc.core.errors import ConfigError
from modelpvc.core.manifest import STATE_DIR
from modelpvc.store.localfs import read_manifest


def register(sub: Any) -> None:
    p = sub.add_parser("gc", help="remove a superseded revision directory (files its manifest lists, only)",
                       description="Used by `update` after the new revision serves. Files hard-linked into "
                                   "another revision stay there. Subdirectory revisions/ is never touched.")
    p.add_argument("dir", type=Path)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    root: Path = args.dir
    m = read_manifest(root)
    if m is None:
        raise ConfigError(f"{root} has no manifest; refusing to delete what modelpvc did not write")
    removed = 0
    for f in m.files:
        p = root / f.path
        if f.path.split("/")[0] == "revisions":
            continue
        try:
            p.unlink()
            removed += 1
        except FileNotFoundError:
            pass
    for sub in sorted({(root / f.path).parent for f in m.files}, key=lambda d: -len(d.parts)):
        if sub != root:
            with contextlib.suppress(OSError):
                sub.rmdir()
    for name in os.listdir(root / STATE_DIR):
        (root / STATE_DIR / name).unlink()
    (root / STATE_DIR).rmdir()
    if root.name != "" and not any(root.iterdir()):
        root.rmdir()
    print(f"{root}: removed {removed} files of revision {m.revision}")
    return 0
