"""A corpus of broken models, each with its specific finding, file name and exit code."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from modelpvc.cli.main import main
from modelpvc.model.layout import check_directory
from modelpvc.model.synthetic import SyntheticModel, generate_model, write_safetensors

SHARD1 = "model-00001-of-00002.safetensors"
SHARD2 = "model-00002-of-00002.safetensors"


@pytest.fixture
def model(tmp_path: Path) -> Path:
    d = tmp_path / "m"
    generate_model(d, SyntheticModel(total_bytes=2 * 1024 * 1024, shards=2, tensors_per_shard=3))
    return d


def codes(d: Path) -> set[tuple[str, str]]:
    return {(f.path, f.code) for f in check_directory(d).errors}


def warnings(d: Path) -> set[tuple[str, str]]:
    """Metadata loaders tolerate: reported, never blocking."""
    return {(f.path, f.code) for f in check_directory(d).warnings}


def _rewrite_header(p: Path, mutate) -> None:  # type: ignore[no-untyped-def]
    raw = p.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    mutate(header)
    new = json.dumps(header, separators=(",", ":")).encode()
    new += b" " * (n - len(new)) if len(new) <= n else b""
    assert len(new) == n, "test mutation must keep the header length"
    p.write_bytes(raw[:8] + new + raw[8 + n:])


def test_intact_model_has_no_errors(model: Path):
    r = check_directory(model)
    assert r.errors == []
    assert r.layouts == ["hf-safetensors"]
    assert r.parameters == 2 * 1024 * 1024 // 2


def test_truncated_shard(model: Path):
    p = model / SHARD1
    p.write_bytes(p.read_bytes()[:-100])
    assert (SHARD1, "truncated") in codes(model)


def test_extended_shard(model: Path):
    with open(model / SHARD2, "ab") as fh:
        fh.write(b"\0" * 10)
    assert (SHARD2, "extended") in codes(model)


def test_garbage_header(model: Path):
    p = model / SHARD1
    raw = bytearray(p.read_bytes())
    raw[8:20] = b"not json at!"
    p.write_bytes(bytes(raw))
    assert (SHARD1, "bad-header") in codes(model)


def test_header_length_beyond_the_file(model: Path):
    p = model / SHARD1
    raw = p.read_bytes()
    p.write_bytes(struct.pack("<Q", len(raw) * 2) + raw[8:])
    assert (SHARD1, "truncated") in codes(model)


def test_hostile_header_length_is_not_read(tmp_path: Path):
    d = tmp_path / "h"
    generate_model(d, SyntheticModel(total_bytes=1024 * 1024, shards=1))
    p = d / "model-00001-of-00001.safetensors"
    p.write_bytes(struct.pack("<Q", 2**62) + b"{}")
    assert ("model-00001-of-00001.safetensors", "header-too-large") in codes(d)


def test_deeply_nested_json_header_does_not_blow_up(tmp_path: Path):
    d = tmp_path / "n"
    generate_model(d, SyntheticModel(total_bytes=1024 * 1024, shards=1))
    body = b"[" * 200_000 + b"]" * 200_000
    (d / "model-00001-of-00001.safetensors").write_bytes(struct.pack("<Q", len(body)) + body)
    assert ("model-00001-of-00001.safetensors", "bad-header") in codes(d)


def test_overlapping_offsets(model: Path):
    def mutate(h):  # type: ignore[no-untyped-def]
        names = [k for k in h if k != "__metadata__"]
        _first, second = sorted(names, key=lambda k: h[k]["data_offsets"][0])[:2]
        h[second]["data_offsets"] = [h[second]["data_offsets"][0] - 2, h[second]["data_offsets"][1] - 2]
    _rewrite_header(model / SHARD1, mutate)
    assert (SHARD1, "overlap") in codes(model)


def test_unknown_dtype(model: Path):
    def mutate(h):  # type: ignore[no-untyped-def]
        k = next(k for k in h if k != "__metadata__")
        h[k]["dtype"] = "Q7"
    _rewrite_header(model / SHARD1, mutate)
    assert (SHARD1, "unknown-dtype") in codes(model)  # the safetensors library refuses the header


def test_index_names_a_missing_shard(model: Path):
    (model / SHARD2).unlink()
    assert (SHARD2, "missing-shard") in codes(model)


def test_total_size_mismatch(model: Path):
    p = model / "model.safetensors.index.json"
    idx = json.loads(p.read_text())
    idx["metadata"]["total_size"] += 2
    p.write_text(json.dumps(idx))
    assert ("model.safetensors.index.json", "total-size") in warnings(model) and codes(model) == set()


def test_tensor_in_the_wrong_shard(model: Path):
    p = model / "model.safetensors.index.json"
    idx = json.loads(p.read_text())
    name = next(k for k, v in idx["weight_map"].items() if v == SHARD1)
    idx["weight_map"][name] = SHARD2
    p.write_text(json.dumps(idx))
    assert ("model.safetensors.index.json", "wrong-shard") in warnings(model) and codes(model) == set()


def test_missing_config(model: Path):
    (model / "config.json").unlink()
    assert ("config.json", "missing") in codes(model)


def test_missing_tokenizer(model: Path):
    (model / "tokenizer.json").unlink()
    assert (".", "missing-tokenizer") in warnings(model) and codes(model) == set()


def test_gguf_and_bin_layouts(tmp_path: Path):
    d = tmp_path / "g"
    d.mkdir()
    (d / "m.Q4_K_M.gguf").write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 10, 5) + b"\0" * 100)
    r = check_directory(d)
    assert r.layouts == ["gguf"] and r.errors == []
    (d / "bad.gguf").write_bytes(b"GGML" + b"\0" * 30)
    assert ("bad.gguf", "bad-header") in codes(d)

    b = tmp_path / "b"
    b.mkdir()
    (b / "config.json").write_text("{}")
    (b / "tokenizer.json").write_text("{}")
    (b / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": {"w": "pytorch_model-00001.bin"}}))
    assert ("pytorch_model-00001.bin", "missing-shard") in codes(b)
    (b / "pytorch_model-00001.bin").write_bytes(b"PK\x03\x04rest")
    assert check_directory(b).errors == []


def test_mistral_native_alone_is_recognised(tmp_path: Path):
    d = tmp_path / "mn"
    d.mkdir()
    write_safetensors(d / "consolidated.safetensors", [("w", "BF16", [4, 4])])
    (d / "params.json").write_text("{}")
    (d / "tekken.json").write_text("{}")
    r = check_directory(d)
    assert r.layouts == ["mistral-native"] and r.errors == []


def test_verify_cli_exit_codes_and_json(model: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["verify", str(model)]) == 0
    assert "warning: .modelpvc/manifest.json: no manifest" in capsys.readouterr().out
    assert main(["verify", str(model), "--require-manifest"]) == 5
    capsys.readouterr()
    (model / SHARD2).unlink()
    assert main(["verify", str(model), "--json"]) == 5
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is False
    errors = {(f["path"], f["code"]) for f in out["findings"] if f["severity"] == "error"}
    assert errors == {(SHARD2, "missing-shard")}
    assert main(["verify", str(model / "nope")]) == 2


def test_index_without_total_size_is_a_warning_without_metadata_an_error(model: Path):
    p = model / "model.safetensors.index.json"
    idx = json.loads(p.read_text())
    del idx["metadata"]["total_size"]
    p.write_text(json.dumps(idx))
    assert ("model.safetensors.index.json", "no-total-size") in warnings(model) and codes(model) == set()
    del idx["metadata"]
    p.write_text(json.dumps(idx))
    # transformers' from_pretrained raises KeyError: 'metadata' (tests/loaders shows it)
    assert codes(model) == {("model.safetensors.index.json", "no-metadata")}


def test_total_size_that_counts_file_lengths_is_named_as_such(model: Path):
    p = model / "model.safetensors.index.json"
    idx = json.loads(p.read_text())
    idx["metadata"]["total_size"] = (model / SHARD1).stat().st_size + (model / SHARD2).stat().st_size
    p.write_text(json.dumps(idx))
    [w] = [f for f in check_directory(model).warnings if f.code == "total-size"]
    assert "equals the shards' file lengths" in w.message


def test_a_shard_the_index_does_not_name_is_a_warning(model: Path):
    write_safetensors(model / "model-00003-of-00003.safetensors", [("extra.weight", "BF16", [4, 4])])
    assert ("model-00003-of-00003.safetensors", "unindexed-shard") in warnings(model) and codes(model) == set()


def test_an_index_entry_no_shard_holds_is_a_warning(model: Path):
    p = model / "model.safetensors.index.json"
    idx = json.loads(p.read_text())
    idx["weight_map"]["mtp.fc.weight"] = SHARD2  # huggingface_hub#4725
    p.write_text(json.dumps(idx))
    assert ("model.safetensors.index.json", "tensor-not-found") in warnings(model) and codes(model) == set()


def test_a_tensor_span_outside_the_file_is_an_error(model: Path):
    def mutate(h):  # type: ignore[no-untyped-def]
        k = max((k for k in h if k != "__metadata__"), key=lambda k: h[k]["data_offsets"][1])
        h[k]["data_offsets"][1] += 9  # past the end of the file; same digit count keeps the header length
    _rewrite_header(model / SHARD1, mutate)
    assert {(SHARD1, "shape-mismatch"), (SHARD1, "truncated")} <= codes(model)


def test_config_that_does_not_parse_is_an_error(model: Path):
    (model / "config.json").write_text("{not json")
    assert ("config.json", "bad-json") in codes(model)


def test_weights_without_any_config_or_index_are_plain_files(tmp_path: Path):
    (tmp_path / "data.safetensors").write_bytes(b"random")
    r = check_directory(tmp_path)
    assert r.errors == [] and [f.code for f in r.findings] == ["not-a-model"]


def test_a_model_config_without_weights_is_an_error(tmp_path: Path):
    (tmp_path / "config.json").write_text('{"model_type": "llama", "architectures": ["LlamaForCausalLM"]}')
    assert (".", "no-weights") in codes(tmp_path)


def _findings(d: Path, loader: str = "vllm") -> dict[tuple[str, str], str]:
    return {(f.path, f.code): f.severity for f in check_directory(d, loader=loader).findings}


def test_a_broken_checkpoint_the_loader_does_not_read_is_a_warning(model: Path):
    """--select all copies Meta's original/ and a .bin beside the safetensors the loader reads: their format
    problems cannot stop it loading, so they warn (naming the set read) and --strict refuses them."""
    (model / "original").mkdir()
    (model / "original" / "consolidated.00.pth").write_bytes(b"not a checkpoint")
    (model / "original" / "params.json").write_text("{")
    (model / "pytorch_model.bin").write_bytes(b"\x00garbage")
    found = _findings(model)
    assert found == {("original/consolidated.00.pth", "bad-header"): "warning",
                     ("original/params.json", "bad-json"): "warning",
                     ("pytorch_model.bin", "bad-header"): "warning"}
    report = check_directory(model)
    assert all("the loader reads the hf-safetensors weights" in f.message for f in report.warnings)
    assert report.errors == [] and len(report.errors_for(strict=True)) == 3
    # The same problem in the set that is read stays an error.
    p = model / SHARD1
    p.write_bytes(p.read_bytes()[:-100])
    assert _findings(model)[(SHARD1, "truncated")] == "error"


def test_severity_follows_the_loader_named_by_for(model: Path):
    """Mistral-native weights beside HF shards: vLLM's default loader reads the HF set, --load-format mistral
    the consolidated one; a broken file is an error only for the loader that reads it."""
    write_safetensors(model / "consolidated.safetensors", [("w", "BF16", [4, 4])])
    (model / "params.json").write_text("{}")
    c = model / "consolidated.safetensors"
    c.write_bytes(c.read_bytes()[:-8])
    assert _findings(model)[("consolidated.safetensors", "truncated")] == "warning"
    assert _findings(model, "vllm-mistral")[("consolidated.safetensors", "truncated")] == "error"
    p = model / SHARD1
    p.write_bytes(p.read_bytes()[:-100])
    assert _findings(model, "vllm-mistral")[(SHARD1, "truncated")] == "warning"
    assert _findings(model)[(SHARD1, "truncated")] == "error"


def test_verify_for_names_the_loader(model: Path, capsys: pytest.CaptureFixture[str]):
    write_safetensors(model / "consolidated.safetensors", [("w", "BF16", [4, 4])])
    (model / "params.json").write_text("{}")
    c = model / "consolidated.safetensors"
    c.write_bytes(c.read_bytes()[:-8])
    assert main(["verify", str(model)]) == 0
    assert "not read: the loader reads the hf-safetensors weights" in capsys.readouterr().out
    assert main(["verify", str(model), "--for", "vllm-mistral"]) == 5
    assert main(["verify", str(model), "--strict"]) == 5
