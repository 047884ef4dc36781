"""``modelpvc plan s3://BUCKET/PREFIX/``."""

from __future__ import annotations

import argparse
import json
import struct
from typing import Any

from modelpvc.cli import units
from modelpvc.cli.credentials import add_s3_arguments, s3_settings
from modelpvc.cli.help_format import ParagraphFormatter
from modelpvc.cli.progress import count, human_seconds
from modelpvc.cli.selection_args import add_selection_arguments
from modelpvc.core.models import Action, ObjectInfo
from modelpvc.core.provenance import split_record
from modelpvc.core.settings import S3Settings
from modelpvc.core.units import human_bytes
from modelpvc.model import safetensors
from modelpvc.model.layout import detect_layouts
from modelpvc.model.select import make_selector
from modelpvc.model.sizing import HEADROOM, REVISIONS, SizingInput, claim_size_gi, parse_bandwidth, pattern, seconds_at
from modelpvc.store.sources.base import ObjectSource, parse_source, read_bytes
from modelpvc.transfer.planner import LocalState, plan_mirror

DESCRIPTION = """What a mirror of SRC would copy: selected and skipped files with bytes, the formats found,
parameter count and dtypes (from the safetensors headers: a few KiB per shard), a recommended PVC size,
the serving pattern (S3 storage-initializer for small models, a PVC otherwise) and how long the copy and
the server's load take at given bandwidths."""


def register(sub: Any) -> None:
    p = sub.add_parser("plan", help="what would be copied, how big, which PVC size and pattern, how long",
                       description=DESCRIPTION, formatter_class=ParagraphFormatter)
    p.add_argument("source", metavar="SRC")
    add_selection_arguments(p)
    p.add_argument("--headroom", type=float, default=HEADROOM,
                   help=f"PVC size = model bytes x {REVISIONS} revisions x headroom (default {HEADROOM}), as "
                        "render and populate --create-pvc size it")
    p.add_argument("--threshold", type=units.size_bytes, default="20G",
                   help="largest model for the storage-initializer pattern (default 20G; 20GB, 18.6Gi, ...)")
    p.add_argument("--node-ephemeral", type=units.size_bytes, default="100G",
                   help="ephemeral storage a node can spare (default 100G)")
    p.add_argument("--bandwidth", type=units.rate, action="append", default=None,
                   help="bandwidth for time estimates, repeatable (default: 125MiB/s (gp3) and 1GiB/s)")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    add_s3_arguments(p)
    p.set_defaults(run=run)


def _render_command(pat: str, source: str, nbytes: int) -> str:
    """The render command for the recommended pattern; NAME, NAMESPACE and SECRET are the user's."""
    common = f"--source {source} --name NAME --namespace NAMESPACE --secret SECRET --model-bytes {nbytes}"
    if pat == "storage-initializer":
        return f"modelpvc render --pattern storage-initializer {common}"
    return f"modelpvc render --pattern pvc {common} --pvc NAME-pvc"


HEAD_READ = 64 * 1024  # one GET covers the header of nearly every shard; longer ones take a second


def _header_stats(source: ObjectSource, objs: list[ObjectInfo]) -> tuple[int, dict[str, int]]:
    params = 0
    dtypes: dict[str, int] = {}
    for o in objs:
        if not o.rel.endswith(".safetensors") or o.size < 8:
            continue
        head = read_bytes(source, o, 0, min(o.size, HEAD_READ))
        (n,) = struct.unpack("<Q", head[:8])
        if n > safetensors.MAX_HEADER or 8 + n > o.size:
            continue
        if 8 + n > len(head):
            head += read_bytes(source, o, len(head), 8 + n)

        def read_at(off: int, length: int, head: bytes = head) -> bytes:
            return head[off: off + length]

        try:
            h = safetensors.read_header(read_at, o.size)
        except safetensors.HeaderError:
            continue
        for t in h.tensors:
            params += t.elements
            dtypes[t.dtype] = dtypes.get(t.dtype, 0) + t.elements
    return params, dtypes


def run(args: argparse.Namespace) -> int:
    from modelpvc.cli.mirror_cmd import make_source

    args.json_errors = args.json
    parsed = parse_source(args.source)
    source = make_source(args.source, s3_settings(args) if parsed.scheme == "s3" else S3Settings())
    try:
        objects, _record = split_record(source.list_objects())
        plan = plan_mirror(str(source.uri), objects, LocalState(),
                           select=make_selector(args.select, args.include, args.exclude, args.loader))
        selected = [op.obj for op in plan.selected if op.obj is not None]
        params, dtypes = _header_stats(source, selected)
    finally:
        source.close()
    nbytes = plan.selected_bytes
    skipped = plan.of(Action.SKIP)
    inp = SizingInput(nbytes, args.threshold, args.node_ephemeral)
    pat, why = pattern(inp)
    bands = args.bandwidth or ["125MiB/s", "1GiB/s"]
    estimates = [{"bandwidth": b, "copy_s": round(seconds_at(nbytes, parse_bandwidth(b)), 1)} for b in bands]
    out: dict[str, Any] = {
        "event": "plan",  # one JSON line: what the in-cluster probe's reader takes from the pod's log
        "source": str(plan.source),
        "files": [{"path": op.rel, "size": op.size, "etag": op.obj.etag if op.obj else ""} for op in plan.selected],
        "skipped": [{"path": op.rel, "size": op.size, "reason": op.reason} for op in skipped],
        "bytes": nbytes,
        "skipped_bytes": sum(op.size for op in skipped),
        "formats": detect_layouts([o.rel for o in objects]),
        "layout": plan.layout,
        "notes": list(plan.notes),
        "parameters": params,
        "dtypes": dtypes,
        "pvc_size": f"{claim_size_gi(nbytes, headroom=args.headroom)}Gi",
        "pattern": pat,
        "pattern_reason": why,
        "command": _render_command(pat, str(plan.source), nbytes),
        "estimates": estimates,
    }
    if args.json:
        print(json.dumps(out, separators=(",", ":")))
        return 0
    _print_plan(out, args.headroom)
    return 0


def _print_plan(out: dict[str, Any], headroom: float) -> None:
    nbytes = out["bytes"]
    print(f"{out['source']}: {count(len(out['files']), 'file')}, {human_bytes(nbytes)} selected")
    for f in out["files"]:
        print(f"  copy  {f['path']:48} {human_bytes(f['size']):>10}")
    for f in out["skipped"]:
        print(f"  skip  {f['path']:48} {human_bytes(f['size']):>10}  {f['reason']}")
    if out["skipped"]:
        print(f"  {count(len(out['skipped']), 'file')} ({human_bytes(out['skipped_bytes'])}) skipped as duplicates or "
              "excluded")
    print(f"formats: {', '.join(out['formats']) or 'unknown'}")
    for note in out["notes"]:
        print(f"  {note}")
    if out["parameters"]:
        by_dtype = ", ".join(f"{k} {v / 1e9:.2f} billion" for k, v in out["dtypes"].items())
        print(f"parameters: {out['parameters'] / 1e9:.2f} billion ({by_dtype})")
    print(f"recommended PVC size: {out['pvc_size']} ({human_bytes(nbytes)} x {REVISIONS} revisions x {headroom}: "
          "room for `update` to populate the next beside the served one)")
    print(f"pattern: {out['pattern']} — {out['pattern_reason']}")
    print(f"  next: {out['command']}")
    for e in out["estimates"]:
        print(f"at {e['bandwidth']}: copy {human_seconds(e['copy_s'])} (a server start reads as much from the "
              "volume)")
