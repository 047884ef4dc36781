"""Which files of a model repository hold which copy of the weights, from file names alone.

Real repositories ship the same weights more than once (Meta's ``original/``, Mistral's
``consolidated*.safetensors`` beside HF shards, ``.bin`` beside ``.safetensors``, GGUF quantizations) and
sometimes training state. A *weight set* is one such copy; a loader reads exactly one of them.

What vLLM reads (vllm/model_executor/model_loader/default_loader.py, ``_prepare_weights``): it globs the
model directory's top level only, ``*.safetensors`` first, then ``*.bin``, then ``*.pt``; with
``--load-format mistral`` only ``consolidated*.safetensors`` (and ``consolidated.safetensors.index.json``);
among safetensors it keeps the files the index names (``filter_duplicate_safetensors_files``), and it
drops training files (``filter_files_not_needed_for_inference``: training_args.bin, optimizer.*,
scheduler.pt, scaler.pt).
"""

from __future__ import annotations

import re

HF_INDEX = "model.safetensors.index.json"
BIN_INDEX = "pytorch_model.bin.index.json"
MISTRAL_INDEX = "consolidated.safetensors.index.json"
ADAPTER_CONFIG = "adapter_config.json"

# Weight sets in the order vLLM's automatic loader prefers them; meta-original and gguf are not read by
# it automatically but are the only weights some repositories have.
HF_SAFETENSORS = "hf-safetensors"
MISTRAL_NATIVE = "mistral-native"
PYTORCH_BIN = "pytorch-bin"
PYTORCH_PT = "pytorch-pt"
META_ORIGINAL = "meta-original"
GGUF = "gguf"
PEFT_ADAPTER = "peft-adapter"
TRAINING_STATE = "training-state"
WEIGHT_SETS = (HF_SAFETENSORS, MISTRAL_NATIVE, PYTORCH_BIN, PYTORCH_PT, META_ORIGINAL, GGUF)

_TRAINING = re.compile(r"^(optimizer\.(pt|bin)|scheduler\.pt|scaler\.pt|training_args\.bin|rng_state(_\d+)?\.pth)$")
_CHECKPOINT_DIR = re.compile(r"^(checkpoint|global_step)-?\d+$")


def _top(rel: str) -> bool:
    return "/" not in rel


def classify(rel: str) -> str | None:
    """The weight set a file belongs to, or None for everything else (configs, tokenizers, code, docs)."""
    name = rel.rsplit("/", 1)[-1]
    first = rel.split("/", 1)[0]
    if _CHECKPOINT_DIR.match(first) and not _top(rel):
        return TRAINING_STATE  # an intermediate training checkpoint: another full copy plus optimizer state
    if _top(rel) and _TRAINING.match(name):
        return TRAINING_STATE
    if first == "original" and not _top(rel):
        return META_ORIGINAL
    if name.endswith(".gguf"):
        return GGUF
    if not _top(rel):
        return None  # nested files are not read by vLLM's loader; they are not a weight copy we judge
    if name.startswith(("adapter_model", "new_embeddings")) and name.endswith((".safetensors", ".bin")):
        return PEFT_ADAPTER  # new_embeddings.*: an adapter's added-vocabulary rows (vLLM's LoRA loader reads them)
    if name == ADAPTER_CONFIG:
        return PEFT_ADAPTER
    if name.endswith(".safetensors"):
        return MISTRAL_NATIVE if name.startswith("consolidated") else HF_SAFETENSORS
    if name == HF_INDEX:
        return HF_SAFETENSORS
    if name == MISTRAL_INDEX:
        return MISTRAL_NATIVE
    if name == BIN_INDEX or (name.endswith(".bin") and _checkpoint_name(name)):
        return PYTORCH_BIN
    if name.endswith((".pt", ".pth")) and _checkpoint_name(name):
        return PYTORCH_PT
    return None


def _checkpoint_name(name: str) -> bool:
    """Names transformers and Mistral give PyTorch checkpoints; an arbitrary ``data.bin`` is not weights."""
    return name.startswith(("pytorch_model", "model", "consolidated")) or "-of-" in name


def weight_sets(names: list[str]) -> dict[str, list[str]]:
    """{set: files}. An index without its weights still names a set: the weights are missing."""
    out: dict[str, list[str]] = {}
    for rel in sorted(names):
        s = classify(rel)
        if s is not None:
            out.setdefault(s, []).append(rel)
    return out


def weight_files(files: list[str]) -> list[str]:
    """The files of a set that hold tensors (not its index or config)."""
    return [f for f in files if not f.endswith(".json")]


def described(names: list[str]) -> bool:
    """Weights are a model a server can load only with a config (config.json, params.json, an adapter's
    config), an index, or GGUF's self-describing header; without one, files named like weights are plain files."""
    have = set(names)
    return bool(have & {"config.json", "params.json", ADAPTER_CONFIG, HF_INDEX, BIN_INDEX, MISTRAL_INDEX}) or \
        any(n.endswith(".gguf") for n in names)
