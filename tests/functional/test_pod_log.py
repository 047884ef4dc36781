"""What `oc logs -f` shows of a Job nobody follows from a terminal (`--progress log`): lines for people,
then the summary or error record that populate and doctor read, last."""

from __future__ import annotations

import json

from tests.conftest import run_cli


def test_a_copy_logs_lines_for_people_and_ends_with_its_summary_record(make_model, env, tmp_path):
    src = make_model()
    r = run_cli(["mirror", src.uri, str(tmp_path / "pvc"), "--progress", "log"], env)
    assert r.returncode == 0, r.stderr
    err = r.stderr.splitlines()
    files = sorted(src.dir.iterdir())
    total = f"{sum(p.stat().st_size for p in files) / 1e6:.2f} MB"
    assert err[0] == f"plan: {src.uri}: {len(files)} files to fetch ({total}), 0 unchanged, 0 hard-linked, " \
                     "0 not selected"
    assert any(line.startswith(f"100.0 %  {total} of {total} at ") for line in err), err
    assert [json.loads(line)["event"] for line in err if line.startswith("{")] == ["summary"]
    assert err[-1].startswith('{"event":"summary"')
    assert "verified: " in r.stdout  # the summary for people, on stdout as on a terminal
    again = run_cli(["mirror", src.uri, str(tmp_path / "pvc"), "--progress", "log"], env)
    assert f"0 files to fetch (0 B), {len(files)} unchanged" in again.stderr and "up to date" in again.stdout


def test_a_failure_logs_the_message_then_its_error_record(make_model, env, tmp_path):
    src = make_model()
    r = run_cli(["mirror", src.uri.rstrip("/") + "-typo/", str(tmp_path / "pvc"), "--progress", "log"], env)
    assert r.returncode == 3, r.stderr
    err = r.stderr.splitlines()
    assert err[0].startswith("modelpvc: error: ") and "-typo/" in err[0]
    assert json.loads(err[-1])["event"] == "error" and json.loads(err[-1])["exit_code"] == 3
