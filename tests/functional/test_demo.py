"""`modelpvc demo` (what `make demo` runs): the whole local flow, on MinIO when `make tools` built it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def test_demo_runs_the_flow_on_minio_from_any_directory(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    r = subprocess.run([sys.executable, "-m", "modelpvc", "demo", "--workdir", str(tmp_path / "demo"),
                        "--size-mb", "16"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
                       check=False)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "(MinIO)" in r.stdout and "demo complete" in r.stdout
    manifest = json.loads((tmp_path / "demo" / "pvc" / ".modelpvc" / "manifest.json").read_text())
    # Imported by `modelpvc import`, whose provenance record carries each file's SHA-256: the copy on the
    # "PVC" is checked against the publisher's digests, end to end.
    assert {f["verified"] for f in manifest["files"] if f["path"].endswith(".safetensors")} == {"source-sha256"}
    assert "make cluster" in r.stdout
    assert "\r" not in r.stdout + r.stderr  # piped (make demo | tee log): no live-line frames
