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
import yaml

from modelpvc.model.synthetic import SyntheticModel, same_tree
from tests.cluster.api import ApiError
from tests.cluster.storage import wait_for
from tests.kube.conftest import PVC, REFERENCE, SECRET, SEED, Model, Project, kept, ready

pytestmark = pytest.mark.kube



def test_the_project_admin_may_not_read_what_populate_used_to_need(project: Project):
    """The premise, checked against the real RBAC: a project admin reads its namespace, not the cluster;
    doctor, on a namespace with nothing wrong, needs nothing more. A fresh gp3-csi claim is Pending until its
    first consumer: no condition says so on a real claim, only the PV controller's event; not a finding."""
    project.api.create({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                        "metadata": {"name": "fresh", "namespace": project.ns},
                        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
    wait_for("the PV controller's WaitForFirstConsumer event", lambda: any(
        e.get("reason") == "WaitForFirstConsumer" for e in project.api.list("Event", project.ns)), timeout=30)
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
    m = project.model(tmp_path)
    uri, src = m.uri, m.dir
    r = project.populate(uri, "--isvc-base", str(REFERENCE))
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
    again = project.populate(uri, "--isvc-base", str(REFERENCE))
    assert again.returncode == 0, again.stdout + again.stderr
    assert "0 files copied" in again.stdout or "up to date" in again.stdout, again.stdout


def test_a_pod_refused_at_admission_fails_the_job_in_seconds_with_the_refusal(project: Project, tmp_path: Path):
    """An fsGroup outside the namespace's restricted-v2 range: the Job's pods are never created, only the Job
    controller's FailedCreate events say why. Before: populate waited out activeDeadlineSeconds."""
    uri = project.model(tmp_path).uri
    t = time.monotonic()
    r = project.populate(uri, "--fs-group", "1000", "--zone", "us-east-2a")
    took = time.monotonic() - t
    assert r.returncode == 6, r.stdout + r.stderr
    assert "refused at admission" in r.stderr and "1000 is not an allowed group" in r.stderr, r.stderr
    assert "--fs-group" in r.stderr  # the hint names the fix
    assert took < 60, took
    assert project.cluster.api.get("Job", f"{PVC}-populate", project.ns) is None  # not left retrying


def test_an_integrity_failure_fails_the_job_at_once_without_retries(project: Project, tmp_path: Path):
    """Exit 5 will not pass on a retry: the Job's podFailurePolicy fails it on the first pod. Before: the
    Job controller ran backoffLimit more pods (3), each copying and failing again."""
    uri = project.model(tmp_path, "broken").uri
    m = project.cluster.minio
    assert m is not None
    import boto3

    s3 = boto3.client("s3", endpoint_url=m.endpoint, aws_access_key_id=m.access_key,
                      aws_secret_access_key=m.secret_key, region_name="us-east-1")
    s3.delete_object(Bucket="models", Key=uri.removeprefix("s3://models/") + "model-00002-of-00002.safetensors")
    r = project.populate(uri, "--zone", "us-east-2a")
    assert r.returncode == 5, r.stdout + r.stderr
    assert "model-00002-of-00002.safetensors" in r.stderr
    pods = project.cluster.api.list("Pod", project.ns, labelSelector=f"job-name={PVC}-populate")
    assert len(pods) == 1, [p["metadata"]["name"] for p in pods]
    job = project.cluster.api.get("Job", f"{PVC}-populate", project.ns)
    assert job is not None
    failed = next(c for c in job["status"]["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "PodFailurePolicy", failed



def test_the_seed_runbook_populate_then_deploy_serves_from_the_claim_on_the_gpu_node(project: Project, tmp_path: Path):
    """The runbook end to end on the real KServe controller: its pod mutator mounts pvc://claim/ at
    /mnt/models, the scheduler puts the predictor on the GPU node in the volume's zone, and the vLLM
    stand-in loads the weights with the safetensors library before it answers ready. Then the runbook's
    re-mirror while the server holds the claim: the Job follows it to its tainted node."""
    m = project.model(tmp_path)
    rt = yaml.safe_load((SEED / "servingruntime-vllm-cuda.yaml").read_text())
    project.api.create(rt | {"metadata": {**rt["metadata"], "namespace": project.ns}})
    assert project.populate(m.uri, "--isvc-base", str(REFERENCE)).returncode == 0
    assert project.volume_zone() == "us-east-2b"  # the GPU node's zone
    # The reference runs as ai-workload-sa. Without it the ReplicaSet controller cannot create the pod, and
    # only the predictor Deployment's ReplicaFailure condition says why: deploy names it at once.
    t = time.monotonic()
    r = project.deploy(REFERENCE, "--name", "missing-sa")
    assert r.returncode == 6, r.stdout + r.stderr
    assert 'serviceaccount "ai-workload-sa" not found' in r.stderr and "create that service account" in r.stderr
    assert time.monotonic() - t < 60
    project.api.delete("InferenceService", "missing-sa", project.ns)  # else it takes the 4 GPUs next
    project.api.create({"apiVersion": "v1", "kind": "ServiceAccount",
                        "metadata": {"name": "ai-workload-sa", "namespace": project.ns}})
    # The seed's cluster ran Knative (OpenShift Serverless); this one cannot: KServe would refuse the
    # reference's Serverless mode without writing a status, and deploy says so before applying it.
    r = project.cli("deploy", "--isvc-base", str(REFERENCE), "--pvc", PVC)
    assert r.returncode == 2 and "no Knative Serving" in r.stderr and "--deployment-mode RawDeployment" in r.stderr
    r = project.deploy()
    assert r.returncode == 0, r.stdout + r.stderr
    isvc = project.isvc()
    assert ready(isvc), isvc["status"]
    # Every field of the user's object is kept but the storageUri (and the mode this cluster needs).
    ref = yaml.safe_load(REFERENCE.read_text())
    ref["spec"]["predictor"]["model"]["storageUri"] = f"pvc://{PVC}/"
    assert kept(ref["spec"], isvc["spec"]), isvc["spec"]
    assert ref["metadata"]["labels"].items() <= isvc["metadata"]["labels"].items()
    assert isvc["metadata"]["labels"]["modelpvc.io/claim"] == PVC
    [pod] = project.predictors()
    assert pod["spec"]["nodeName"] == "gpu-1"
    assert pod["metadata"]["annotations"]["openshift.io/scc"] == "restricted-v2"
    mount = next(v for v in pod["spec"]["containers"][0]["volumeMounts"] if v["mountPath"] == "/mnt/models")
    assert mount.get("readOnly") is True
    # A new file at the source; re-populating while the server holds the RWO claim.
    (m.dir / "generation_config.json").write_text('{"temperature": 0.2}')
    m.publish()
    r = project.cli("populate", "--pvc", PVC, "--source", m.uri, "--secret", SECRET)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "the Job runs on gpu-1 too and tolerates its taints" in r.stdout
    job = project.api.get("Job", f"{PVC}-populate", project.ns)
    assert job is not None
    spec = job["spec"]["template"]["spec"]
    assert spec["nodeSelector"] == {"kubernetes.io/hostname": "gpu-1"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
    assert same_tree(m.dir, project.volume_dir()) == []


def test_populate_on_a_terminal_shows_the_pods_rate_and_eta(project: Project, tmp_path: Path):
    """On a terminal the live line showed `16.78 TB/s ... ETA 0m00s`: the rate was the bytes over a zero
    elapsed time. It is the pod's own rate (what its JSON progress lines say), in a real pseudo-terminal."""
    import os
    import pty
    import re
    import subprocess
    import sys

    uri = project.model(tmp_path, spec=SyntheticModel(total_bytes=48 * 1024 * 1024, shards=2)).uri
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



def _populated_for_the_reference(project: Project, tmp_path: Path) -> Model:
    m = project.model(tmp_path)
    project.serving_prerequisites()
    assert project.populate(m.uri, "--isvc-base", str(REFERENCE)).returncode == 0
    return m


def test_the_runbooks_leftover_inspector_pod_is_named_and_so_is_its_fix(project: Project, tmp_path: Path):
    """The runbook checks four file names from an inspector pod and may leave it running. The real
    attach/detach controller then keeps the ReadWriteOnce volume on the inspector's node and reports
    Multi-Attach for the GPU server; the fix is to delete that pod (nothing recreates it), not a
    stop-the-world update. Before: populate followed it silently, doctor advised --stop-the-world and, as a
    project admin, failed on `list nodes`."""
    uri = _populated_for_the_reference(project, tmp_path).uri
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


    wait_for("the inspector's volume attached", attached_to_inspector, timeout=60)
    again = project.populate(uri, "--isvc-base", str(REFERENCE))
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
    m = _populated_for_the_reference(project, tmp_path)
    uri, src = m.uri, m.dir
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


    def old_pod_serves() -> bool:
        pods = [p for p in api.list("Pod", project.ns, labelSelector="serving.kserve.io/inferenceservice=mistral-24b")
                if not p["metadata"].get("deletionTimestamp")]
        return len(pods) == 1 and all(c.get("ready") for c in pods[0]["status"].get("containerStatuses") or [])

    wait_for("the old revision's single pod serving", old_pod_serves, timeout=120)
