"""Small files are read whole, several at a time, by one thread (transfer.lane over store.http.multiget).

Every fault that thread meets must end as it would have on the ranged workers: the file fetched again by
them (with their retries and messages), the tree byte for byte the source's, nothing counted as fetched
that was not published.
"""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from modelpvc.core import md5_native
from modelpvc.model.synthetic import generate_small_files, same_tree
from modelpvc.transfer import lane
from tests.conftest import CLI_CWD, Source, run_cli
from tests.support.faultproxy import Faults

_names = itertools.count()


def _small_files(s3, count: int = 60, size: int = 20_000) -> Source:  # type: ignore[no-untyped-def]
    name = f"small{next(_names)}"
    generate_small_files(s3.root / "models" / name, count, size, seed=count)
    s3.publish(f"models/{name}")
    return Source(f"s3://models/{name}/", s3.root / "models" / name)


def _summary(stderr: str) -> dict:  # type: ignore[type-arg]
    for line in reversed(stderr.splitlines()):
        if line.startswith('{"event":"summary"'):
            return dict(json.loads(line))
    raise AssertionError(f"no summary in {stderr[-500:]}")


def test_many_small_files_are_copied_verified_over_few_connections(s3, env, proxy, tmp_path):
    src = _small_files(s3)
    r = run_cli(["mirror", src.uri, str(tmp_path / "pvc"), "--progress", "json"],
                {**env, "AWS_ENDPOINT_URL": proxy.endpoint})
    assert r.returncode == 0, r.stderr
    assert same_tree(src.dir, tmp_path / "pvc") == []
    s = _summary(r.stderr)
    assert s["fetched_files"] == 60 and s["retries"] == 0 and sum(s["verified"].values()) == 60
    assert "size" not in s["verified"]  # each file checked against its ETag, not only its length
    assert proxy.counters.gets == 60 and proxy.counters.body_bytes == 60 * 20_000


def test_resets_truncations_and_slowdowns_end_on_the_workers(s3, env, proxy, tmp_path):
    src = _small_files(s3)
    proxy.reset(Faults(match="part-", slowdown_first=2, reset_after=1000, reset_count=2, truncate_after=500,
                       truncate_count=2))
    r = run_cli(["mirror", src.uri, str(tmp_path / "pvc"), "--progress", "json"],
                {**env, "AWS_ENDPOINT_URL": proxy.endpoint})
    assert r.returncode == 0, r.stderr
    assert same_tree(src.dir, tmp_path / "pvc") == []
    assert sorted(proxy.counters.faults_applied) == sorted(
        ["slowdown_first"] * 2 + ["reset_count"] * 2 + ["truncate_count"] * 2)
    s = _summary(r.stderr)
    assert s["retries"] == 6 and s["refetched"] == []  # each broken answer fetched again, none published
    # The broken bodies' bytes are counted as fetched (a reset may discard some before they are read).
    assert 60 * 20_000 < s["bytes_fetched"] <= 60 * 20_000 + 2 * 1000 + 2 * 500
    assert not list((tmp_path / "pvc").glob("*.partial"))


def test_a_flipped_byte_fails_verification_and_is_fetched_again(s3, env, proxy, tmp_path):
    src = _small_files(s3)
    proxy.reset(Faults(match="part-", corrupt_count=1))
    r = run_cli(["mirror", src.uri, str(tmp_path / "pvc"), "--progress", "json"],
                {**env, "AWS_ENDPOINT_URL": proxy.endpoint})
    assert r.returncode == 0, r.stderr
    assert same_tree(src.dir, tmp_path / "pvc") == []
    s = _summary(r.stderr)
    assert len(s["refetched"]) == 1 and "verification failed" in r.stderr


def test_a_stalled_small_file_is_given_up_after_the_read_timeout(s3, env, proxy, tmp_path):
    src = _small_files(s3, count=20)
    proxy.reset(Faults(match="part-00007", stall_after=100, stall_seconds=60, stall_count=1))
    t = time.monotonic()
    r = run_cli(["mirror", src.uri, str(tmp_path / "pvc"), "--read-timeout", "1"],
                {**env, "AWS_ENDPOINT_URL": proxy.endpoint})
    assert r.returncode == 0, r.stderr
    assert time.monotonic() - t < 20
    assert proxy.counters.faults_applied == ["stall_count"]
    assert same_tree(src.dir, tmp_path / "pvc") == []

# What a killed lane may lose: the files landed and waiting for ``lane-publish``'s batch of sixteen, and one
# per connection being received (four per worker: --workers 2). Of each, the proxy relayed at most its size.
_SIZE = 20_000
_RECEIVING = lane.lane_connections(2)
_WAITING = md5_native.LANES - 1


def _stopped(s3, env, proxy, tmp_path: Path, stop: signal.Signals):  # type: ignore[no-untyped-def]
    """Copy 200 small files through a slow proxy, send ``stop`` at 40 % of the bytes, re-run:
    (the killed run's exit code, bytes relayed before, bytes fetched again, total)."""
    src = _small_files(s3, count=200, size=_SIZE)
    dest = tmp_path / "pvc"
    total = 200 * _SIZE
    proxy.reset(Faults(rate=2e5))  # per stream: eight streams take about 2.5 s for the 4 MB
    proc = subprocess.Popen([sys.executable, "-m", "modelpvc", "mirror", src.uri, str(dest), "--workers", "2",
                             "--progress", "json", "--progress-interval", "0.1"],
                            env={**env, "AWS_ENDPOINT_URL": proxy.endpoint, "PYTHONUNBUFFERED": "1"},
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, cwd=CLI_CWD)
    assert proc.stderr is not None
    for line in proc.stderr:
        ev = json.loads(line)
        if ev.get("event") == "progress" and ev["bytes_done"] >= 0.4 * total:
            break
    t = time.monotonic()
    proc.send_signal(stop)
    rc = proc.wait(10)
    assert time.monotonic() - t < 2.0
    before = proxy.counters.body_bytes
    assert before < total
    assert not (dest / ".modelpvc" / "manifest.json").exists()
    for p in dest.iterdir():  # whatever has a final name is complete
        if p.is_file() and not p.name.endswith(".partial"):
            assert p.read_bytes() == (src.dir / p.name).read_bytes()
    proxy.reset()
    r = run_cli(["mirror", src.uri, str(dest), "--workers", "2"], {**env, "AWS_ENDPOINT_URL": proxy.endpoint})
    assert r.returncode == 0, r.stderr
    assert same_tree(src.dir, dest) == []
    assert not list(dest.rglob("*.partial"))
    assert not (dest / ".modelpvc" / "journal.jsonl").exists()
    return rc, before, proxy.counters.body_bytes, total


def test_a_killed_small_file_copy_fetches_again_only_what_was_not_published(s3, env, proxy, tmp_path):
    """SIGKILL: a file renamed but not yet journalled is hashed on disk, not fetched; one landed and not yet
    published, or being received, is fetched again."""
    rc, before, again, total = _stopped(s3, env, proxy, tmp_path, signal.SIGKILL)
    assert rc == -signal.SIGKILL
    assert again <= total - before + (_WAITING + _RECEIVING) * _SIZE, (before, again, total)


def test_a_stopped_small_file_copy_publishes_what_landed_and_exits_143(s3, env, proxy, tmp_path):
    rc, before, again, total = _stopped(s3, env, proxy, tmp_path, signal.SIGTERM)
    assert rc == 143
    assert again <= total - before + _RECEIVING * _SIZE, (before, again, total)  # what landed was published


@pytest.fixture(params=[("nr_inodes=30", "creating"), ("size=512k", "writing")], ids=["out-of-inodes", "out-of-bytes"])
def full_fs(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    """A tmpfs that runs out while the small files are copied: of inodes (a file cannot be created), or of
    space (a write fails); with the step the error names."""
    mnt = tmp_path / "full"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", request.param[0], "tmpfs", str(mnt)], check=True)
    yield mnt, request.param[1]
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_destination_that_runs_out_mid_copy_is_a_destination_error(s3, env, full_fs):
    src = _small_files(s3)
    mnt, step = full_fs
    dest = mnt / "pvc"
    r = run_cli(["mirror", src.uri, str(dest), "--no-space-check"], env)
    assert r.returncode == 4, r.stderr
    # Which write meets the full disk first (a .partial or the journal) is the kernel's timing; the step is not.
    assert "error: no space left on" in r.stderr and f" while {step}" in r.stderr
    assert not (dest / ".modelpvc" / "manifest.json").exists()
    finals = [p for p in dest.iterdir() if p.is_file() and not p.name.endswith(".partial")]
    for p in finals:  # whatever has a final name is complete
        assert p.read_bytes() == (src.dir / p.name).read_bytes()
    assert len(finals) < 60
