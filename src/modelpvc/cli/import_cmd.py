"""``modelpvc import ORIGIN s3://BUCKET/PREFIX/``."""

from __future__ import annotations

import argparse
import os
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
from modelpvc.core.errors import ConfigError
from modelpvc.core.settings import ImportSettings, MiB
from modelpvc.core.units import human_bytes
from modelpvc.ingest.importer import ImportRequest, ImportResult, run_import
from modelpvc.ingest.plan import ImportPlan, Step
from modelpvc.model.select import make_selector
from modelpvc.store.http.hub_http import HubEndpoint
from modelpvc.store.origins.hub import HubOrigin, parse_hub_uri
from modelpvc.store.origins.local_dir import DirectoryOrigin
from modelpvc.store.origins.origin import Origin
from modelpvc.store.sources.base import parse_source

DESCRIPTION = """Put a model into an S3 bucket, streamed and verified, with a provenance record.

ORIGIN is hf://ORG/NAME[@REVISION] (a Hugging Face repository; the revision is resolved to a commit
first, so a branch that moves during the import cannot mix two revisions) or a local directory (filled
by `huggingface-cli download --local-dir`, a Hugging Face cache snapshot, or any model directory).

Bytes go from the origin straight into multipart uploads: no local copy, memory bounded by
--memory. Each file is checked against the SHA-256 the Hub publishes for LFS files (or its git blob id)
before its upload is completed; a file that does not match is not stored. Objects carry a full-object
CRC64NVME checksum when the server takes one, so `mirror` can verify them cheaply. The last object
written is PREFIX/.modelpvc/source.json: the origin (repository and commit, or directory) and each file's
key, size, SHA-256 and checksum. `mirror` reads it and checks the PVC against it; `verify --deep` too.

An interrupted import resumes its multipart uploads; re-running on a complete prefix uploads nothing.
HF_TOKEN (or `huggingface-cli login`) authorises gated and private repositories and is never printed
or written; HF_ENDPOINT points at a Hub mirror."""


def register(sub: Any) -> None:
    p = sub.add_parser("import", help="put a model (Hugging Face or a directory) into S3, verified, with provenance",
                       description=DESCRIPTION, epilog=EXIT_CODES_HELP,
                       formatter_class=ParagraphFormatter)
    p.add_argument("origin", metavar="ORIGIN", help="hf://ORG/NAME[@REVISION] or a local directory")
    p.add_argument("dest", metavar="DEST", help="s3://BUCKET/PREFIX/")
    add_s3_arguments(p)
    add_selection_arguments(p)
    g = p.add_argument_group("upload")
    g.add_argument("--dry-run", action="store_true", help="print what would be uploaded, resumed or kept, and stop")
    g.add_argument("--workers", type=int, default=None,
                   help="parts in flight (default: 2 per usable CPU, at least 4; cut to --memory / --part-size)")
    g.add_argument("--part-size", type=int, default=32, metavar="MiB",
                   help="upload part size (default 32; at least 5; grown for files over 10,000 parts)")
    g.add_argument("--memory", type=int, default=256, metavar="MiB",
                   help="memory for part buffers (default 256): workers x part size stays below it")
    g.add_argument("--no-checksum", action="store_true",
                   help="send no x-amz-checksum-* headers (for servers that reject them; modelpvc notices most "
                        "refusals and falls back by itself)")
    g.add_argument("--hub-ca-bundle", metavar="FILE", help="PEM file of CAs to trust for an https HF_ENDPOINT")
    add_output_arguments(g)
    p.set_defaults(run=run)


def hub_token() -> str | None:
    """HF_TOKEN, else the token `huggingface-cli login` stored (huggingface_hub's own lookup)."""
    token = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
    if token:
        return token
    from huggingface_hub import get_token

    return get_token()


def make_origin(text: str, hub_ca_bundle: str | None = None, hub_endpoint: str | None = None) -> Origin:
    if text.startswith("hf://"):
        endpoint = hub_endpoint or os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
        ca = hub_ca_bundle or os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("SSL_CERT_FILE")
        return HubOrigin(parse_hub_uri(text), HubEndpoint(endpoint.rstrip("/"), hub_token(), ca))
    if "://" in text and not text.startswith("file://"):
        raise ConfigError(f"unsupported origin {text!r}", hint="use hf://ORG/NAME[@REVISION] or a local directory")
    path = Path(text.removeprefix("file://")).expanduser()
    if not path.is_dir():
        raise ConfigError(f"origin {text!r} is not a directory",
                          hint="give a directory, or hf://ORG/NAME for a Hugging Face model")
    return DirectoryOrigin(path)


def import_settings(args: argparse.Namespace) -> ImportSettings:
    if args.part_size < 5:
        raise ConfigError(f"--part-size {args.part_size}: S3 parts are at least 5 MiB")
    if args.memory < args.part_size:
        raise ConfigError(f"--memory {args.memory} is less than one part (--part-size {args.part_size})")
    if args.workers is not None:
        if not 1 <= args.workers <= 256:
            raise ConfigError(f"--workers {args.workers} is out of range (1..256)")
        workers, basis = args.workers, "--workers"
    else:
        cpus = usable_cpus()
        workers, basis = default_workers(cpus), f"{describe_cpus(cpus)}; override with --workers"
    return ImportSettings(workers=workers, workers_basis=basis, part_size=args.part_size * MiB,
                          memory=args.memory * MiB, checksum=None if args.no_checksum else "crc64nvme",
                          dry_run=args.dry_run)


def print_plan(plan: ImportPlan) -> None:
    for note in plan.notes:
        print(f"# {note}")
    for op in plan.ops:
        print(f"{op.step.value:7} {op.key}  {human_bytes(op.file.size)}  {op.reason}")
    for rel, why in sorted(plan.skipped.items()):
        print(f"skip    {rel}  {why}")
    print(f"# {len(plan.ops) - len(plan.of(Step.SKIP))} to upload ({human_bytes(plan.bytes_to_send)}), "
          f"{len(plan.of(Step.SKIP))} unchanged, {len(plan.skipped)} left out by the selection")


def print_summary(result: ImportResult, dest: str) -> None:
    s = result.summary()
    if result.noop:
        print(f"{dest}: up to date with {s['origin']} ({count(s['files'], 'file')}); nothing uploaded in "
              f"{s['seconds']:.2f}s")
        return
    print(f"{dest}: {count(s['uploaded_files'], 'file')} uploaded from {s['origin']} "
          f"({human_bytes(s['bytes_read'])} read, "
          f"{human_bytes(s['bytes_sent'])} sent) in {s['seconds']:.1f}s at {s['mb_per_s']:.0f} MB/s; "
          f"{s['unchanged_files']} unchanged; {s['retries']} retries")
    if s["bytes_kept"]:
        print(f"  resumed: {human_bytes(s['bytes_kept'])} of pending uploads kept, not sent again")
    basis = f" ({s['workers_basis']})" if s.get("workers_basis") else ""
    print(f"  {s['workers']} workers{basis}; checksum {s['checksum'] or 'none'}")
    if s["checksum_note"]:
        print(f"  note: {s['checksum_note']}")
    if s.get("bottleneck"):
        print(f"  bottleneck: {s['bottleneck']}")
    if s["skipped_files"]:
        print(f"  left out {count(s['skipped_files'], 'file')} by the selection (recorded in source.json)")
    for note in result.plan.notes:
        print(f"  note: {note}")
    print(f"  provenance: {dest}.modelpvc/source.json")


def run(args: argparse.Namespace) -> int:
    # The error record joins JSON progress lines; with -q (errors only) the error is printed once, for people.
    args.json_errors = json_errors(args)
    dest = parse_source(args.dest)
    if dest.scheme != "s3":
        raise ConfigError(f"destination {args.dest!r} is not s3://BUCKET/PREFIX/")
    settings = import_settings(args)
    s3 = s3_settings(args)
    origin = make_origin(args.origin, args.hub_ca_bundle)
    sink, json_mode = choose_sink(args)
    req = ImportRequest(origin, dest.bucket, dest.prefix, s3, settings,
                        select=make_selector(args.select, args.include, args.exclude, args.loader))
    try:
        with stop_on_signals() as stop:
            result = run_import(req, sink=sink, stop=stop)
    finally:
        close = getattr(sink, "close", None)
        if close is not None:
            close()
    if settings.dry_run:
        print_plan(result.plan)
        return 0
    if not args.quiet:
        print_summary(result, str(dest))
    if json_mode:
        write_summary_record(result.summary())
    return 0
