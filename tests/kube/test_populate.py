"""populate on the real control plane, as a project admin: its preflight, its Jobs and what they leave on
the volume. The claims are the seed's gp3-like class (ReadWriteOnce, WaitForFirstConsumer) unless a test
says otherwise; the source is the cluster's MinIO, known inside as ``minio.model-storage.svc:9000``."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from modelpvc.model.synthetic import SyntheticModel, same_tree
from tests.cluster.storage import wait_for
from tests.conftest import run_cli
from tests.kube.conftest import PVC, SECRET, SEED, Project

pytestmark = pytest.mark.kube


def _claim(project: Project, name: str, size: str = "1Gi", mode: str = "ReadWriteOnce") -> None:
    """A claim the project admin made beforehand, as the runbook's pvc.yaml does."""
    project.api.create({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                        "metadata": {"name": name, "namespace": project.ns},
                        "spec": {"accessModes": [mode], "resources": {"requests": {"storage": size}}}})


def _jobs(project: Project) -> list[str]:
    return sorted(j["metadata"]["name"] for j in project.api.list("Job", project.ns))


def test_populate_checks_before_it_copies_and_records_the_source_on_the_claim(project: Project, tmp_path: Path):
    m = project.model(tmp_path)
    _claim(project, "c1")
    r = project.cli("populate", "--pvc", "c1", "--source", m.uri, "--secret", SECRET, "--zone", "us-east-2a")
    assert r.returncode == 0, r.stdout + r.stderr
    for line in (f"✓ namespace {project.ns} exists (OpenShift SCC annotations)",
                 f"✓ secret {SECRET} has keys AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY",
                 f"✓ source {m.uri} holds 8 files", "(probed from inside the cluster)",
                 "✓ PVC c1 is Pending: its class binds it when the first pod using it is scheduled",
                 "done: 8 files copied; 8 files verified"):
        assert line in r.stdout, (line, r.stdout)
    assert same_tree(m.dir, project.volume_dir("c1")) == []
    pvc = project.api.get("PersistentVolumeClaim", "c1", project.ns)
    assert pvc is not None and pvc["metadata"]["annotations"]["modelpvc.io/source"] == m.uri
    assert project.volume_zone("c1") == "us-east-2a"


def test_populate_create_pvc_sizes_the_claim_as_render_does(project: Project, tmp_path: Path):
    """--size auto: room for two revisions (update populates the next beside the served one), the same rule
    as render's. Before: populate made 1 x 1.2, render 2 x 1.1 for the same model."""
    m = project.model(tmp_path, spec=SyntheticModel(total_bytes=600 * 1024 * 1024, shards=2))
    r = project.cli("populate", "--pvc", "new-pvc", "--create-pvc", "--source", m.uri, "--secret", SECRET,
                    "--storage-class", "gp3-csi", "--zone", "us-east-2a", timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    pvc = project.api.get("PersistentVolumeClaim", "new-pvc", project.ns)
    assert pvc is not None
    size = pvc["spec"]["resources"]["requests"]["storage"]
    assert f"✓ PVC new-pvc created ({size}, ReadWriteOnce)" in r.stdout
    assert pvc["spec"]["storageClassName"] == "gp3-csi"
    assert same_tree(m.dir, project.volume_dir("new-pvc")) == []
    nbytes = sum(p.stat().st_size for p in m.dir.rglob("*") if p.is_file())
    rendered = run_cli(["render", "--name", "x", "--namespace", project.ns, "--source", m.uri, "--secret", SECRET,
                        "--pvc", "new-pvc", "--runtime", "vllm-cuda-runtime", "--model-bytes", str(nbytes),
                        "--kinds", "pvc"], project.env())
    assert rendered.returncode == 0, rendered.stderr
    assert yaml.safe_load(rendered.stdout)["spec"]["resources"]["requests"]["storage"] == size == "2Gi"


def test_populate_uses_the_key_names_the_secret_really_has(project: Project, tmp_path: Path):
    m = project.model(tmp_path)
    minio = project.cluster.minio
    assert minio is not None
    project.cluster.add_secret(project.ns, "minio-keys", {"accesskey": minio.access_key,
                                                           "secretkey": minio.secret_key,
                                                           "AWS_S3_ENDPOINT": "http://minio.model-storage.svc:9000"})
    r = project.populate(m.uri, "--zone", "us-east-2a", pvc="c1", secret="minio-keys")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "✓ secret minio-keys has keys accesskey/secretkey" in r.stdout
    job = project.api.get("Job", "c1-populate", project.ns)
    assert job is not None
    refs = [e["valueFrom"]["secretKeyRef"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]
            if "valueFrom" in e and "secretKeyRef" in e["valueFrom"]]
    assert {r["key"] for r in refs if not r.get("optional")} >= {"accesskey", "secretkey"}
    assert same_tree(m.dir, project.volume_dir("c1")) == []


def test_populate_with_an_unusable_secret_lists_found_and_expected_names(project: Project, tmp_path: Path):
    m = project.model(tmp_path)
    project.cluster.add_secret(project.ns, "bad", {"user": "x", "password": "y"})
    r = project.populate(m.uri, "--zone", "us-east-2a", pvc="c1", secret="bad")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "✗ secret bad has keys password, user; expected AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or " \
           "accesskey/secretkey" in r.stdout
    assert _jobs(project) == []


def test_populate_of_a_missing_source_stops_in_preflight_with_the_nearest_prefix(project: Project, tmp_path: Path):
    m = project.model(tmp_path)
    _claim(project, "c1")
    r = project.cli("populate", "--pvc", "c1", "--source", m.uri.rstrip("/") + "-typo/", "--secret", SECRET)
    assert r.returncode == 3, r.stdout + r.stderr
    assert "✗ source" in r.stdout and m.uri in r.stdout + r.stderr
    assert _jobs(project) == []  # the probe Job is gone too


def test_a_claim_too_small_stops_in_preflight_from_the_probe_in_the_cluster(project: Project, tmp_path: Path):
    m = project.model(tmp_path)
    _claim(project, "tiny", "10Mi")
    r = project.cli("populate", "--pvc", "tiny", "--source", m.uri, "--secret", SECRET, "--source-check", "cluster")
    assert r.returncode == 4, r.stdout + r.stderr
    assert f"✓ source {m.uri} holds 8 files" in r.stdout and "(probed from inside the cluster)" in r.stdout
    assert "PVC 'tiny' is too small: 10Mi" in r.stderr and "oc patch pvc tiny" in r.stderr
    assert _jobs(project) == []


def test_a_running_populate_job_can_be_left_and_followed_again(project: Project, tmp_path: Path):
    """populate --no-wait, then populate again: it follows the Job it started (before: exit 6 "still
    running"). Ctrl-C stops following, not the Job, and says how to come back."""
    import signal
    import subprocess
    import sys

    # Large enough that the Job still runs when the next command arrives (a few seconds here).
    m = project.model(tmp_path, spec=SyntheticModel(total_bytes=1024 * 1024 * 1024, shards=8))
    r = project.populate(m.uri, "--no-wait", size="3Gi")
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"oc logs -f job/{PVC}-populate" in r.stdout and "re-run populate: it follows the running Job" in r.stdout
    # Without --zone or the server's spec the volume binds wherever the Job lands: a warning, not a tick.
    assert "  ! the volume binds in the zone the Job lands in: pass --zone" in r.stdout
    args = [sys.executable, "-m", "modelpvc", "populate", "-n", project.ns, "--pvc", PVC, "--source", m.uri,
            "--secret", SECRET, "--source-check", "skip"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=project.env())
    assert proc.stdout is not None
    for line in proc.stdout:
        if "is already running (an earlier run started it): following it" in line:
            break
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "the populate Job keeps running in the cluster" in err and f"oc logs -f job/{PVC}-populate" in err
    assert project.api.get("Job", f"{PVC}-populate", project.ns) is not None
    r = project.cli("populate", *args[6:])
    assert r.returncode == 0, r.stdout + r.stderr
    assert same_tree(m.dir, project.volume_dir()) == []
    # Nobody followed the Job from the start: its log is for people (`oc logs -f`), and still ends with the
    # summary record that the populate that came back read.
    [pod] = project.api.list("Pod", project.ns, labelSelector=f"job-name={PVC}-populate")
    log = project.api.log(pod["metadata"]["name"], project.ns).splitlines()
    files = sum(1 for p in m.dir.rglob("*") if p.is_file())
    assert log[0].startswith(f"plan: {m.uri}: {files} files to fetch (1.07 GB)"), log[:3]
    assert any(line.endswith("left") and " % " in line and " of 1.07 GB at " in line for line in log), log
    assert not [line for line in log[:-1] if line.startswith("{")], log
    assert json.loads(log[-1])["event"] == "summary"
    assert f"done: {files} files copied; {files} files verified" in r.stdout


def test_populate_parallel_splits_files_across_an_indexed_job_on_rwx(project: Project, tmp_path: Path):
    m = project.model(tmp_path, spec=SyntheticModel(total_bytes=24 * 1024 * 1024, shards=4))
    _claim(project, "rwx", mode="ReadWriteMany")
    r = project.cli("populate", "--pvc", "rwx", "--source", m.uri, "--secret", SECRET, "--parallel", "3",
                    "--zone", "us-east-2b", timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "✓ PVC rwx is ReadWriteMany: 3 pods can write it at once" in r.stdout
    assert "3/3 shards done" in r.stdout
    job = project.api.get("Job", "rwx-populate-parallel", project.ns)
    assert job is not None and job["spec"]["completionMode"] == "Indexed" and job["spec"]["completions"] == 3
    pods = project.api.list("Pod", project.ns, labelSelector="job-name=rwx-populate-parallel")
    assert len(pods) == 3
    # The final run adopted every shard: it fetched nothing and wrote the whole manifest.
    assert "done: 0 files copied; 10 files verified" in r.stdout, r.stdout
    assert same_tree(m.dir, project.volume_dir("rwx")) == []
    assert (project.volume_dir("rwx") / ".modelpvc" / "manifest.json").exists()


def test_populate_parallel_refuses_an_rwo_claim(project: Project, tmp_path: Path):
    m = project.model(tmp_path)
    _claim(project, "c1")
    r = project.cli("populate", "--pvc", "c1", "--source", m.uri, "--secret", SECRET, "--parallel", "2")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "--parallel 2 needs a ReadWriteMany claim" in r.stdout
    assert _jobs(project) == []


def test_populate_import_from_a_missing_hub_secret_stops_before_any_job(project: Project):
    _claim(project, "p")
    r = project.cli("populate", "--pvc", "p", "--source", "s3://imported/x/", "--secret", SECRET,
                    "--import-from", "hf://acme/x", "--hub-secret", "nope")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "--hub-secret 'nope': no Secret with a key HF_TOKEN" in r.stderr
    assert _jobs(project) == []


def test_a_missing_secret_key_fails_in_seconds_and_doctor_names_it_for_the_runbooks_job(project: Project,
                                                                                        tmp_path: Path):
    m = project.model(tmp_path)
    project.cluster.add_secret(project.ns, "minio-keys", {"accesskey": "a", "secretkey": "b"})
    r = project.populate(m.uri, "--source-check", "skip", "--secret-keys", "AWS_ACCESS_KEY_ID,AWS_SECRET_ACCESS_KEY",
                         secret="minio-keys")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "has no key AWS_ACCESS_KEY_ID" in r.stderr and "accesskey, secretkey" in r.stderr
    # The runbook's own Job, applied as it was: its keys do not match the secret. The kubelet keeps its pod
    # Waiting (CreateContainerConfigError) forever; doctor names the key at once.
    _claim(project, "mistral-24b-pvc-2")
    job = yaml.safe_load((SEED / "job-mirror-full-model.yaml").read_text())
    job["metadata"]["namespace"] = project.ns
    spec = job["spec"]["template"]["spec"]
    for e in spec["containers"][0]["env"]:
        e["valueFrom"]["secretKeyRef"]["name"] = "minio-keys"
    spec["volumes"][0]["persistentVolumeClaim"]["claimName"] = "mistral-24b-pvc-2"
    project.api.create(job)

    def named() -> dict[str, dict[str, str]] | None:
        found = project.doctor()[1]
        return found if "secret-keys" in found else None

    found = wait_for("doctor to name the secret's keys", named, timeout=30, interval=1)
    evidence = found["secret-keys"]["evidence"]
    assert "key AWS_ACCESS_KEY_ID in Secret minio-keys (it has: accesskey, secretkey)" in evidence
    assert found["secret-keys"]["fix"] == "render/populate with --secret-keys accesskey,secretkey"


def test_an_image_the_cluster_cannot_pull_fails_in_seconds_saying_how_to_build_and_pass_ours(project: Project,
                                                                                             tmp_path: Path):
    """Every Job runs our image; a disconnected cluster pulls it from a mirror. Before, nothing said how to
    build it or where to set it. MODELPVC_IMAGE is read by every command that makes a pod."""
    m = project.model(tmp_path)
    mirror = "registry.internal.example/ai/modelpvc:0.1.0"  # not pushed there yet
    t = time.monotonic()
    r = project.populate(m.uri, "--zone", "us-east-2a", env={"MODELPVC_IMAGE": mirror})
    assert r.returncode == 6, r.stdout + r.stderr
    assert time.monotonic() - t < 90
    assert f"cannot pull image {mirror}" in r.stderr
    assert "Containerfile" in r.stderr and "MODELPVC_IMAGE" in r.stderr
    job = project.api.get("Job", f"{PVC}-populate", project.ns)
    images = {c["image"] for c in job["spec"]["template"]["spec"]["containers"]} if job else {mirror}
    assert images == {mirror}


def test_an_anyuid_service_account_gets_the_seeds_fsgroup_fix(project: Project, tmp_path: Path):
    """The runbook's "Permission denied": the service account was granted anyuid, which assigns no fsGroup, so
    the image's user cannot write a fresh volume (owned by root)."""
    m = project.model(tmp_path)
    project.cluster.grant_anyuid(project.ns)
    r = project.populate(m.uri, "--zone", "us-east-2a")
    assert r.returncode == 4, r.stdout + r.stderr
    assert "cannot write" in r.stderr
    rc, found = project.doctor()
    assert rc == 1
    d = found["permission-denied"]
    assert "admitted by SCC anyuid" in d["evidence"]
    assert "fsGroup: 1001130000" in d["fix"]
    r = project.cli("populate", "--pvc", PVC, "--source", m.uri, "--secret", SECRET, "--fs-group", "1001130000")
    assert r.returncode == 0, r.stdout + r.stderr
    assert same_tree(m.dir, project.volume_dir()) == []


def test_a_job_that_cannot_attach_the_rwo_claim_fails_in_seconds_naming_the_holder(project: Project):
    """The library's Job runner against a Job that lands away from the holder (what a hand-written Job
    does): the real attach/detach controller's Multi-Attach event, read as a project admin."""
    from modelpvc.core.errors import PodBlocked
    from modelpvc.core.events import NullSink
    from modelpvc.kube.cluster import Cluster
    from modelpvc.kube.jobs import run_job

    _claim(project, "held")
    project.api.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "server-0", "namespace": project.ns},
                        "spec": {"nodeSelector": {"kubernetes.io/hostname": "worker-2"},
                                 "containers": [{"name": "c", "image": "registry.access.redhat.com/ubi9/ubi-minimal",
                                                 "command": ["sleep", "infinity"],
                                                 "volumeMounts": [{"name": "m", "mountPath": "/m"}]}],
                                 "volumes": [{"name": "m", "persistentVolumeClaim": {"claimName": "held"}}]}})
    wait_for("server-0 running", lambda: (project.api.get("Pod", "server-0", project.ns) or {}).get(
        "status", {}).get("phase") == "Running", timeout=60)
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "stray", "namespace": project.ns}, "spec": {
        "backoffLimit": 0, "template": {"spec": {
            "restartPolicy": "Never", "nodeSelector": {"kubernetes.io/hostname": "gpu-1"},
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
            "containers": [{"name": "c", "image": "ghcr.io/modelpvc/modelpvc:x", "args": ["--version"]}],
            "volumes": [{"name": "m", "persistentVolumeClaim": {"claimName": "held"}}]}}}}
    t = time.monotonic()
    with pytest.raises(PodBlocked) as e:
        run_job(Cluster(str(project.kubeconfig), None, project.ns), job, NullSink(), timeout=120, pending_grace=2)
    assert time.monotonic() - t < 60
    assert "in use by server-0 on worker-2 (Multi-Attach)" in e.value.message
    assert project.api.get("Job", "stray", project.ns) is None  # removed: it would have waited forever


def test_populate_import_from_the_hub_runs_an_import_job_first(project: Project, tmp_path: Path):
    """The whole chain in the cluster: import Job (Hub -> bucket, token from a Secret, no volume), then the
    populate Job, which checks the claim's bytes against the publisher's SHA-256 from source.json."""
    from modelpvc.model.synthetic import generate_model
    from tests.support.fakehub import FakeHub, FakeRepo

    gen = tmp_path / "gen"
    generate_model(gen, SyntheticModel(total_bytes=6_000_000, shards=2))
    files = {p.name: p.read_bytes() for p in gen.iterdir()}
    project.bucket("imported")
    source = f"s3://imported/{project.ns}/acme/gated/"
    hub = FakeHub().start()
    try:
        hub.add(FakeRepo("acme/gated", files, gated=True, tokens={"hf_cluster_token"}))
        project.cluster.add_secret(project.ns, "hf-token", {"HF_TOKEN": "hf_cluster_token"})
        args = ("--import-from", "hf://acme/gated", "--hub-secret", "hf-token", "--hub-endpoint", hub.endpoint,
                "--zone", "us-east-2a")
        r = project.populate(source, *args, pvc="gated-pvc")
        assert r.returncode == 0, r.stdout + r.stderr
        assert "✓ secret hf-token has HF_TOKEN" in r.stdout
        assert f"imported hf://acme/gated into {source}" in r.stdout
        claim = project.volume_dir("gated-pvc")
        assert {p.name: p.read_bytes() for p in claim.iterdir() if p.is_file()} == files
        manifest = json.loads((claim / ".modelpvc" / "manifest.json").read_text())
        assert manifest["provenance"]["origin"]["repo"] == "acme/gated"
        assert {f["verified"] for f in manifest["files"]} == {"source-sha256"}
        job = project.api.get("Job", "gated-pvc-import", project.ns)
        assert job is not None
        pod = job["spec"]["template"]["spec"]
        assert all("persistentVolumeClaim" not in v for v in pod.get("volumes") or [])
        env = {e["name"]: e for e in pod["containers"][0]["env"]}
        assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "hf-token", "key": "HF_TOKEN"}
        assert "hf_cluster_token" not in r.stdout + r.stderr
        # Again: the import is a no-op, the populate too.
        r = project.populate(source, *args, pvc="gated-pvc")
        assert r.returncode == 0, r.stdout + r.stderr
        assert "already there, nothing uploaded" in r.stdout and "done: up to date, nothing copied" in r.stdout
    finally:
        hub.stop()


def test_a_log_stream_cut_mid_copy_is_followed_again_and_the_result_is_read_whole(project: Project,
                                                                                tmp_path: Path):
    """A load balancer or an API server restart cuts the long `pods/log?follow` stream while the Job copies
    (injected by a proxy in front of the real apiserver). Before: the stream's error ended populate, or a
    clean cut lost the pod's final records (its summary). Now it follows again and reads each line once."""
    import json as _json

    from tests.cluster.faultproxy import FaultProxy
    from tests.cluster.plane import PROJECT_ADMIN

    proxy = FaultProxy(project.cluster.plane.url).start()
    try:
        kubeconfig = project.cluster.plane.write_kubeconfig(tmp_path / "via-proxy", PROJECT_ADMIN, project.ns)
        cfg = _json.loads(kubeconfig.read_text())
        cfg["clusters"][0]["cluster"]["server"] = proxy.url
        kubeconfig.write_text(_json.dumps(cfg))
        m = project.model(tmp_path, spec=SyntheticModel(total_bytes=768 * 1024 * 1024, shards=8))

        def cut_when_copying() -> None:
            pod = wait_for("the populate pod running", lambda: next(
                (p for p in project.api.list("Pod", project.ns, labelSelector=f"job-name={PVC}-populate")
                 if (p.get("status") or {}).get("phase") == "Running"), None), timeout=120, interval=0.1)
            time.sleep(0.5)  # the CLI is following its log by now
            assert pod is not None
            proxy.cut()

        import threading

        cutter = threading.Thread(target=cut_when_copying, daemon=True)
        cutter.start()
        r = project.populate(m.uri, "--zone", "us-east-2a", "--source-check", "skip", size="2Gi",
                             env={"KUBECONFIG": str(kubeconfig)})
        cutter.join(5)
        assert proxy.cuts == 1
        assert r.returncode == 0, r.stdout + r.stderr
        assert "done: 14 files copied; 14 files verified" in r.stdout, r.stdout
        assert r.stdout.count("14 files fetched") == 1, r.stdout  # the pod's log read once, not twice
        assert same_tree(m.dir, project.volume_dir()) == []
    finally:
        proxy.stop()
