"""Materialise a repository of tests/fixtures/models/corpus.py as a small directory: the real file names,
tensor names, dtypes, index metadata and quirks, with every tensor shrunk to at most 2 x 2 elements.

``total_size`` keeps its meaning: a published value that equals the real tensor bytes becomes the shrunk
tensor bytes; one that counts the real file lengths becomes the shrunk file lengths; a symbolic one
("tensors", "file-lengths", "tensor-count") is computed the way its producer computed it; any other number
(a hand-written 0) is kept as is.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from modelpvc.core.models import ObjectInfo
from modelpvc.model.weights import classify
from tests.fixtures.models.corpus import ELEM_BITS, Repo, T, nbytes


def shrink(t: T) -> T:
    return t[0], t[1], [min(d, 2) for d in t[2]]


def _header(tensors: list[T]) -> tuple[bytes, int]:
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    off = 0
    for name, dtype, shape in tensors:
        n = 1
        for d in shape:
            n *= d
        size = n * ELEM_BITS[dtype] // 8
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + size]}
        off += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    return raw + b" " * (-len(raw) % 8), off


def derived_size(tensors: list[T]) -> int:
    raw, data = _header(tensors)
    return 8 + len(raw) + data


def listing(repo: Repo, prefix: str = "m/") -> list[ObjectInfo]:
    """The repository as a bucket listing would show it, with its real sizes."""
    sizes = dict(repo.files)
    for f, ts in repo.weights.items():
        sizes.setdefault(f, derived_size(ts))
    return [ObjectInfo(key=prefix + rel, rel=rel, size=n, etag=f"{i:032x}") for i, (rel, n) in
            enumerate(sorted(sizes.items()))]


def _write_safetensors(path: Path, tensors: list[T]) -> None:
    raw, data = _header(tensors)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(range(256)) * (data // 256) + bytes(data % 256))


def _placeholder(name: str) -> bytes:
    if name.endswith(".gguf"):
        return b"GGUF" + struct.pack("<IQQ", 3, 291, 24) + b"\0" * 64
    if name.endswith((".bin", ".pth", ".pt")):
        return b"PK\x03\x04" + name.encode()  # a zip archive's magic: what torch.save writes
    if name.endswith(".json"):
        return b"{}"
    return f"fixture: {name}\n".encode()


def materialize(repo: Repo, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for f, tensors in repo.weights.items():
        (dest / f).parent.mkdir(parents=True, exist_ok=True)
        if f.endswith(".safetensors"):
            _write_safetensors(dest / f, [shrink(t) for t in tensors])
        else:
            (dest / f).write_bytes(_placeholder(f))
    index_name = repo.index["file"] if repo.index else None
    for f in repo.files:
        p = dest / f
        if p.exists() or f == index_name:
            continue
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(json.dumps(repo.json[f]).encode() if f in repo.json else _placeholder(f))
    if repo.index is not None:
        _write_index(repo, dest)
        if "bin_index" in repo.index:
            shards = sorted(f for f in repo.files if f.endswith(".bin"))
            sts = sorted(f for f in repo.weights if f.endswith(".safetensors"))
            wmap = {t[0]: shards[i] for i, f in enumerate(sts) for t in repo.weights[f]}
            (dest / "pytorch_model.bin.index.json").write_text(json.dumps({**repo.index["bin_index"],
                                                                           "weight_map": wmap}))
    return dest


def _write_index(repo: Repo, dest: Path) -> None:
    assert repo.index is not None
    name = repo.index["file"]
    family = classify(name)
    shards = sorted(f for f in repo.weights if f.endswith(".safetensors") and classify(f) == family)
    wmap = {t[0]: f for f in shards for t in repo.weights[f]}
    wmap.update(repo.index.get("extra") or {})
    doc: dict[str, Any] = {}
    meta = repo.index.get("metadata")
    if meta is not None:
        doc["metadata"] = dict(meta)
        if "total_size" in meta:
            doc["metadata"]["total_size"] = _total_size(repo, dest, shards, meta["total_size"])
    doc["weight_map"] = dict(sorted(wmap.items()))
    (dest / name).write_text(json.dumps(doc, indent=2))


def _total_size(repo: Repo, dest: Path, shards: list[str], published: Any) -> Any:
    real_tensors = sum(nbytes(t) for f in shards for t in repo.weights[f])
    real_lengths = sum(repo.files.get(f, derived_size(repo.weights[f])) for f in shards)
    small_tensors = sum(nbytes(shrink(t)) for f in shards for t in repo.weights[f])
    small_lengths = sum((dest / f).stat().st_size for f in shards)
    if published == "tensors" or published == real_tensors:
        return small_tensors
    if published == "file-lengths" or published == real_lengths:
        return small_lengths
    if published == "tensor-count":
        return sum(len(repo.weights[f]) for f in shards)
    return published
