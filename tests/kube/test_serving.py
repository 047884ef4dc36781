"""deploy, update and doctor on the real control plane and the real KServe controller, as a project admin:
the predictor is a Deployment KServe makes (RawDeployment: this cluster has no Knative), its pod runs the
vLLM stand-in on the claim KServe's pod mutator mounts."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from modelpvc.model.synthetic import same_tree
from tests.cluster.api import Obj
from tests.cluster.local import MINIO_SERVICE
from tests.cluster.storage import wait_for
from tests.conftest import run_cli
from tests.kube.conftest import PVC, REFERENCE, SECRET, Model, Project, ready, with_gpus

pytestmark = pytest.mark.kube


def _claim(project: Project, name: str, size: str = "1Gi", mode: str = "ReadWriteOnce") -> None:
    project.api.create({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                        "metadata": {"name": name, "namespace": project.ns},
                        "spec": {"accessModes": [mode], "resources": {"requests": {"storage": size}}}})


def test_without_the_serving_zone_the_volume_lands_elsewhere_and_deploy_says_why_in_seconds(project: Project,
                                                                                           tmp_path: Path):
    """Populated in the CPU zone, the claim cannot reach the GPU node: deploy names the scheduler's
    conflict in seconds, and doctor says where the volume is although this user may read no PV or node."""
    m = project.model(tmp_path)
    project.serving_prerequisites()
    assert project.populate(m.uri, "--zone", "us-east-2a").returncode == 0
    t = time.monotonic()
    r = project.deploy()
    assert r.returncode == 6, r.stdout + r.stderr
    assert time.monotonic() - t < 90
    assert "cannot be scheduled" in r.stderr and "didn't match PersistentVolume's node affinity" in r.stderr, r.stderr
    rc, found = project.doctor("--isvc", "mistral-24b")
    assert rc == 1
    assert "its volume is in zone us-east-2a" in found["unschedulable"]["evidence"], found
    assert "populate --zone" in found["unschedulable"]["fix"]


def _served_then_changed(project: Project, tmp_path: Path, generation_config: str) -> tuple[Model, Obj]:
    """The reference served from a populated claim, then a new file at the source; and the live object."""
    m = project.model(tmp_path)
    project.serving_prerequisites()
    assert project.populate(m.uri, "--isvc-base", str(REFERENCE)).returncode == 0
    assert project.deploy().returncode == 0
    before = project.isvc()
    (m.dir / "generation_config.json").write_text(generation_config)
    m.publish()
    return m, before


def test_update_refuses_before_changing_anything_when_the_server_uses_every_gpu_of_its_node(project: Project,
                                                                                           tmp_path: Path):
    """Run by a platform engineer who may read nodes and every namespace's pods: the room check counts them
    and refuses before anything changes (a project admin gets the surge and the switch back instead)."""
    _m, before = _served_then_changed(project, tmp_path, '{"temperature": 0.3}')
    jobs_before = {j["metadata"]["name"] for j in project.api.list("Job", project.ns)}
    admin = {"KUBECONFIG": str(project.cluster.kubeconfig(tmp_path / "admin", admin=True, namespace=project.ns))}
    r = project.cli("update", "--name", "mistral-24b", env=admin)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "zero-downtime update is impossible" in r.stderr, r.stderr
    assert "0 nvidia.com/gpu free (the predictor needs 4)" in r.stderr, r.stderr
    assert "ephemeral-storage free (the predictor needs 80Gi)" in r.stderr, r.stderr
    assert "Nothing was changed" in r.stderr and "--stop-the-world" in r.stderr
    after = project.isvc()
    assert after["spec"] == before["spec"] and after["metadata"]["generation"] == before["metadata"]["generation"]
    assert {j["metadata"]["name"] for j in project.api.list("Job", project.ns)} <= jobs_before | {
        f"{PVC}-populate-probe"}


def test_stop_the_world_update_restores_the_users_object_exactly(project: Project, tmp_path: Path):
    m, before = _served_then_changed(project, tmp_path, '{"temperature": 0.4}')
    r = project.cli("update", "--name", "mistral-24b", "--stop-the-world", timeout=420)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "stop-the-world" in r.stdout and "recreated as it was" in r.stdout
    after = project.isvc()
    assert after["spec"] == before["spec"]
    assert after["metadata"]["labels"] == before["metadata"]["labels"]
    assert after["metadata"]["annotations"] == before["metadata"]["annotations"]
    assert same_tree(m.dir, project.volume_dir()) == []
    assert ready(after)


def test_zero_downtime_updates_with_room_switch_only_the_storage_uri_and_keep_one_revision(project: Project,
                                                                                          tmp_path: Path):
    """Two GPUs each: the rolling update's second pod fits beside the first. update lists the source from
    inside the cluster (its endpoint is an in-cluster name), copies only what changed, hard-links the rest,
    and removes the revision it replaced."""
    m = project.model(tmp_path)
    project.serving_prerequisites()
    base = with_gpus(2, tmp_path)
    assert project.populate(m.uri, "--isvc-base", str(base)).returncode == 0
    assert project.deploy(base).returncode == 0
    uris = []
    for change in ('{"temperature": 0.5}', '{"temperature": 0.6}'):
        before = project.isvc()
        (m.dir / "generation_config.json").write_text(change)
        m.publish()
        r = project.cli("update", "--name", "mistral-24b", timeout=420)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "update took the zero-downtime path" in r.stdout
        assert "not reachable from here; probing from the cluster" in r.stdout
        assert "(probed from inside the cluster)" in r.stdout
        assert "copied 1 file (20 B), 0 unchanged, 7 hard-linked" in r.stdout  # only the changed file moved
        after = project.isvc()
        new_uri = after["spec"]["predictor"]["model"]["storageUri"]
        assert new_uri.startswith(f"pvc://{PVC}/revisions/")
        expected = copy.deepcopy(before["spec"])
        expected["predictor"]["model"]["storageUri"] = new_uri
        assert after["spec"] == expected  # every field we do not own kept
        assert "modelpvc-update" in {e["manager"] for e in after["metadata"]["managedFields"]}
        wait_for("one predictor pod", lambda: len(project.predictors()) == 1, timeout=120)
        [pod] = project.predictors()
        sub = new_uri.removeprefix(f"pvc://{PVC}/").strip("/")
        # KServe's mutator mounts the claim at /mnt/models with the URI's path (trailing slash kept) as subPath.
        assert any(v["mountPath"] == "/mnt/models" and (v.get("subPath") or "").strip("/") == sub
                   for v in pod["spec"]["containers"][0]["volumeMounts"]), pod["spec"]["containers"][0]
        uris.append(new_uri)
    claim = project.volume_dir()
    last = uris[1].rstrip("/").rsplit("/", 1)[1]
    assert [p.name for p in (claim / "revisions").iterdir()] == [last]  # the revisions it replaced are gone
    assert sorted(p.name for p in claim.iterdir()) == ["revisions"]
    assert same_tree(m.dir, claim / "revisions" / last) == []
    r = project.cli("update", "--name", "mistral-24b")
    assert r.returncode == 0 and "already serves revision" in r.stdout, r.stdout + r.stderr


def test_an_argo_managed_inference_service_is_changed_in_git_not_in_the_cluster(project: Project, tmp_path: Path):
    m = project.model(tmp_path)
    project.serving_prerequisites()
    base = with_gpus(1, tmp_path, **{"argocd.argoproj.io/tracking-id":
                                     "stage01-model-serving:serving.kserve.io/InferenceService:"
                                     f"{project.ns}/mistral-24b"})
    manifest = tmp_path / "gitops" / "inferenceservice-mistral-24b.yaml"
    manifest.parent.mkdir()
    manifest.write_text(REFERENCE.read_text())
    assert project.populate(m.uri, "--isvc-base", str(base)).returncode == 0
    assert project.deploy(base).returncode == 0
    (m.dir / "generation_config.json").write_text('{"temperature": 0.6}')
    m.publish()
    r = project.cli("update", "--name", "mistral-24b")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "managed by Argo CD (application stage01-model-serving)" in r.stderr
    assert f"storageUri: pvc://{PVC}/  ->" in r.stderr
    r = project.cli("update", "--name", "mistral-24b", "--gitops", str(manifest), timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "commit and push" in r.stdout
    written = manifest.read_text()
    assert f"storageUri: pvc://{PVC}/revisions/" in written
    assert "# PVC storage populated via mirror job" in written  # comments and formatting kept
    assert project.isvc()["spec"]["predictor"]["model"]["storageUri"] == f"pvc://{PVC}/"  # Argo's to change


def test_deploy_from_flags_onto_a_populated_claim_becomes_ready(project: Project, tmp_path: Path):
    m = project.model(tmp_path)
    project.serving_prerequisites()
    assert project.populate(m.uri, "--zone", "us-east-2b", pvc="c1").returncode == 0
    r = project.cli("deploy", "--name", "small", "--pvc", "c1", "--gpus", "2", "--arg=--max-model-len=32768",
                    "--arg=--tensor-parallel-size=2", timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "holds verified revision" in r.stdout and "small is Ready" in r.stdout
    isvc = project.isvc("small")
    assert isvc["spec"]["predictor"]["model"]["storageUri"] == "pvc://c1/"
    # OpenShift AI's runtime name and its accelerator profile's toleration of the GPU nodes' taint.
    assert isvc["spec"]["predictor"]["model"]["runtime"] == "vllm-cuda-runtime"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in isvc["spec"]["predictor"][
        "tolerations"]
    [pod] = project.predictors("small")
    assert pod["spec"]["nodeName"] == "gpu-1"


def test_deploy_refuses_an_unverified_claim_or_a_missing_runtime_with_the_reason(project: Project):
    project.serving_prerequisites()
    _claim(project, "empty")
    # A runtime name from another cluster: named with the namespace's runtimes, before anything is applied.
    r = project.cli("deploy", "--name", "m", "--pvc", "empty", "--runtime", "vllm-runtime")
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"ServingRuntime vllm-runtime is not in namespace {project.ns} (it has: vllm-cuda-runtime)" in r.stderr
    assert "--runtime vllm-cuda-runtime" in r.stderr
    r = project.cli("deploy", "--name", "m", "--pvc", "empty", "--runtime", "vllm-cuda-runtime")
    assert r.returncode == 5, r.stdout + r.stderr
    assert "pvc://empty/ does not hold a verified model" in r.stderr and "no manifest" in r.stderr
    assert project.api.get("InferenceService", "m", project.ns) is None


def test_update_falls_back_to_stop_the_world_on_a_readwriteoncepod_claim(project: Project, tmp_path: Path):
    m = project.model(tmp_path)
    project.serving_prerequisites()
    _claim(project, "solo", mode="ReadWriteOncePod")
    assert project.cli("populate", "--pvc", "solo", "--source", m.uri, "--secret", SECRET, "--zone",
                       "us-east-2b").returncode == 0
    assert project.cli("deploy", "--name", "m", "--pvc", "solo", timeout=300).returncode == 0
    (m.dir / "tokenizer_config.json").write_text('{"changed": true}')
    m.publish()
    r = project.cli("update", "--name", "m", "--secret", SECRET)
    assert r.returncode == 2, r.stdout + r.stderr  # downtime only when asked for: nothing changed
    assert "zero-downtime update is impossible: the claim is ReadWriteOncePod" in r.stderr
    assert "--stop-the-world" in r.stderr
    r = project.cli("update", "--name", "m", "--secret", SECRET, "--stop-the-world", timeout=420)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "stop-the-world: the claim is ReadWriteOncePod" in r.stdout
    assert "update took the stop-the-world path" in r.stdout
    assert same_tree(m.dir, project.volume_dir("solo")) == []
    assert ready(project.isvc("m"))


def test_doctor_names_an_incomplete_claim_behind_a_crash_looping_server(project: Project, tmp_path: Path):
    m = project.model(tmp_path)
    project.serving_prerequisites()
    assert project.populate(m.uri, "--zone", "us-east-2b", pvc="c1").returncode == 0
    (project.volume_dir("c1") / "model-00002-of-00002.safetensors").unlink()
    r = project.cli("deploy", "--name", "m", "--pvc", "c1", timeout=300)
    assert r.returncode == 6, r.stdout + r.stderr  # the claim's record says verified, the server cannot load it
    assert "CrashLoopBackOff" in r.stderr and "model-00002-of-00002.safetensors" in r.stderr
    rc, found = project.doctor("--isvc", "m")
    assert rc == 1 and "incomplete" in found["incomplete-claim"]["title"], found
    assert "model-00002-of-00002.safetensors" in found["incomplete-claim"]["evidence"]
    # A crash loop with another cause is not blamed on the claim: vLLM refusing an argument.
    project.api.delete("InferenceService", "m", project.ns)
    wait_for("m's pods to go", lambda: not project.predictors("m"), timeout=120)
    r = project.cli("deploy", "--name", "m2", "--pvc", "c1", "--arg=--dtype=fp17", "--skip-verify", timeout=300)
    assert r.returncode == 6, r.stdout + r.stderr
    rc, found = project.doctor("--isvc", "m2")
    assert "server-arguments" in found and "incomplete-claim" not in found, found
    assert "invalid choice: 'fp17'" in found["server-arguments"]["evidence"]


def test_doctor_names_an_ephemeral_request_key_mismatch_missing_source_and_small_claim(project: Project,
                                                                                       tmp_path: Path):
    m = project.model(tmp_path)
    project.serving_prerequisites()
    _claim(project, "c1", "10Mi")
    project.api.create({"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
                        "metadata": {"name": "old", "namespace": project.ns},
                        "spec": {"predictor": {"model": {
                            "modelFormat": {"name": "vLLM"}, "runtime": "vllm-cuda-runtime", "storageUri": "pvc://c1/",
                            "resources": {"requests": {"ephemeral-storage": "80Gi"}}}}}})
    # The runbook's Job: its secret keys do not match the secret's names.
    project.cluster.add_secret(project.ns, "minio-keys", {"accesskey": "a", "secretkey": "b"})
    project.api.create({"apiVersion": "batch/v1", "kind": "Job",
                        "metadata": {"name": "mirror-full-model-to-pvc", "namespace": project.ns},
                        "spec": {"backoffLimit": 0, "template": {"spec": {
                            "restartPolicy": "Never", "containers": [{
                                "name": "mirror", "image": "registry.access.redhat.com/ubi9/ubi-minimal",
                                "command": ["true"], "env": [{"name": "AWS_ACCESS_KEY_ID", "valueFrom": {
                                    "secretKeyRef": {"name": "minio-keys", "key": "AWS_ACCESS_KEY_ID"}}}]}]}}}})
    # A populate Job whose source prefix does not exist (the in-cluster check is the Job itself).
    gone = m.uri.rstrip("/") + "-gone/"
    r = project.cli("populate", "--pvc", "c2", "--create-pvc", "--size", "1Gi", "--source", gone, "--secret", SECRET,
                    "--source-check", "skip", "--zone", "us-east-2a")
    assert r.returncode == 3, r.stdout + r.stderr

    # The namespace as a whole: every finding.
    found = wait_for("doctor's findings", lambda: (lambda f: f if {"secret-keys", "source-missing"} <= set(f)
                                                   else None)(project.doctor()[1]), timeout=60, interval=2)
    assert "--secret-keys accesskey,secretkey" in found["secret-keys"]["fix"]
    assert f"no objects under {gone}" in found["source-missing"]["evidence"]
    # About InferenceService old: its claim and its spec, not the namespace's unrelated Jobs. Before, --isvc
    # reported any Job of the namespace.
    rc, found = project.doctor("--isvc", "old", "--source-bytes", str(12 * 1024 * 1024))
    assert rc == 1
    assert "80Gi" in found["ephemeral-request"]["title"]
    assert "smaller than the source" in found["pvc-too-small"]["title"], found
    assert "source-missing" not in found and "secret-keys" not in found, found
    # A runtime that is not there: named with the ones that are.
    project.api.patch("InferenceService", "old", {"spec": {"predictor": {"model": {"runtime": "vllm-runtime"}}}},
                      ns=project.ns)
    rc, found = project.doctor("--isvc", "old")
    assert "vllm-cuda-runtime" in found["runtime-missing"]["evidence"], found
    assert found["runtime-missing"]["fix"] == "deploy with --runtime vllm-cuda-runtime"


# -- KServe's storage initializer, replaced by ours (a ClusterStorageContainer) ------------------------------
@pytest.fixture
def initializer(project: Project) -> Iterator[None]:
    """What a platform admin applies once: the ClusterStorageContainer `render --kinds csc` writes. And what
    KServe's docs ask of the project: the S3 secret's endpoint annotations, the secret on the predictor's
    service account (KServe's credential builder reads them from there, pkg/credentials/s3)."""
    out = run_cli(["render", "--pattern", "storage-initializer", "--name", "x", "--namespace", project.ns,
                   "--source", "s3://models/x/", "--secret", SECRET, "--ephemeral", "1Gi", "--kinds", "csc"],
                  project.env())
    assert out.returncode == 0, out.stderr
    csc = project.api.ensure(yaml.safe_load(out.stdout))
    project.api.patch("Secret", SECRET, {"metadata": {"annotations": {
        "serving.kserve.io/s3-endpoint": f"{MINIO_SERVICE}:9000", "serving.kserve.io/s3-usehttps": "0"}}},
                      ns=project.ns)
    project.api.patch("ServiceAccount", "default", {"secrets": [{"name": SECRET}]}, ns=project.ns)
    yield
    project.api.delete("ClusterStorageContainer", csc["metadata"]["name"])  # cluster-wide: not for the next test


def test_deploy_an_s3_model_through_modelpvc_as_the_storage_initializer(project: Project, tmp_path: Path,
                                                                       initializer: None):
    m = project.model(tmp_path)
    project.serving_prerequisites()
    r = project.cli("deploy", "--pattern", "storage-initializer", "--name", "small", "--source", m.uri,
                    "--secret", SECRET, "--gpus", "1", timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "assuming modelpvc's is installed" in r.stdout and "small is Ready" in r.stdout  # checked on its pod
    model = project.isvc("small")["spec"]["predictor"]["model"]
    assert model["storageUri"] == m.uri
    assert model["resources"]["limits"]["ephemeral-storage"] == "1Gi"
    [pod] = project.predictors("small")
    init = next(c for c in pod["spec"]["initContainers"] if c["name"] == "storage-initializer")
    assert init["command"] == ["modelpvc-storage-initializer"] and init["args"] == [m.uri, "/mnt/models"]
    # Real bytes went through the init container into the pod's EmptyDir, verified.
    d = project.cluster.kubelet.root / "pods" / pod["metadata"]["uid"] / "volumes" / "kserve-provision-location"
    assert same_tree(m.dir, d) == []
    manifest = json.loads((d / ".modelpvc" / "manifest.json").read_text())
    assert {f["verified"] for f in manifest["files"]} == {"md5"}


def test_an_initializer_that_cannot_fit_the_model_fails_deploy_with_its_own_reason(project: Project, tmp_path: Path,
                                                                                   initializer: None):
    m = project.model(tmp_path)
    project.serving_prerequisites()
    r = project.cli("deploy", "--pattern", "storage-initializer", "--name", "tiny", "--source", m.uri,
                    "--secret", SECRET, "--gpus", "1", "--ephemeral", "10Mi", timeout=300)
    assert r.returncode == 4, r.stdout + r.stderr  # the initializer's DestinationFull, across the pod boundary
    assert "the storage initializer of pod" in r.stderr and "ephemeral-storage limit" in r.stderr
    assert "modelpvc plan" in r.stderr


def test_deploy_of_an_s3_model_without_our_initializer_says_what_to_apply(project: Project, tmp_path: Path):
    """A platform engineer (who may list ClusterStorageContainers) is refused before anything is applied. A
    project admin may not list them: the predictor pod shows KServe's own initializer instead of ours, and
    deploy stops there, not after KServe's initializer filled the node's disk."""
    m = project.model(tmp_path)
    project.serving_prerequisites()
    args = ("deploy", "--pattern", "storage-initializer", "--name", "n", "--source", m.uri, "--secret", SECRET,
            "--ephemeral", "1Gi")
    admin = {"KUBECONFIG": str(project.cluster.kubeconfig(tmp_path / "admin", admin=True, namespace=project.ns))}
    r = project.cli(*args, env=admin)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "KServe's own initializer would copy it" in r.stderr and "--kinds csc" in r.stderr
    assert project.api.get("InferenceService", "n", project.ns) is None
    r = project.cli(*args, timeout=300)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "cannot list ClusterStorageContainers" in r.stdout
    assert "kserve/storage-initializer" in r.stderr and "not by modelpvc" in r.stderr and "--kinds csc" in r.stderr
