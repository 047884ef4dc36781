"""Is a model directory whole? Structural checks from headers and small JSON files only.

Findings have a severity, decided by what loaders do with the same input:

* **error**: loading fails or the copy is not the model: a file the index names is missing, a
  safetensors header that does not parse or breaks the format's rules, a file length that disagrees
  with its header, a config that does not parse, an index without ``metadata`` (transformers needs the
  object), no weights where a model was recognised.
* **warning**: metadata that transformers and vLLM tolerate: ``total_size`` absent or wrong, an index
  entry whose tensor is in no shard (huggingface_hub #4725: loaders read the tensors the shards hold), a
  shard the index does not name (vLLM skips it), no tokenizer (the server may be given one).
  ``verify --strict`` makes them errors.
* **info**: not a model (no weights, no model config): the files are plain files.

Severity follows the loader: an error in a weight set the loader does not read (a broken ``.bin`` or
``original/consolidated.pth`` beside the safetensors it reads, copied by ``--select all``) cannot stop it
loading, so it is a warning that names the set read instead.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelpvc.model import gguf, safetensors, select
from modelpvc.model import weights as w
from modelpvc.model.findings import Finding

TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tekken.json", "vocab.json", "spiece.model",
                   "tokenizer.model.v3", "tokenizer.model.v7")
ST_INDEX = w.HF_INDEX
BIN_INDEX = w.BIN_INDEX
_PICKLE_MAGIC = (b"PK", b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")


def detect_layouts(names: list[str]) -> list[str]:
    """Weight layouts present, from file names alone (plan uses it on a listing, verify on a directory)."""
    sets = w.weight_sets(names)
    return [s for s in (*w.WEIGHT_SETS, w.PEFT_ADAPTER) if s in sets]


@dataclass
class StructureReport:
    layouts: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    parameters: int = 0
    dtypes: dict[str, int] = field(default_factory=dict)  # dtype -> parameter count
    files_checked: int = 0

    def errors_for(self, strict: bool = False) -> list[Finding]:
        bad = ("error", "warning") if strict else ("error",)
        return [f for f in self.findings if f.severity in bad]

    @property
    def errors(self) -> list[Finding]:
        return self.errors_for(False)

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    def add(self, path: str, code: str, message: str, severity: str = "error") -> None:
        self.findings.append(Finding(path, code, message, severity))

    def to_json(self) -> dict[str, Any]:
        return {"layouts": self.layouts, "parameters": self.parameters, "dtypes": self.dtypes,
                "files_checked": self.files_checked, "findings": [f.to_json() for f in self.findings]}


class _Dir:
    def __init__(self, root: Path, names: list[str]) -> None:
        self.root = root
        self.names = set(names)

    def size(self, name: str) -> int:
        return (self.root / name).stat().st_size

    def json(self, name: str, report: StructureReport, missing: str | None) -> Any:
        """The parsed file; a finding of severity ``missing`` when absent (None: say nothing)."""
        if name not in self.names:
            if missing:
                report.add(name, "missing", f"{name} is missing", missing)
            return None
        try:
            return json.loads((self.root / name).read_bytes())
        except (OSError, ValueError, RecursionError) as e:
            report.add(name, "bad-json", f"{name} does not parse as JSON ({type(e).__name__})")
            return None


def check_directory(root: Path, names: list[str] | None = None, loader: str = "vllm") -> StructureReport:
    """Structural checks of a model directory; reads headers and small JSON files only."""
    if names is None:
        names = sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                       if p.is_file() and ".modelpvc" not in p.relative_to(root).parts)
    r = _check(root, names)
    read = select.read_set(names, loader)
    if read is not None:
        r.findings = [_unread(f, read) for f in r.findings]
    return r


def _unread(f: Finding, read: str) -> Finding:
    """An error in a weight set the loader does not read, as the warning it is for that loader."""
    other = w.classify(f.path)
    if f.severity != "error" or other not in w.WEIGHT_SETS or other == read:
        return f
    return Finding(f.path, f.code, f"{f.message} (not read: the loader reads the {read} weights)", "warning")


def _check(root: Path, names: list[str]) -> StructureReport:
    d = _Dir(root, names)
    sets = w.weight_sets(names)
    r = StructureReport(layouts=detect_layouts(names))
    if not r.layouts or not w.described(names):
        # Weights need a config (or an index, or GGUF's own header) to be a model a server can load; without
        # one, files named like weights are plain files to us.
        config = d.json("config.json", r, None) if "config.json" in d.names else None
        if isinstance(config, dict) and ("architectures" in config or "model_type" in config):
            r.add(".", "no-weights", "config.json describes a model but no weights (safetensors, .bin, .pt, GGUF) "
                                     "are here")
        elif not r.findings:
            r.layouts = []
            r.add(".", "not-a-model", "no model layout recognised (no weights with a config.json, params.json or "
                                      "index): the files are copied and checked as plain files", "info")
        return r
    _configs(d, r, sets)
    if w.HF_SAFETENSORS in sets:
        _check_safetensors_set(d, r, w.weight_files(sets[w.HF_SAFETENSORS]), ST_INDEX)
    if w.MISTRAL_NATIVE in sets:
        _check_safetensors_set(d, r, w.weight_files(sets[w.MISTRAL_NATIVE]), w.MISTRAL_INDEX)
    if w.PEFT_ADAPTER in sets:
        _check_adapter(d, r, sets[w.PEFT_ADAPTER])
    if w.PYTORCH_BIN in sets:
        _check_bin(d, r, sets[w.PYTORCH_BIN])
    if w.PYTORCH_PT in sets or w.META_ORIGINAL in sets:
        for n in sets.get(w.PYTORCH_PT, []) + sets.get(w.META_ORIGINAL, []):
            if n.endswith((".pt", ".pth")):
                _check_pickle(d, r, n)
            elif n.endswith("params.json"):
                d.json(n, r, None)
    for n in w.weight_files(sets.get(w.GGUF, [])):
        read_at, size, close = safetensors.read_local(str(root / n))
        try:
            r.findings += gguf.check(n, read_at, size)
            r.files_checked += 1
        finally:
            close()
    return r


def _configs(d: _Dir, r: StructureReport, sets: dict[str, list[str]]) -> None:
    hf = any(s in sets for s in (w.HF_SAFETENSORS, w.PYTORCH_BIN, w.PYTORCH_PT))
    mistral = w.MISTRAL_NATIVE in sets
    adapter_only = w.PEFT_ADAPTER in sets and not (hf or mistral)
    if hf or mistral:
        # vLLM reads config.json, or params.json with --config-format mistral.
        need = "error" if "params.json" not in d.names else "warning"
        d.json("config.json", r, need if hf else None)
        d.json("params.json", r, "error" if mistral and "config.json" not in d.names else None)
        d.json("generation_config.json", r, None)
    if not adapter_only and (hf or mistral) and not any(n in d.names for n in TOKENIZER_FILES):
        r.add(".", "missing-tokenizer", "no tokenizer (tokenizer.json, tokenizer.model, tekken.json): the server "
                                        "needs --tokenizer pointing at one", "warning")


def _header(d: _Dir, r: StructureReport, name: str) -> safetensors.Header | None:
    read_at, size, close = safetensors.read_local(str(d.root / name))
    try:
        h = safetensors.read_header(read_at, size)
    except safetensors.HeaderError as e:
        r.add(name, e.code, str(e))
        return None
    finally:
        close()
    r.files_checked += 1
    r.findings += safetensors.check(name, h, size)
    counts: Counter[str] = Counter(r.dtypes)
    for t in h.tensors:
        counts[t.dtype] += t.elements
        r.parameters += t.elements
    r.dtypes = dict(counts)
    return h


def _check_safetensors_set(d: _Dir, r: StructureReport, files: list[str], index_name: str) -> None:
    """Every shard the index names is present and whole; the index's metadata is compared with them."""
    index = d.json(index_name, r, None) if index_name in d.names else None
    if index_name in d.names and index is None:
        return  # bad-json reported: a loader cannot resolve the shards
    if index is None:
        for n in files:
            _header(d, r, n)
        return
    wmap = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(wmap, dict) or not all(isinstance(v, str) for v in wmap.values()):
        r.add(index_name, "bad-index", f"{index_name} has no usable weight_map (tensor -> file)")
        return
    named = sorted(set(wmap.values()))
    headers: dict[str, safetensors.Header] = {}
    missing = False
    for shard in named:
        if shard not in d.names:
            r.add(shard, "missing-shard", f"{shard} is named by {index_name} but missing")
            missing = True
            continue
        h = _header(d, r, shard)
        if h is not None:
            headers[shard] = h
    for extra in sorted(set(files) - set(named)):
        r.add(extra, "unindexed-shard", f"{extra} is not named by {index_name}: loaders that follow the index "
                                        "skip it", "warning")
    if missing or len(headers) != len(named):
        return  # errors reported; the index cannot be compared with shards that did not parse
    _index_entries(r, index_name, wmap, headers)
    _total_size(d, r, index, index_name, named, headers)


def _index_entries(r: StructureReport, index_name: str, wmap: dict[str, str],
                   headers: dict[str, safetensors.Header]) -> None:
    where: dict[str, str] = {}
    for shard, h in headers.items():
        for t in h.tensors:
            where.setdefault(t.name, shard)
    absent = [name for name in wmap if name not in where]
    moved = [(name, shard) for name, shard in wmap.items() if name in where and where[name] != shard]
    if absent:
        shown = ", ".join(f"{n} ({wmap[n]})" for n in absent[:3]) + (f" and {len(absent) - 3} more"
                                                                      if len(absent) > 3 else "")
        r.add(index_name, "tensor-not-found", f"{len(absent)} tensor(s) named by the index are in no shard: "
                                              f"{shown}; loaders read what the shards hold", "warning")
    if moved:
        n, s = moved[0]
        r.add(index_name, "wrong-shard", f"{len(moved)} tensor(s) are in another shard than the index says (e.g. "
                                         f"{n}: index {s}, found in {where[n]})", "warning")


def _total_size(d: _Dir, r: StructureReport, index: dict[str, Any], index_name: str, shards: list[str],
                headers: dict[str, safetensors.Header]) -> None:
    meta = index.get("metadata")
    if not isinstance(meta, dict):
        # transformers reads an HF index's "metadata" unconditionally (utils/hub.py, get_checkpoint_shard_files);
        # vLLM, the one reader of a Mistral-native index, reads only its weight_map.
        if index_name == ST_INDEX:
            r.add(index_name, "no-metadata", f"{index_name} has no \"metadata\" object: transformers' "
                                             "from_pretrained fails on it (vLLM reads only weight_map); add "
                                             "\"metadata\": {}")
        else:
            r.add(index_name, "no-metadata", f"{index_name} has no metadata (vLLM does not need it)", "warning")
        return
    declared = meta.get("total_size")
    if declared is None:
        r.add(index_name, "no-total-size", f"{index_name} has no metadata.total_size (loaders do not need it)",
              "warning")
        return
    tensors = sum(t.end - t.start for h in headers.values() for t in h.tensors)
    try:
        value = int(declared)
    except (TypeError, ValueError):
        r.add(index_name, "total-size", f"metadata.total_size {declared!r} is not a number", "warning")
        return
    if value != tensors:
        lengths = sum(d.size(s) for s in shards)
        detail = (" (it equals the shards' file lengths, headers included)" if value == lengths else "")
        r.add(index_name, "total-size", f"metadata.total_size {value} differs from the {tensors} bytes of tensors "
                                        f"in the shards by {value - tensors:+d}{detail}; loaders do not use it",
              "warning")


def _check_adapter(d: _Dir, r: StructureReport, files: list[str]) -> None:
    config = d.json(w.ADAPTER_CONFIG, r, "error")
    if config is not None and not isinstance(config, dict):
        r.add(w.ADAPTER_CONFIG, "bad-json", f"{w.ADAPTER_CONFIG} is not a JSON object")
    if not w.weight_files(files):
        r.add(w.ADAPTER_CONFIG, "missing", "adapter weights (adapter_model.safetensors or .bin) are missing")
    for n in w.weight_files(files):
        if n.endswith(".safetensors"):
            _header(d, r, n)
        else:
            _check_pickle(d, r, n)


def _check_bin(d: _Dir, r: StructureReport, files: list[str]) -> None:
    if BIN_INDEX in d.names:
        index = d.json(BIN_INDEX, r, None)
        wmap = index.get("weight_map") if isinstance(index, dict) else None
        if index is not None and not isinstance(wmap, dict):
            r.add(BIN_INDEX, "bad-index", f"{BIN_INDEX} has no usable weight_map (tensor -> file)")
        for shard in sorted(set(map(str, (wmap or {}).values()))):
            if shard not in d.names:
                r.add(shard, "missing-shard", f"{shard} is named by {BIN_INDEX} but missing")
    for n in w.weight_files(files):
        _check_pickle(d, r, n)


def _check_pickle(d: _Dir, r: StructureReport, name: str) -> None:
    """A PyTorch checkpoint is a zip archive (torch >= 1.6) or a bare pickle."""
    with open(d.root / name, "rb") as fh:
        magic = fh.read(2)
    r.files_checked += 1
    if not any(magic.startswith(m) for m in _PICKLE_MAGIC):
        r.add(name, "bad-header", "not a PyTorch checkpoint (neither a zip archive nor a pickle)")
