"""mirror with default flags on copies of real repositories (tests/fixtures/models/corpus.py) served by the
loopback S3 server: metadata that loaders tolerate is published with warnings, never refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.fixtures.models.corpus import all_repos
from tests.support.realmodels import materialize
from tests.support.s3servers import S3UnderTest

REPOS = {r.id: r for r in all_repos()}
QUIRKS = ["mlx-community/Meta-Llama-3-8B-Instruct", "a mergekit 0.0.4.1 merge of two Mistral-7B fine-tunes",
          "nightmedia/Qwen3.8-27B-Brainwaves", "Qwen/Qwen3-0.6B with a hand-written index",
          "an axolotl merge_lora_sharded_efficient output (Gemma)"]


def _upload(s3: S3UnderTest, rid: str) -> tuple[str, Path]:
    slug = "corpus-" + "".join(c if c.isalnum() else "-" for c in rid)[:60]
    d = s3.root / "models" / slug
    shutil.rmtree(d, ignore_errors=True)
    materialize(REPOS[rid], d)
    s3.publish(f"models/{slug}")
    return f"s3://models/{slug}/", d


def _tree(d: Path) -> dict[str, bytes]:
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in d.rglob("*")
            if p.is_file() and ".modelpvc" not in p.parts}


@pytest.mark.parametrize("rid", QUIRKS)
def test_inconsistent_index_metadata_is_published_with_warnings(rid, s3, env, tmp_path):
    uri, src = _upload(s3, rid)
    dest = tmp_path / "pvc"
    r = run_cli(["mirror", uri, str(dest)], env)
    assert r.returncode == 0, r.stderr
    assert _tree(dest) == _tree(src)  # byte-exact, every file
    m = json.loads((dest / ".modelpvc" / "manifest.json").read_text())
    codes = {f["code"] for f in m["structure"]["findings"] if f["severity"] == "warning"}
    assert codes == set(REPOS[rid].expect["vllm"].warnings)
    assert "warning: model.safetensors.index.json" in r.stdout
    assert run_cli(["verify", str(dest)], env).returncode == 0
    strict = run_cli(["verify", str(dest), "--strict"], env)
    assert strict.returncode == 5 and "warning" in strict.stdout


def test_llama3_skips_original_and_the_seeds_mistral_follows_the_loader(s3, env, tmp_path):
    uri, _src = _upload(s3, "meta-llama/Meta-Llama-3-8B-Instruct")
    r = run_cli(["mirror", uri, str(tmp_path / "llama")], env)
    assert r.returncode == 0, r.stderr
    assert not (tmp_path / "llama" / "original").exists()
    assert "layout hf-safetensors" in r.stdout

    uri, _src = _upload(s3, "mistralai/Mistral-Small-24B-Instruct-2501")
    plan = json.loads(run_cli(["plan", uri, "--json", "--for", "vllm-mistral"], env).stdout)
    assert plan["layout"] == "mistral-native"
    assert {f["path"] for f in plan["files"]} >= {"consolidated.safetensors", "params.json", "tekken.json"}
    assert not any(f["path"].startswith("model-") for f in plan["files"])
    dest = tmp_path / "mistral"
    r = run_cli(["mirror", uri, str(dest), "--for", "vllm-mistral"], env)
    assert r.returncode == 0, r.stderr
    assert (dest / "consolidated.safetensors").exists() and not list(dest.glob("model-*.safetensors"))
    assert not (dest / "model.safetensors.index.json").exists()
    r = run_cli(["verify", str(dest), "--json"], env)
    assert r.returncode == 0 and json.loads(r.stdout)["layouts"] == ["mistral-native"]


def test_a_prefix_that_is_not_a_model_is_copied_as_plain_files(s3, env, tmp_path):
    d = s3.root / "models" / "plain"
    d.mkdir(parents=True, exist_ok=True)
    (d / "data.safetensors").write_bytes(b"these bytes are not a safetensors header at all")
    (d / "notes.txt").write_text("hello")
    s3.publish("models/plain")
    r = run_cli(["mirror", "s3://models/plain/", str(tmp_path / "pvc")], env)
    assert r.returncode == 0, r.stderr
    assert "no model weights recognised" in r.stdout
    assert _tree(tmp_path / "pvc") == _tree(d)
