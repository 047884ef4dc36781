"""``modelpvc gc DIR``: remove a superseded revision — only the files its manifest lists."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from modelpvc.cli.help_format import ParagraphFormatter
from modelpvc.cli.progress import count
from modelpvc.core.errors import ConfigError
from modelpvc.core.units import human_bytes
from modelpvc.store.volume.destination import Destination
from modelpvc.store.volume.revisions import collect, collectable

DESCRIPTION = """Remove a model revision that modelpvc wrote in DIR: exactly the files its manifest
(.modelpvc/manifest.json) lists, its .modelpvc/ state, then DIR itself if nothing else is left. Files
hard-linked into another revision stay there; a revisions/ subdirectory is never touched; a directory
without a manifest is refused. `update` runs it in the cluster once a new revision serves.

With --keep SERVED, DIR is a claim's mount and every complete revision on it goes (its root's, and each
revisions/<id>/) except SERVED, the one the InferenceService serves, and the one revisions/latest.json names:
the GitOps PostSync hook, once the server runs on the revision in Git. Incomplete copies stay.

It asks before deleting on a terminal; elsewhere pass --yes. --dry-run lists what would go."""


def register(sub: Any) -> None:
    p = sub.add_parser("gc", help="remove a superseded model revision (the files its manifest lists, only)",
                       description=DESCRIPTION, formatter_class=ParagraphFormatter)
    p.add_argument("dir", type=Path, metavar="DIR",
                   help="the revision's directory (it holds .modelpvc/); with --keep, the claim's mount")
    p.add_argument("--keep", type=Path, metavar="SERVED",
                   help="collect every other revision on the claim DIR, but this served one and the latest")
    p.add_argument("--abandoned", action="store_true",
                   help="remove a copy that was started and never completed (no manifest), e.g. a revision an "
                        "update could not fit")
    p.add_argument("--dry-run", action="store_true", help="say what would be removed; remove nothing")
    p.add_argument("--yes", "-y", action="store_true", help="do not ask (needed off a terminal)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.keep is not None:
        return _collect(args)
    dest = Destination(args.dir)
    if args.abandoned:
        what = f"the incomplete copy in {args.dir}"
    else:
        revision, paths, size = dest.revision_files()
        what = f"{len(paths)} file{'s' if len(paths) != 1 else ''} ({human_bytes(size)}) of revision {revision} " \
               f"in {args.dir}"
    if args.dry_run:
        print(f"would remove {what}")
        if not args.abandoned:
            for path in paths:
                print(f"  {path}")
        return 0
    if not args.yes:
        if not sys.stdin.isatty():
            raise ConfigError(f"gc would remove {what}", hint="pass --yes to remove it, or --dry-run to list it")
        if input(f"remove {what}? [y/N] ").strip().lower() not in ("y", "yes"):
            print("nothing removed")
            return 1
    if args.abandoned:
        print(f"{args.dir}: removed an incomplete copy ({count(dest.remove_abandoned(), 'file')})")
        return 0
    removed, revision = dest.remove_revision()
    print(f"{args.dir}: removed {count(removed, 'file')} of revision {revision}")
    return 0


def _collect(args: argparse.Namespace) -> int:
    if args.abandoned:
        raise ConfigError("--keep collects complete revisions; --abandoned removes one incomplete copy",
                          hint="run them separately")
    if args.dry_run or not args.yes:
        found = collectable(args.dir, args.keep)
        if not found:
            print(f"{args.dir}: no revision to collect beside {args.keep}")
            return 0
        for d, revision in found:
            print(f"{'would remove' if args.dry_run else 'to remove'}: revision {revision} in {d}")
        if args.dry_run:
            return 0
        if not sys.stdin.isatty():
            raise ConfigError(f"gc would remove {count(len(found), 'revision')} beside {args.keep}",
                              hint="pass --yes to remove them, or --dry-run to list them")
        if input("remove them? [y/N] ").strip().lower() not in ("y", "yes"):
            print("nothing removed")
            return 1
    done = collect(args.dir, args.keep)
    for c in done:
        print(f"{c.path}: removed {count(c.files, 'file')} of revision {c.revision}")
    if not done:
        print(f"{args.dir}: no revision to collect beside {args.keep}")
    return 0
