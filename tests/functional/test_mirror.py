"""mirror against a real S3 server on loopback: real bytes, real processes, real exit codes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from modelpvc.model.synthetic import SyntheticModel, same_tree
from modelpvc.store.volume import direct_io
from tests.conftest import run_cli
from tests.support.faultproxy import FaultProxy, Faults


def manifest(dest: Path) -> dict:  # type: ignore[type-arg]
    return json.loads((dest / ".modelpvc" / "manifest.json").read_text())


def summary(stderr: str) -> dict:  # type: ignore[type-arg]
    lines = [json.loads(x) for x in stderr.splitlines() if x.startswith("{")]
    return next(x for x in reversed(lines) if x.get("event") == "summary")


def test_copies_model_byte_for_byte_and_writes_manifest(make_model, env, s3, tmp_path):
    src = make_model()
    dest = tmp_path / "pvc"
    r = run_cli(["mirror", src.uri, str(dest), "--part-size", "1", "--progress", "json"], env)
    assert r.returncode == 0, r.stderr
    assert same_tree(src.dir, dest) == []
    m = manifest(dest)
    assert m["source"] == src.uri
    assert {f["path"] for f in m["files"]} == {p.name for p in src.dir.iterdir()}
    # rclone's ETags are MD5s of the whole object: every file was checked against one. MinIO keeps the
    # composite CRC32 of boto3's multipart uploads: the shards were checked against it, part by part.
    assert {f["path"]: f["verified"] for f in m["files"]} == {f["path"]: s3.verified_as(f["size"])
                                                              for f in m["files"]}
    assert all(f["digest"]["md5"] == f["etag"] for f in m["files"] if f["verified"] == "md5")
    assert not list(dest.rglob("*.partial"))
    s = summary(r.stderr)
    assert s["bytes_fetched"] == sum(p.stat().st_size for p in src.dir.iterdir())
    assert "fetched" in r.stdout and "verified: " in r.stdout
    assert s["workers"] >= 4 and "CPUs usable: affinity" in s["workers_basis"]


def test_a_process_pinned_to_one_cpu_says_so_in_its_summary(make_model, env, tmp_path):
    src = make_model()
    r = subprocess.run(
        ["taskset", "-c", "0", sys.executable, "-m", "modelpvc", "mirror", src.uri, str(tmp_path / "pvc"), "-v"],
        env=env, capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    assert "4 workers (1 CPU usable: affinity 1; override with --workers)" in r.stdout
    r = run_cli(["mirror", src.uri, str(tmp_path / "pvc2"), "--workers", "3", "-v"], env)
    assert "3 workers (--workers)" in r.stdout
    # Without -v the summary says what a user needs, not how the copy ran.
    r = run_cli(["mirror", src.uri, str(tmp_path / "pvc3")], env)
    assert r.returncode == 0 and "verified:" in r.stdout
    assert "workers" not in r.stdout and "bottleneck" not in r.stdout and "O_DIRECT" not in r.stdout


def test_rerun_on_complete_destination_fetches_nothing(make_model, env, proxy: FaultProxy, tmp_path):
    src = make_model()
    dest = tmp_path / "pvc"
    e = {**env, "AWS_ENDPOINT_URL": proxy.endpoint}
    assert run_cli(["mirror", src.uri, str(dest)], e).returncode == 0
    proxy.reset()
    r = run_cli(["mirror", src.uri, str(dest), "--progress", "json"], e)
    assert r.returncode == 0, r.stderr
    assert proxy.counters.gets == 0 and proxy.counters.body_bytes == 0
    assert proxy.counters.lists == 1
    assert summary(r.stderr)["noop"] is True
    assert "up to date" in r.stdout


def test_changed_object_is_fetched_again_even_with_same_size_and_mtime(make_model, env, tmp_path):
    src = make_model()
    dest = tmp_path / "pvc"
    assert run_cli(["mirror", src.uri, str(dest)], env).returncode == 0
    shard = src.dir / "model-00002-of-00003.safetensors"
    st = shard.stat()
    with open(shard, "r+b") as fh:
        fh.seek(st.st_size - 10)
        fh.write(b"0123456789")
    os.utime(shard, ns=(st.st_atime_ns, st.st_mtime_ns))
    src.publish()
    r = run_cli(["mirror", src.uri, str(dest), "--progress", "json"], env)
    assert r.returncode == 0, r.stderr
    s = summary(r.stderr)
    assert s["fetched_files"] == 1 and s["bytes_fetched"] == st.st_size
    assert same_tree(src.dir, dest) == []


def test_delete_removes_files_the_source_no_longer_has(make_model, env, tmp_path):
    src = make_model()
    dest = tmp_path / "pvc"
    assert run_cli(["mirror", src.uri, str(dest)], env).returncode == 0
    (src.dir / "generation_config.json").unlink()
    src.publish()
    r = run_cli(["mirror", src.uri, str(dest)], env)
    assert r.returncode == 0
    assert (dest / "generation_config.json").exists()  # kept without --delete
    r = run_cli(["mirror", src.uri, str(dest), "--delete"], env)
    assert r.returncode == 0, r.stderr
    assert not (dest / "generation_config.json").exists()
    assert (dest / ".modelpvc" / "manifest.json").exists()
    assert "generation_config.json" not in {f["path"] for f in manifest(dest)["files"]}


def test_missing_prefix_exits_3_and_names_nearest_prefixes(make_model, env, tmp_path):
    src = make_model()
    typo = src.uri.rstrip("/") + "x/"
    r = run_cli(["mirror", typo, str(tmp_path / "pvc")], env)
    assert r.returncode == 3
    assert f"no objects under {typo}" in r.stderr
    assert src.uri in r.stderr  # the nearest existing prefix is suggested
    assert not (tmp_path / "pvc").exists()


def test_missing_bucket_exits_3(env, tmp_path):
    r = run_cli(["mirror", "s3://no-such-bucket/x/", str(tmp_path / "pvc")], env)
    assert r.returncode == 3
    assert "no-such-bucket" in r.stderr


def test_wrong_credentials_exit_3_and_never_print_the_secret(make_model, env, tmp_path):
    src = make_model()
    secret = "definitely-wrong-secret-9f3a"
    e = {**env, "AWS_SECRET_ACCESS_KEY": secret}
    r = run_cli(["--log-level", "DEBUG", "mirror", src.uri, str(tmp_path / "pvc")], e)
    assert r.returncode == 3
    assert "access denied" in r.stderr
    assert secret not in r.stderr + r.stdout
    assert not list((tmp_path).rglob("*.partial"))


def test_no_credentials_is_a_usage_error(make_model, env, tmp_path):
    src = make_model()
    e = {k: v for k, v in env.items() if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    r = run_cli(["mirror", src.uri, str(tmp_path / "pvc")], e)
    assert r.returncode == 2
    assert "no S3 credentials" in r.stderr


@pytest.mark.parametrize("flag,value", [("--read-timeout", "nan"), ("--read-timeout", "inf"),
                                        ("--connect-timeout", "0"), ("--retries", "-1")])
def test_timeouts_that_no_socket_takes_are_usage_errors(env, tmp_path, flag, value):
    """argparse's float takes nan and inf; a socket refuses nan at the first request (ValueError) and waits
    forever with inf. Refused before any request, with the flag named."""
    r = run_cli(["mirror", "s3://models/m/", str(tmp_path / "pvc"), flag, value], env)
    assert r.returncode == 2, r.stderr
    assert f"(got {flag} " in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "pvc").exists()


def test_credentials_dir_with_accesskey_secretkey_names(make_model, env, tmp_path, s3):
    src = make_model()
    secret_dir = tmp_path / "secret"
    secret_dir.mkdir()
    (secret_dir / "accesskey").write_text(s3.access_key)
    (secret_dir / "secretkey").write_text(s3.secret_key + "\n")
    (secret_dir / "AWS_S3_ENDPOINT").write_text(s3.endpoint)
    e = {k: v for k, v in env.items() if not k.startswith("AWS_")}
    r = run_cli(["mirror", src.uri, str(tmp_path / "pvc"), "--credentials-dir", str(secret_dir)], e)
    assert r.returncode == 0, r.stderr
    assert same_tree(src.dir, tmp_path / "pvc") == []


def test_dry_run_prints_the_plan_and_writes_nothing(make_model, env, tmp_path):
    src = make_model()
    r = run_cli(["mirror", src.uri, str(tmp_path / "pvc"), "--dry-run"], env)
    assert r.returncode == 0, r.stderr
    assert "fetch   model-00001-of-00003.safetensors" in r.stdout
    assert "# 9 to fetch" in r.stdout
    assert not (tmp_path / "pvc").exists()


def test_retries_through_slowdown_resets_and_truncation(make_model, env, proxy, tmp_path):
    # Shards under 8 MiB: single-part on both servers, so --part-size 2 cuts them (a multipart object's
    # parts set its ranges), and every fault lands in a body longer than where it strikes.
    src = make_model(SyntheticModel(total_bytes=18 * 1024 * 1024, shards=3))
    proxy.reset(Faults(match="model-0000", slowdown_first=3, reset_after=100_000, reset_count=2,
                       truncate_after=50_000, truncate_count=2))
    e = {**env, "AWS_ENDPOINT_URL": proxy.endpoint}
    r = run_cli(["mirror", src.uri, str(tmp_path / "pvc"), "--part-size", "2", "--progress", "json"], e)
    assert r.returncode == 0, r.stderr
    assert same_tree(src.dir, tmp_path / "pvc") == []
    assert summary(r.stderr)["retries"] >= 7, (proxy.counters.faults_applied, r.stderr[-3000:])
    assert sorted(set(proxy.counters.faults_applied)) == ["reset_count", "slowdown_first", "truncate_count"]


def test_corrupted_body_is_fetched_again_and_never_published(make_model, env, proxy, tmp_path):
    src = make_model()
    e = {**env, "AWS_ENDPOINT_URL": proxy.endpoint}
    proxy.reset(Faults(match="model-00001", corrupt_count=1))
    r = run_cli(["mirror", src.uri, str(tmp_path / "a"), "--progress", "json"], e)
    assert r.returncode == 0, r.stderr
    assert summary(r.stderr)["refetched"] == ["model-00001-of-00003.safetensors"]
    assert same_tree(src.dir, tmp_path / "a") == []

    proxy.reset(Faults(match="model-00001", corrupt_count=-1))
    r = run_cli(["mirror", src.uri, str(tmp_path / "b")], e)
    assert r.returncode == 5
    assert "model-00001-of-00003.safetensors: content does not match" in r.stderr
    assert not (tmp_path / "b" / "model-00001-of-00003.safetensors").exists()
    assert not (tmp_path / "b" / ".modelpvc" / "manifest.json").exists()


def test_md5_only_multipart_uploads_are_verified_part_by_part_and_a_bad_part_is_fetched_again(s3, env, proxy,
                                                                                               tmp_path):
    """What old `mc mirror` and SDK uploads left: multipart ETags and no stored checksum. Twenty parts of
    three files fill the MD5 lanes from several files at once (transfer.md5_pool)."""
    from boto3.s3.transfer import TransferConfig
    from botocore.config import Config

    s3.bucket("md5only")
    local = s3.root / "md5only" / "m"
    local.mkdir(parents=True, exist_ok=True)
    files = {f"w{i}.bin": os.urandom(30 * 1024 * 1024 + 7 * i) for i in range(3)}
    for name, data in files.items():
        (local / name).write_bytes(data)
    if s3.kind == "minio":
        import boto3

        client = boto3.client("s3", endpoint_url=s3.endpoint, aws_access_key_id=s3.access_key,
                              aws_secret_access_key=s3.secret_key, region_name="us-east-1",
                              config=Config(request_checksum_calculation="when_required"))
        for name in files:
            client.upload_file(str(local / name), "md5only", f"m/{name}",
                               Config=TransferConfig(multipart_threshold=5 * 1024 * 1024,
                                                     multipart_chunksize=5 * 1024 * 1024))
        assert client.head_object(Bucket="md5only", Key="m/w0.bin")["ETag"].strip('"').endswith("-6")
    else:
        s3.publish("md5only/m")  # rclone serves the tree; its ETags are whole-file MD5s
    e = {**env, "AWS_ENDPOINT_URL": proxy.endpoint}
    proxy.reset(Faults(match="w1.bin", corrupt_count=1))
    r = run_cli(["mirror", "s3://md5only/m/", str(tmp_path / "pvc"), "--progress", "json"], e)
    assert r.returncode == 0, r.stderr
    assert summary(r.stderr)["refetched"] == ["w1.bin"]
    if s3.kind == "minio" and direct_io.direct_io_suits(str(tmp_path)):
        # Written direct, each part streams into the MD5 pool's buffers: one worker a lane, by default.
        assert summary(r.stderr)["workers"] == 16
    for name, data in files.items():
        assert (tmp_path / "pvc" / name).read_bytes() == data
    kinds = {f["path"]: f["verified"] for f in manifest(tmp_path / "pvc")["files"]}
    assert kinds == dict.fromkeys(files, "multipart-etag" if s3.kind == "minio" else "md5")
    # A part that stays bad: fetched twice, the file fails the run and is never published.
    proxy.reset(Faults(match="w2.bin", corrupt_count=-1))
    r = run_cli(["mirror", "s3://md5only/m/", str(tmp_path / "bad")], e)
    assert r.returncode == 5
    assert "w2.bin: content does not match" in r.stderr
    assert not (tmp_path / "bad" / "w2.bin").exists()
    assert not (tmp_path / "bad" / ".modelpvc" / "manifest.json").exists()


def _start_throttled(src_uri: str, dest: Path, env: dict[str, str], proxy: FaultProxy,
                     rate: float, workers: int = 4) -> subprocess.Popen[str]:
    proxy.reset(Faults(rate=rate))
    e = {**env, "AWS_ENDPOINT_URL": proxy.endpoint, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "modelpvc", "mirror", src_uri, str(dest), "--progress",
                             "json", "--progress-interval", "0.1", "--part-size", "1", "--workers", str(workers)],
                            env=e, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def _wait_fraction(proc: subprocess.Popen[str], fraction: float) -> float:
    assert proc.stderr is not None
    for line in proc.stderr:
        ev = json.loads(line)
        if ev.get("event") == "progress" and ev["bytes_done"] >= fraction * ev["bytes_total"]:
            return float(ev["bytes_done"]) / ev["bytes_total"]
    raise AssertionError("transfer ended before reaching the fraction")


def _kill_then_rerun(src, dest: Path, env, proxy, fraction: float) -> tuple[int, int, int]:  # type: ignore[no-untyped-def]
    """SIGKILL at ``fraction`` of the bytes, with no grace: (bytes the proxy relayed before, bytes fetched
    again by the re-run, total)."""
    total = sum(p.stat().st_size for p in src.dir.iterdir())
    proc = _start_throttled(src.uri, dest, env, proxy, rate=8e6, workers=KILL_WORKERS)
    _wait_fraction(proc, fraction)
    proc.kill()
    proc.wait()
    before = proxy.counters.body_bytes
    assert before < total
    proxy.reset()
    e = {**env, "AWS_ENDPOINT_URL": proxy.endpoint}
    r = run_cli(["mirror", src.uri, str(dest), "--progress", "json", "--workers", str(KILL_WORKERS)], e)
    assert r.returncode == 0, r.stderr
    assert same_tree(src.dir, dest) == []
    assert not list(dest.rglob("*.partial"))
    assert not (dest / ".modelpvc" / "journal.jsonl").exists()
    return before, proxy.counters.body_bytes, total


KILL_WORKERS = 2


def _killable(s3, make_model):  # type: ignore[no-untyped-def]
    """A model and what a kill may cost beyond the missing bytes. A worker holds unjournalled at most the
    range it is receiving and the ranges its write-behind ring has taken and not yet written (one per writer
    thread plus one ready), plus what the proxy relayed into socket buffers. On rclone a range is 1 MiB
    (--part-size 1). On MinIO the shards are boto3 multipart uploads whose composite CRC32 is checked part by
    part, so the 8 MiB parts are the ranges: a larger model keeps the bound meaningful."""
    ranges_held = KILL_WORKERS * (1 + direct_io.WRITERS + 1)
    if s3.kind == "minio":
        return (make_model(SyntheticModel(total_bytes=160 * 1024 * 1024, shards=2)),
                ranges_held * 8 * 1024 * 1024 + 512 * 1024)
    return make_model(SyntheticModel(total_bytes=24 * 1024 * 1024, shards=2)), ranges_held * 1024 * 1024 + 512 * 1024


def test_sigkill_at_half_then_rerun_fetches_only_what_is_missing(make_model, env, proxy, s3, tmp_path):
    src, slack = _killable(s3, make_model)
    before, again, total = _kill_then_rerun(src, tmp_path / "pvc", env, proxy, 0.5)
    assert again <= total - before + slack, (before, again, total)


def test_sigkill_in_the_first_moments_costs_no_finished_byte(make_model, env, proxy, s3, tmp_path):
    """Before the first durable flush (every second) nothing is synced yet; the journal lines written as
    the bytes landed are still believed on the same boot, so the re-run fetches only what is missing."""
    src, slack = _killable(s3, make_model)
    before, again, total = _kill_then_rerun(src, tmp_path / "pvc", env, proxy, 0.05)
    assert again <= total - before + slack, (before, again, total)


def test_object_deleted_between_listing_and_get_exits_3_naming_it_and_a_rerun_converges(
        make_model, env, proxy, tmp_path):
    src = make_model(SyntheticModel(total_bytes=8 * 1024 * 1024, shards=3))
    dest = tmp_path / "pvc"
    victim = src.dir / "model-00003-of-00003.safetensors"  # one worker: fetched after the other shards
    saved = victim.read_bytes()
    proxy.reset(Faults(rate=4e6))
    e = {**env, "AWS_ENDPOINT_URL": proxy.endpoint, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "modelpvc", "mirror", src.uri, str(dest), "--progress", "json",
                             "--progress-interval", "0.1", "--workers", "1"], env=e, stderr=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    _wait_fraction(proc, 0.1)
    victim.unlink()
    src.publish()
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, err
    assert victim.name in err and "not found" in err
    assert not (dest / victim.name).exists()
    assert not (dest / ".modelpvc" / "manifest.json").exists()
    victim.write_bytes(saved)  # the source is fixed
    src.publish()
    proxy.reset()
    r = run_cli(["mirror", src.uri, str(dest)], {**env, "AWS_ENDPOINT_URL": proxy.endpoint})
    assert r.returncode == 0, r.stderr
    assert same_tree(src.dir, dest) == []
    assert proxy.counters.body_bytes < 0.5 * sum(p.stat().st_size for p in src.dir.iterdir())  # resumed


def test_sigterm_stops_within_two_seconds_with_143_and_resumes(make_model, env, proxy, tmp_path):
    src = make_model(SyntheticModel(total_bytes=24 * 1024 * 1024, shards=2))
    dest = tmp_path / "pvc"
    proc = _start_throttled(src.uri, dest, env, proxy, rate=8e6)
    _wait_fraction(proc, 0.3)
    t = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    rc = proc.wait(10)
    assert time.monotonic() - t < 2.0
    assert rc == 143
    # Nothing under a final name is partial: every final-named file equals its source.
    for p in dest.iterdir():
        if p.is_file() and not p.name.endswith(".partial"):
            assert p.read_bytes() == (src.dir / p.name).read_bytes()
    assert not (dest / ".modelpvc" / "manifest.json").exists()
    proxy.reset()
    r = run_cli(["mirror", src.uri, str(dest)], {**env, "AWS_ENDPOINT_URL": proxy.endpoint})
    assert r.returncode == 0, r.stderr
    assert same_tree(src.dir, dest) == []


def test_second_concurrent_run_is_refused_with_locked_message(make_model, env, proxy, tmp_path):
    src = make_model(SyntheticModel(total_bytes=24 * 1024 * 1024, shards=2))
    dest = tmp_path / "pvc"
    proc = _start_throttled(src.uri, dest, env, proxy, rate=8e6)
    _wait_fraction(proc, 0.1)
    r = run_cli(["mirror", src.uri, str(dest)], env)
    assert r.returncode == 4
    assert "being written by another modelpvc run" in r.stderr
    proxy.reset()  # lift the throttle; the first run completes
    assert proc.wait(60) == 0
    assert same_tree(src.dir, dest) == []


def test_shards_copy_disjoint_shares_concurrently_and_a_final_run_adopts_them(make_model, env, proxy, tmp_path):
    src = make_model(SyntheticModel(total_bytes=24 * 1024 * 1024, shards=4))
    dest = tmp_path / "pvc"
    e = {**env, "AWS_ENDPOINT_URL": proxy.endpoint}
    procs = [subprocess.Popen([sys.executable, "-m", "modelpvc", "mirror", src.uri, str(dest), "--shard", f"{i}/3",
                               "--progress", "json"], env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(3)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outs
    fetched = [summary(err)["fetched_files"] for _out, err in outs]
    assert sum(fetched) == 10 and all(n >= 1 for n in fetched)  # each file fetched by exactly one shard
    assert proxy.counters.body_bytes == sum(p.stat().st_size for p in src.dir.iterdir())
    assert not (dest / ".modelpvc" / "manifest.json").exists()  # shares are not a whole model yet
    proxy.reset()
    r = run_cli(["mirror", src.uri, str(dest), "--progress", "json"], e)
    assert r.returncode == 0, r.stderr
    assert proxy.counters.body_bytes == 0 and summary(r.stderr)["kept_files"] == 10
    assert same_tree(src.dir, dest) == []
    assert len(manifest(dest)["files"]) == 10 and manifest(dest)["structure"]["layouts"]
    assert not (dest / ".modelpvc" / "shards").exists()


def test_summary_names_a_slow_source_as_the_bottleneck(make_model, env, proxy, tmp_path):
    src = make_model()
    proxy.reset(Faults(rate=20e6))
    r = run_cli(["mirror", src.uri, str(tmp_path / "pvc"), "--progress", "json", "-v"],
                {**env, "AWS_ENDPOINT_URL": proxy.endpoint})
    assert r.returncode == 0, r.stderr
    assert summary(r.stderr)["bottleneck"].startswith("source or network")
    assert "bottleneck: source or network" in r.stdout


# A disk slower than the network, which this machine's disk cannot be made on demand: the child process's
# os.pwrite (every write of a fetched file, direct or buffered) sleeps as a 40 MB/s device would.
SLOW_DISK = """
import os, runpy, sys, time
_pwrite = os.pwrite
def pwrite(fd, data, offset):
    time.sleep(len(data) / 40e6)
    return _pwrite(fd, data, offset)
os.pwrite = pwrite
sys.argv[0] = "modelpvc"
runpy.run_module("modelpvc", run_name="__main__")
"""


def test_summary_names_a_slow_disk_as_the_bottleneck(make_model, env, tmp_path):
    """Written behind (direct I/O), a worker waits for the disk inside its S3 read, when the ring has no
    free buffer: that time is the disk's. It was counted as waiting for the source, and a mirror onto a slow
    volume told its user to look at the network."""
    src = make_model(SyntheticModel(total_bytes=128 * 1024 * 1024, shards=2))
    dest = tmp_path / "pvc"
    # One GET per shard: each worker streams 64 MiB through its ring of three 8 MiB buffers and waits for
    # five of them (a worker's wait for its last writes, after its last range, is nobody's time).
    r = subprocess.run([sys.executable, "-c", SLOW_DISK, "mirror", src.uri, str(dest), "--progress", "json",
                        "--part-size", "0", "-v"],
                       env=env, capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    assert same_tree(src.dir, dest) == []
    assert summary(r.stderr)["bottleneck"].startswith("destination disk"), summary(r.stderr)
    assert "bottleneck: destination disk" in r.stdout


def test_a_server_that_ignores_range_is_not_trusted_and_whole_objects_work(make_model, env, proxy, tmp_path):
    src = make_model()
    proxy.reset(Faults(ignore_range=True))
    e = {**env, "AWS_ENDPOINT_URL": proxy.endpoint}
    r = run_cli(["mirror", src.uri, str(tmp_path / "a"), "--part-size", "1"], e)
    assert r.returncode == 3
    assert "ignored the Range header" in r.stderr and "--part-size 0" in r.stderr
    assert not list((tmp_path / "a").glob("model-*.safetensors"))
    r = run_cli(["mirror", src.uri, str(tmp_path / "b"), "--part-size", "0"], e)
    assert r.returncode == 0, r.stderr
    assert same_tree(src.dir, tmp_path / "b") == []


def test_a_fully_downloaded_but_unpublished_file_is_verified_and_published_without_fetching(
        make_model, env, proxy, s3, tmp_path):
    src = make_model()
    dest = tmp_path / "pvc"
    e = {**env, "AWS_ENDPOINT_URL": proxy.endpoint}
    assert run_cli(["mirror", src.uri, str(dest)], e).returncode == 0
    # Recreate the state a kill leaves between the last range and the rename.
    name = "model-00002-of-00003.safetensors"
    rec = next(f for f in manifest(dest)["files"] if f["path"] == name)
    (dest / name).rename(dest / f"{name}.partial")
    # The journal such a run leaves: files it published, and every range of the one it did not.
    lines = [{"t": "published", "path": f["path"], "file": f} for f in manifest(dest)["files"] if f["path"] != name]
    lines.append({"t": "range", "path": name, "etag": rec["etag"], "size": rec["size"], "start": 0,
                  "end": rec["size"]})
    lines.append({"t": "sync", "upto": len(lines)})  # all of it durable
    (dest / ".modelpvc" / "journal.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    (dest / ".modelpvc" / "manifest.json").unlink()
    proxy.reset()
    r = run_cli(["mirror", src.uri, str(dest), "--progress", "json"], e)
    assert r.returncode == 0, r.stderr
    assert proxy.counters.body_bytes == 0
    assert summary(r.stderr)["fetched_files"] == 1  # resumed: verified and published, no bytes fetched
    assert same_tree(src.dir, dest) == []
    assert next(f for f in manifest(dest)["files"] if f["path"] == name)["verified"] == s3.verified_as(rec["size"])


def test_complete_files_without_any_record_are_hashed_and_adopted_not_fetched(make_model, env, proxy, s3,
                                                                               tmp_path):
    """A kill before the journal's first line, or a volume filled by `mc mirror`: the bytes are there but
    nothing says so. They are hashed against what the source promises (ETag MD5, MinIO's composite CRC32)
    and adopted; a file that differs is fetched."""
    src = make_model()
    dest = tmp_path / "pvc"
    e = {**env, "AWS_ENDPOINT_URL": proxy.endpoint}
    assert run_cli(["mirror", src.uri, str(dest)], e).returncode == 0
    shutil.rmtree(dest / ".modelpvc")  # no manifest, no journal
    (dest / "model-00001-of-00003.safetensors").rename(dest / "model-00001-of-00003.safetensors.partial")
    differs = dest / "model-00003-of-00003.safetensors"
    data = bytearray(differs.read_bytes())
    data[-1] ^= 0xFF  # same length, other content
    differs.write_bytes(bytes(data))
    proxy.reset()
    r = run_cli(["mirror", src.uri, str(dest), "--progress", "json"], e)
    assert r.returncode == 0, r.stderr
    s = summary(r.stderr)
    assert s["adopted_files"] == 8 and s["fetched_files"] == 1, s
    assert proxy.counters.body_bytes == differs.stat().st_size  # only the file that differed
    assert same_tree(src.dir, dest) == []
    assert not list(dest.rglob("*.partial"))
    assert all(f["verified"] == s3.verified_as(f["size"]) for f in manifest(dest)["files"])
