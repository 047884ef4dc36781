"""The storage-initializer entrypoint run exactly as KServe runs it: two arguments (URI, mount path), the
environment KServe's credential builder injects, no $HOME, an arbitrary non-root uid, an EmptyDir."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from modelpvc.model.synthetic import same_tree

ARBITRARY_UID = "1000650000"  # an OpenShift restricted-v2 namespace range value
ENTRYPOINT = str(Path(sys.executable).parent / "modelpvc-storage-initializer")


def _kserve_env(s3, **extra: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """What s3_secret.go / utils.go put in the init container for a secret annotated
    serving.kserve.io/s3-endpoint: 127.0.0.1:PORT, s3-usehttps: "0", s3-verifyssl: "0"."""
    env = {"PATH": os.environ["PATH"], "AWS_ACCESS_KEY_ID": s3.access_key,
           "AWS_SECRET_ACCESS_KEY": s3.secret_key, "S3_USE_HTTPS": "0",
           "S3_ENDPOINT": f"127.0.0.1:{s3.port}", "AWS_ENDPOINT_URL": f"http://127.0.0.1:{s3.port}",
           "S3_VERIFY_SSL": "0"}
    env.update(extra)
    return env  # no HOME at all, as in a container whose uid has no passwd entry


def _emptydir(tmp_path: Path) -> Path:
    d = tmp_path / "kserve-provision-location"
    d.mkdir()
    d.chmod(0o777)  # the kubelet creates EmptyDirs world-writable
    return d


def _as_kserve(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    cmd = ["setpriv", "--reuid", ARBITRARY_UID, "--regid", "0", "--clear-groups", "--inh-caps=+dac_read_search",
           "--ambient-caps=+dac_read_search", ENTRYPOINT, *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, check=False)


def test_copies_the_model_as_kserve_runs_it_and_a_restart_is_a_noop(make_model, s3, tmp_path):
    src = make_model()
    mnt = _emptydir(tmp_path)
    env = _kserve_env(s3)
    r = _as_kserve([src.uri.rstrip("/"), str(mnt)], env)
    assert r.returncode == 0, r.stderr
    assert same_tree(src.dir, mnt) == []
    m = json.loads((mnt / ".modelpvc" / "manifest.json").read_text())
    assert all(f["verified"] == s3.verified_as(f["size"]) for f in m["files"])
    assert '"event":"progress"' in r.stderr or '"event":"file_done"' in r.stderr  # lines for the init log
    assert s3.secret_key not in r.stdout + r.stderr
    assert next(mnt.iterdir()).stat().st_uid == int(ARBITRARY_UID)
    again = _as_kserve([src.uri.rstrip("/"), str(mnt)], env)  # the pod restarted, the EmptyDir kept
    assert again.returncode == 0, again.stderr
    assert "up to date" in again.stdout


def test_openshift_ai_storage_config_json_is_understood(make_model, s3, tmp_path):
    """A data connection as odh-model-controller writes it into storage-config, passed by KServe as
    STORAGE_CONFIG (a secretKeyRef), with STORAGE_OVERRIDE_CONFIG overriding a key."""
    src = make_model()
    mnt = _emptydir(tmp_path)
    entry = {"type": "s3", "access_key_id": s3.access_key, "secret_access_key": "wrong",
             "endpoint_url": f"http://127.0.0.1:{s3.port}", "region": "us-south", "bucket": "models",
             "default_bucket": "models"}
    env = {"PATH": os.environ["PATH"], "STORAGE_CONFIG": json.dumps(entry),
           "STORAGE_OVERRIDE_CONFIG": json.dumps({"secret_access_key": s3.secret_key})}
    r = _as_kserve([src.uri, str(mnt)], env)
    assert r.returncode == 0, r.stderr
    assert same_tree(src.dir, mnt) == []


def test_a_uri_naming_one_object_copies_that_file(make_model, s3, tmp_path):
    src = make_model()
    mnt = _emptydir(tmp_path)
    r = _as_kserve([f"{src.uri}config.json", str(mnt)], _kserve_env(s3))
    assert r.returncode == 0, r.stderr
    assert (mnt / "config.json").read_bytes() == (src.dir / "config.json").read_bytes()
    assert [p.name for p in mnt.iterdir() if p.name != ".modelpvc"] == ["config.json"]


def test_pairs_of_uris_and_mount_paths_are_all_filled(make_model, s3, tmp_path):
    a, b = make_model(), make_model()
    mnt = _emptydir(tmp_path)
    r = _as_kserve([a.uri, str(mnt / "a"), b.uri, str(mnt / "b")], _kserve_env(s3))
    assert r.returncode == 0, r.stderr
    assert same_tree(a.dir, mnt / "a") == [] and same_tree(b.dir, mnt / "b") == []


def test_a_model_larger_than_the_ephemeral_limit_fails_before_the_first_byte(make_model, s3, tmp_path):
    src = make_model()
    mnt = _emptydir(tmp_path)
    r = _as_kserve([src.uri, str(mnt)], _kserve_env(s3, MODELPVC_EPHEMERAL_LIMIT=str(10 * 1024 * 1024)))
    assert r.returncode == 4, r.stderr
    assert "ephemeral-storage limit" in r.stderr and "modelpvc plan" in r.stderr and "PVC" in r.stderr
    assert not [p for p in mnt.rglob("*") if p.is_file() and ".modelpvc" not in p.parts]
    record = json.loads(r.stderr.strip().splitlines()[-1])
    assert record["error"] == "DestinationFull" and record["exit_code"] == 4


@pytest.mark.parametrize("args,message", [
    (["s3://models/x"], "takes URI DIR pairs"),
    (["gs://bucket/model", "/mnt/models"], "handles s3:// URIs only"),
])
def test_wrong_arguments_are_usage_errors(args, message, s3, tmp_path):
    r = _as_kserve(args, _kserve_env(s3))
    assert r.returncode == 2 and message in r.stderr


def test_bad_keys_and_a_missing_prefix_are_source_errors_with_their_reason(make_model, s3, tmp_path):
    src = make_model()
    mnt = _emptydir(tmp_path)
    r = _as_kserve([src.uri, str(mnt)], _kserve_env(s3, AWS_SECRET_ACCESS_KEY="not-the-secret"))
    assert r.returncode == 3 and "access denied" in r.stderr and "not-the-secret" not in r.stderr
    r = _as_kserve(["s3://models/nope/", str(mnt)], _kserve_env(s3))
    assert r.returncode == 3 and "no objects under s3://models/nope/" in r.stderr


def test_a_slow_endpoint_is_named_slow_and_its_read_timeout_is_set_by_the_environment(make_model, s3, proxy,
                                                                                         tmp_path):
    """KServe passes no flags: the init container's environment (the ClusterStorageContainer) carries the
    read timeout, and the message says which variable to raise."""
    from tests.support.faultproxy import Faults

    src = make_model()
    proxy.reset(Faults(latency=1.5))
    host = proxy.endpoint.removeprefix("http://")
    via_proxy = {"S3_ENDPOINT": host, "AWS_ENDPOINT_URL": proxy.endpoint}
    mnt = _emptydir(tmp_path)
    r = _as_kserve([src.uri, str(mnt)], _kserve_env(s3, **via_proxy, MODELPVC_READ_TIMEOUT="0.5"))
    assert r.returncode == 3, r.stderr
    assert "sent no answer within 0.5 s" in r.stderr and "MODELPVC_READ_TIMEOUT" in r.stderr
    r = _as_kserve([src.uri, str(mnt)], _kserve_env(s3, **via_proxy, MODELPVC_READ_TIMEOUT="soon"))
    assert r.returncode == 2 and "MODELPVC_READ_TIMEOUT='soon'" in r.stderr
    r = _as_kserve([src.uri, str(mnt)], _kserve_env(s3, **via_proxy, MODELPVC_READ_TIMEOUT="5"))
    assert r.returncode == 0, r.stderr
    assert same_tree(src.dir, mnt) == []
