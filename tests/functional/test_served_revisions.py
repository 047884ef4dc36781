"""The GitOps hooks' commands on a claim that serves: `mirror --revision-root` never rewrites the served
directory, `verify --revision-root` checks the revision written beside it, `gc CLAIM --keep SERVED` collects
the others. The claim is a directory; the server is MinIO and rclone serve s3."""

from __future__ import annotations

import json
import os
from pathlib import Path

from modelpvc.model.synthetic import same_tree
from tests.conftest import run_cli


def _manifest(d: Path) -> dict:  # type: ignore[type-arg]
    return json.loads((d / ".modelpvc" / "manifest.json").read_text())


def _hook(src_uri: str, claim: Path, served: Path, env: dict[str, str]):  # type: ignore[no-untyped-def]
    return run_cli(["mirror", src_uri, str(served), "--revision-root", str(claim), "--progress", "json"], env)


def _tree(d: Path) -> dict[str, tuple[int, int]]:
    """Every file below ``d``: (inode, mtime_ns), to prove nothing was rewritten."""
    return {str(p.relative_to(d)): (p.stat().st_ino, p.stat().st_mtime_ns) for p in d.rglob("*")
            if p.is_file() and "revisions" not in p.relative_to(d).parts and ".modelpvc" not in p.parts}


def test_a_source_change_goes_beside_the_served_revision_and_the_old_one_is_collected(make_model, env, tmp_path):
    src = make_model()
    claim = tmp_path / "claim"
    served = claim  # the seed's storageUri: pvc://claim/
    r = _hook(src.uri, claim, served, env)
    assert r.returncode == 0, r.stderr
    first = _manifest(served)["revision"]
    assert json.loads((claim / "revisions" / "latest.json").read_text()) == {"revision": first, "path": "."}
    again = _hook(src.uri, claim, served, env)  # the next sync, nothing changed: a no-op in place
    assert again.returncode == 0 and "up to date" in again.stdout, again.stdout
    before = _tree(served)
    old_bytes = {p.name: p.read_bytes() for p in src.dir.iterdir()}

    (src.dir / "generation_config.json").write_text('{"temperature": 0.6}')
    src.publish()
    r = _hook(src.uri, claim, served, env)
    assert r.returncode == 0, r.stderr
    summary = [json.loads(x) for x in r.stderr.splitlines() if x.startswith("{")][-1]
    new = summary["revision"]
    assert new != first
    beside = claim / "revisions" / new
    assert summary["dest"] == str(beside)
    assert f"writing revision {new} beside it" in r.stderr
    assert _tree(served) == before  # the served files: same inodes, untouched
    assert {p.name: p.read_bytes() for p in served.iterdir() if p.is_file()} == old_bytes
    assert _manifest(served)["revision"] == first
    assert same_tree(src.dir, beside) == []
    assert _manifest(beside)["revision"] == new
    shard = next(p.name for p in src.dir.iterdir() if p.suffix == ".safetensors")
    assert os.stat(beside / shard).st_ino == os.stat(served / shard).st_ino  # unchanged: hard-linked
    assert summary["linked_files"] == len(old_bytes) - 1 and summary["fetched_files"] == 1

    v = run_cli(["verify", str(served), "--revision-root", str(claim), "--require-manifest"], env)
    assert v.returncode == 0, v.stdout + v.stderr
    assert f"{served}: OK" in v.stdout and f"{beside}: OK" in v.stdout
    assert f"the source's current revision is in {beside}" in v.stdout
    (beside / "config.json").write_text("{")  # the new revision breaks: the verify hook must fail the sync
    assert run_cli(["verify", str(served), "--revision-root", str(claim), "--json"], env).returncode == 5
    (beside / "config.json").write_bytes((src.dir / "config.json").read_bytes())

    # Argo CD served the new revision (Git says revisions/<new>); the PostSync hook collects the root's.
    g = run_cli(["gc", str(claim), "--keep", str(beside), "--yes"], env)
    assert g.returncode == 0, g.stderr
    assert f"removed {len(old_bytes)} files of revision {first}" in g.stdout
    assert sorted(p.name for p in claim.iterdir()) == ["revisions"]
    assert same_tree(src.dir, beside) == []  # hard links: the served copy keeps its bytes
    assert run_cli(["gc", str(claim), "--keep", str(beside), "--yes"], env).stdout.endswith(
        f"no revision to collect beside {beside}\n")


def test_collection_spares_the_served_and_the_latest_revision(make_model, env, tmp_path):
    """Two source changes without a commit: the first new revision is neither served nor latest."""
    src = make_model()
    claim = tmp_path / "claim"
    served = claim / "model"
    assert _hook(src.uri, claim, served, env).returncode == 0
    revisions = []
    for t in ("0.6", "0.7"):
        (src.dir / "generation_config.json").write_text(f'{{"temperature": {t}}}')
        src.publish()
        r = _hook(src.uri, claim, served, env)
        assert r.returncode == 0, r.stderr
        revisions.append([json.loads(x) for x in r.stderr.splitlines() if x.startswith("{")][-1]["revision"])
    listed = run_cli(["gc", str(claim), "--keep", str(served), "--dry-run"], env)
    first_new = claim / "revisions" / revisions[0]
    assert listed.stdout.splitlines() == [f"would remove: revision {revisions[0]} in {first_new}"]
    off_tty = run_cli(["gc", str(claim), "--keep", str(served)], env)
    assert off_tty.returncode == 2 and "pass --yes" in off_tty.stderr
    assert run_cli(["gc", str(claim), "--keep", str(served), "--yes"], env).returncode == 0
    assert sorted(p.name for p in (claim / "revisions").iterdir()) == sorted([revisions[1], "latest.json"])
    assert _manifest(served)["source"] == src.uri
    assert same_tree(src.dir, claim / "revisions" / revisions[1]) == []


def test_revision_root_refuses_flags_that_choose_the_destination_themselves(make_model, env, tmp_path):
    src = make_model()
    r = run_cli(["mirror", src.uri, str(tmp_path / "d"), "--revision-root", str(tmp_path), "--shard", "0/2"], env)
    assert r.returncode == 2 and "--revision-root chooses the destination" in r.stderr
