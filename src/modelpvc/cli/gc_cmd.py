"""``modelpvc gc DIR``: remove a superseded revision — only the files its manifest lists."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from modelpvc.store.destination import Destination


def register(sub: Any) -> None:
    p = sub.add_parser("gc", help="remove a superseded revision directory (files its manifest lists, only)",
                       description="Used by `update` after the new revision serves. Files hard-linked into "
                                   "another revision stay there. Subdirectory revisions/ is never touched.")
    p.add_argument("dir", type=Path)
    p.add_argument("--abandoned", action="store_true",
                   help="remove a copy that was started and never completed (no manifest), e.g. a revision an "
                        "update could not fit")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.abandoned:
        print(f"{args.dir}: removed an incomplete copy ({Destination(args.dir).remove_abandoned()} files)")
        return 0
    removed, revision = Destination(args.dir).remove_revision()
    print(f"{args.dir}: removed {removed} files of revision {revision}")
    return 0
