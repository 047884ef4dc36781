"""``modelpvc mirror SRC DEST``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from modelpvc.cli.cpus import default_workers, describe_cpus, usable_cpus
from modelpvc.cli.credentials import add_s3_arguments, s3_settings
from modelpvc.cli.errors import EXIT_CODES_HELP
from modelpvc.cli.help_format import ParagraphFormatter
from modelpvc.cli.progress import (
    add_output_arguments,
    choose_sink,
    count,
    json_errors,
    write_summary_record,
)
from modelpvc.cli.selection_args import add_selection_arguments
from modelpvc.cli.signals import stop_on_signals
from modelpvc.core.errors import ConfigError, IntegrityError
from modelpvc.core.models import Action, Plan
from modelpvc.core.settings import MiB, S3Settings, TransferSettings, VerifyLevel
from modelpvc.core.units import human_bytes
from modelpvc.model.select import make_selector
from modelpvc.store.sources.base import ObjectSource, parse_source
from modelpvc.store.sources.local_dir import LocalSource
from modelpvc.store.sources.s3 import S3Source
from modelpvc.transfer.mirror import MirrorRequest, MirrorResult, StructureCheck, mirror
from modelpvc.transfer.provenance import wait_for_record
from modelpvc.transfer.served import mirror_served

DESCRIPTION = """Copy an S3 prefix into a directory (a PVC mount, or any directory): concurrent ranged GETs,
verified end to end, published atomically, resumable after a kill, idempotent on re-run.

Files appear under their final names only when complete and verified; .modelpvc/manifest.json is
written last, so a directory without it is incomplete. Credentials come from AWS_ACCESS_KEY_ID /
AWS_SECRET_ACCESS_KEY or --credentials-dir and are never printed."""


def register(sub: Any) -> None:
    p = sub.add_parser("mirror", help="copy an S3 prefix into a directory, verified and resumable",
                       description=DESCRIPTION, epilog=EXIT_CODES_HELP,
                       formatter_class=ParagraphFormatter)
    p.add_argument("source", metavar="SRC", help="s3://BUCKET/PREFIX/ (or file:///DIR)")
    p.add_argument("dest", metavar="DEST", type=Path, help="destination directory (created if missing)")
    add_s3_arguments(p)
    add_transfer_arguments(p)
    add_selection_arguments(p)
    p.add_argument("--link-dest", type=Path, metavar="DIR",
                   help="another completed mirror on the same volume: unchanged files are hard-linked from it")
    p.add_argument("--revision-root", type=Path, metavar="CLAIM",
                   help="DEST may be serving (a GitOps hook, CLAIM its claim's mount): when it holds a complete "
                        "copy of another revision of the source, leave it as it is and write the source's "
                        "revision to CLAIM/revisions/<id>/ (unchanged files hard-linked); either way "
                        "CLAIM/revisions/latest.json names where the source's revision is")
    p.add_argument("--shard", metavar="I/N", help="copy only share I (0-based) of N: one pod of a parallel "
                   "populate; a final run without --shard adopts the shares and writes the manifest")
    p.add_argument("--no-structure-check", action="store_true",
                   help="publish even if the structural check finds errors (a model that would not load)")
    p.add_argument("--wait-for-import", type=float, metavar="SECONDS",
                   help="first wait up to SECONDS for an import to write SRC/.modelpvc/source.json (a populate Job "
                        "rendered with --import-from starts beside the import Job)")
    p.add_argument("--strict", action="store_true",
                   help="treat structural warnings (metadata loaders tolerate, e.g. a wrong total_size) as errors")
    p.set_defaults(run=run)


def add_transfer_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("transfer")
    g.add_argument("--dry-run", action="store_true", help="print the plan (fetch/resume/keep/delete) and stop")
    g.add_argument("--delete", action="store_true",
                   help="remove local files the source no longer has (never .modelpvc/)")
    g.add_argument("--delete-excluded", action="store_true",
                   help="also remove local files the selection leaves out: a volume another tool filled keeps "
                        "the duplicates (consolidated.safetensors) it copied otherwise")
    g.add_argument("--verify", type=VerifyLevel, choices=list(VerifyLevel), default=VerifyLevel.AUTO,
                   help="size: lengths only; auto (default): the source's checksum or ETag MD5 when it offers "
                        "one, else a recorded digest; full: fail when the source offers nothing to check")
    g.add_argument("--workers", type=int, default=None,
                   help="concurrent requests (default: 2 per CPU this process may use, from its affinity and "
                        "cgroup quota, at least 4; 16 when multipart ETags are checked: one part per lane of the MD5 "
                        "pass); files up to 1 MiB are read by one more thread over four connections per worker")
    g.add_argument("--part-size", type=int, default=32, metavar="MiB",
                   help="ranged-GET size for large objects (default 32; 0 = one GET per object)")
    g.add_argument("--no-space-check", action="store_true", help="skip the free-space check before the copy")
    io = g.add_mutually_exclusive_group()
    io.add_argument("--direct-io", dest="direct_io", action="store_true", default=True,
                    help="(default) on ext4/xfs/btrfs, write files over 8 MiB around the page cache (O_DIRECT), "
                         "8 MiB at a time behind the download: about 1.3 CPU-s per GB less and no dirty pages "
                         "charged to the pod (docs/decisions.md 14); other filesystems are written buffered")
    io.add_argument("--buffered-io", dest="direct_io", action="store_false",
                    help="write through the page cache whatever the filesystem (when the files should stay "
                         "cached for a reader on the same node)")
    add_output_arguments(g)


def transfer_settings(args: argparse.Namespace) -> TransferSettings:
    if args.workers is not None:
        workers, basis = args.workers, "--workers"
    else:
        cpus = usable_cpus()
        workers, basis = default_workers(cpus), f"{describe_cpus(cpus)}; override with --workers"
    if workers < 1 or workers > 256:
        raise ConfigError(f"--workers {workers} is out of range (1..256)")
    if args.part_size < 0:
        raise ConfigError("--part-size must be >= 0")
    part = args.part_size * MiB
    return TransferSettings(
        workers=workers, workers_basis=basis, workers_given=args.workers is not None, part_size=part,
        verify=args.verify, dry_run=args.dry_run, delete=args.delete, delete_excluded=args.delete_excluded,
        check_space=not args.no_space_check,
        direct_io=args.direct_io,
    )


def make_source(uri: str, s3: S3Settings | None) -> ObjectSource:
    parsed = parse_source(uri)
    if parsed.scheme == "file":
        return LocalSource(parsed)
    assert s3 is not None
    return S3Source(parsed, s3)


def print_plan(plan: Plan) -> None:
    for note in plan.notes:
        print(f"# {note}")
    for op in plan.operations:
        extra = f" ({human_bytes(op.done_bytes)} already here)" if op.done_bytes else ""
        print(f"{op.action.value:7} {op.rel}  {human_bytes(op.size)}  {op.reason}{extra}")
    s = plan.summary()
    print(f"# {s['fetch']['files'] + s['resume']['files']} to fetch ({human_bytes(plan.bytes_to_fetch)}), "
          f"{s['keep']['files']} unchanged, {s['skip']['files']} skipped "
          f"({human_bytes(s['skip']['bytes'])}), {s['delete']['files']} to delete")


def _print_internals(s: dict[str, Any]) -> None:
    basis = f" ({s['workers_basis']})" if s.get("workers_basis") else ""
    print(f"  {s['workers']} workers{basis}")
    if s.get("direct_io_files"):
        print(f"  {s['direct_io_files']} large files written with O_DIRECT (around the page cache)")
    if s.get("bytes_hashed_again") and s["bytes_fetched"]:
        share = 100 * s["bytes_hashed_again"] / s["bytes_fetched"]
        print(f"  {human_bytes(s['bytes_hashed_again'])} ({share:.0f} %) hashed from the file, not as it arrived "
              "(ranges out of order, resumed, or small files, hashed beside the reads): a second read")
    if s.get("bottleneck"):
        print(f"  bottleneck: {s['bottleneck']}")


def print_summary(result: MirrorResult, dest: Path, verbose: bool = False) -> None:
    """What a user needs; how the copy ran (workers, direct I/O, second reads, bottleneck) with -v."""
    s = result.summary()
    if result.noop:
        print(f"{dest}: up to date with {result.plan.source} ({count(s['files'], 'file')}, {human_bytes(s['bytes'])}); "
              f"nothing fetched in {s['seconds']:.2f}s")
        return
    verified = ", ".join(f"{n} by {k}" for k, n in sorted(s["verified"].items())) or "nothing"
    print(f"{dest}: {count(s['fetched_files'], 'file')} fetched ({human_bytes(s['bytes_fetched'])}) in "
          f"{s['seconds']:.1f}s at {s['mb_per_s']:.0f} MB/s; {s['kept_files']} unchanged; "
          f"{s['linked_files']} hard-linked; "
          f"{s['retries']} retries")
    print(f"  verified: {verified}; revision {s['revision']}")
    if s["adopted_files"]:
        print(f"  adopted {count(s['adopted_files'], 'file')} found complete on disk (hashed locally, not fetched)")
    print(f"  layout {s['layout'] or 'none (plain files)'}")
    if verbose:
        _print_internals(s)
    if s["skipped_files"]:
        print(f"  skipped {count(s['skipped_files'], 'file')} ({human_bytes(s['skipped_bytes'])}) not selected")
    if result.deleted:
        print(f"  deleted {count(len(result.deleted), 'file')}: " + ", ".join(result.deleted[:5])
              + (", ..." if len(result.deleted) > 5 else ""))
    if s.get("excluded_on_disk_files"):
        print(f"  note: {count(s['excluded_on_disk_files'], 'file')} left out by the selection "
              f"({human_bytes(s['excluded_on_disk_bytes'])}) still in {dest}; --delete-excluded removes "
              + ("it" if s["excluded_on_disk_files"] == 1 else "them"))
    if result.removed_partials:
        print(f"  removed {len(result.removed_partials)} stale partial files")
    for f in result.warnings:
        print(f"  warning: {f['path']}: {f['message']}")
    for note in result.plan.notes:
        print(f"  note: {note}")


def parse_shard(text: str | None, delete_excluded: bool = False) -> tuple[int, int] | None:
    if not text:
        return None
    if delete_excluded:
        raise ConfigError("--delete-excluded with --shard would delete the other shares' files",
                          hint="pass it to the final run without --shard")
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ConfigError(f"--shard {text!r}: write it as INDEX/COUNT, e.g. 0/4") from None
    if n < 1 or not 0 <= i < n:
        raise ConfigError(f"--shard {text!r}: the index must be in 0..COUNT-1")
    return i, n


def structure_checker(strict: bool, loader: str) -> StructureCheck:
    """The model layer's structural check, run before the manifest: a model that would not load is not
    published; warnings (metadata loaders tolerate) are recorded in the manifest and printed."""

    def check(dest: Path, names: list[str]) -> dict[str, Any]:
        # Imported here: a no-op re-run never checks, and its start-up budget is 0.3 s (decisions §14).
        from modelpvc.model.layout import check_directory

        report = check_directory(dest, names, loader)
        errors = report.errors_for(strict)
        if errors:
            first = "; ".join(f"{f.path}: {f.message}" for f in errors[:3])
            raise IntegrityError(
                f"the copy would not load as a model ({len(errors)} problem(s): {first}); no manifest was written",
                hint="fix the source (or select different files); --no-structure-check publishes it anyway"
                     + ("; without --strict, warnings do not block publishing" if strict else ""))
        return report.to_json()

    return check


def run(args: argparse.Namespace) -> int:
    # The error record joins JSON progress lines; with -q (errors only) the error is printed once, for people.
    args.json_errors = json_errors(args)
    if str(args.dest).startswith("s3:"):  # a Path: s3://b/p/ reads s3:/b/p
        bucket = "s3://" + str(args.dest).removeprefix("s3:").lstrip("/") + "/"
        raise ConfigError(f"mirror copies a bucket to a directory; {bucket} is a bucket",
                          hint=f"to upload a local model into a bucket: modelpvc import {args.source} {bucket}")
    if args.revision_root is not None and (args.shard or args.link_dest):
        raise ConfigError("--revision-root chooses the destination and what to link from itself",
                          hint="drop --shard and --link-dest")
    settings = transfer_settings(args)
    parsed = parse_source(args.source)
    s3 = s3_settings(args) if parsed.scheme == "s3" else S3Settings()
    source = make_source(args.source, s3)
    sink, json_mode = choose_sink(args)
    try:
        with stop_on_signals() as stop:
            if args.wait_for_import:
                wait_for_record(source, args.wait_for_import, sink)
            req = MirrorRequest(source, args.dest, s3, settings,
                                select=make_selector(args.select, args.include, args.exclude, args.loader),
                                structure_check=None if args.no_structure_check
                                else structure_checker(args.strict, args.loader),
                                link_dest=args.link_dest, shard=parse_shard(args.shard, args.delete_excluded))
            dest = args.dest
            if args.revision_root is not None:
                result, target = mirror_served(req, args.revision_root, sink, stop)
                dest = target.request.dest
            else:
                result = mirror(req, sink=sink, stop=stop)
    finally:
        close = getattr(sink, "close", None)
        if close is not None:
            close()
        source.close()
    if settings.dry_run:
        print_plan(result.plan)
        return 0
    if not args.quiet:
        print_summary(result, dest, args.verbose)
    if result.plan.of(Action.SKIP) and args.verbose:
        for op in result.plan.of(Action.SKIP):
            print(f"  skipped {op.rel}: {op.reason}")
    if json_mode:
        write_summary_record({**result.summary(), "dest": str(dest)})
    return 0
