"""Destination faults: no space, not writable, arbitrary non-root UID with an unwritable HOME."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from modelpvc.model.synthetic import SyntheticModel, same_tree
from tests.conftest import run_cli


def as_arbitrary_uid(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run the CLI as uid 1000680000, gid 0, HOME=/ (OpenShift restricted-v2). The process keeps only
    CAP_DAC_READ_SEARCH so it can reach the interpreter under /root; it can write nothing extra."""
    caps = "+dac_read_search"
    return subprocess.run(
        ["setpriv", "--reuid", "1000680000", "--regid", "0", "--clear-groups", f"--inh-caps={caps}",
         f"--ambient-caps={caps}", "env", f"PYTHONPATH={Path(__file__).parents[2] / 'src'}", "HOME=/",
         *[f"{k}={v}" for k, v in env.items() if k.startswith("AWS_")],
         sys.executable, "-m", "modelpvc", *args],
        capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture
def small_fs(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A 16 MiB tmpfs: a real filesystem that runs out of space."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mnt)], check=True)
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_not_enough_space_is_refused_before_the_first_byte(make_model, env, small_fs):
    src = make_model(SyntheticModel(total_bytes=24 * 1024 * 1024, shards=2))
    dest = small_fs / "pvc"
    r = run_cli(["mirror", src.uri, str(dest)], env)
    assert r.returncode == 4, r.stderr
    assert "free but" in r.stderr and "must be fetched; nothing was written" in r.stderr
    assert [p.name for p in dest.iterdir()] == [".modelpvc"]


def test_disk_filling_up_mid_copy_is_a_destination_error(make_model, env, small_fs):
    src = make_model(SyntheticModel(total_bytes=24 * 1024 * 1024, shards=2))
    dest = small_fs / "pvc"
    r = run_cli(["mirror", src.uri, str(dest), "--no-space-check"], env)
    assert r.returncode == 4, r.stderr
    assert "no space left" in r.stderr
    assert not (dest / ".modelpvc" / "manifest.json").exists()
    for p in dest.iterdir():  # whatever has a final name is complete
        if p.is_file() and not p.name.endswith(".partial"):
            assert p.read_bytes() == (src.dir / p.name).read_bytes()


def test_read_only_destination_for_an_arbitrary_uid_is_a_clear_error(make_model, env, tmp_path):
    src = make_model()
    dest = tmp_path / "pvc"
    dest.mkdir()
    os.chmod(dest, 0o755)  # owned by root; uid 1000680000 (an OpenShift-style uid) cannot write
    os.chmod(tmp_path, 0o755)
    r = as_arbitrary_uid(["mirror", src.uri, str(dest)], env)
    assert r.returncode == 4, r.stderr
    assert "cannot write" in r.stderr and "fsGroup" in r.stderr


def test_arbitrary_uid_with_unwritable_home_succeeds_on_a_group_writable_volume(make_model, env, tmp_path):
    """OpenShift restricted-v2: random UID, GID 0, HOME=/ not writable; the volume is group-writable."""
    src = make_model()
    dest = tmp_path / "pvc"
    dest.mkdir()
    os.chmod(dest, 0o775)
    os.chmod(tmp_path, 0o755)
    r = as_arbitrary_uid(["mirror", src.uri, str(dest)], env)
    assert r.returncode == 0, r.stderr
    assert same_tree(src.dir, dest) == []


def test_large_files_are_written_around_the_page_cache_and_land_byte_exact(make_model, env, tmp_path):
    """Direct writes (store/volume/direct_io.py, written behind the download) on a block filesystem by default,
    buffered when asked. Several workers share each file (1 MiB ranges), so ranges ahead of the MD5 cursor
    take the buffered path."""
    from modelpvc.store.volume.direct_io import direct_io_suits

    src = make_model(SyntheticModel(total_bytes=48 * 1024 * 1024, shards=2))
    for extra, dest in (([], tmp_path / "direct"), (["--buffered-io"], tmp_path / "buffered")):
        r = run_cli(["mirror", src.uri, str(dest), "--part-size", "1", "--workers", "6", "--progress", "json",
                     "-v", *extra], env)
        assert r.returncode == 0, r.stderr
        assert same_tree(src.dir, dest) == []
        s = next(x for x in map(json.loads, r.stderr.splitlines()) if x.get("event") == "summary")
        direct = not extra and direct_io_suits(str(tmp_path))
        assert s["direct_io_files"] == (2 if direct else 0)
        assert ("large files written with O_DIRECT" in r.stdout) == direct
        r = run_cli(["verify", str(dest), "--deep"], env)
        assert r.returncode == 0, r.stdout + r.stderr


def test_with_a_file_per_worker_every_byte_is_hashed_as_it_arrives(make_model, env, tmp_path):
    """Written behind, a worker takes its next range while the last one's bytes still go to the disk. It must
    stay on its own file: counted as still busy there, the next free worker would join that file, ranges
    would arrive out of order and be hashed a second time from the file (the summary's bytes_hashed_again)."""
    src = make_model(SyntheticModel(total_bytes=512 * 1024 * 1024, shards=4))
    dest = tmp_path / "pvc"
    r = run_cli(["mirror", src.uri, str(dest), "--part-size", "8", "--workers", "4", "--progress", "json"], env)
    assert r.returncode == 0, r.stderr
    assert same_tree(src.dir, dest) == []
    s = next(x for x in map(json.loads, r.stderr.splitlines()) if x.get("event") == "summary")
    # 0 when each file keeps its worker; a worker free at the tail may still join a lagging file (a part
    # or two). Counted busy until its ranges land, 24-48 MiB were hashed again here.
    assert s["bytes_hashed_again"] <= 16 * 1024 * 1024, s["bytes_hashed_again"]
