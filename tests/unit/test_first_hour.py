"""The first hour's small mistakes, each named with its fix (a real `modelpvc` process, no cluster)."""

from __future__ import annotations

import os
import subprocess
import sys


def _run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    e.update(HOME="/nonexistent", **env)
    return subprocess.run([sys.executable, "-m", "modelpvc", *args], capture_output=True, text=True, env=e,
                          timeout=60, cwd="/")


def test_only_one_key_of_the_pair_names_the_missing_one():
    r = _run("mirror", "s3://b/p/", "/nonexistent/x", AWS_ACCESS_KEY_ID="AKIA")
    assert r.returncode == 2
    assert "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not" in r.stderr
    assert "AKIA" not in r.stderr  # the key itself is never printed


def test_mirror_into_a_bucket_points_to_import():
    r = _run("mirror", "./my-model", "s3://llm-models/m/")
    assert r.returncode == 2
    assert "modelpvc import ./my-model s3://llm-models/m/" in r.stderr


def test_an_error_off_a_terminal_is_printed_once_with_q():
    r = _run("mirror", "-q", "s3://b/p/", "/nonexistent/x", AWS_ACCESS_KEY_ID="AKIA")
    assert r.stderr.count("AWS_SECRET_ACCESS_KEY is not") == 1, r.stderr
    r = _run("mirror", "s3://b/p/", "/nonexistent/x", AWS_ACCESS_KEY_ID="AKIA")  # JSON progress: + the record
    assert r.stderr.count("AWS_SECRET_ACCESS_KEY is not") == 2 and '"event":"error"' in r.stderr


def test_helps_speak_to_users_not_to_developers():
    r = _run("storage-initializer", "--help")
    assert "MODELPVC_READ_TIMEOUT" in r.stdout and "AWS_ACCESS_KEY_ID" in r.stdout
    assert "``" not in r.stdout and ".go" not in r.stdout
    r = _run("demo", "--help")
    assert "``" not in r.stdout and "MinIO" in r.stdout
    r = _run("populate", "--help")
    for flag in ("--image", "--storage-class", "--access-mode", "--delete-excluded"):
        line = next(x for x in r.stdout.splitlines() if x.strip().startswith(flag))
        following = r.stdout[r.stdout.index(line):].splitlines()[:3]
        assert any(len(x.strip()) > len(flag) + 12 for x in following), (flag, following)
    r = _run("doctor", "--help")
    assert "as JSON" in r.stdout


def test_a_read_only_volume_is_named_as_such_not_as_a_missing_fs_group():
    import errno

    from modelpvc.store.volume.fs import destination_error

    e = destination_error(OSError(errno.EROFS, "Read-only file system"), "/mnt/models/config.json", "writing")
    assert "mounted read-only" in e.message and "readOnly" in (e.hint or "")
    assert "fsGroup" not in (e.hint or "")
    e = destination_error(OSError(errno.EACCES, "Permission denied"), "/mnt/models/config.json", "writing")
    assert "fsGroup" in (e.hint or "")


def test_verify_during_a_live_mirror_says_a_copy_is_in_progress(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "llama"}')
    (tmp_path / "model.safetensors.partial").write_bytes(b"\0" * 64)
    r = _run("verify", str(tmp_path))
    assert r.returncode == 5
    assert "a copy was interrupted: re-run the mirror" in r.stdout + r.stderr
    # Another process holds the destination's lock, as a running `mirror` does.
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; "
         "from modelpvc.store.volume.fs import DestinationLock; "
         "lock = DestinationLock(Path(sys.argv[1])).__enter__(); print('held', flush=True); time.sleep(60)",
         str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        r = _run("verify", str(tmp_path))
        assert r.returncode == 5
        out = r.stdout + r.stderr
        assert f"a copy is in progress (modelpvc pid {holder.pid} is writing this directory)" in out, out
        assert "interrupted" not in out
    finally:
        holder.kill()
        holder.wait()


def test_doctor_offers_no_timeouts_it_would_ignore_and_reads_sizes():
    r = _run("doctor", "--help")
    assert r.returncode == 0 and "--timeout" not in r.stdout and "--pending-timeout" not in r.stdout
    assert "48GB" in r.stdout
    r = _run("doctor", "-n", "p", "--source-bytes", "48 parsecs")
    assert r.returncode == 2 and "48 parsecs" in r.stderr


def test_descriptions_are_wrapped_to_the_terminal():
    for command in ("populate", "deploy", "update", "render", "verify", "mirror", "plan", "import", "gc"):
        r = _run(command, "--help", COLUMNS="80")
        assert r.returncode == 0
        long = [line for line in r.stdout.splitlines() if len(line) > 100]  # argparse's usage may pass 80
        assert not long, f"{command} --help: {long[:2]}"
