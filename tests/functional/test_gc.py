"""gc on a mirrored revision: it says what it removes, asks on a terminal, needs --yes elsewhere."""

from __future__ import annotations

import os
import pty
import subprocess
import sys

from tests.conftest import run_cli


def _revision(make_model, env, tmp_path):  # type: ignore[no-untyped-def]
    src = make_model()
    dest = tmp_path / "pvc" / "v1"
    assert run_cli(["mirror", src.uri, str(dest)], env).returncode == 0
    return src, dest


def test_gc_off_a_terminal_removes_nothing_without_yes_and_dry_run_lists(make_model, env, tmp_path):
    src, dest = _revision(make_model, env, tmp_path)
    before = sorted(p.name for p in dest.iterdir())
    r = run_cli(["gc", str(dest)], env)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "gc would remove 9 files" in r.stderr and "--yes" in r.stderr
    r = run_cli(["gc", str(dest), "--dry-run"], env)
    assert r.returncode == 0 and "would remove 9 files" in r.stdout and "  config.json" in r.stdout
    assert sorted(p.name for p in dest.iterdir()) == before  # nothing removed by either
    r = run_cli(["gc", str(dest), "--yes"], env)
    assert r.returncode == 0, r.stderr
    assert "removed 9 files of revision" in r.stdout and not dest.exists()
    assert (src.dir / "config.json").exists()


def test_gc_on_a_terminal_asks_and_a_no_keeps_the_model(make_model, env, tmp_path):
    _src, dest = _revision(make_model, env, tmp_path)
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "modelpvc", "gc", str(dest)], stdin=follower, stdout=follower,
                            stderr=follower, env=env)
    os.close(follower)
    out = b""
    while b"[y/N]" not in out:
        out += os.read(leader, 4096)
    os.write(leader, b"n\n")
    assert proc.wait(30) == 1
    os.close(leader)
    assert b"remove 9 files" in out
    assert (dest / ".modelpvc" / "manifest.json").exists() and (dest / "config.json").exists()


def test_gc_help_says_what_it_removes_for_a_user(env):
    r = run_cli(["gc", "--help"], env)
    assert r.returncode == 0
    assert r.stdout.split("\n\n")[1].startswith("Remove a model revision")
    assert "--dry-run" in r.stdout and "--yes" in r.stdout and "DIR" in r.stdout
