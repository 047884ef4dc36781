"""The seed runbook's own cluster, as a scenario: OpenShift AI with two 4-GPU g6.12xlarge nodes tainted
``nvidia.com/gpu:NoSchedule`` in two zones, untainted workers, gp3-csi ReadWriteOnce claims with
WaitForFirstConsumer binding, restricted-v2 and anyuid namespaces, the reference ServingRuntime and
InferenceService (tests/fixtures/seed), and Argo CD. Every flow runs the real CLI against the fake API
server (tests/kube/fakeapi.py) whose Job pods are real `modelpvc` processes."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelpvc.devtools.s3server import RcloneS3
from modelpvc.model.synthetic import ModelSpec as Synthetic
from modelpvc.model.synthetic import same_tree
from tests.conftest import run_cli
from tests.kube.fakeapi import FakeCluster

pytestmark = pytest.mark.kube
NS = "private-ai-demo"
ANYUID_NS = "anyuid-demo"
SECRET = "s3-credentials-kserve"
PVC = "mistral-24b-pvc"
SEED = Path(__file__).resolve().parents[1] / "fixtures" / "seed"
REFERENCE = SEED / "inferenceservice-mistral-24b.yaml"
GPU_TAINT = {"key": "nvidia.com/gpu", "effect": "NoSchedule"}
MINIO = "minio.model-storage.svc:9000"  # resolves only inside the cluster


def reference() -> dict[str, Any]:
    return yaml.safe_load(REFERENCE.read_text())


@pytest.fixture
def seed(tmp_path: Path, rclone: RcloneS3) -> Iterator[FakeCluster]:
    c = FakeCluster(tmp_path / "cluster")
    c.add_node("worker-1", zone="us-east-2a")
    c.add_node("worker-2", zone="us-east-2b")
    for name, zone in (("gpu-1", "us-east-2b"), ("gpu-2", "us-east-2c")):
        c.add_node(name, zone=zone, cpu="48", memory="192Gi", gpus=4, taints=[GPU_TAINT],
                   labels={"node.kubernetes.io/instance-type": "g6.12xlarge"})
    c.add_storage_class("gp3-csi", "WaitForFirstConsumer", default=True)
    c.start()
    c.pullable.append("odh-vllm-cuda")
    c.cluster_dns[MINIO] = f"127.0.0.1:{rclone.port}"
    runtime = yaml.safe_load((SEED / "servingruntime-vllm-cuda.yaml").read_text())
    for ns in (NS, ANYUID_NS):
        c.add_openshift_namespace(ns, block=1001130000 if ns == NS else 1000700000)
        # A data connection as OpenShift AI creates it: keys, endpoint and region.
        c.add_secret(ns, SECRET, {"AWS_ACCESS_KEY_ID": rclone.access_key, "AWS_SECRET_ACCESS_KEY": rclone.secret_key,
                                  "AWS_S3_ENDPOINT": f"http://{MINIO}", "AWS_DEFAULT_REGION": "us-east-2",
                                  "AWS_S3_BUCKET": "models"})
        c.put("servingruntimes", ns, runtime)
    c.grant_scc(ANYUID_NS, "default", "anyuid")
    yield c
    c.stop()


@pytest.fixture
def oc(seed: FakeCluster, tmp_path: Path, env: dict[str, str]):  # type: ignore[no-untyped-def]
    """The CLI as the operator runs it from a laptop: no S3 keys, the in-cluster endpoint unreachable."""
    e = {k: v for k, v in env.items() if not k.startswith("AWS_")}
    e["KUBECONFIG"] = str(seed.kubeconfig(tmp_path / "kubeconfig"))

    def run(cmd: str, *args: str, ns: str = NS, timeout: float = 180):  # type: ignore[no-untyped-def]
        extra = ["--pending-timeout", "4"] if cmd in ("populate", "deploy", "update") else []
        return run_cli([cmd, "-n", ns, *extra, *args], e, timeout=timeout)

    return run


@pytest.fixture
def model(make_model):  # type: ignore[no-untyped-def]
    return make_model(Synthetic(total_bytes=12 * 1024 * 1024, shards=2))


def _first_populate(oc, model, *extra: str) -> Any:  # type: ignore[no-untyped-def]
    return oc("populate", "--pvc", PVC, "--create-pvc", "--size", "1Gi", "--storage-class", "gp3-csi",
              "--source", model.uri, "--secret", SECRET, *extra)


def _pv_zone(seed: FakeCluster, ns: str = NS) -> str | None:
    return seed.volume_zone(ns, PVC)


def _predictors(seed: FakeCluster, name: str = "mistral-24b", ns: str = NS) -> list[dict[str, Any]]:
    return [p for p in seed.list("pods", ns) if p["metadata"].get("labels", {}).get(
        "serving.kserve.io/inferenceservice") == name and "deletionTimestamp" not in p["metadata"]]


def _deploy_reference(oc, base: Path = REFERENCE, *extra: str) -> Any:  # type: ignore[no-untyped-def]
    return oc("deploy", "--isvc-base", str(base), "--pvc", PVC, *extra)


# 1 ---------------------------------------------------------------------------------------------------------
def test_first_populate_binds_the_volume_in_the_gpu_nodes_zone_so_the_server_can_mount_it(seed, oc, model):
    r = _first_populate(oc, model, "--isvc-base", str(REFERENCE))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "binds it when the first pod using it is scheduled (WaitForFirstConsumer)" in r.stdout
    assert "the volume will bind in zone(s) us-east-2b, us-east-2c, where the serving nodes are" in r.stdout
    assert "probing from the cluster" in r.stdout  # minio.model-storage.svc does not resolve on a laptop
    assert _pv_zone(seed) in ("us-east-2b", "us-east-2c")
    job = seed.get("jobs", NS, f"{PVC}-populate")
    terms = job["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]
    assert terms["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]["matchExpressions"][0][
        "values"] == ["us-east-2b", "us-east-2c"]
    r = _deploy_reference(oc)
    assert r.returncode == 0, r.stdout + r.stderr
    [pod] = _predictors(seed)
    assert pod["spec"]["nodeName"] in ("gpu-1", "gpu-2")


# 2 ---------------------------------------------------------------------------------------------------------
def test_without_the_serving_zone_the_volume_lands_elsewhere_and_deploy_says_why_in_seconds(seed, oc, model):
    r = _first_populate(oc, model)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "pass --zone (or --isvc-base/--node-selector)" in r.stdout
    assert _pv_zone(seed) == "us-east-2a"  # the first worker: no GPU node in that zone
    t = time.monotonic()
    r = _deploy_reference(oc)
    assert r.returncode == 6, r.stdout + r.stderr
    assert time.monotonic() - t < 60
    assert "cannot be scheduled" in r.stderr and "volume node affinity conflict" in r.stderr
    r = oc("doctor", "--json", "--isvc", "mistral-24b")
    found = {d["code"]: d for d in json.loads(r.stdout)["diagnoses"]}
    assert "its volume is in zone us-east-2a" in found["unschedulable"]["evidence"]


# 3 ---------------------------------------------------------------------------------------------------------
def test_deploy_from_the_reference_keeps_every_field_but_the_storage_uri(seed, oc, model):
    assert _first_populate(oc, model, "--isvc-base", str(REFERENCE), "--path", "v1").returncode == 0
    r = _deploy_reference(oc, REFERENCE, "--path", "v1")
    assert r.returncode == 0, r.stdout + r.stderr
    live = seed.get("inferenceservices", NS, "mistral-24b")
    ref = reference()
    ref["spec"]["predictor"]["model"]["storageUri"] = f"pvc://{PVC}/v1/"
    assert live["spec"] == ref["spec"]
    assert ref["metadata"]["labels"].items() <= live["metadata"]["labels"].items()
    assert live["metadata"]["labels"]["modelpvc.io/claim"] == PVC
    assert live["metadata"]["annotations"] == ref["metadata"]["annotations"]
    [pod] = _predictors(seed)
    assert pod["metadata"]["annotations"]["openshift.io/scc"] == "restricted-v2"


# 4 ---------------------------------------------------------------------------------------------------------
def test_repopulate_while_the_server_holds_the_claim_runs_on_its_node_and_tolerates_its_taint(seed, oc, model):
    assert _first_populate(oc, model, "--isvc-base", str(REFERENCE)).returncode == 0
    assert _deploy_reference(oc).returncode == 0
    node = _predictors(seed)[0]["spec"]["nodeName"]
    (model.dir / "generation_config.json").write_text('{"temperature": 0.2}')
    r = oc("populate", "--pvc", PVC, "--source", model.uri, "--secret", SECRET)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"the Job runs on {node} too and tolerates its taints" in r.stdout
    pod = seed.get("jobs", NS, f"{PVC}-populate")["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"kubernetes.io/hostname": node}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert same_tree(model.dir, seed.claim_dir(NS, PVC)) == []


# 5 ---------------------------------------------------------------------------------------------------------
def test_update_refuses_before_changing_anything_when_the_server_uses_every_gpu_of_its_node(seed, oc, model):
    assert _first_populate(oc, model, "--isvc-base", str(REFERENCE)).returncode == 0
    assert _deploy_reference(oc).returncode == 0
    before = seed.get("inferenceservices", NS, "mistral-24b")
    (model.dir / "generation_config.json").write_text('{"temperature": 0.3}')
    jobs_before = {j["metadata"]["name"] for j in seed.list("jobs", NS)}
    r = oc("update", "--name", "mistral-24b")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "zero-downtime update is impossible" in r.stderr and "nvidia.com/gpu" in r.stderr
    assert "Nothing was changed" in r.stderr and "--stop-the-world" in r.stderr
    after = seed.get("inferenceservices", NS, "mistral-24b")
    assert after["spec"] == before["spec"] and after["metadata"]["generation"] == before["metadata"]["generation"]
    assert {j["metadata"]["name"] for j in seed.list("jobs", NS)} <= jobs_before | {f"{PVC}-populate-probe"}


# 6 ---------------------------------------------------------------------------------------------------------
def test_stop_the_world_update_restores_the_users_object_exactly(seed, oc, model, tmp_path, monkeypatch):
    assert _first_populate(oc, model, "--isvc-base", str(REFERENCE)).returncode == 0
    assert _deploy_reference(oc).returncode == 0
    before = seed.get("inferenceservices", NS, "mistral-24b")
    (model.dir / "generation_config.json").write_text('{"temperature": 0.4}')
    r = oc("update", "--name", "mistral-24b", "--stop-the-world")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "stop-the-world" in r.stdout and "recreated as it was" in r.stdout
    after = seed.get("inferenceservices", NS, "mistral-24b")
    assert after["spec"] == before["spec"]
    assert after["metadata"]["labels"] == before["metadata"]["labels"]
    assert after["metadata"]["annotations"] == before["metadata"]["annotations"]
    assert same_tree(model.dir, seed.claim_dir(NS, PVC)) == []
    assert [p for p in _predictors(seed) if any(c["type"] == "Ready" and c["status"] == "True"
                                                for c in p["status"].get("conditions", []))]


# 7 ---------------------------------------------------------------------------------------------------------
def test_zero_downtime_update_with_room_switches_only_the_storage_uri(seed, oc, model, tmp_path):
    base = reference()
    for k in ("requests", "limits"):
        base["spec"]["predictor"]["model"]["resources"][k]["nvidia.com/gpu"] = "2"  # room for a second pod
    path = tmp_path / "isvc.yaml"
    path.write_text(yaml.safe_dump(base))
    assert _first_populate(oc, model, "--isvc-base", str(path)).returncode == 0
    assert _deploy_reference(oc, path).returncode == 0
    before = seed.get("inferenceservices", NS, "mistral-24b")
    (model.dir / "generation_config.json").write_text('{"temperature": 0.5}')
    r = oc("update", "--name", "mistral-24b")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "update took the zero-downtime path" in r.stdout
    after = seed.get("inferenceservices", NS, "mistral-24b")
    new_uri = after["spec"]["predictor"]["model"]["storageUri"]
    assert new_uri.startswith(f"pvc://{PVC}/revisions/")
    expected = copy.deepcopy(before["spec"])
    expected["predictor"]["model"]["storageUri"] = new_uri
    assert after["spec"] == expected  # every field we do not own kept
    managers = {e["manager"] for e in after["metadata"]["managedFields"]}
    assert "modelpvc-update" in managers
    [pod] = _predictors(seed)
    assert any(m.get("subPath") == new_uri.removeprefix(f"pvc://{PVC}/").strip("/")
               for m in pod["spec"]["containers"][0]["volumeMounts"])
    revisions = seed.claim_dir(NS, PVC) / "revisions"
    assert same_tree(model.dir, next(revisions.iterdir())) == []
    assert sorted(p.name for p in seed.claim_dir(NS, PVC).iterdir()) == ["revisions"]  # old revision removed


# 8 ---------------------------------------------------------------------------------------------------------
def test_update_lists_the_source_from_inside_the_cluster_when_the_endpoint_is_unreachable_from_here(
        seed, oc, model, tmp_path):
    base = reference()
    for k in ("requests", "limits"):
        base["spec"]["predictor"]["model"]["resources"][k]["nvidia.com/gpu"] = "1"
    path = tmp_path / "isvc.yaml"
    path.write_text(yaml.safe_dump(base))
    assert _first_populate(oc, model, "--isvc-base", str(path)).returncode == 0
    assert _deploy_reference(oc, path).returncode == 0
    (model.dir / "tokenizer_config.json").write_text('{"changed": 1}')
    r = oc("update", "--name", "mistral-24b")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "not reachable from here; probing from the cluster" in r.stdout
    assert "(probed from inside the cluster)" in r.stdout


# 9 ---------------------------------------------------------------------------------------------------------
def test_a_job_whose_secret_key_is_missing_fails_in_seconds_naming_the_key(seed, oc, model, tmp_path):
    seed.add_secret(NS, "minio-keys", {"accesskey": "a", "secretkey": "b"})
    r = oc("populate", "--pvc", PVC, "--create-pvc", "--size", "1Gi", "--source", model.uri, "--secret",
           "minio-keys", "--secret-keys", "AWS_ACCESS_KEY_ID,AWS_SECRET_ACCESS_KEY", "--source-check", "skip")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "has no key AWS_ACCESS_KEY_ID" in r.stderr and "accesskey, secretkey" in r.stderr
    # The runbook's own Job, applied as it was: its keys do not match the secret. It stays Pending forever in a
    # real cluster; doctor names the key at once.
    job = yaml.safe_load((SEED / "job-mirror-full-model.yaml").read_text())
    for e in job["spec"]["template"]["spec"]["containers"][0]["env"]:
        e["valueFrom"]["secretKeyRef"]["name"] = "minio-keys"
    seed.pullable.append("quay.io/minio/mc")
    seed.add_pvc(NS, "mistral-24b-pvc-2")
    job["spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"] = "mistral-24b-pvc-2"
    seed.put("jobs", NS, job)
    deadline = time.monotonic() + 20
    found: dict[str, Any] = {}
    while time.monotonic() < deadline and "secret-keys" not in found:
        r = oc("doctor", "--json")
        found = {d["code"]: d for d in json.loads(r.stdout)["diagnoses"]}
    evidence = found["secret-keys"]["evidence"]
    assert "key AWS_ACCESS_KEY_ID in Secret minio-keys (it has: accesskey, secretkey)" in evidence
    assert found["secret-keys"]["fix"] == "render/populate with --secret-keys accesskey,secretkey"


# 10 --------------------------------------------------------------------------------------------------------
def test_anyuid_namespace_gets_the_seeds_fsgroup_fix(seed, oc, model):
    r = oc("populate", "--pvc", PVC, "--create-pvc", "--size", "1Gi", "--source", model.uri, "--secret", SECRET,
           ns=ANYUID_NS)
    assert r.returncode == 4, r.stdout + r.stderr
    assert "cannot write" in r.stderr
    r = oc("doctor", "--json", ns=ANYUID_NS)
    d = {d["code"]: d for d in json.loads(r.stdout)["diagnoses"]}["permission-denied"]
    assert "admitted by SCC anyuid" in d["evidence"]
    assert "fsGroup: 1000700000" in d["fix"]
    r = oc("populate", "--pvc", PVC, "--source", model.uri, "--secret", SECRET, "--fs-group", "1000700000",
           ns=ANYUID_NS)
    assert r.returncode == 0, r.stdout + r.stderr


# 11 --------------------------------------------------------------------------------------------------------
def test_an_argo_managed_inference_service_is_changed_in_git_not_in_the_cluster(seed, oc, model, tmp_path):
    base = reference()
    for k in ("requests", "limits"):
        base["spec"]["predictor"]["model"]["resources"][k]["nvidia.com/gpu"] = "1"
    base["metadata"]["annotations"]["argocd.argoproj.io/tracking-id"] = \
        "stage01-model-serving:serving.kserve.io/InferenceService:private-ai-demo/mistral-24b"
    manifest = tmp_path / "gitops" / "inferenceservice-mistral-24b.yaml"
    manifest.parent.mkdir()
    manifest.write_text(REFERENCE.read_text())
    path = tmp_path / "isvc.yaml"
    path.write_text(yaml.safe_dump(base))
    assert _first_populate(oc, model, "--isvc-base", str(path)).returncode == 0
    assert _deploy_reference(oc, path).returncode == 0
    (model.dir / "generation_config.json").write_text('{"temperature": 0.6}')
    r = oc("update", "--name", "mistral-24b")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "managed by Argo CD (application stage01-model-serving)" in r.stderr
    assert "storageUri: pvc://mistral-24b-pvc/  ->" in r.stderr
    r = oc("update", "--name", "mistral-24b", "--gitops", str(manifest))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "commit and push" in r.stdout
    written = manifest.read_text()
    assert "storageUri: pvc://mistral-24b-pvc/revisions/" in written
    assert "# PVC storage populated via mirror job" in written  # comments and formatting kept
    live = seed.get("inferenceservices", NS, "mistral-24b")
    assert live["spec"]["predictor"]["model"]["storageUri"] == f"pvc://{PVC}/"  # the cluster is Argo's to change


# 12 --------------------------------------------------------------------------------------------------------
def _argo_sync(seed: FakeCluster, objects: list[dict[str, Any]], wave_timeout: float = 30) -> None:
    """Argo CD's sync as its docs describe it: resources by sync wave; hooks are recreated; each wave waits
    until its resources are healthy (a Pending PVC is Progressing, a Job must complete)."""
    plural = {"PersistentVolumeClaim": "persistentvolumeclaims", "Job": "jobs",
              "InferenceService": "inferenceservices"}
    waves: dict[int, list[dict[str, Any]]] = {}
    for obj in objects:
        waves.setdefault(int(obj["metadata"]["annotations"].get("argocd.argoproj.io/sync-wave", "0")), []).append(obj)
    for wave in sorted(waves):
        for obj in waves[wave]:
            seed.put(plural[obj["kind"]], NS, obj)
        deadline = time.monotonic() + wave_timeout
        while True:
            healthy = []
            for obj in waves[wave]:
                cur = seed.get(plural[obj["kind"]], NS, obj["metadata"]["name"]) or {}
                st = cur.get("status") or {}
                conds = {c["type"]: c["status"] for c in st.get("conditions") or []}
                healthy.append(st.get("phase") == "Bound" if obj["kind"] == "PersistentVolumeClaim" else
                               conds.get("Complete") == "True" if obj["kind"] == "Job" else
                               conds.get("Ready") == "True")
            if all(healthy):
                break
            assert time.monotonic() < deadline, f"sync stuck in wave {wave}: {healthy}"
            time.sleep(0.2)


def _render_for_argo(model, env, out: Path, kinds: str) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    """The Argo CD files `render` writes for a gp3-csi (WaitForFirstConsumer) claim in us-east-2b."""
    r = run_cli(["render", "--isvc-base", str(REFERENCE), "--source", model.uri, "--secret", SECRET, "--pvc", PVC,
                 "--size", "1Gi", "--storage-class", "gp3-csi", "--zone", "us-east-2b", "--gitops", "argocd",
                 "--kinds", kinds, "-o", str(out)], {**env, "AWS_ACCESS_KEY_ID": ""})
    assert r.returncode == 0, r.stderr
    return [yaml.safe_load(p.read_text()) for p in sorted(out.iterdir())]


def test_argo_first_sync_completes_on_a_wait_for_first_consumer_class(seed, oc, model, tmp_path, env):
    objects = _render_for_argo(model, env, tmp_path / "gitops", "pvc,job,verify-job,isvc")
    waves = {o["kind"] + o["metadata"]["name"][-6:]: o["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"]
             for o in objects}
    assert len(set(waves.values())) == 3  # PVC and populate Job together, then verify, then the server
    _argo_sync(seed, objects)
    assert _pv_zone(seed) == "us-east-2b"


def test_a_job_applied_before_its_claim_waits_for_it_as_the_scheduler_does(seed, oc, model, tmp_path, env):
    """Argo CD applies a wave's files in its own order, and `render` names them 1-job-... before 1-pvc-...:
    kube-scheduler keeps a pod whose claim does not exist Pending ("persistentvolumeclaim ... not found")
    and schedules it once the claim appears. (The fake once scheduled it without a volume.)"""
    objects = _render_for_argo(model, env, tmp_path / "gitops", "pvc,job")
    [job] = [o for o in objects if o["kind"] == "Job"]
    [pvc] = [o for o in objects if o["kind"] == "PersistentVolumeClaim"]
    seed.put("jobs", NS, job)
    deadline = time.monotonic() + 20
    while True:
        pods = [p for p in seed.list("pods", NS) if p["metadata"]["labels"].get("job-name") == job["metadata"]["name"]]
        conds = [c for p in pods for c in (p["status"].get("conditions") or [])]
        if any(f'persistentvolumeclaim "{PVC}" not found' in c.get("message", "") for c in conds):
            break
        assert time.monotonic() < deadline, pods
        time.sleep(0.1)
    assert not pods[0]["spec"].get("nodeName")
    _argo_sync(seed, [pvc, job])
    assert _pv_zone(seed) == "us-east-2b"


# 13 --------------------------------------------------------------------------------------------------------
def test_argo_hook_job_lands_on_the_servers_node_instead_of_hanging_on_multi_attach(seed, oc, model, env, tmp_path):
    assert _first_populate(oc, model, "--isvc-base", str(REFERENCE)).returncode == 0
    assert _deploy_reference(oc).returncode == 0
    node = _predictors(seed)[0]["spec"]["nodeName"]
    out = tmp_path / "gitops"
    r = run_cli(["render", "--isvc-base", str(REFERENCE), "--source", model.uri, "--secret", SECRET, "--pvc", PVC,
                 "--size", "1Gi", "--gitops", "argocd", "--kinds", "job", "-o", str(out)], env)
    assert r.returncode == 0, r.stderr
    [job] = [yaml.safe_load(p.read_text()) for p in out.iterdir()]
    job["metadata"]["name"] = "hook-populate"
    _argo_sync(seed, [job])
    [pod] = [p for p in seed.list("pods", NS) if p["metadata"]["labels"].get("job-name") == "hook-populate"]
    assert pod["spec"]["nodeName"] == node  # preferred pod affinity to the predictor, its taint tolerated


# 14 --------------------------------------------------------------------------------------------------------
def test_a_job_that_cannot_attach_the_rwo_claim_fails_in_seconds_naming_the_holder(seed, model, tmp_path):
    """The library's Job runner against a Job that lands away from the holder (what a hand-written Job does)."""
    from modelpvc.core.errors import PodBlocked
    from modelpvc.core.events import NullSink
    from modelpvc.kube.cluster import Cluster
    from modelpvc.kube.jobs import run_job

    seed.add_pvc(NS, "held", storage_class="gp3-csi")
    seed.add_pod(NS, "server-0", "gpu-1", "held")
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "stray", "namespace": NS}, "spec": {
        "backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never", "nodeSelector": {
            "kubernetes.io/hostname": "worker-2"}, "containers": [{"name": "c", "image": "ghcr.io/modelpvc/modelpvc:x",
                                                                 "args": ["--version"]}],
            "volumes": [{"name": "m", "persistentVolumeClaim": {"claimName": "held"}}]}}}}
    cfg = seed.kubeconfig(tmp_path / "kc")
    t = time.monotonic()
    with pytest.raises(PodBlocked) as e:
        run_job(Cluster(cfg, None, NS), job, NullSink(), timeout=60, pending_grace=2)
    assert time.monotonic() - t < 15
    assert "in use by server-0 on gpu-1 (Multi-Attach)" in e.value.message
    assert seed.get("jobs", NS, "stray") is None  # removed: it would have waited forever
