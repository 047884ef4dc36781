"""Which files of a model repository to copy: skip duplicate weight formats beside HF safetensors shards."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable

from modelpvc.core.models import ObjectInfo
from modelpvc.model.layout import detect_layouts


def duplicate_reason(rel: str) -> str | None:
    """Why ``rel`` duplicates the HF safetensors weights (vLLM loads those), or None to keep it."""
    name = rel.rsplit("/", 1)[-1]
    if rel.startswith("original/"):
        return "original/ holds a duplicate of the weights in Meta's native format"
    if name.startswith("consolidated") and (name.endswith(".safetensors") or name.endswith(".pth")):
        return "Mistral-native duplicate of the HF safetensors shards"
    if name.endswith(".pth") or name.endswith(".pt"):
        return "PyTorch duplicate of the safetensors weights"
    if name.endswith(".bin") and (name.startswith("pytorch_model") or name.startswith("model")):
        return "PyTorch .bin duplicate of the safetensors weights"
    if name == "pytorch_model.bin.index.json":
        return "index of the .bin duplicate"
    if name.endswith(".gguf"):
        return "GGUF duplicate of the safetensors weights"
    return None


def make_selector(mode: str, include: list[str], exclude: list[str]) -> Callable[[list[ObjectInfo]], dict[str, str]]:
    """A planner Selector: {rel: reason} of objects to skip."""

    def select(objects: list[ObjectInfo]) -> dict[str, str]:
        skips: dict[str, str] = {}
        names = [o.rel for o in objects]
        auto = mode == "auto" and any(x.startswith("hf-safetensors") for x in detect_layouts(names))
        for o in objects:
            if include and not any(fnmatch.fnmatch(o.rel, g) for g in include):
                skips[o.rel] = "not matched by --include"
                continue
            hit = next((g for g in exclude if fnmatch.fnmatch(o.rel, g)), None)
            if hit:
                skips[o.rel] = f"excluded by --exclude {hit}"
                continue
            if auto:
                why = duplicate_reason(o.rel)
                if why:
                    skips[o.rel] = why
        return skips

    return select
