"""plan, selection and verify against the real loopback S3 server."""

from __future__ import annotations

import json
import os

from modelpvc.model.synthetic import SyntheticModel
from tests.conftest import run_cli


def test_plan_of_mixed_mistral_and_hf_repository(make_model, env):
    src = make_model(SyntheticModel(total_bytes=24 * 1024 * 1024, shards=3, mistral_duplicate=True))
    r = run_cli(["plan", src.uri, "--json"], env)
    assert r.returncode == 0, r.stderr
    p = json.loads(r.stdout)
    skipped = {s["path"] for s in p["skipped"]}
    assert skipped == {"consolidated.safetensors"}
    assert {"params.json", "tekken.json", "config.json", "tokenizer.json"} <= {f["path"] for f in p["files"]}
    assert p["skipped_bytes"] == (src.dir / "consolidated.safetensors").stat().st_size
    assert p["formats"] == ["hf-safetensors", "mistral-native"]
    assert p["layout"] == "hf-safetensors"
    assert p["parameters"] == 3 * (8 * 1024 * 1024 // 2)  # 3 shards of 8 MiB of BF16
    assert p["dtypes"].keys() == {"BF16"}
    assert p["pattern"] == "storage-initializer"
    assert p["command"].startswith(f"modelpvc render --pattern storage-initializer --source {src.uri}")
    assert p["pvc_size"] == "1Gi"
    r = run_cli(["plan", src.uri, "--threshold", "1M", "--bandwidth", "125MiB/s"], env)
    assert r.returncode == 0 and "pattern: pvc" in r.stdout and "skip  consolidated.safetensors" in r.stdout
    assert "next: modelpvc render --pattern pvc" in r.stdout


def test_mirror_auto_selection_skips_duplicates_and_records_them(make_model, env, tmp_path):
    src = make_model(SyntheticModel(total_bytes=24 * 1024 * 1024, shards=3, mistral_duplicate=True))
    dest = tmp_path / "pvc"
    r = run_cli(["mirror", src.uri, str(dest), "-v"], env)
    assert r.returncode == 0, r.stderr
    assert not (dest / "consolidated.safetensors").exists()
    assert "skipped 1 file " in r.stdout
    m = json.loads((dest / ".modelpvc" / "manifest.json").read_text())
    assert [s["path"] for s in m["skipped"]] == ["consolidated.safetensors"]
    assert m["structure"]["layouts"] == ["hf-safetensors"]
    r = run_cli(["mirror", src.uri, str(tmp_path / "all"), "--select", "all"], env)
    assert r.returncode == 0 and (tmp_path / "all" / "consolidated.safetensors").exists()


def test_mirror_refuses_to_publish_a_broken_model(make_model, env, tmp_path):
    src = make_model()
    (src.dir / "model-00002-of-00003.safetensors").unlink()  # the index still names it
    src.publish()
    dest = tmp_path / "pvc"
    r = run_cli(["mirror", src.uri, str(dest)], env)
    assert r.returncode == 5
    assert "would not load as a model" in r.stderr and "model-00002-of-00003.safetensors" in r.stderr
    assert not (dest / ".modelpvc" / "manifest.json").exists()
    assert run_cli(["mirror", src.uri, str(dest), "--no-structure-check"], env).returncode == 0


def test_verify_deep_and_against_source(make_model, env, tmp_path):
    src = make_model()
    dest = tmp_path / "pvc"
    assert run_cli(["mirror", src.uri, str(dest)], env).returncode == 0
    r = run_cli(["verify", str(dest), "--deep", "--source", src.uri, "--json"], env)
    assert r.returncode == 0, r.stdout + r.stderr
    out = json.loads(r.stdout)
    assert out["files_hashed"] == 9 and out["ok"]
    # A flipped byte keeps sizes and headers intact: only --deep sees it.
    p = dest / "model-00003-of-00003.safetensors"
    raw = bytearray(p.read_bytes())
    raw[-1] ^= 1
    p.write_bytes(bytes(raw))
    assert run_cli(["verify", str(dest)], env).returncode == 0
    r = run_cli(["verify", str(dest), "--deep"], env)
    assert r.returncode == 5 and "model-00003-of-00003.safetensors: " in r.stdout and " is " in r.stdout
    assert "MISMATCH model-00003-of-00003.safetensors" in r.stderr  # progress as each file is hashed
    assert "hashed model-00001-of-00003.safetensors" in r.stderr
    # The source moves on: verify --source says stale.
    (src.dir / "generation_config.json").write_text('{"changed": 1}')
    src.publish()
    r = run_cli(["verify", str(dest), "--source", src.uri], env)
    assert r.returncode == 5 and "generation_config.json: the source object changed" in r.stdout


def test_include_and_exclude_globs(make_model, env, tmp_path):
    src = make_model()
    r = run_cli(["plan", src.uri, "--json", "--include", "model-*", "--include", "*.json"], env)
    assert r.returncode == 0, r.stderr
    p = json.loads(r.stdout)
    assert {f["path"] for f in p["files"]} == {x.name for x in src.dir.iterdir()
                                               if x.name.startswith("model-") or x.name.endswith(".json")}
    r = run_cli(["mirror", src.uri, str(tmp_path / "pvc"), "--exclude", "generation_config.json"], env)
    assert r.returncode == 0, r.stderr
    assert not (tmp_path / "pvc" / "generation_config.json").exists()
    m = json.loads((tmp_path / "pvc" / ".modelpvc" / "manifest.json").read_text())
    assert m["skipped"] == [{"path": "generation_config.json", "size": 42,
                             "reason": "excluded by --exclude generation_config.json"}]


def test_verify_refuses_an_empty_or_unrecognised_directory_unless_told_it_holds_plain_files(tmp_path):
    """The runbook's first CrashLoopBackOff: an empty claim. `verify` said "OK (unknown layout)", exit 0."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    empty, odd = tmp_path / "empty", tmp_path / "odd"
    empty.mkdir()
    odd.mkdir()
    (odd / "blob.bin").write_bytes(os.urandom(1000))
    for d in (empty, odd):
        r = run_cli(["verify", str(d)], env)
        assert r.returncode == 5, r.stdout
        assert "no model here: a model needs config.json" in r.stdout and "--plain-files" in r.stdout
        assert "copied" not in r.stdout  # a verify says nothing about copying
    r = run_cli(["verify", str(odd), "--plain-files"], env)
    assert r.returncode == 0 and "checked as plain files" in r.stdout


def test_a_prefix_one_level_too_high_is_refused_before_the_first_byte_naming_the_model(s3, env, tmp_path):
    """The runbook's bucket: s3://llm-models/Mistral-Small-24B-Instruct/full-fp16/. Mirroring its parent
    copied the tree into full-fp16/ with exit 0; plan printed a render command for the wrong prefix."""
    from modelpvc.model.synthetic import generate_model

    s3.bucket("llm-models")
    top = s3.root / "llm-models" / "Mistral-Small-24B-Instruct"
    generate_model(top / "full-fp16", SyntheticModel(total_bytes=4 * 1024 * 1024, shards=2))
    (top / "README.md").write_text("# weights\n")
    s3.publish("llm-models/Mistral-Small-24B-Instruct")
    parent = "s3://llm-models/Mistral-Small-24B-Instruct/"
    dest = tmp_path / "pvc"
    r = run_cli(["mirror", parent, str(dest)], env)
    assert r.returncode == 3, r.stdout + r.stderr
    assert f"did you mean {parent}full-fp16/?" in r.stderr and "--select all" in r.stderr
    assert not dest.exists() or not [p for p in dest.rglob("*") if p.is_file() and ".modelpvc" not in p.parts]
    r = run_cli(["plan", parent], env)
    assert r.returncode == 3 and f"{parent}full-fp16/" in r.stderr
    r = run_cli(["mirror", parent, str(dest), "--select", "all"], env)  # asked for: the tree as it is
    assert r.returncode == 0, r.stderr
    assert (dest / "full-fp16" / "config.json").exists()
    r = run_cli(["mirror", parent + "full-fp16/", str(tmp_path / "right")], env)
    assert r.returncode == 0, r.stderr


def test_a_runbook_filled_volume_is_adopted_and_its_left_out_duplicate_named_then_removed(make_model, env, tmp_path):
    """mc mirror copied every file, the 35 GB consolidated.safetensors too. modelpvc adopts the files (no
    fetch) and says the duplicate is still there; --delete-excluded removes it."""
    import shutil

    src = make_model(SyntheticModel(total_bytes=24 * 1024 * 1024, shards=3, mistral_duplicate=True))
    dest = tmp_path / "pvc"
    shutil.copytree(src.dir, dest)  # what `mc mirror` left
    r = run_cli(["mirror", src.uri, str(dest)], env)
    assert r.returncode == 0, r.stderr
    assert "note: 1 file left out by the selection" in r.stdout and "--delete-excluded" in r.stdout
    assert (dest / "consolidated.safetensors").exists()
    r = run_cli(["mirror", src.uri, str(dest), "--delete-excluded"], env)
    assert r.returncode == 0, r.stderr
    assert "deleted 1 file: consolidated.safetensors" in r.stdout
    assert not (dest / "consolidated.safetensors").exists() and (dest / "params.json").exists()
    assert run_cli(["verify", str(dest)], env).returncode == 0
    r = run_cli(["mirror", src.uri, str(dest), "--shard", "0/2", "--delete-excluded"], env)
    assert r.returncode == 2 and "other shares' files" in r.stderr
