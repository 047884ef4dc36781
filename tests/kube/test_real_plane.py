"""The runbook's flows on the real control plane (etcd, kube-apiserver, kube-controller-manager,
kube-scheduler built from their modules), as a project admin, with the doubles of tests/cluster below it:
pods are real `modelpvc` processes, the volume a tmpfs of the claim's size, OpenShift's SCC a webhook.

Each test has a project of its own; the cluster and its MinIO (``minio.model-storage.svc:9000`` inside)
are shared by the session."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from modelpvc.model.synthetic import ModelSpec, generate_model, same_tree
from tests.cluster.api import ApiError
from tests.kube.conftest import SECRET, Project

pytestmark = pytest.mark.kube
SEED = Path(__file__).resolve().parents[1] / "fixtures" / "seed"
REFERENCE = SEED / "inferenceservice-mistral-24b.yaml"
PVC = "mistral-24b-pvc"


def _model(project: Project, tmp_path: Path, name: str = "full-fp16",
           spec: ModelSpec | None = None) -> tuple[str, Path]:
    d = tmp_path / name
    generate_model(d, spec or ModelSpec(total_bytes=12 * 1024 * 1024, shards=2))
    return project.upload(d, name), d


def _populate(project: Project, uri: str, *extra: str):  # type: ignore[no-untyped-def]
    return project.cli("populate", "--pvc", PVC, "--create-pvc", "--size", "1Gi", "--source", uri,
                       "--secret", SECRET, *extra)


def test_the_project_admin_may_not_read_what_populate_used_to_need(project: Project):
    """The premise, checked against the real RBAC: a project admin reads its namespace, not the cluster;
    doctor, on a namespace with nothing wrong, needs nothing more."""
    r = project.cli("doctor", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    from tests.cluster.api import Api
    from tests.cluster.plane import PROJECT_ADMIN

    c = project.cluster
    user = Api(c.plane.url, PROJECT_ADMIN.token, str(c.plane.ca.cert))
    for kind in ("Node", "PersistentVolume", "StorageClass"):
        with pytest.raises(ApiError) as refused:
            user.list(kind)
        assert refused.value.code == 403
    assert user.list("Pod", project.ns) == []


def test_populate_as_project_admin_binds_in_the_gpu_zone_and_copies_every_byte(project: Project, tmp_path: Path):
    """Seed command: populate --isvc-base, no --zone, as the project admin (no node, PV or class reads).
    Before: exit 6 on `list StorageClass: forbidden`."""
    uri, src = _model(project, tmp_path)
    r = _populate(project, uri, "--isvc-base", str(REFERENCE))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "this user may not read storage classes" in r.stdout
    assert "WaitForFirstConsumer" in r.stdout and "nodes not checked" in r.stdout
    c = project.cluster
    # The Job ran where the server may run (its GPU toleration, GPU nodes preferred): the volume bound in
    # the GPU node's zone, recorded only in the PV's node affinity.
    assert c.volume_zone(project.ns, PVC) == "us-east-2b"
    pv = c.api.get("PersistentVolume", c.api.get("PersistentVolumeClaim", PVC, project.ns)["spec"]["volumeName"])
    assert "topology.kubernetes.io/zone" not in (pv["metadata"].get("labels") or {})
    assert same_tree(src, c.volume_dir(project.ns, PVC)) == []
    manifest = json.loads((c.volume_dir(project.ns, PVC) / ".modelpvc" / "manifest.json").read_text())
    assert manifest["source"] == uri
    # Re-running on the populated claim copies nothing.
    again = _populate(project, uri, "--isvc-base", str(REFERENCE))
    assert again.returncode == 0, again.stdout + again.stderr
    assert "0 files copied" in again.stdout or "up to date" in again.stdout, again.stdout


def test_a_pod_refused_at_admission_fails_the_job_in_seconds_with_the_refusal(project: Project, tmp_path: Path):
    """An fsGroup outside the namespace's restricted-v2 range: the Job's pods are never created, only the Job
    controller's FailedCreate events say why. Before: populate waited out activeDeadlineSeconds."""
    uri, _src = _model(project, tmp_path)
    t = time.monotonic()
    r = _populate(project, uri, "--fs-group", "1000", "--zone", "us-east-2a")
    took = time.monotonic() - t
    assert r.returncode == 6, r.stdout + r.stderr
    assert "refused at admission" in r.stderr and "1000 is not an allowed group" in r.stderr, r.stderr
    assert "--fs-group" in r.stderr  # the hint names the fix
    assert took < 60, took
    assert project.cluster.api.get("Job", f"{PVC}-populate", project.ns) is None  # not left retrying


def test_an_integrity_failure_fails_the_job_at_once_without_retries(project: Project, tmp_path: Path):
    """Exit 5 will not pass on a retry: the Job's podFailurePolicy fails it on the first pod. Before: the
    Job controller ran backoffLimit more pods (3), each copying and failing again."""
    uri, _src = _model(project, tmp_path, "broken")
    m = project.cluster.minio
    assert m is not None
    import boto3

    s3 = boto3.client("s3", endpoint_url=m.endpoint, aws_access_key_id=m.access_key,
                      aws_secret_access_key=m.secret_key, region_name="us-east-1")
    s3.delete_object(Bucket="models", Key=uri.removeprefix("s3://models/") + "model-00002-of-00002.safetensors")
    r = _populate(project, uri, "--zone", "us-east-2a")
    assert r.returncode == 5, r.stdout + r.stderr
    assert "model-00002-of-00002.safetensors" in r.stderr
    pods = project.cluster.api.list("Pod", project.ns, labelSelector=f"job-name={PVC}-populate")
    assert len(pods) == 1, [p["metadata"]["name"] for p in pods]
    job = project.cluster.api.get("Job", f"{PVC}-populate", project.ns)
    assert job is not None
    failed = next(c for c in job["status"]["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "PodFailurePolicy", failed


def _runtime(project: Project) -> None:
    """The seed's ServingRuntime, created by the project admin as OpenShift AI's dashboard does."""
    import yaml

    rt = yaml.safe_load((SEED / "servingruntime-vllm-cuda.yaml").read_text())
    rt["metadata"]["namespace"] = project.ns
    project.cluster.api.create(rt)


def test_the_seed_runbook_populate_then_deploy_serves_from_the_claim_on_the_gpu_node(project: Project, tmp_path: Path):
    """The runbook end to end on the real KServe controller: its pod mutator mounts pvc://claim/ at
    /mnt/models, the scheduler puts the predictor on the GPU node in the volume's zone, and the vLLM
    stand-in loads the weights with the safetensors library before it answers ready."""
    uri, _src = _model(project, tmp_path)
    _runtime(project)
    assert _populate(project, uri, "--isvc-base", str(REFERENCE)).returncode == 0
    # The reference runs as ai-workload-sa. Without it the ReplicaSet controller cannot create the pod, and
    # only the predictor Deployment's ReplicaFailure condition says why: deploy names it at once.
    t = time.monotonic()
    r = project.cli("deploy", "--isvc-base", str(REFERENCE), "--pvc", PVC, "--deployment-mode", "RawDeployment",
                    "--name", "missing-sa")
    assert r.returncode == 6, r.stdout + r.stderr
    assert 'serviceaccount "ai-workload-sa" not found' in r.stderr and "create that service account" in r.stderr
    assert time.monotonic() - t < 60
    project.cluster.api.delete("InferenceService", "missing-sa", project.ns)  # else it takes the 4 GPUs next
    project.cluster.api.create({"apiVersion": "v1", "kind": "ServiceAccount",
                                "metadata": {"name": "ai-workload-sa", "namespace": project.ns}})
    # The seed's cluster ran Knative (OpenShift Serverless); this one cannot: KServe would refuse the
    # reference's Serverless mode without writing a status, and deploy says so before applying it.
    r = project.cli("deploy", "--isvc-base", str(REFERENCE), "--pvc", PVC)
    assert r.returncode == 2 and "no Knative Serving" in r.stderr and "--deployment-mode RawDeployment" in r.stderr
    r = project.cli("deploy", "--isvc-base", str(REFERENCE), "--pvc", PVC, "--deployment-mode", "RawDeployment",
                    timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    api = project.cluster.api
    isvc = api.get("InferenceService", "mistral-24b", project.ns)
    assert isvc is not None and isvc["spec"]["predictor"]["model"]["storageUri"] == f"pvc://{PVC}/"
    ready = next(c for c in isvc["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True", isvc["status"]
    [pod] = [p for p in api.list("Pod", project.ns, labelSelector="serving.kserve.io/inferenceservice=mistral-24b")
             if not p["metadata"].get("deletionTimestamp")]
    assert pod["spec"]["nodeName"] == "gpu-1"
    mount = next(m for m in pod["spec"]["containers"][0]["volumeMounts"] if m["mountPath"] == "/mnt/models")
    assert mount.get("readOnly") is True


def test_populate_on_a_terminal_shows_the_pods_rate_and_eta(project: Project, tmp_path: Path):
    """On a terminal the live line showed `16.78 TB/s ... ETA 0m00s`: the rate was the bytes over a zero
    elapsed time. It is the pod's own rate (what its JSON progress lines say), in a real pseudo-terminal."""
    import os
    import pty
    import re
    import subprocess
    import sys

    uri, _src = _model(project, tmp_path, spec=ModelSpec(total_bytes=48 * 1024 * 1024, shards=2))
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "modelpvc", "populate", "-n", project.ns, "--pvc", PVC,
                             "--create-pvc", "--size", "1Gi", "--source", uri, "--secret", SECRET, "--zone",
                             "us-east-2a"], stdin=subprocess.DEVNULL, stdout=follower, stderr=follower,
                            env=project.env())
    os.close(follower)
    out = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the other side closed
            break
        if not chunk:
            break
        out += chunk
    os.close(leader)
    assert proc.wait(60) == 0, out.decode(errors="replace")[-3000:]
    text = out.decode(errors="replace")
    rates = re.findall(r"([\d.]+) (B|kB|KB|MB|GB|TB)/s  ETA", text)
    assert rates, text[-2000:]
    # This machine's loopback and tmpfs: hundreds of MB/s at most, never terabytes.
    assert all(unit in ("B", "kB", "KB", "MB") or (unit == "GB" and float(v) < 10) for v, unit in rates), rates
    assert "verified 8 by md5" in text or ("verified " in text and "{'" not in text)


def _populated_for_the_reference(project: Project, tmp_path: Path) -> tuple[str, Path]:
    """What the reference InferenceService needs in the project (its runtime, its service account) and a
    claim populated for it; returns the source URI and the model's local copy."""
    uri, src = _model(project, tmp_path)
    _runtime(project)
    project.cluster.api.create({"apiVersion": "v1", "kind": "ServiceAccount",
                                "metadata": {"name": "ai-workload-sa", "namespace": project.ns}})
    assert _populate(project, uri, "--isvc-base", str(REFERENCE)).returncode == 0
    return uri, src


def test_the_runbooks_leftover_inspector_pod_is_named_and_so_is_its_fix(project: Project, tmp_path: Path):
    """The runbook checks four file names from an inspector pod and may leave it running. The real
    attach/detach controller then keeps the ReadWriteOnce volume on the inspector's node and reports
    Multi-Attach for the GPU server; the fix is to delete that pod (nothing recreates it), not a
    stop-the-world update. Before: populate followed it silently, doctor advised --stop-the-world and, as a
    project admin, failed on `list nodes`."""
    uri, _src = _populated_for_the_reference(project, tmp_path)
    api = project.cluster.api
    inspector = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "pvc-inspector", "namespace": project.ns},
                 "spec": {"containers": [{"name": "inspector", "image": "registry.access.redhat.com/ubi9/ubi-minimal",
                                          "command": ["sleep", "infinity"],
                                          "volumeMounts": [{"name": "model", "mountPath": "/mnt/models"}]}],
                          "volumes": [{"name": "model", "persistentVolumeClaim": {"claimName": PVC}}]}}
    api.create(inspector)

    def attached_to_inspector() -> bool:
        pod = api.get("Pod", "pvc-inspector", project.ns) or {}
        node = pod.get("spec", {}).get("nodeName")
        return bool(node) and any(va["spec"]["nodeName"] == node and (va.get("status") or {}).get("attached")
                                  for va in api.list("VolumeAttachment"))

    from tests.cluster.storage import wait_for

    wait_for("the inspector's volume attached", attached_to_inspector, timeout=60)
    again = _populate(project, uri, "--isvc-base", str(REFERENCE))
    assert again.returncode == 0, again.stdout + again.stderr
    assert "pvc-inspector (no controller owns it" in again.stdout and "oc delete pod pvc-inspector" in again.stdout
    r = project.cli("deploy", "--isvc-base", str(REFERENCE), "--pvc", PVC, "--deployment-mode", "RawDeployment",
                    timeout=300)
    assert r.returncode == 6, r.stdout + r.stderr
    assert "Multi-Attach" in r.stderr, r.stderr  # the attach/detach controller's own event
    d = project.cli("doctor", "--isvc", "mistral-24b", "--json")
    found = {x["code"]: x for x in json.loads(d.stdout)["diagnoses"]}
    assert "multi-attach" in found, d.stdout + d.stderr
    assert "oc delete pod pvc-inspector" in found["multi-attach"]["fix"], found["multi-attach"]
    assert "stop-the-world" not in found["multi-attach"]["fix"]


def test_update_as_project_admin_without_room_switches_back_and_keeps_serving(project: Project, tmp_path: Path):
    """update checks room for a second predictor pod by reading nodes and every namespace's pods, which a
    project admin may not: before, exit 6 on `list Node: forbidden` for every update. Now it tries the
    surge; the new pod needs the node's 4 GPUs the old one holds, the real scheduler leaves it Pending, and
    update switches storageUri back so the old revision keeps serving."""
    uri, src = _populated_for_the_reference(project, tmp_path)
    api = project.cluster.api
    r = project.cli("deploy", "--isvc-base", str(REFERENCE), "--pvc", PVC, "--deployment-mode", "RawDeployment",
                    timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    served = api.get("InferenceService", "mistral-24b", project.ns)["spec"]["predictor"]["model"]["storageUri"]
    (src / "generation_config.json").write_text('{"temperature": 0.3}')  # the publisher's new revision
    project.upload(src, "full-fp16")
    r = project.cli("update", "--name", "mistral-24b", "--source", uri, "--secret", SECRET, timeout=600)
    assert r.returncode == 6, r.stdout + r.stderr
    assert "may not read nodes" in r.stdout, r.stdout
    assert "switched storageUri back to" in r.stderr and "Insufficient nvidia.com/gpu" in r.stderr, r.stderr
    isvc = api.get("InferenceService", "mistral-24b", project.ns)
    assert isvc["spec"]["predictor"]["model"]["storageUri"] == served

    from tests.cluster.storage import wait_for

    def old_pod_serves() -> bool:
        pods = [p for p in api.list("Pod", project.ns, labelSelector="serving.kserve.io/inferenceservice=mistral-24b")
                if not p["metadata"].get("deletionTimestamp")]
        return len(pods) == 1 and all(c.get("ready") for c in pods[0]["status"].get("containerStatuses") or [])

    wait_for("the old revision's single pod serving", old_pod_serves, timeout=120)
