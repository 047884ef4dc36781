"""``modelpvc import``: from a (fake) Hugging Face Hub and from local directories into real S3 servers.

moto plays AWS (checksums stored and returned, multipart semantics) for the Hub cases; local directories go
into both real servers, MinIO (which keeps the checksums an uploader sends) and rclone serve s3 (which keeps
none), each started for the test alone: rclone served uploads badly to later tests (docs/decisions.md §12).
The fake Hub is tests/support/fakehub.py.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelpvc.model.synthetic import SyntheticModel, generate_model, same_tree
from tests.conftest import run_cli
from tests.support.fakehub import FakeHub, FakeRepo
from tests.support.s3servers import KINDS, S3UnderTest, start

TOKEN = "hf_testtoken_never_printed_0123456789"


def _model_files(tmp: Path, total: int = 12_000_000, shards: int = 2, seed: int = 0) -> dict[str, bytes]:
    d = tmp / f"gen-{seed}-{total}"
    if not d.exists():
        generate_model(d, SyntheticModel(total_bytes=total, shards=shards, seed=seed))
    files = {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}
    files[".gitattributes"] = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"
    files["README.md"] = b"---\nlicense: apache-2.0\n---\n# tiny\n"
    return files


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeHub]:
    h = FakeHub().start()
    tmp = tmp_path_factory.mktemp("hubfiles")
    h.add(FakeRepo("acme/tiny", _model_files(tmp), revisions={"v1": "1" * 40}))
    h.add(FakeRepo("acme/gated", _model_files(tmp, seed=1), gated=True, tokens={TOKEN}))
    h.add(FakeRepo("acme/private", _model_files(tmp, seed=2), private=True, tokens={TOKEN}))
    h.add(FakeRepo("acme/broken", _model_files(tmp, seed=3), corrupt={"model-00002-of-00002.safetensors"}))
    yield h
    h.stop()


def _env(base: dict[str, str], hub: FakeHub, token: str | None = None) -> dict[str, str]:
    e = {k: v for k, v in base.items() if not k.startswith("HF_")}
    e.update(HF_ENDPOINT=hub.endpoint, HF_HOME=str(Path(base.get("TMPDIR", "/tmp")) / "hf-home-empty"))
    if token:
        e["HF_TOKEN"] = token
    return e


def _bucket(s3client, name: str) -> str:  # type: ignore[no-untyped-def]
    with contextlib.suppress(s3client.exceptions.BucketAlreadyOwnedByYou):
        s3client.create_bucket(Bucket=name)
    return name


def _objects(s3client, bucket: str, prefix: str) -> dict[str, bytes]:  # type: ignore[no-untyped-def]
    out = {}
    for page in s3client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for o in page.get("Contents", []):
            out[o["Key"][len(prefix):]] = s3client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
    return out


def _summary(stderr: str) -> dict:  # type: ignore[type-arg]
    return next(json.loads(ln) for ln in reversed(stderr.splitlines()) if '"event":"summary"' in ln)


def test_hub_to_s3_streams_verifies_and_records_provenance(hub, s3client, moto_env, tmp_path):
    b = _bucket(s3client, "imp-hub")
    env = _env(moto_env, hub)
    r = run_cli(["import", "hf://acme/tiny", "s3://imp-hub/models/tiny/", "--progress", "json",
                 "--part-size", "5"], env)
    assert r.returncode == 0, r.stderr
    repo = hub.repos["acme/tiny"]
    got = _objects(s3client, b, "models/tiny/")
    record = json.loads(got.pop(".modelpvc/source.json"))
    assert got == repo.files  # every byte, every file (nothing to de-duplicate here)
    assert record["origin"] == {"type": "huggingface", "repo": "acme/tiny", "revision": "main",
                                "commit": repo.revisions["main"], "endpoint": hub.endpoint}
    by_path = {f["path"]: f for f in record["files"]}
    for p in repo.files:
        assert by_path[p]["sha256"] == repo.sha256(p)
    # Full-object CRC64NVME on every object, multipart ones included (moto stores and returns them).
    big = "model-00001-of-00002.safetensors"
    head = s3client.head_object(Bucket=b, Key=f"models/tiny/{big}", ChecksumMode="ENABLED")
    assert head["ETag"].strip('"').endswith("-2")  # 6 MB in 5 MiB parts
    from awscrt import checksums
    want = base64.b64encode(checksums.crc64nvme(repo.files[big]).to_bytes(8, "big")).decode()
    assert head["ChecksumCRC64NVME"] == want == by_path[big]["checksum"]["crc64nvme"]
    assert s3client.list_multipart_uploads(Bucket=b).get("Uploads", []) == []
    s = _summary(r.stderr)
    assert s["bytes_read"] == sum(len(d) for d in repo.files.values())
    # Ranged GETs, not whole-file downloads.
    assert any(rg.startswith("bytes=5242880-") for rg in hub.counters.ranges)


def test_rerun_on_a_complete_prefix_uploads_nothing(hub, s3client, moto_env, tmp_path):
    _bucket(s3client, "imp-noop")
    env = _env(moto_env, hub)
    first = run_cli(["import", "hf://acme/tiny@v1", "s3://imp-noop/m/", "--progress", "json"], env)
    assert first.returncode == 0, first.stderr
    before = hub.counters.cdn_bytes
    t = time.monotonic()
    again = run_cli(["import", "hf://acme/tiny@v1", "s3://imp-noop/m/", "--progress", "json"], env)
    assert again.returncode == 0, again.stderr
    s = _summary(again.stderr)
    assert s["noop"] is True and s["bytes_sent"] == 0 and s["bytes_read"] == 0
    assert hub.counters.cdn_bytes - before <= 1  # only the one-byte access probe
    assert "up to date" in again.stdout
    assert time.monotonic() - t < 15
    rec = json.loads(s3client.get_object(Bucket="imp-noop", Key="m/.modelpvc/source.json")["Body"].read())
    assert rec["origin"]["commit"] == "1" * 40 and rec["origin"]["revision"] == "v1"


def test_gated_repository_without_access_fails_before_uploading(hub, s3client, moto_env):
    b = _bucket(s3client, "imp-gated")
    r = run_cli(["import", "hf://acme/gated", "s3://imp-gated/m/"], _env(moto_env, hub))
    assert r.returncode == 3, r.stderr
    assert "acme/gated is a gated model" in r.stderr and "HF_TOKEN" in r.stderr
    assert _objects(s3client, b, "m/") == {}
    r = run_cli(["import", "hf://acme/gated", "s3://imp-gated/m/"], _env(moto_env, hub, token="hf_wrong"))
    assert r.returncode == 3 and "gated" in r.stderr


def test_gated_and_private_with_a_granted_token_and_the_token_never_leaks(hub, s3client, moto_env):
    _bucket(s3client, "imp-token")
    hub.counters.cdn_authorization.clear()
    for repo in ("acme/gated", "acme/private"):
        r = run_cli(["import", f"hf://{repo}", f"s3://imp-token/{repo}/", "--progress", "json", "-v"],
                    _env(moto_env, hub, token=TOKEN))
        assert r.returncode == 0, r.stderr
        assert TOKEN not in r.stdout + r.stderr
        rec = s3client.get_object(Bucket="imp-token", Key=f"{repo}/.modelpvc/source.json")["Body"].read()
        assert TOKEN.encode() not in rec
    assert hub.counters.cdn_authorization == []  # the bearer token stayed on the Hub's origin


def test_private_or_missing_repository_and_revision_are_source_errors(hub, moto_env, s3client):
    _bucket(s3client, "imp-missing")
    env = _env(moto_env, hub)
    r = run_cli(["import", "hf://acme/private", "s3://imp-missing/m/"], env)
    assert r.returncode == 3 and "not found" in r.stderr and "HF_TOKEN" in r.stderr
    r = run_cli(["import", "hf://acme/nope", "s3://imp-missing/m/"], env)
    assert r.returncode == 3 and "'acme/nope' was not found" in r.stderr
    r = run_cli(["import", "hf://acme/tiny@v9", "s3://imp-missing/m/"], env)
    assert r.returncode == 3 and "no revision 'v9'" in r.stderr
    r = run_cli(["import", "hf://acme/tiny", "s3://no-such-bucket-here/m/"], env)
    assert r.returncode == 4 and "bucket 'no-such-bucket-here' does not exist" in r.stderr


def test_a_file_that_does_not_match_its_sha256_is_not_stored(hub, s3client, moto_env):
    b = _bucket(s3client, "imp-broken")
    r = run_cli(["import", "hf://acme/broken", "s3://imp-broken/m/", "--part-size", "5"], _env(moto_env, hub))
    assert r.returncode == 5, r.stderr
    bad = "model-00002-of-00002.safetensors"
    assert f"{bad}: SHA-256" in r.stderr and "source.json was not written" in r.stderr
    got = _objects(s3client, b, "m/")
    assert bad not in got and ".modelpvc/source.json" not in got
    assert "model-00001-of-00002.safetensors" in got  # the good files went in
    assert s3client.list_multipart_uploads(Bucket=b).get("Uploads", []) == []  # the bad upload was aborted


def test_expired_cdn_urls_are_resolved_again_and_resets_retried(hub, s3client, moto_env):
    b = _bucket(s3client, "imp-expire")
    hub.reset_first = 2
    r = run_cli(["import", "hf://acme/tiny", "s3://imp-expire/a/", "--part-size", "5", "--workers", "1",
                 "--progress", "json"], _env(moto_env, hub))
    assert r.returncode == 0, r.stderr
    assert _summary(r.stderr)["retries"] >= 2
    hub.expire_urls_now()
    r = run_cli(["import", "hf://acme/tiny", "s3://imp-expire/b/", "--part-size", "5"], _env(moto_env, hub))
    assert r.returncode == 0, r.stderr
    got = _objects(s3client, b, "b/")
    got.pop(".modelpvc/source.json")
    assert got == hub.repos["acme/tiny"].files


def test_killed_import_resumes_its_multipart_uploads(tmp_path, s3client, moto_env):
    """SIGKILL while a 30 MB file is half uploaded; the re-run keeps the parts already there."""
    h = FakeHub().start()
    try:
        files = _model_files(tmp_path, total=30_000_000, shards=1, seed=7)
        h.add(FakeRepo("acme/big", files))
        b = _bucket(s3client, "imp-kill")
        env = _env(moto_env, h)
        h.rate = 6e6  # 6 MB/s: the 30 MB shard takes ~5 s
        cmd = [sys.executable, "-m", "modelpvc", "import", "hf://acme/big", "s3://imp-kill/m/", "--part-size", "5",
               "--workers", "2", "--progress", "json"]
        p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        parts = 0
        while time.monotonic() < deadline and parts < 2:
            ups = s3client.list_multipart_uploads(Bucket=b).get("Uploads", [])
            if ups:
                parts = len(s3client.list_parts(Bucket=b, Key=ups[0]["Key"], UploadId=ups[0]["UploadId"])
                            .get("Parts", []))
            time.sleep(0.1)
        p.send_signal(signal.SIGKILL)
        p.wait()
        assert parts >= 2, "the import never got two parts in"
        h.rate = None
        r = run_cli(cmd[3:], env)
        assert r.returncode == 0, r.stderr
        s = _summary(r.stderr)
        assert s["bytes_kept"] >= 2 * 5 * 1024 * 1024  # parts uploaded before the kill were not sent again
        got = _objects(s3client, b, "m/")
        got.pop(".modelpvc/source.json")
        assert got == files
        assert s3client.list_multipart_uploads(Bucket=b).get("Uploads", []) == []
    finally:
        h.stop()


def test_interrupted_import_exits_130_and_leaves_no_source_json(hub, s3client, moto_env, tmp_path):
    b = _bucket(s3client, "imp-int")
    hub.rate = 1e6  # each 6 MB shard takes seconds: the signal lands while they stream
    try:
        p = subprocess.Popen([sys.executable, "-m", "modelpvc", "import", "hf://acme/tiny", "s3://imp-int/m/",
                              "--part-size", "5"], env=_env(moto_env, hub), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        assert p.stderr is not None
        # Interrupted on the run's own record of a shard under way, not on a poll of the server that a loaded
        # machine can miss (an open multipart upload lives for a fraction of a second).
        seen: list[str] = []
        for line in p.stderr:
            seen.append(line)
            if '"event":"file_start","path":"model-' in line:
                break
        p.send_signal(signal.SIGINT)
        _out, rest = p.communicate(timeout=30)
        err = "".join(seen) + rest
    finally:
        hub.rate = None
    assert p.returncode == 130, err
    assert "re-run" in err
    assert ".modelpvc/source.json" not in _objects(s3client, b, "m/")


def test_selection_leaves_duplicate_formats_out_and_records_why(tmp_path, s3client, moto_env):
    h = FakeHub().start()
    try:
        files = _model_files(tmp_path, seed=4)
        files["pytorch_model.bin"] = os.urandom(2_000_000)
        files["original/consolidated.00.pth"] = os.urandom(1_000_000)
        files["original/params.json"] = b"{}"
        h.add(FakeRepo("acme/dup", files))
        b = _bucket(s3client, "imp-select")
        r = run_cli(["import", "hf://acme/dup", "s3://imp-select/m/"], _env(moto_env, h))
        assert r.returncode == 0, r.stderr
        got = _objects(s3client, b, "m/")
        rec = json.loads(got.pop(".modelpvc/source.json"))
        assert "pytorch_model.bin" not in got and "original/consolidated.00.pth" not in got
        assert {s["path"] for s in rec["skipped"]} >= {"pytorch_model.bin", "original/consolidated.00.pth"}
        assert "model-00001-of-00002.safetensors" in got
    finally:
        h.stop()


# -- into the real servers: MinIO and rclone serve s3 ----------------------------------------------------


@pytest.fixture(params=KINDS)
def s3(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3UnderTest]:
    """A server for this test alone (overrides the session's by name, so ``env`` points at it)."""
    srv = start(request.param, tmp_path_factory.mktemp(f"own-{request.param}"), tmp_path_factory.mktemp("logs"))
    yield srv
    srv.server.stop()


def _stored(s3: S3UnderTest, bucket: str, prefix: str) -> dict[str, bytes]:
    return {k: v for k, v in s3.objects(bucket, prefix).items() if not k.startswith(".modelpvc/")}


def _files(d: Path) -> dict[str, bytes]:
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in d.rglob("*") if p.is_file()}


def test_local_directory_import_then_noop_then_changed_file(env, s3, tmp_path):
    src = tmp_path / "model"
    generate_model(src, SyntheticModel(total_bytes=20_000_000, shards=2))
    s3.bucket("localimp")
    r = run_cli(["import", str(src), "s3://localimp/m/", "--part-size", "5", "--progress", "json"], env)
    assert r.returncode == 0, r.stderr
    assert _stored(s3, "localimp", "m/") == _files(src)
    rec = json.loads(s3.objects("localimp", "m/.modelpvc/")["source.json"])
    assert rec["origin"]["type"] == "directory"
    if s3.stores_checksums:  # MinIO keeps the full-object CRC64NVME the import sent with each upload
        assert "did not keep the CRC64NVME checksum" not in r.stdout
        head = s3.client().head_object(Bucket="localimp", Key="m/model-00001-of-00002.safetensors",
                                       ChecksumMode="ENABLED")
        assert head.get("ChecksumCRC64NVME") and head.get("ChecksumType") == "FULL_OBJECT", head
    else:  # rclone keeps no checksum for multipart objects: said so, and mirror falls back to ETag + SHA-256
        assert "did not keep the CRC64NVME checksum" in r.stdout
    s3.settle()
    again = run_cli(["import", str(src), "s3://localimp/m/", "--progress", "json"], env)
    assert again.returncode == 0 and _summary(again.stderr)["noop"] is True
    cfg = src / "config.json"
    cfg.write_text(cfg.read_text().replace("}", ', "edited": true}', 1))
    third = run_cli(["import", str(src), "s3://localimp/m/", "--progress", "json"], env)
    assert third.returncode == 0, third.stderr
    s = _summary(third.stderr)
    assert s["uploaded_files"] == 1 and s["bytes_sent"] == cfg.stat().st_size
    assert s3.objects("localimp", "m/")["config.json"] == cfg.read_bytes()


def test_huggingface_cache_snapshot_is_checked_against_its_blob_names(env, s3, tmp_path):
    """A cache snapshot links files to blobs/<sha256>; a blob whose bytes were damaged is refused."""
    import hashlib

    repo_dir = tmp_path / "hub" / "models--acme--cached"
    commit = "c" * 40
    snap = repo_dir / "snapshots" / commit
    blobs = repo_dir / "blobs"
    snap.mkdir(parents=True)
    blobs.mkdir()
    gen = tmp_path / "gen"
    generate_model(gen, SyntheticModel(total_bytes=8_000_000, shards=1))
    for p in gen.iterdir():
        data = p.read_bytes()
        name = hashlib.sha256(data).hexdigest() if p.suffix == ".safetensors" else \
            hashlib.sha1(f"blob {len(data)}\0".encode() + data, usedforsecurity=False).hexdigest()
        (blobs / name).write_bytes(data)
        (snap / p.name).symlink_to(Path("../../blobs") / name)
    s3.bucket("cacheimp")
    r = run_cli(["import", str(snap), "s3://cacheimp/m/"], env)
    assert r.returncode == 0, r.stderr
    rec = json.loads(s3.objects("cacheimp", "m/.modelpvc/")["source.json"])
    assert rec["origin"]["repo"] == "acme/cached" and rec["origin"]["commit"] == commit
    shard = next(p for p in snap.iterdir() if p.suffix == ".safetensors")
    blob = blobs / os.readlink(shard).rsplit("/", 1)[1]
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 1
    blob.write_bytes(bytes(data))
    r = run_cli(["import", str(snap), "s3://cacheimp/damaged/"], env)
    assert r.returncode == 5, r.stderr
    assert f"{shard.name}: SHA-256" in r.stderr
    assert shard.name not in s3.objects("cacheimp", "damaged/")


def test_round_trip_hub_to_bucket_to_pvc_proves_the_sha256_chain(hub, env, s3, tmp_path):
    s3.bucket("chain")
    e = _env(env, hub)
    r = run_cli(["import", "hf://acme/tiny", "s3://chain/tiny/", "--part-size", "5"], e)
    assert r.returncode == 0, r.stderr
    s3.settle()
    pvc = tmp_path / "pvc"
    r = run_cli(["mirror", "s3://chain/tiny/", str(pvc), "--progress", "json"], e)
    assert r.returncode == 0, r.stderr
    m = json.loads((pvc / ".modelpvc" / "manifest.json").read_text())
    repo = hub.repos["acme/tiny"]
    assert m["provenance"]["origin"]["commit"] == repo.revisions["main"]
    weights = [f for f in m["files"] if f["path"].endswith(".safetensors")]
    assert weights and all(f["verified"] == "source-sha256" for f in weights)
    for f in weights:
        assert base64.b64decode(f["digest"]["sha256"]).hex() == repo.sha256(f["path"])
    assert not (pvc / ".modelpvc" / "source.json").exists()
    deep = run_cli(["verify", str(pvc), "--deep"], e)
    assert deep.returncode == 0, deep.stderr
    target = pvc / weights[0]["path"]
    data = bytearray(target.read_bytes())
    data[-10] ^= 0xFF
    target.write_bytes(bytes(data))
    deep = run_cli(["verify", str(pvc), "--deep"], e)
    assert deep.returncode == 5


def test_mirror_refuses_a_prefix_that_no_longer_matches_its_source_json(hub, env, s3, tmp_path):
    s3.bucket("drift")
    e = _env(env, hub)
    assert run_cli(["import", "hf://acme/tiny", "s3://drift/m/"], e).returncode == 0
    s3.client().put_object(Bucket="drift", Key="m/config.json", Body=b'{"replaced": true}')
    r = run_cli(["mirror", "s3://drift/m/", str(tmp_path / "pvc")], e)
    assert r.returncode == 5
    assert "no longer matches its .modelpvc/source.json" in r.stderr and "config.json was replaced" in r.stderr
    assert not (tmp_path / "pvc" / ".modelpvc" / "manifest.json").exists()


def test_mirror_waits_for_an_import_to_finish_before_copying(env, s3, tmp_path):
    """What a populate Job rendered beside an import Job does under plain kubectl apply."""
    src = tmp_path / "model"
    generate_model(src, SyntheticModel(total_bytes=4_000_000, shards=1))
    s3.bucket("waiting")
    pvc = tmp_path / "pvc"
    waiter = subprocess.Popen([sys.executable, "-m", "modelpvc", "mirror", "s3://waiting/m/", str(pvc),
                               "--wait-for-import", "60", "--progress", "json"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.5)
        assert waiter.poll() is None  # nothing to copy yet: still waiting
        r = run_cli(["import", str(src), "s3://waiting/m/"], env)
        assert r.returncode == 0, r.stderr
        _out, err = waiter.communicate(timeout=60)
    finally:  # a failed assertion must not leave the waiter polling the shared server for the next tests
        if waiter.poll() is None:
            waiter.kill()
            waiter.wait()
    assert waiter.returncode == 0, err
    assert '"event":"waiting"' in err
    assert same_tree(src, pvc) == []
    r = run_cli(["mirror", "s3://waiting/never/", str(tmp_path / "pvc2"), "--wait-for-import", "1"], env)
    assert r.returncode == 3 and "no import finished into s3://waiting/never/ within 1s" in r.stderr


def test_every_command_treats_the_provenance_record_as_describing_the_files_not_as_one(env, s3, tmp_path):
    """`verify --source` counted .modelpvc/source.json as a missing file (exit 5) on every imported prefix;
    `plan` listed and counted it. One rule now (core.provenance.split_record), as mirror always had."""
    src = tmp_path / "model"
    generate_model(src, SyntheticModel(total_bytes=4_000_000, shards=1))
    s3.bucket("prov")
    assert run_cli(["import", str(src), "s3://prov/m/"], env).returncode == 0
    s3.settle()
    pvc = tmp_path / "pvc"
    assert run_cli(["mirror", "s3://prov/m/", str(pvc)], env).returncode == 0
    r = run_cli(["verify", str(pvc), "--source", "s3://prov/m/"], env)
    assert r.returncode == 0, r.stdout + r.stderr
    plan = json.loads(run_cli(["plan", "s3://prov/m/", "--json"], env).stdout)
    assert ".modelpvc/source.json" not in {f["path"] for f in plan["files"]}
    assert sorted(f["path"] for f in plan["files"]) == sorted(p.name for p in src.iterdir())
