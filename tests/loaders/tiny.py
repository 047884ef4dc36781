"""Tiny but real models, made and loaded by the real libraries. Runs in the loader environment (env.py).

    python tiny.py build OUT      # OUT/<name>/ for every model in MODELS; prints {name: kind}
    python tiny.py load JOBS      # JOBS: [{"dir", "kind", "base"?, "tokenizer"?}]
                                  # prints [{"dir", "ok", "error", "token", "logit"}]

What each kind's load does is what the server that reads that layout does with it:
* ``hf``: transformers' ``AutoTokenizer`` (from ``tokenizer``, as a server's ``--tokenizer``, when given)
  and ``AutoModelForCausalLM.from_pretrained`` (sharded safetensors
  through the index), every shard opened with safetensors' ``safe_open``, then one greedy token. A load
  that had to initialise weights the files should hold (``missing_keys``) is a failure: a server would serve
  noise.
* ``mistral-native``: ``consolidated*.safetensors`` and ``params.json``, the tensor names mapped as vLLM's
  Mistral path maps them (vllm/model_executor/models/llama.py, ``mistral_mapping`` and its ``permute`` of
  wq/wk), loaded into transformers' Mistral model with ``strict=True``, then one token from token ids
  (``tekken.json`` needs mistral_common, which is not in this tier).
* ``adapter``: ``PeftModel.from_pretrained`` on its base model, then one token; the adapter must change the
  base model's logits (its B matrices are not zero), so an adapter silently not applied fails.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    Gemma2Config,
    LlamaConfig,
    MistralConfig,
    PreTrainedTokenizerFast,
    Qwen2Config,
)

PROMPT = "the model weights are on the volume"
COMMON: dict[str, Any] = dict(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                              num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
# Small shards so that every model is sharded with an index, as real ones are.
SHARD = "8KB"
HF: dict[str, Any] = {
    "llama": lambda: LlamaConfig(**COMMON),
    "mistral": lambda: MistralConfig(**COMMON),
    "qwen2": lambda: Qwen2Config(**COMMON, tie_word_embeddings=True),
    "gemma2": lambda: Gemma2Config(**COMMON, head_dim=4),
}
MISTRAL_NAMES = {"model.embed_tokens": "tok_embeddings", "model.norm": "norm", "lm_head": "output",
                 "self_attn.q_proj": "attention.wq", "self_attn.k_proj": "attention.wk",
                 "self_attn.v_proj": "attention.wv", "self_attn.o_proj": "attention.wo",
                 "mlp.gate_proj": "feed_forward.w1", "mlp.down_proj": "feed_forward.w2",
                 "mlp.up_proj": "feed_forward.w3", "input_layernorm": "attention_norm",
                 "post_attention_layernorm": "ffn_norm"}


def tokenizer() -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator([PROMPT] * 10, trainers.BpeTrainer(vocab_size=COMMON["vocab_size"],
                                                               special_tokens=["<unk>", "<s>", "</s>"]))
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>")


def _hf(name: str, out: Path) -> Any:
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(HF[name]())
    model.save_pretrained(out, max_shard_size=SHARD)
    tokenizer().save_pretrained(out)
    return model


def _to_mistral(name: str) -> str:
    if name.startswith("model.layers."):
        rest = name[len("model.layers."):]
        layer, _, tail = rest.partition(".")
        stem, _, kind = tail.rpartition(".")
        return f"layers.{layer}.{MISTRAL_NAMES[stem]}.{kind}"
    stem, _, kind = name.rpartition(".")
    return f"{MISTRAL_NAMES[stem]}.{kind}"


def _permute(w: torch.Tensor, heads: int) -> torch.Tensor:
    """HF's rotary layout of wq/wk back to Mistral's (the inverse of vLLM's ``permute``)."""
    rows, cols = w.shape
    return w.view(heads, 2, rows // heads // 2, cols).transpose(1, 2).reshape(rows, cols)


def _unpermute(w: torch.Tensor, heads: int) -> torch.Tensor:
    """vLLM's ``permute``: Mistral's wq/wk into HF's rotary layout."""
    rows, cols = w.shape
    return w.view(heads, rows // heads // 2, 2, cols).transpose(1, 2).reshape(rows, cols)


def _mistral_native(model: Any, out: Path) -> None:
    cfg = model.config
    tensors = {}
    for name, t in model.state_dict().items():
        t = t.detach().clone().contiguous()
        if name.endswith("q_proj.weight"):
            t = _permute(t, cfg.num_attention_heads)
        elif name.endswith("k_proj.weight"):
            t = _permute(t, cfg.num_key_value_heads)
        tensors[_to_mistral(name)] = t.contiguous()
    save_file(tensors, str(out / "consolidated.safetensors"))
    params = {"dim": cfg.hidden_size, "n_layers": cfg.num_hidden_layers, "head_dim": cfg.hidden_size //
              cfg.num_attention_heads, "hidden_dim": cfg.intermediate_size, "n_heads": cfg.num_attention_heads,
              "n_kv_heads": cfg.num_key_value_heads, "norm_eps": cfg.rms_norm_eps, "vocab_size": cfg.vocab_size,
              "rope_theta": cfg.rope_parameters["rope_theta"] if getattr(cfg, "rope_parameters", None)
              else cfg.rope_theta}
    (out / "params.json").write_text(json.dumps(params, indent=2))


def build(out: Path) -> dict[str, str]:
    kinds: dict[str, str] = {}
    for name in HF:
        _hf(name, out / name)
        kinds[name] = "hf"
    # Mistral-native alone, and both layouts side by side (Mistral's own repositories ship both).
    native = _hf("mistral", out / "mistral-dual")
    _mistral_native(native, out / "mistral-dual")
    kinds["mistral-dual"] = "hf"
    (out / "mistral-native").mkdir()
    _mistral_native(native, out / "mistral-native")
    tokenizer().save_pretrained(out / "mistral-native")
    for extra in ("tokenizer_config.json",):
        (out / "mistral-native" / extra).unlink(missing_ok=True)
    kinds["mistral-native"] = "mistral-native"
    _adapter(out / "llama", out / "llama-lora")
    kinds["llama-lora"] = "adapter"
    return kinds


def _adapter(base: Path, out: Path) -> None:
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(1)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base),
                           LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"],
                                      init_lora_weights=False))
    model.save_pretrained(out)


def _ids() -> torch.Tensor:
    return torch.tensor([tokenizer()(PROMPT)["input_ids"]])


def _next_token(model: Any, ids: torch.Tensor) -> tuple[int, float]:
    """One greedy token, and the top logit behind it (the same weights give the same number, whatever layout
    they were read from)."""
    with torch.no_grad():
        token = int(model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=1,
                                   do_sample=False)[0, -1])
        return token, round(float(model(input_ids=ids).logits[0, -1].max()), 5)


def _load_hf(d: Path, tokenizer_dir: Path) -> tuple[int, float]:
    index = d / "model.safetensors.index.json"
    shards = sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.exists() else \
        ["model.safetensors"]
    for s in shards:
        with safe_open(str(d / s), framework="pt") as f:
            for k in list(f.keys()):
                f.get_tensor(k)
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    model, info = AutoModelForCausalLM.from_pretrained(d, output_loading_info=True)
    if info["missing_keys"] or info["mismatched_keys"]:
        raise RuntimeError(f"weights missing from the files: {sorted(info['missing_keys'])[:3]} "
                           f"mismatched: {info['mismatched_keys'][:3]}")
    return _next_token(model, torch.tensor([tok(PROMPT)["input_ids"]]))


def _load_mistral_native(d: Path) -> tuple[int, float]:
    params = json.loads((d / "params.json").read_text())
    cfg = MistralConfig(vocab_size=params["vocab_size"], hidden_size=params["dim"],
                        intermediate_size=params["hidden_dim"], num_hidden_layers=params["n_layers"],
                        num_attention_heads=params["n_heads"], num_key_value_heads=params["n_kv_heads"],
                        head_dim=params["head_dim"], rms_norm_eps=params["norm_eps"],
                        max_position_embeddings=COMMON["max_position_embeddings"])
    model = AutoModelForCausalLM.from_config(cfg)
    back = {_to_mistral(k): k for k in model.state_dict()}
    state = {}
    for shard in sorted(p.name for p in d.glob("consolidated*.safetensors")):
        with safe_open(str(d / shard), framework="pt") as f:
            for k in list(f.keys()):
                t = f.get_tensor(k)
                if k.endswith("attention.wq.weight"):
                    t = _unpermute(t, params["n_heads"])
                elif k.endswith("attention.wk.weight"):
                    t = _unpermute(t, params["n_kv_heads"])
                state[back[k]] = t
    model.load_state_dict(state, strict=True)
    return _next_token(model, _ids())


def _load_adapter(d: Path, base: Path) -> tuple[int, float]:
    from peft import PeftModel

    base_model = AutoModelForCausalLM.from_pretrained(base)
    ids = _ids()
    with torch.no_grad():
        plain = base_model(input_ids=ids).logits
    model = PeftModel.from_pretrained(base_model, d)
    with torch.no_grad():
        adapted = model(input_ids=ids).logits
    if torch.allclose(plain, adapted):
        raise RuntimeError("the adapter did not change the base model's output: it was not applied")
    return _next_token(model, ids)


def load(jobs: list[dict[str, str]]) -> list[dict[str, Any]]:
    out = []
    for job in jobs:
        d = Path(job["dir"])
        try:
            if job["kind"] == "hf":
                token, logit = _load_hf(d, Path(job.get("tokenizer", d)))
            elif job["kind"] == "mistral-native":
                token, logit = _load_mistral_native(d)
            else:
                token, logit = _load_adapter(d, Path(job["base"]))
            out.append({"dir": str(d), "ok": True, "error": "", "token": token, "logit": logit})
        except Exception as e:  # any failure of the loader is the answer we report
            last = traceback.format_exception_only(type(e), e)[-1].strip()
            out.append({"dir": str(d), "ok": False, "error": last[:500], "token": -1, "logit": 0.0})
    return out


def main() -> int:
    torch.set_num_threads(1)
    cmd, arg = sys.argv[1], Path(sys.argv[2])
    if cmd == "build":
        print(json.dumps(build(arg)))
    else:
        print(json.dumps(load(json.loads(arg.read_text()))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
