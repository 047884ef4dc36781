"""populate --import-from in the fake cluster: an import Job (Hub -> bucket) before the populate Job.

Its uploads go to a server of its own (tests/support/own_s3.py), not the session's."""

from __future__ import annotations

import json

import pytest

from tests.kube.conftest import NS
from tests.support.own_s3 import own_rclone, own_s3root, settle  # noqa: F401

pytestmark = pytest.mark.kube
SECRET = "s3-credentials-kserve"


def test_populate_import_from_the_hub_runs_an_import_job_first(fake, kube, rclone, s3root, tmp_path):
    """The whole chain in the cluster: import Job (Hub -> bucket, token from a Secret, no volume), then the
    populate Job, which checks the PVC's bytes against the publisher's SHA-256 from source.json."""
    from modelpvc.model.synthetic import ModelSpec, generate_model
    from tests.support.fakehub import FakeHub, FakeRepo

    gen = tmp_path / "gen"
    generate_model(gen, ModelSpec(total_bytes=6_000_000, shards=2))
    files = {p.name: p.read_bytes() for p in gen.iterdir()}
    hub = FakeHub().start()
    try:
        hub.add(FakeRepo("acme/gated", files, gated=True, tokens={"hf_cluster_token"}))
        fake.add_secret(NS, "hf-token", {"HF_TOKEN": "hf_cluster_token"})
        (s3root / "imported").mkdir(exist_ok=True)
        fake.add_pvc(NS, "gated-pvc", "1Gi")
        r = kube("populate", "--pvc", "gated-pvc", "--source", "s3://imported/acme/gated/", "--secret", SECRET,
                 "--import-from", "hf://acme/gated", "--hub-secret", "hf-token", "--hub-endpoint", hub.endpoint)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "✓ secret hf-token has HF_TOKEN" in r.stdout
        assert "imported hf://acme/gated into s3://imported/acme/gated/" in r.stdout
        claim = fake.claim_dir(NS, "gated-pvc")
        assert {p.name: p.read_bytes() for p in claim.iterdir() if p.is_file()} == files
        m = json.loads((claim / ".modelpvc" / "manifest.json").read_text())
        assert m["provenance"]["origin"]["repo"] == "acme/gated"
        assert {f["verified"] for f in m["files"]} == {"source-sha256"}
        job = fake.get("jobs", NS, "gated-pvc-import")
        pod = job["spec"]["template"]["spec"]
        assert all("persistentVolumeClaim" not in v for v in pod["volumes"])
        env = {e["name"]: e for e in pod["containers"][0]["env"]}
        assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "hf-token", "key": "HF_TOKEN"}
        assert "hf_cluster_token" not in r.stdout + r.stderr
        settle(rclone)  # rclone serve s3 spins after a multipart upload (tests/support/own_s3.py)
        # Again: the import is a no-op, the populate too.
        r = kube("populate", "--pvc", "gated-pvc", "--source", "s3://imported/acme/gated/", "--secret", SECRET,
                 "--import-from", "hf://acme/gated", "--hub-secret", "hf-token", "--hub-endpoint", hub.endpoint)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "already there, nothing uploaded" in r.stdout and "done: up to date, nothing copied" in r.stdout
    finally:
        hub.stop()
