"""populate, deploy, update and doctor end to end: real CLI, real client library, a fake API server on
loopback whose Job pods are real `modelpvc` processes moving bytes from the loopback S3 server."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from modelpvc.model.synthetic import same_tree
from tests.kube.conftest import NS

pytestmark = pytest.mark.kube
SECRET = "s3-credentials-kserve"


def test_populate_copies_verifies_and_rerun_is_a_noop(fake, kube, make_model):
    src = make_model()
    fake.add_pvc(NS, "mistral-24b-pvc", "1Gi")
    r = kube("populate", "--pvc", "mistral-24b-pvc", "--source", src.uri, "--secret", SECRET)
    assert r.returncode == 0, r.stdout + r.stderr
    for line in ("✓ namespace private-ai-demo exists",
                 f"✓ secret {SECRET} has keys AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY",
                 f"✓ source {src.uri} holds 9 files", "✓ PVC mistral-24b-pvc is Bound with 1Gi",
                 "✓ PVC mistral-24b-pvc is not in use by another pod", "done: 9 files copied; 9 files verified"):
        assert line in r.stdout
    assert same_tree(src.dir, fake.claim_dir(NS, "mistral-24b-pvc")) == []
    pvc = fake.get("persistentvolumeclaims", NS, "mistral-24b-pvc")
    assert pvc["metadata"]["annotations"]["modelpvc.io/source"] == src.uri
    r = kube("populate", "--pvc", "mistral-24b-pvc", "--source", src.uri, "--secret", SECRET)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "done: up to date, nothing copied" in r.stdout


def test_populate_creates_a_pvc_sized_from_the_source(fake, kube, make_model):
    src = make_model()
    fake.add_storage_class("gp3-csi", "WaitForFirstConsumer")
    r = kube("populate", "--pvc", "new-pvc", "--source", src.uri, "--secret", SECRET, "--create-pvc",
             "--storage-class", "gp3-csi")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "✓ PVC new-pvc created (1Gi, ReadWriteOnce)" in r.stdout
    pvc = fake.get("persistentvolumeclaims", NS, "new-pvc")
    assert pvc["spec"]["storageClassName"] == "gp3-csi"
    assert same_tree(src.dir, fake.claim_dir(NS, "new-pvc")) == []


def test_populate_uses_the_key_names_the_secret_really_has(fake, kube, make_model, rclone):
    src = make_model()
    fake.add_secret(NS, "minio-keys", {"accesskey": rclone.access_key, "secretkey": rclone.secret_key})
    fake.add_pvc(NS, "c1")
    r = kube("populate", "--pvc", "c1", "--source", src.uri, "--secret", "minio-keys")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "✓ secret minio-keys has keys accesskey/secretkey" in r.stdout
    job = fake.get("jobs", NS, "c1-populate")
    refs = [e["valueFrom"]["secretKeyRef"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]
            if "valueFrom" in e]
    assert {r["key"] for r in refs if not r.get("optional")} == {"accesskey", "secretkey"}
    assert {r["key"] for r in refs if r.get("optional")} == {"AWS_DEFAULT_REGION"}  # a data connection's, if any


def test_populate_with_unusable_secret_lists_found_and_expected_names(fake, kube, make_model):
    src = make_model()
    fake.add_secret(NS, "bad", {"user": "x", "password": "y"})
    fake.add_pvc(NS, "c1")
    r = kube("populate", "--pvc", "c1", "--source", src.uri, "--secret", "bad")
    assert r.returncode == 2
    assert "✗ secret bad has keys password, user; expected AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or " \
           "accesskey/secretkey" in r.stdout
    assert fake.get("jobs", NS, "c1-populate") is None


def test_populate_missing_source_stops_in_preflight_with_nearest_prefix(fake, kube, make_model):
    src = make_model()
    fake.add_pvc(NS, "c1")
    r = kube("populate", "--pvc", "c1", "--source", src.uri.rstrip("/") + "-typo/", "--secret", SECRET)
    assert r.returncode == 3
    assert "✗ source" in r.stdout and src.uri in r.stdout + r.stderr
    assert fake.get("jobs", NS, "c1-populate") is None


def test_populate_pvc_too_small_stops_in_preflight(fake, kube, make_model):
    src = make_model()
    fake.add_pvc(NS, "tiny", "10Mi")
    r = kube("populate", "--pvc", "tiny", "--source", src.uri, "--secret", SECRET)
    assert r.returncode == 4
    assert "PVC 'tiny' is too small: 10Mi" in r.stderr and "oc patch pvc tiny" in r.stderr


def test_populate_coschedules_with_the_pod_holding_an_rwo_claim(fake, kube, make_model):
    src = make_model()
    fake.add_pvc(NS, "held")
    fake.add_pod(NS, "server-0", "node-b", "held")
    r = kube("populate", "--pvc", "held", "--source", src.uri, "--secret", SECRET)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "is mounted by server-0 on node-b: the Job runs on node-b too" in r.stdout
    job = fake.get("jobs", NS, "held-populate")
    assert job["spec"]["template"]["spec"]["nodeSelector"] == {"kubernetes.io/hostname": "node-b"}
    assert same_tree(src.dir, fake.claim_dir(NS, "held")) == []


def test_deploy_onto_a_populated_claim_becomes_ready(fake, kube, make_model):
    src = make_model()
    fake.add_pvc(NS, "c1")
    assert kube("populate", "--pvc", "c1", "--source", src.uri, "--secret", SECRET).returncode == 0
    r = kube("deploy", "--name", "mistral-24b", "--pvc", "c1", "--runtime", "vllm-cuda-runtime", "--gpus", "2",
             "--arg=--max-model-len=32768")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "holds verified revision" in r.stdout and "mistral-24b is Ready" in r.stdout
    isvc = fake.get("inferenceservices", NS, "mistral-24b")
    assert isvc["spec"]["predictor"]["model"]["storageUri"] == "pvc://c1/"


def test_deploy_refuses_an_unverified_claim_with_the_reason(fake, kube, make_model):
    fake.add_pvc(NS, "empty")
    r = kube("deploy", "--name", "m", "--pvc", "empty", "--runtime", "vllm-cuda-runtime")
    assert r.returncode == 5, r.stdout + r.stderr
    assert "pvc://empty/ does not hold a verified model" in r.stderr
    assert "no manifest" in r.stderr
    assert fake.get("inferenceservices", NS, "m") is None


def test_update_zero_downtime_links_unchanged_files_and_removes_the_old_revision(fake, kube, make_model):
    src = make_model()
    fake.add_pvc(NS, "c1", "1Gi")
    assert kube("populate", "--pvc", "c1", "--source", src.uri, "--secret", SECRET).returncode == 0
    assert kube("deploy", "--name", "m", "--pvc", "c1", "--runtime", "rt").returncode == 0
    (src.dir / "generation_config.json").write_text('{"temperature": 0.3}')
    r = kube("update", "--name", "m")  # source and secret: as populate recorded them on the PVC
    assert r.returncode == 0, r.stdout + r.stderr
    assert "update took the zero-downtime path" in r.stdout
    isvc = fake.get("inferenceservices", NS, "m")
    uri = isvc["spec"]["predictor"]["model"]["storageUri"]
    assert uri.startswith("pvc://c1/revisions/")
    assert "copied 1 files (20 B), 0 unchanged, 8 hard-linked" in r.stdout  # only the changed file moved
    claim = fake.claim_dir(NS, "c1")
    new = claim / uri.removeprefix("pvc://c1/").strip("/")
    assert same_tree(src.dir, new) == []
    # The old revision at the claim's root is gone; only revisions/ remains.
    assert sorted(p.name for p in claim.iterdir()) == ["revisions"]
    assert _ready(fake, "m")


def test_update_falls_back_to_stop_the_world_on_a_readwriteoncepod_claim(fake, kube, make_model):
    src = make_model()
    fake.add_pvc(NS, "solo", "1Gi", mode="ReadWriteOncePod")
    assert kube("populate", "--pvc", "solo", "--source", src.uri, "--secret", SECRET).returncode == 0
    assert kube("deploy", "--name", "m", "--pvc", "solo", "--runtime", "rt").returncode == 0
    (src.dir / "tokenizer_config.json").write_text('{"changed": true}')
    r = kube("update", "--name", "m", "--secret", SECRET)
    assert r.returncode == 2, r.stdout + r.stderr  # downtime only when asked for: nothing changed
    assert "zero-downtime update is impossible: the claim is ReadWriteOncePod" in r.stderr
    assert "--stop-the-world" in r.stderr
    assert fake.get("inferenceservices", NS, "m") is not None
    r = kube("update", "--name", "m", "--secret", SECRET, "--stop-the-world")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "stop-the-world: the claim is ReadWriteOncePod" in r.stdout
    assert "update took the stop-the-world path" in r.stdout
    assert same_tree(src.dir, fake.claim_dir(NS, "solo")) == []
    assert _ready(fake, "m")


def _ready(fake, name: str) -> bool:  # type: ignore[no-untyped-def]
    conds = fake.get("inferenceservices", NS, name)["status"]["conditions"]
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)


def _doctor(kube, *args):  # type: ignore[no-untyped-def]
    r = kube("doctor", "--json", *args)
    return r.returncode, {d["code"]: d for d in json.loads(r.stdout)["diagnoses"]}


def test_doctor_names_multi_attach_with_holder_and_node(fake, kube, make_model):
    fake.add_pvc(NS, "held")
    fake.add_pod(NS, "server-0", "node-b", "held")
    job = {"metadata": {"name": "manual-mirror"}, "spec": {"backoffLimit": 0, "template": {"spec": {
        "nodeName": "node-a", "restartPolicy": "Never", "containers": [{"name": "c", "image": "x", "args": ["--help"]}],
        "volumes": [{"name": "m", "persistentVolumeClaim": {"claimName": "held"}}]}}}, "status": {}}
    fake.put("jobs", NS, job)
    fake.add_pod(NS, "placeholder", "node-b", "other")  # noise
    import time
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not [e for e in fake.list("events", NS) if "Multi-Attach" in e["message"]]:
        time.sleep(0.05)
    rc, found = _doctor(kube, "--pvc", "held")
    assert rc == 1
    assert "server-0 on node node-b" in found["multi-attach"]["evidence"]


def test_doctor_names_permission_denied_under_anyuid_with_the_fsgroup_fix(fake, kube, make_model):
    """The runbook's "Permission denied": the service account was granted anyuid, which assigns no fsGroup, so
    the image's user cannot write a fresh volume (owned by root)."""
    src = make_model()
    fake.grant_scc(NS, "default", "anyuid")
    fake.add_pvc(NS, "locked")
    r = kube("populate", "--pvc", "locked", "--source", src.uri, "--secret", SECRET)
    assert r.returncode == 4, r.stdout + r.stderr
    assert "cannot write" in r.stderr
    rc, found = _doctor(kube)
    assert rc == 1
    d = found["permission-denied"]
    assert "anyuid" in d["evidence"] and "fsGroup: 1001130000" in d["fix"]
    r = kube("populate", "--pvc", "locked", "--source", src.uri, "--secret", SECRET, "--fs-group", "1001130000")
    assert r.returncode == 0, r.stdout + r.stderr
    assert same_tree(src.dir, fake.claim_dir(NS, "locked")) == []


def test_doctor_names_an_incomplete_claim_behind_a_crash_looping_server(fake, kube, make_model):
    src = make_model()
    fake.add_pvc(NS, "c1")
    assert kube("populate", "--pvc", "c1", "--source", src.uri, "--secret", SECRET).returncode == 0
    (fake.claim_dir(NS, "c1") / "model-00002-of-00003.safetensors").unlink()
    r = kube("deploy", "--name", "m", "--pvc", "c1", "--runtime", "rt")  # the PVC's record says verified...
    assert r.returncode == 6, r.stdout + r.stderr  # ...but the server cannot load it: surfaced, not hung
    assert "CrashLoopBackOff" in r.stderr and "model-00002-of-00003.safetensors" in r.stderr
    rc, found = _doctor(kube, "--isvc", "m")
    assert rc == 1 and "incomplete" in found["incomplete-claim"]["title"]


def test_doctor_names_ephemeral_request_secret_key_mismatch_missing_source_and_small_pvc(fake, kube, make_model):
    src = make_model()
    fake.add_pvc(NS, "c1", "10Mi")
    fake.put("inferenceservices", NS, {"metadata": {"name": "old", "generation": 1}, "spec": {"predictor": {"model": {
        "modelFormat": {"name": "vLLM"}, "runtime": "rt", "storageUri": "pvc://c1/",
        "resources": {"requests": {"ephemeral-storage": "80Gi"}}}}}})
    # The runbook's Job: its secret keys do not match the secret's names.
    fake.add_secret(NS, "minio-keys", {"accesskey": "a", "secretkey": "b"})
    fake.pullable.append("quay.io/minio/mc")
    fake.put("jobs", NS, {"metadata": {"name": "mirror-full-model-to-pvc"}, "spec": {"backoffLimit": 0, "template": {
        "spec": {"restartPolicy": "Never", "containers": [{"name": "mirror", "image": "quay.io/minio/mc:latest",
                                                           "env": [
            {"name": "AWS_ACCESS_KEY_ID", "valueFrom": {"secretKeyRef": {"name": "minio-keys",
                                                                         "key": "AWS_ACCESS_KEY_ID"}}}]}],
                 "volumes": []}}}, "status": {}})
    # A populate Job whose source prefix does not exist (the in-cluster check is the Job itself).
    r = kube("populate", "--pvc", "c1", "--source", src.uri.rstrip("/") + "-gone/", "--secret", SECRET,
             "--source-check", "skip", "--name", "gone")
    assert r.returncode == 3, r.stdout + r.stderr
    rc, found = _doctor(kube, "--isvc", "old", "--source-bytes", str(os.path.getsize(src.dir / "tokenizer.json")
                                                                      * 10**4))
    assert rc == 1
    assert "80Gi" in found["ephemeral-request"]["title"]
    assert "--secret-keys accesskey,secretkey" in found["secret-keys"]["fix"]
    assert f"no objects under {src.uri.rstrip('/')}-gone/" in found["source-missing"]["evidence"]
    assert "smaller than the source" in found["pvc-too-small"]["title"]


def test_doctor_on_a_healthy_namespace_says_so(fake, kube):
    r = kube("doctor")
    assert r.returncode == 0 and "nothing wrong found" in r.stdout



def test_populate_probes_the_source_from_inside_the_cluster(fake, kube, make_model):
    src = make_model()
    fake.add_pvc(NS, "c1", "10Mi")
    r = kube("populate", "--pvc", "c1", "--source", src.uri, "--secret", SECRET, "--source-check", "cluster")
    # The probe measured the source in the cluster, so the too-small PVC is caught before any copy.
    assert r.returncode == 4, r.stdout + r.stderr
    assert f"✓ source {src.uri} holds 9 files, 0.03 GB (probed from inside the cluster)" in r.stdout
    assert fake.get("jobs", NS, "c1-populate") is None and fake.get("jobs", NS, "c1-populate-probe") is None


def test_populate_no_wait_creates_the_job_and_returns(fake, kube, make_model):
    src = make_model()
    fake.add_pvc(NS, "c1")
    r = kube("populate", "--pvc", "c1", "--source", src.uri, "--secret", SECRET, "--no-wait")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "oc logs -f job/c1-populate" in r.stdout
    assert fake.get("jobs", NS, "c1-populate") is not None


def test_populate_parallel_splits_files_across_an_indexed_job_on_rwx(fake, kube, make_model):
    from modelpvc.model.synthetic import ModelSpec as Synthetic

    src = make_model(Synthetic(total_bytes=24 * 1024 * 1024, shards=4))
    fake.add_pvc(NS, "shared", "1Gi", mode="ReadWriteMany")
    r = kube("populate", "--pvc", "shared", "--source", src.uri, "--secret", SECRET, "--parallel", "3")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "✓ PVC shared is ReadWriteMany: 3 pods can write it at once" in r.stdout
    assert "3/3 shards done" in r.stdout
    assert "done: up to date, nothing copied" not in r.stdout
    job = fake.get("jobs", NS, "shared-populate-parallel")
    assert job["spec"]["completionMode"] == "Indexed" and job["spec"]["completions"] == 3
    pods = [p for p in fake.list("pods", NS) if p["metadata"]["labels"].get("job-name") == job["metadata"]["name"]]
    assert len(pods) == 3
    # The final run adopted every shard: it fetched nothing and wrote the whole manifest.
    assert "copied 0 files (0 B), 10 unchanged" in r.stdout
    assert same_tree(src.dir, fake.claim_dir(NS, "shared")) == []
    assert (fake.claim_dir(NS, "shared") / ".modelpvc" / "manifest.json").exists()


def test_populate_parallel_refuses_an_rwo_claim(fake, kube, make_model):
    src = make_model()
    fake.add_pvc(NS, "c1")
    r = kube("populate", "--pvc", "c1", "--source", src.uri, "--secret", SECRET, "--parallel", "2")
    assert r.returncode == 2
    assert "--parallel 2 needs a ReadWriteMany claim" in r.stdout


def test_two_updates_in_a_row_keep_exactly_one_revision(fake, kube, make_model):
    src = make_model()
    fake.add_pvc(NS, "c1", "1Gi")
    assert kube("populate", "--pvc", "c1", "--source", src.uri, "--secret", SECRET).returncode == 0
    assert kube("deploy", "--name", "m", "--pvc", "c1", "--runtime", "rt").returncode == 0
    uris = []
    for change in ('{"t": 1}', '{"t": 2}'):
        (src.dir / "generation_config.json").write_text(change)
        r = kube("update", "--name", "m", "--secret", SECRET)
        assert r.returncode == 0, r.stdout + r.stderr
        uris.append(fake.get("inferenceservices", NS, "m")["spec"]["predictor"]["model"]["storageUri"])
    assert uris[0] != uris[1] and all(u.startswith("pvc://c1/revisions/") for u in uris)
    revisions = fake.claim_dir(NS, "c1") / "revisions"
    assert [p.name for p in revisions.iterdir()] == [uris[1].rstrip("/").rsplit("/", 1)[1]]
    assert same_tree(src.dir, revisions / uris[1].rstrip("/").rsplit("/", 1)[1]) == []
    r = kube("update", "--name", "m", "--secret", SECRET)
    assert r.returncode == 0 and "already serves revision" in r.stdout


def test_populate_import_from_a_missing_hub_secret_stops_before_any_job(fake, kube):
    fake.add_pvc(NS, "p", "1Gi")
    r = kube("populate", "--pvc", "p", "--source", "s3://imported/x/", "--secret", SECRET,
             "--import-from", "hf://acme/x", "--hub-secret", "nope")
    assert r.returncode == 2
    assert "--hub-secret 'nope': no Secret with a key HF_TOKEN" in r.stderr
    assert fake.get("jobs", NS, "p-import") is None


def _install_initializer(fake, *extra: str) -> None:  # type: ignore[no-untyped-def]
    """What a cluster admin applies: the ClusterStorageContainer `render --pattern storage-initializer` writes."""
    import yaml

    out = subprocess.run([sys.executable, "-m", "modelpvc", "render", "--pattern", "storage-initializer",
                          "--name", "x", "--namespace", NS, "--source", "s3://models/x/", "--secret", SECRET,
                          "--ephemeral", "1Gi", "--kinds", "csc", *extra], capture_output=True, text=True, check=True)
    csc = yaml.safe_load(out.stdout)
    fake.put("clusterstoragecontainers", "", csc)


def _annotate_for_kserve(fake, rclone) -> None:  # type: ignore[no-untyped-def]
    """KServe reads the endpoint of a service account's S3 secret from its annotations (s3_secret.go)."""
    secret = fake.get("secrets", NS, SECRET)
    secret["metadata"].setdefault("annotations", {}).update({
        "serving.kserve.io/s3-endpoint": f"127.0.0.1:{rclone.port}", "serving.kserve.io/s3-usehttps": "0"})
    fake.put("secrets", NS, secret)


def test_deploy_an_s3_model_through_modelpvc_as_the_storage_initializer(fake, kube, make_model, rclone):
    src = make_model()
    _install_initializer(fake)
    _annotate_for_kserve(fake, rclone)
    r = kube("deploy", "--pattern", "storage-initializer", "--name", "small", "--source", src.uri, "--secret", SECRET,
             "--runtime", "vllm-cuda-runtime", "--gpus", "1")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ClusterStorageContainer modelpvc-s3 handles" in r.stdout and "small is Ready" in r.stdout
    isvc = fake.get("inferenceservices", NS, "small")
    model = isvc["spec"]["predictor"]["model"]
    assert model["storageUri"] == src.uri
    assert model["resources"]["limits"]["ephemeral-storage"] == "1Gi"
    [pod] = [p for p in fake.list("pods", NS) if p["metadata"]["labels"].get("serving.kserve.io/inferenceservice")
             == "small"]
    init = pod["spec"]["initContainers"][0]
    assert init["command"] == ["modelpvc-storage-initializer"] and init["args"] == [src.uri, "/mnt/models"]
    # Real bytes went through the init container into the pod's EmptyDir, verified.
    d = fake.emptydir(NS, pod["metadata"]["name"], "kserve-provision-location")
    assert same_tree(src.dir, d) == []
    m = json.loads((d / ".modelpvc" / "manifest.json").read_text())
    assert {f["verified"] for f in m["files"]} == {"md5"}


def test_an_initializer_that_cannot_fit_the_model_fails_deploy_with_its_own_reason(fake, kube, make_model, rclone):
    src = make_model()
    _install_initializer(fake)
    _annotate_for_kserve(fake, rclone)
    r = kube("deploy", "--pattern", "storage-initializer", "--name", "tiny", "--source", src.uri, "--secret", SECRET,
             "--runtime", "vllm-cuda-runtime", "--gpus", "1", "--ephemeral", "10Mi")
    assert r.returncode == 4, r.stdout + r.stderr  # the initializer's DestinationFull, across the pod boundary
    assert "the storage initializer of pod" in r.stderr and "ephemeral-storage limit" in r.stderr
    assert "modelpvc plan" in r.stderr


def test_deploy_of_an_s3_model_without_our_initializer_says_what_to_apply(fake, kube, make_model):
    src = make_model()
    r = kube("deploy", "--pattern", "storage-initializer", "--name", "n", "--source", src.uri, "--secret", SECRET,
             "--runtime", "vllm-cuda-runtime", "--ephemeral", "1Gi")
    assert r.returncode == 2
    assert "KServe's own initializer would copy it" in r.stderr and "--kinds csc" in r.stderr
    assert fake.get("inferenceservices", NS, "n") is None
