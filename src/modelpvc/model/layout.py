"""What a model directory is, and whether it is whole: layouts, index files, configs, tokenizers."""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelpvc.model import gguf, safetensors
from modelpvc.model.findings import Finding

TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tekken.json", "tokenizer_config.json")
ST_INDEX = "model.safetensors.index.json"
BIN_INDEX = "pytorch_model.bin.index.json"


def detect_layouts(names: list[str]) -> list[str]:
    """Layouts present, from file names alone (used by plan on a listing, and by verify)."""
    s = set(names)
    out = []
    if ST_INDEX in s or any(_is_hf_shard(n) for n in s):
        out.append("hf-safetensors-sharded")
    if "model.safetensors" in s:
        out.append("hf-safetensors")
    if any(n.startswith("consolidated") and n.endswith(".safetensors") for n in s) and "params.json" in s:
        out.append("mistral-native")
    if BIN_INDEX in s or any(n.startswith("pytorch_model") and n.endswith(".bin") for n in s):
        out.append("pytorch-bin")
    if any(n.endswith(".gguf") for n in s):
        out.append("gguf")
    return out


def _is_hf_shard(name: str) -> bool:
    return "/" not in name and name.startswith("model-") and name.endswith(".safetensors") and "-of-" in name


@dataclass
class StructureReport:
    layouts: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    parameters: int = 0
    dtypes: dict[str, int] = field(default_factory=dict)  # dtype -> parameter count
    files_checked: int = 0

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    def to_json(self) -> dict[str, Any]:
        return {"layouts": self.layouts, "parameters": self.parameters, "dtypes": self.dtypes,
                "files_checked": self.files_checked, "findings": [f.to_json() for f in self.findings]}


class _Dir:
    def __init__(self, root: Path, names: list[str]) -> None:
        self.root = root
        self.names = set(names)

    def json(self, name: str, report: StructureReport, required: bool) -> Any:
        if name not in self.names:
            if required:
                report.findings.append(Finding(name, "missing", f"{name} is missing"))
            return None
        try:
            return json.loads((self.root / name).read_bytes())
        except (OSError, ValueError, RecursionError) as e:
            report.findings.append(Finding(name, "bad-json", f"{name} does not parse as JSON ({type(e).__name__})"))
            return None


def _check_safetensors_file(root: Path, name: str, report: StructureReport) -> safetensors.Header | None:
    read_at, size, close = safetensors.read_local(str(root / name))
    try:
        h = safetensors.read_header(read_at, size)
    except safetensors.HeaderError as e:
        report.findings.append(Finding(name, e.code, str(e)))
        return None
    finally:
        close()
    report.files_checked += 1
    report.findings += safetensors.check(name, h, size)
    counts: Counter[str] = Counter(report.dtypes)
    for t in h.tensors:
        counts[t.dtype] += t.elements
        report.parameters += t.elements
    report.dtypes = dict(counts)
    return h


def check_directory(root: Path, names: list[str] | None = None) -> StructureReport:
    """Structural checks of a model directory; reads headers and small JSON files only."""
    if names is None:
        names = sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                       if p.is_file() and ".modelpvc" not in p.relative_to(root).parts)
    d = _Dir(root, names)
    r = StructureReport(layouts=detect_layouts(names))
    if not r.layouts:
        r.findings.append(Finding(".", "unknown-layout", "no known model layout (safetensors, .bin, GGUF) found",
                                  severity="warning"))
        return r
    hf = any(x in r.layouts for x in ("hf-safetensors-sharded", "hf-safetensors", "pytorch-bin"))
    if hf:
        d.json("config.json", r, required=True)
        d.json("generation_config.json", r, required=False)
    if "mistral-native" in r.layouts:
        d.json("params.json", r, required=True)
    if (hf or "mistral-native" in r.layouts) and not any(t in d.names for t in TOKENIZER_FILES[:3]):
        r.findings.append(Finding(".", "missing-tokenizer",
                                  "no tokenizer (tokenizer.json, tokenizer.model or tekken.json)"))
    if "hf-safetensors-sharded" in r.layouts:
        _check_st_index(root, d, r)
    if "hf-safetensors" in r.layouts:
        _check_safetensors_file(root, "model.safetensors", r)
    if "mistral-native" in r.layouts and not hf:
        for n in sorted(d.names):
            if n.startswith("consolidated") and n.endswith(".safetensors"):
                _check_safetensors_file(root, n, r)
    if "pytorch-bin" in r.layouts:
        _check_bin(root, d, r)
    for n in sorted(x for x in d.names if x.endswith(".gguf")):
        read_at, size, close = safetensors.read_local(str(root / n))
        try:
            r.findings += gguf.check(n, read_at, size)
            r.files_checked += 1
        finally:
            close()
    return r


def _check_st_index(root: Path, d: _Dir, r: StructureReport) -> None:
    index = d.json(ST_INDEX, r, required=True)
    if index is None:
        return
    wmap = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(wmap, dict):
        r.findings.append(Finding(ST_INDEX, "bad-index", "index has no weight_map"))
        return
    shards = sorted(set(map(str, wmap.values())))
    total = 0
    for shard in shards:
        if shard not in d.names:
            r.findings.append(Finding(shard, "missing-shard", f"{shard} is named by {ST_INDEX} but missing"))
            continue
        h = _check_safetensors_file(root, shard, r)
        if h is None:
            continue
        have = {t.name for t in h.tensors}
        total += sum(t.end - t.start for t in h.tensors)
        for name, where in wmap.items():
            if where == shard and name not in have:
                r.findings.append(Finding(shard, "wrong-shard", f"tensor {name} is not in {shard} as the index says"))
    declared = (index.get("metadata") or {}).get("total_size")
    missing = any(f.code == "missing-shard" for f in r.findings)
    if declared is not None and not missing and int(declared) != total:
        r.findings.append(Finding(ST_INDEX, "total-size",
                                  f"index total_size {declared} != {total} bytes of tensors in the shards"))


def _check_bin(root: Path, d: _Dir, r: StructureReport) -> None:
    if BIN_INDEX in d.names:
        index = d.json(BIN_INDEX, r, required=True)
        wmap = index.get("weight_map") if isinstance(index, dict) else None
        for shard in sorted(set(map(str, (wmap or {}).values()))):
            if shard not in d.names:
                r.findings.append(Finding(shard, "missing-shard", f"{shard} is named by {BIN_INDEX} but missing"))
    for n in sorted(x for x in d.names if x.endswith(".bin") and x.startswith("pytorch_model")):
        p = root / n
        with open(p, "rb") as fh:
            magic = fh.read(2)
        r.files_checked += 1
        if os.path.getsize(p) == 0 or magic not in (b"PK", b"\x80\x02", b"\x80\x04", b"\x80\x05"):
            r.findings.append(Finding(n, "bad-header", "not a PyTorch checkpoint (neither zip nor pickle)"))
