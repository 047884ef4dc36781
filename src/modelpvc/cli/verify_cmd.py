"""``modelpvc verify DIR``."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from modelpvc.cli.credentials import add_s3_arguments, s3_settings
from modelpvc.cli.help_format import ParagraphFormatter
from modelpvc.cli.progress import count
from modelpvc.cli.selection_args import add_loader_argument
from modelpvc.core.errors import ConfigError, ExitCode
from modelpvc.core.models import FileRecord, ObjectInfo
from modelpvc.core.provenance import split_record
from modelpvc.core.units import human_bytes
from modelpvc.model.findings import Finding
from modelpvc.store.volume.revisions import read_latest
from modelpvc.verify.checks import verify_directory
from modelpvc.verify.report import VerifyReport

DESCRIPTION = """Is DIR a complete, intact model? By default: structural checks (config.json parses, tokenizer
present, every shard the index names exists, every safetensors header parses with contiguous tensors and
the exact file length; .bin, GGUF, Mistral-native and adapter layouts too) in milliseconds, plus names and
sizes against .modelpvc/manifest.json when present. Errors are what would make loading fail; warnings are
metadata that transformers and vLLM tolerate (a wrong or missing total_size, a shard the index does not
name, an index entry no shard holds): printed, exit 0, unless --strict. --deep re-hashes every
file against the manifest's digests. --source compares with what the bucket holds now.

Usable as an initContainer: a broken volume shows a clear message instead of a vLLM CrashLoopBackOff.

exit codes: 0 intact; 5 integrity problem; 2 usage; 3 source problem (with --source)."""


def register(sub: Any) -> None:
    p = sub.add_parser("verify", help="check that a directory holds a complete, intact model",
                       description=DESCRIPTION, formatter_class=ParagraphFormatter)
    p.add_argument("dir", type=Path, metavar="DIR")
    p.add_argument("--deep", action="store_true", help="re-hash every file against the manifest's digests")
    p.add_argument("--require-manifest", action="store_true",
                   help="fail when there is no manifest (default: warn if the structure is whole)")
    p.add_argument("--source", metavar="s3://BUCKET/PREFIX/", help="compare with what the source holds now")
    p.add_argument("--strict", action="store_true",
                   help="fail on warnings too (metadata loaders tolerate: total_size, unindexed shards, ...)")
    p.add_argument("--plain-files", action="store_true",
                   help="DIR holds plain files, not a model: check them against the manifest only")
    add_loader_argument(p)
    p.add_argument("--revision-root", type=Path, metavar="CLAIM",
                   help="DIR is served from the claim mounted at CLAIM (a GitOps hook): also verify the revision "
                        "CLAIM/revisions/latest.json names when it is not DIR (a source change the populate hook "
                        "wrote beside the served one)")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout per directory verified")
    p.add_argument("--workers", type=int, default=4, help="parallel hashing for --deep (default 4)")
    add_s3_arguments(p)
    p.set_defaults(run=run)


def print_report(r: VerifyReport) -> None:
    status = "OK" if r.ok else "FAILED"
    layouts = ", ".join(r.structure.layouts) or "unknown layout"
    params = f", {r.structure.parameters / 1e9:.2f} billion parameters" if r.structure.parameters else ""
    print(f"{r.directory}: {status} ({layouts}{params})")
    if r.manifest:
        print(f"  manifest: revision {r.manifest['revision']} from {r.manifest['source']}, "
              f"{count(r.manifest['files'], 'file')}, {human_bytes(r.manifest['bytes'])}")
    if r.deep:
        print(f"  deep: {count(r.files_hashed, 'file')} ({human_bytes(r.bytes_hashed)}) re-hashed")
    for f in r.all_findings:
        print(f"  {f.severity}: {f.path}: {f.message}")


NOT_A_MODEL = "not-a-model"


def _no_model(f: Finding, plain_files: bool) -> Finding:
    """An empty or unrecognised directory is what makes vLLM crash-loop: for `verify`, an error, unless the
    user says the directory holds plain files."""
    if plain_files:
        return replace(f, message="no model layout recognised: checked as plain files (--plain-files)")
    return replace(f, severity="error", message=(
        "no model here: a model needs config.json (or Mistral's params.json) with its weights beside it "
        "(*.safetensors, with model.safetensors.index.json when sharded; or *.bin, *.gguf); pass --plain-files "
        "if this directory holds plain files"))


def run(args: argparse.Namespace) -> int:
    args.json_errors = args.json
    if not args.dir.is_dir():
        raise ConfigError(f"{args.dir} is not a directory")
    objects = None
    if args.source:
        from modelpvc.cli.mirror_cmd import make_source

        src = make_source(args.source, s3_settings(args) if args.source.startswith("s3://") else None)
        try:
            objects, _record = split_record(src.list_objects())
        finally:
            src.close()
    dirs = [args.dir]
    if args.revision_root is not None:
        latest = read_latest(args.revision_root)
        if latest is not None and latest.path.resolve() != args.dir.resolve():
            dirs.append(latest.path)
    ok = True
    for d in dirs:
        ok = _verify_one(d, args, objects) and ok
    if len(dirs) > 1 and not args.json:
        print(f"the source's current revision is in {dirs[1]}, beside the served {args.dir}: "
              "`modelpvc update --gitops PATH` points your manifests at it")
    return ExitCode.OK if ok else ExitCode.INTEGRITY


def _verify_one(directory: Path, args: argparse.Namespace, objects: list[ObjectInfo] | None) -> bool:
    progress = None
    if args.deep and not args.json:
        done = [0, 0]

        def progress(rec: FileRecord, ok: bool) -> None:
            done[0] += 1
            done[1] += rec.size
            sys.stderr.write(f"  {'hashed' if ok else 'MISMATCH'} {rec.path} ({human_bytes(rec.size)}); "
                             f"{count(done[0], 'file')}, {human_bytes(done[1])} so far\n")

    report = verify_directory(directory, deep=args.deep, require_manifest=args.require_manifest,
                              strict=args.strict, loader=args.loader,
                              source=(args.source, objects) if objects is not None else None,
                              workers=args.workers, on_hashed=progress)
    report.structure.findings = [_no_model(f, args.plain_files) if f.code == NOT_A_MODEL else f
                                 for f in report.structure.findings]
    if args.json:
        json.dump(report.to_json(), sys.stdout, separators=(",", ":"))
        sys.stdout.write("\n")
    else:
        print_report(report)
    return report.ok
