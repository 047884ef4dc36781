"""Which files of a model repository to copy: the weight set the serving loader reads, and everything
that is not weights (configs, tokenizers, code, docs), never duplicate copies or training state.

``--for vllm`` (default) follows vLLM's automatic loader; ``--for vllm-mistral`` its Mistral-native mode
(``--load-format mistral``: ``consolidated*.safetensors``, ``params.json``, ``tekken.json``). A repository
with only one loadable weight set keeps it, whatever the loader: a plan never drops the only weights.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Sequence

from modelpvc.core.errors import ModelsBelow
from modelpvc.core.models import ObjectInfo, Selection
from modelpvc.model import weights as w

LOADERS: dict[str, tuple[str, ...]] = {
    "vllm": (w.HF_SAFETENSORS, w.MISTRAL_NATIVE, w.PYTORCH_BIN, w.PYTORCH_PT, w.GGUF, w.META_ORIGINAL),
    "vllm-mistral": (w.MISTRAL_NATIVE, w.HF_SAFETENSORS, w.PYTORCH_BIN, w.PYTORCH_PT, w.GGUF, w.META_ORIGINAL),
}
_WHY = {
    w.HF_SAFETENSORS: "HF safetensors: vLLM's default loader reads them (through model.safetensors.index.json "
                      "when sharded)",
    w.MISTRAL_NATIVE: "Mistral-native consolidated*.safetensors: what --load-format mistral reads",
    w.PYTORCH_BIN: "PyTorch .bin weights: vLLM reads them when no safetensors exist",
    w.PYTORCH_PT: "PyTorch .pt/.pth weights: vLLM reads them when neither safetensors nor .bin exist",
    w.GGUF: "GGUF: the only weights here (vLLM loads one .gguf file)",
    w.META_ORIGINAL: "Meta's original/ checkpoint: the only weights here",
}
_DUPLICATE = {
    w.HF_SAFETENSORS: "HF safetensors duplicate of the {chosen} weights",
    w.MISTRAL_NATIVE: "Mistral-native duplicate of the {chosen} weights",
    w.PYTORCH_BIN: "PyTorch .bin duplicate of the {chosen} weights",
    w.PYTORCH_PT: "PyTorch .pt/.pth duplicate of the {chosen} weights",
    w.GGUF: "GGUF duplicate of the {chosen} weights",
    w.META_ORIGINAL: "original/ holds a duplicate of the weights in Meta's native format",
}


def loader_from_args(args: Sequence[str]) -> str:
    """The loader an InferenceService's server arguments select (``--load-format mistral``)."""
    items = list(args)
    for i, a in enumerate(items):
        value = a.split("=", 1)[1] if a.startswith("--load-format=") else (
            items[i + 1] if a == "--load-format" and i + 1 < len(items) else None)
        if value == "mistral":
            return "vllm-mistral"
    return "vllm"


def _candidates(names: list[str], sets: dict[str, list[str]], loader: str) -> list[str]:
    """The full-model weight sets present, in the loader's order of preference (the first is read)."""
    if loader not in LOADERS:
        raise ValueError(f"unknown loader {loader!r}")
    return [s for s in LOADERS[loader] if s in sets] if w.described(names) else []


def read_set(names: list[str], loader: str = "vllm") -> str | None:
    """The full-model weight set the loader reads from these files (None: no model weights)."""
    return next(iter(_candidates(names, w.weight_sets(names), loader)), None)


def choose(names: list[str], loader: str = "vllm") -> Selection:
    """The weight set to keep and the files to leave out, with reasons."""
    sets = w.weight_sets(names)
    candidates = _candidates(names, sets, loader)
    chosen = candidates[0] if candidates else None
    sel = Selection()
    for rel in sets.get(w.TRAINING_STATE, []):
        sel.skips[rel] = "training state (checkpoints, optimizer, scheduler): not read for serving"
    if w.PEFT_ADAPTER in sets:
        sel.layout = w.PEFT_ADAPTER
        sel.notes.append("a PEFT/LoRA adapter: adapter_config.json and its weights are kept; serve it on its "
                         "base model (vLLM --enable-lora)")
    if chosen is None:
        if not sel.layout:
            sel.notes.append("no model weights recognised (weights need a config.json, params.json or an index): "
                             "every file is copied as is")
        return sel
    sel.layout = sel.layout or chosen
    sel.notes.append(f"layout {chosen}: {_WHY[chosen]}")
    if loader == "vllm-mistral" and chosen != w.MISTRAL_NATIVE:
        sel.notes.append(f"no Mistral-native weights (consolidated*.safetensors) here: kept {chosen}; serve it "
                         "without --load-format mistral")
    for other in candidates[1:]:
        for rel in sets[other]:
            sel.skips[rel] = _DUPLICATE[other].format(chosen=chosen)
    ggufs = w.weight_files(sets.get(w.GGUF, []))
    if chosen == w.GGUF and len(ggufs) > 1:
        sel.notes.append(f"{len(ggufs)} GGUF files (quantizations): vLLM loads one; copy only it with "
                         "--include NAME.gguf")
    return sel


def models_below(names: list[str], loader: str = "vllm") -> list[str]:
    """Directories (``a/``, ``a/b/``) that each hold a model at their root, when ``names`` has none at its own:
    what a prefix one level too high lists."""
    if choose([n for n in names if "/" not in n], loader).layout:
        return []
    dirs = sorted({n.rsplit("/", 1)[0] for n in names if "/" in n})
    found: list[str] = []
    for d in dirs:
        if any(d.startswith(f + "/") for f in found):
            continue  # a model's own subdirectories (original/, tokenizer/) are part of it
        inside = [n[len(d) + 1:] for n in names if n.startswith(d + "/") and "/" not in n[len(d) + 1:]]
        if choose(inside, loader).layout:
            found.append(d)
    return [d + "/" for d in found]


def make_selector(mode: str, include: list[str], exclude: list[str],
                  loader: str = "vllm") -> Callable[[list[ObjectInfo]], Selection]:
    """A planner Selector: ``mode`` "auto" keeps the loader's weight set, "all" keeps every file."""

    def select(objects: list[ObjectInfo]) -> Selection:
        names = [o.rel for o in objects]
        sel = choose(names, loader) if mode == "auto" else Selection()
        if mode == "auto" and not sel.layout and not include and (below := models_below(names, loader)):
            raise ModelsBelow(f"no model at the root of this prefix, but {len(below)} below it: "
                              + ", ".join(below), below,
                              hint="point at the model's own directory; --select all copies the tree as it is")
        for o in objects:
            if include and not any(fnmatch.fnmatch(o.rel, g) for g in include):
                sel.skips[o.rel] = "not matched by --include"
                continue
            hit = next((g for g in exclude if fnmatch.fnmatch(o.rel, g)), None)
            if hit:
                sel.skips[o.rel] = f"excluded by --exclude {hit}"
            elif include:
                sel.skips.pop(o.rel, None)  # asked for by name: --include wins over auto's choice
        return sel

    return select
