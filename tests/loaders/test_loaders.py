"""The real loaders judge what modelpvc publishes (issue: "publish what loaders accept").

Tiny but real models made by transformers (Llama, Mistral, Qwen2, Gemma 2; sharded safetensors with an index;
Mistral-native; a PEFT adapter) go to MinIO with ``modelpvc import``, come back with ``modelpvc mirror``'s
default selection, and are loaded by the library that would serve them (tests/loaders/tiny.py), which
generates one token. Then the quirks: each mutation of a published model that ``verify`` calls a warning
must load; each it calls an error must fail to load. Where the two disagree, the loader is right.
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_cli, server_env
from tests.loaders import env as loader_env
from tests.support.s3servers import S3UnderTest, start

TINY = Path(__file__).resolve().with_name("tiny.py")
INDEX = "model.safetensors.index.json"
SHARD1 = "model-00001-of-00004.safetensors"
SHARD2 = "model-00002-of-00004.safetensors"


def _loader(args: list[str], tmp: Path) -> Any:
    """Run tiny.py in the loader environment; its JSON answer."""
    python = loader_env.ensure()
    p = subprocess.run([str(python), str(TINY), *args], capture_output=True, text=True, timeout=900, check=False,
                       cwd=tmp)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


def load(jobs: list[dict[str, str]], tmp: Path) -> dict[str, dict[str, Any]]:
    (tmp / "jobs.json").write_text(json.dumps(jobs))
    return {r["dir"]: r for r in _loader(["load", str(tmp / "jobs.json")], tmp)}


@pytest.fixture(scope="module")
def minio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3UnderTest]:
    srv = start("minio", tmp_path_factory.mktemp("loaders-s3"), tmp_path_factory.mktemp("loaders-logs"))
    yield srv
    srv.server.stop()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    out = tmp_path_factory.mktemp("tiny")
    return out, _loader(["build", str(out)], out)


@dataclass
class Published:
    name: str
    kind: str
    dir: Path
    steps: list[subprocess.CompletedProcess[str]]


def _publish(s3: S3UnderTest, src: Path, name: str, dest: Path, *mirror_args: str) -> list[
        subprocess.CompletedProcess[str]]:
    """Upload the whole repository (as its owner would: every weight set), then mirror it."""
    env = server_env(s3.env())
    uri = f"s3://models/{name}/"
    steps = [run_cli(["import", str(src), uri, "--select", "all"], env)]
    if steps[0].returncode == 0:
        steps.append(run_cli(["mirror", uri, str(dest), *mirror_args], env))
    return steps


@pytest.fixture(scope="module")
def published(minio: S3UnderTest, built: tuple[Path, dict[str, str]],
              tmp_path_factory: pytest.TempPathFactory) -> dict[str, Published]:
    """Every tiny model imported and mirrored with the default selection; Mistral's dual repository also
    for its native loader (``--for vllm-mistral``)."""
    src, kinds = built
    dest = tmp_path_factory.mktemp("published")
    out: dict[str, Published] = {}
    for name, kind in kinds.items():
        out[name] = Published(name, kind, dest / name, _publish(minio, src / name, name, dest / name))
    out["mistral-dual --for vllm-mistral"] = Published(
        "mistral-dual --for vllm-mistral", "mistral-native", dest / "mistral-dual-native",
        [run_cli(["mirror", "s3://models/mistral-dual/", str(dest / "mistral-dual-native"), "--for",
                  "vllm-mistral"], server_env(minio.env()))])
    return out


@pytest.fixture(scope="module")
def loaded(published: dict[str, Published], tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    base = published["llama"].dir
    jobs = [{"dir": str(p.dir), "kind": p.kind, "base": str(base)} for p in published.values()]
    return load(jobs, tmp_path_factory.mktemp("load"))


MODELS = ["llama", "mistral", "qwen2", "gemma2", "mistral-dual", "mistral-native", "llama-lora",
          "mistral-dual --for vllm-mistral"]


@pytest.mark.parametrize("name", MODELS)
def test_published_model_loads_and_generates(name: str, published: dict[str, Published],
                                             loaded: dict[str, dict[str, Any]]) -> None:
    p = published[name]
    for step in p.steps:
        assert step.returncode == 0, f"{step.args}: {step.stderr[-2000:]}"
    assert (p.dir / ".modelpvc" / "manifest.json").exists()
    result = loaded[str(p.dir)]
    assert result["ok"], result["error"]
    assert result["token"] >= 0


def test_each_loader_gets_only_the_weights_it_reads(published: dict[str, Published],
                                                    loaded: dict[str, dict[str, Any]]) -> None:
    """Mistral's repositories ship HF shards and consolidated.safetensors: the default copy has the HF set, the
    Mistral-native copy only consolidated.safetensors, and both give the same logits from the same weights."""
    hf, native = published["mistral-dual"].dir, published["mistral-dual --for vllm-mistral"].dir
    assert not (hf / "consolidated.safetensors").exists() and (hf / SHARD1).exists()
    assert (native / "consolidated.safetensors").exists() and not list(native.glob("model-*.safetensors"))
    same = {(loaded[str(d)]["token"], loaded[str(d)]["logit"]) for d in (hf, native, published["mistral-native"].dir)}
    assert len(same) == 1, same


# --- quirks: a mutation of a published model, what verify says of it, and whether it loads -------------------

def _index(d: Path, mutate: Callable[[dict[str, Any]], None]) -> None:
    idx = json.loads((d / INDEX).read_text())
    mutate(idx)
    (d / INDEX).write_text(json.dumps(idx, indent=2))


def _total_size(value: Callable[[Path, dict[str, Any]], Any]) -> Callable[[Path], None]:
    def apply(d: Path) -> None:
        _index(d, lambda idx: idx["metadata"].__setitem__("total_size", value(d, idx)))
    return apply


def _header(d: Path, name: str, mutate: Callable[[dict[str, Any]], None]) -> None:
    raw = (d / name).read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    mutate(header)
    new = json.dumps(header, separators=(",", ":")).encode()
    assert len(new) <= n, "the mutation must fit the header's length"
    (d / name).write_bytes(raw[:8] + new + b" " * (n - len(new)) + raw[8 + n:])


def _first_tensor(h: dict[str, Any]) -> dict[str, Any]:
    return h[next(k for k in h if k != "__metadata__")]


def _overlap(h: dict[str, Any]) -> None:
    names = [k for k in h if k != "__metadata__"]
    h[names[1]]["data_offsets"] = [o - 2 for o in h[names[1]]["data_offsets"]]


def _gap(h: dict[str, Any]) -> None:
    """The last tensor moved 2 bytes on, into what was the file's end: a hole before it."""
    last = max((k for k in h if k != "__metadata__"), key=lambda k: h[k]["data_offsets"][1])
    start, end = h[last]["data_offsets"]
    h[last]["data_offsets"] = [start + 2, end + 2]


def _drop(*names: str) -> Callable[[Path], None]:
    def apply(d: Path) -> None:
        for n in names:
            (d / n).unlink()
    return apply


def _write(rel: str, data: bytes) -> Callable[[Path], None]:
    def apply(d: Path) -> None:
        (d / rel).parent.mkdir(exist_ok=True)
        (d / rel).write_bytes(data)
    return apply


def _truncate(d: Path) -> None:
    (d / SHARD2).write_bytes((d / SHARD2).read_bytes()[:-64])


def _extend(d: Path) -> None:
    with open(d / SHARD2, "ab") as fh:
        fh.write(b"\0" * 64)


def _move_entry(d: Path) -> None:
    _index(d, lambda idx: idx["weight_map"].__setitem__("model.norm.weight", SHARD1 if
                                                          idx["weight_map"]["model.norm.weight"] != SHARD1 else SHARD2))


# name: (mutation, the finding codes verify must report, the severity they must have)
QUIRKS: dict[str, tuple[Callable[[Path], None], set[str], str]] = {
    # the real repositories' index quirks of tests/fixtures/models/corpus.py
    "hand-written total_size 0": (_total_size(lambda d, i: 0), {"total-size"}, "warning"),
    "mergekit: no total_size": (lambda d: _index(d, lambda i: i["metadata"].pop("total_size")),
                                {"no-total-size"}, "warning"),
    "mlx: total_size counts file lengths": (
        _total_size(lambda d, i: sum((d / s).stat().st_size for s in set(i["weight_map"].values()))),
        {"total-size"}, "warning"),
    "axolotl: total_size is a tensor count": (_total_size(lambda d, i: len(i["weight_map"])), {"total-size"},
                                              "warning"),
    "huggingface_hub#4725: index names a tensor in no shard": (
        lambda d: _index(d, lambda i: i["weight_map"].__setitem__("mtp.fc.weight", SHARD1)),
        {"tensor-not-found"}, "warning"),
    "index puts a tensor in another shard": (_move_entry, {"wrong-shard"}, "warning"),
    "a shard the index does not name": (
        lambda d: shutil.copyfile(d / SHARD1, d / "model-extra.safetensors"), {"unindexed-shard"}, "warning"),
    "broken .bin beside the safetensors (--select all)": (
        _write("pytorch_model.bin", b"\0 not a checkpoint"), {"bad-header"}, "warning"),
    "broken original/ checkpoint (--select all)": (
        _write("original/consolidated.00.pth", b"\0 not a checkpoint"), {"bad-header"}, "warning"),
    "no tokenizer (the server is given one)": (_drop("tokenizer.json", "tokenizer_config.json"),
                                                {"missing-tokenizer"}, "warning"),
    # what loaders refuse
    "unused bytes between tensors": (lambda d: _header(d, SHARD2, _gap), {"gap"}, "error"),
    "a span that disagrees with shape x dtype": (
        lambda d: _header(d, SHARD2, lambda h: _first_tensor(h).__setitem__("dtype", "F16")),
        {"shape-mismatch"}, "error"),
    "index without metadata (transformers: KeyError)": (lambda d: _index(d, lambda i: i.pop("metadata")),
                                                        {"no-metadata"}, "error"),
    "truncated shard": (_truncate, {"truncated"}, "error"),
    "shard longer than its header says": (_extend, {"extended"}, "error"),
    "a shard the index names is missing": (_drop(SHARD2), {"missing-shard"}, "error"),
    "config.json does not parse": (_write("config.json", b'{"model_type": "llama",'), {"bad-json"}, "error"),
    "overlapping tensor offsets": (lambda d: _header(d, SHARD2, _overlap), {"overlap"}, "error"),
    "unknown dtype": (lambda d: _header(d, SHARD2, lambda h: _first_tensor(h).__setitem__("dtype", "Q9")),
                      {"unknown-dtype"}, "error"),
    "header length beyond the file": (
        lambda d: (d / SHARD2).write_bytes(struct.pack("<Q", 1 << 40) + (d / SHARD2).read_bytes()[8:]),
        {"header-too-large"}, "error"),
}


@pytest.fixture(scope="module")
def quirks(published: dict[str, Published], minio: S3UnderTest,
           tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Each quirk applied to a copy of the published Llama: verify's findings, and the loader's answer; the
    warnings also go through import and mirror (they must publish) and are loaded from the published copy."""
    base = published["llama"].dir
    root = tmp_path_factory.mktemp("quirks")
    out: dict[str, dict[str, Any]] = {}
    jobs = []
    for i, (name, (mutate, _, severity)) in enumerate(QUIRKS.items()):
        d = root / f"q{i}"
        shutil.copytree(base, d, ignore=shutil.ignore_patterns(".modelpvc"))
        mutate(d)
        v = run_cli(["verify", str(d), "--json"], server_env(minio.env()))
        findings = json.loads(v.stdout)["findings"] if v.stdout.strip() else []
        out[name] = {"verify": v, "findings": findings, "dir": d, "steps": []}
        target = d
        if severity == "warning":
            target = root / f"q{i}-published"
            out[name]["steps"] = _publish(minio, d, f"quirk-{i}", target, "--select", "all")
        out[name]["loaded_from"] = target
        jobs.append({"dir": str(target), "kind": "hf", "tokenizer": str(base)})
    answers = load(jobs, root)
    for q in out.values():
        q["load"] = answers[str(q["loaded_from"])]
    return out


@pytest.mark.parametrize("name", list(QUIRKS))
def test_verify_severity_agrees_with_the_loader(name: str, quirks: dict[str, dict[str, Any]]) -> None:
    _, codes, severity = QUIRKS[name]
    q = quirks[name]
    found = {f["code"]: f["severity"] for f in q["findings"] if f["path"] != ".modelpvc/manifest.json"}
    assert codes <= set(found), f"verify did not report {codes}: {q['verify'].stdout[-1500:]}"
    assert {found[c] for c in codes} == {severity}, found
    if severity == "warning":
        assert q["verify"].returncode == 0, q["verify"].stdout[-1500:]
        for step in q["steps"]:
            assert step.returncode == 0, f"{step.args}: {step.stderr[-2000:]}"
        assert q["load"]["ok"], f"verify calls it a warning but the loader fails: {q['load']['error']}"
    else:
        assert q["verify"].returncode == 5
        assert not q["load"]["ok"], "verify calls it an error but the loader loads it"
