"""A synthetic model laid out like a Hugging Face repository: valid safetensors shards, index, config,
tokenizer files. Used by tests, ``demo`` and ``bench``; its bytes are random, its structure is real.
"""

from __future__ import annotations

import json
import random
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

_BLOCK = 16 * 1024 * 1024


@dataclass(frozen=True)
class SyntheticModel:
    total_bytes: int = 64 * 1024 * 1024  # weights bytes across all shards
    shards: int = 2
    tensors_per_shard: int = 4
    mistral_duplicate: bool = False  # also write consolidated.safetensors + params.json + tekken.json
    seed: int = 0


def _payload_writer(seed: int) -> Callable[[BinaryIO, int, int], None]:
    rnd = random.Random(seed)
    pool = bytearray(rnd.randbytes(_BLOCK))

    def write(fh: BinaryIO, n: int, tag: int) -> None:
        # Stamp every block with where it is, so a range written at the wrong offset cannot go unseen.
        done = 0
        while done < n:
            k = min(_BLOCK, n - done)
            struct.pack_into("<QQ", pool, 0, tag, done)
            fh.write(memoryview(pool)[:k])
            done += k

    return write


def write_safetensors(path: Path, tensors: list[tuple[str, str, list[int]]], seed: int = 0) -> int:
    """Write a safetensors file with the given (name, dtype, shape) tensors; returns its data bytes."""
    sizes = {"F32": 4, "F16": 2, "BF16": 2, "I8": 1, "U8": 1, "F64": 8, "I32": 4, "I64": 8}
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, dtype, shape in tensors:
        n = sizes[dtype]
        for d in shape:
            n *= d
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the format pads the header to 8 bytes
    write = _payload_writer(seed)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(raw)))
        fh.write(raw)
        write(fh, offset, seed)
    return offset


def _shard_tensors(shard: int, nbytes: int, count: int) -> list[tuple[str, str, list[int]]]:
    cols = 1024
    rows_total = max(count, nbytes // (2 * cols))
    out = []
    for t in range(count):
        rows = rows_total // count + (1 if t < rows_total % count else 0)
        out.append((f"model.layers.{shard}.block.{t}.weight", "BF16", [rows, cols]))
    return out


def generate_model(dest: Path, spec: SyntheticModel = SyntheticModel()) -> list[Path]:
    """Write the model into ``dest``; returns the files written."""
    dest.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    weight_map: dict[str, str] = {}
    total = 0
    per_shard = spec.total_bytes // spec.shards
    for i in range(spec.shards):
        name = f"model-{i + 1:05d}-of-{spec.shards:05d}.safetensors"
        tensors = _shard_tensors(i, per_shard, spec.tensors_per_shard)
        total += write_safetensors(dest / name, tensors, seed=spec.seed * 1000 + i)
        for t in tensors:
            weight_map[t[0]] = name
        files.append(dest / name)
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    small = {
        "model.safetensors.index.json": index,
        "config.json": {"architectures": ["MistralForCausalLM"], "model_type": "mistral",
                        "hidden_size": 1024, "num_hidden_layers": spec.shards, "torch_dtype": "bfloat16",
                        "vocab_size": 32768},
        "generation_config.json": {"bos_token_id": 1, "eos_token_id": 2},
        "tokenizer_config.json": {"tokenizer_class": "LlamaTokenizerFast", "model_max_length": 32768},
        "special_tokens_map.json": {"bos_token": "<s>", "eos_token": "</s>"},
        "tokenizer.json": {"version": "1.0", "model": {"type": "BPE", "vocab": {f"t{i}": i for i in range(2000)}}},
    }
    for name, obj in small.items():
        (dest / name).write_text(json.dumps(obj, indent=1))
        files.append(dest / name)
    if spec.mistral_duplicate:
        tensors = [(n, "BF16", [max(1, per_shard // 2048), 1024]) for n in list(weight_map)[:2]]
        write_safetensors(dest / "consolidated.safetensors", tensors, seed=spec.seed + 7)
        (dest / "params.json").write_text(json.dumps({"dim": 1024, "n_layers": spec.shards}))
        (dest / "tekken.json").write_text(json.dumps({"config": {"pattern": "x"}, "vocab": []}))
        files += [dest / "consolidated.safetensors", dest / "params.json", dest / "tekken.json"]
    return files


def generate_small_files(dest: Path, count: int, size: int, seed: int = 0) -> list[Path]:
    """``count`` files of ``size`` random bytes each, for many-small-objects benchmarks."""
    dest.mkdir(parents=True, exist_ok=True)
    rnd = random.Random(seed)
    out = []
    for i in range(count):
        p = dest / f"part-{i:05d}.bin"
        p.write_bytes(rnd.randbytes(size))
        out.append(p)
    return out


def tree_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and ".modelpvc" not in p.parts)


def same_tree(a: Path, b: Path) -> list[str]:
    """Differences between two trees (ignoring ``.modelpvc/``), compared byte for byte."""
    def files(root: Path) -> dict[str, Path]:
        return {p.relative_to(root).as_posix(): p for p in root.rglob("*")
                if p.is_file() and ".modelpvc" not in p.relative_to(root).parts}

    fa, fb = files(a), files(b)
    diffs = [f"only in {a}: {k}" for k in sorted(fa.keys() - fb.keys())]
    diffs += [f"only in {b}: {k}" for k in sorted(fb.keys() - fa.keys())]
    for k in sorted(fa.keys() & fb.keys()):
        if fa[k].stat().st_size != fb[k].stat().st_size or not _same_bytes(fa[k], fb[k]):
            diffs.append(f"differs: {k}")
    return diffs


def _same_bytes(a: Path, b: Path) -> bool:
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(8 << 20), fb.read(8 << 20)
            if x != y:
                return False
            if not x:
                return True


__all__ = ["SyntheticModel", "generate_model", "generate_small_files", "same_tree", "tree_bytes",
           "write_safetensors"]
