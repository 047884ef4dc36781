"""The volume populator on the real control plane: the platform admin installs it once (what `render
--populator --install` writes); the project admin declares a ModelSource, a claim naming it and the
InferenceService, and applies nothing else. The populator runs as a process with its service account's token
(a TokenRequest), bound by the rendered RBAC only."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelpvc.model.synthetic import SyntheticModel, same_tree
from tests.cluster.api import Api
from tests.cluster.local import LocalCluster
from tests.cluster.plane import PROJECT_ADMIN
from tests.cluster.populator import PopulatorProcess, install
from tests.cluster.storage import wait_for
from tests.conftest import run_cli
from tests.kube.conftest import PVC, SECRET, Project, with_gpus

pytestmark = pytest.mark.kube


def _render(args: list[str], env: dict[str, str], out: Path) -> list[dict[str, Any]]:
    r = run_cli(["render", *args, "-o", str(out)], env)
    assert r.returncode == 0, r.stderr
    return [yaml.safe_load(p.read_text()) for p in sorted(out.iterdir())]


@pytest.fixture(scope="session")
def installed(plane: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The platform admin's one-time step; a kubeconfig of the populator's service account."""
    return install(plane.api, plane.plane, tmp_path_factory.mktemp("populator"))


@pytest.fixture
def populator(installed: Path, tmp_path: Path) -> Iterator[PopulatorProcess]:
    running = PopulatorProcess(installed, tmp_path / "populator.log").start()
    yield running
    running.stop()


def _declare(project: Project, uri: str, tmp_path: Path, *extra: str) -> list[dict[str, Any]]:
    """The project admin's files: `render --populator`, offline, applied as that user."""
    objs = _render(["--isvc-base", str(with_gpus(1, tmp_path)), "--namespace", project.ns, "--source", uri,
                    "--secret", SECRET, "--pvc", PVC, "--size", "1Gi", "--storage-class", "gp3-csi",
                    "--deployment-mode", "RawDeployment", "--populator", *extra], project.env(), tmp_path / "files")
    user = Api(project.cluster.plane.url, PROJECT_ADMIN.token, str(project.cluster.plane.ca.cert))
    for obj in objs:
        user.apply(obj | {"metadata": {**obj["metadata"], "namespace": project.ns}}, manager="argocd")
    return objs


def _consumer(project: Project, name: str, claim: str) -> None:
    """A plain pod mounting ``claim``: its first consumer, which the scheduler places (the runbook's inspector)."""
    project.api.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": project.ns},
                        "spec": {"containers": [{"name": "c", "image": "registry.access.redhat.com/ubi9/ubi-minimal",
                                                 "command": ["sleep", "3600"],
                                                 "volumeMounts": [{"name": "m", "mountPath": "/mnt/models"}],
                                                 "securityContext": {"allowPrivilegeEscalation": False,
                                                                     "capabilities": {"drop": ["ALL"]},
                                                                     "runAsNonRoot": True,
                                                                     "seccompProfile": {"type": "RuntimeDefault"}}}],
                                 "volumes": [{"name": "m", "persistentVolumeClaim": {"claimName": claim}}]}})


def _events(project: Project, claim: str = PVC) -> list[str]:
    return [f"{e.get('reason')}: {e.get('message')}" for e in project.api.list("Event", project.ns)
            if (e.get("involvedObject") or {}).get("name") == claim]


def _status(project: Project, source: str) -> dict[str, Any]:
    return (project.api.get("ModelSource", source, project.ns) or {}).get("status") or {}


def test_one_apply_a_claim_born_complete_and_the_predictor_ready_on_it(project: Project, populator: PopulatorProcess,
                                                                         tmp_path: Path):
    m = project.model(tmp_path, spec=SyntheticModel(total_bytes=256 * 1024 * 1024, shards=4))
    project.serving_prerequisites()
    t0 = time.monotonic()
    _declare(project, m.uri, tmp_path)
    wait_for("the InferenceService to be Ready", lambda: any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in (project.isvc().get("status") or {}).get("conditions") or []), timeout=240)
    ready_s = time.monotonic() - t0
    pvc = project.api.get("PersistentVolumeClaim", PVC, project.ns)
    assert pvc is not None and pvc["status"]["phase"] == "Bound"
    claim = project.volume_dir()
    assert same_tree(m.dir, claim) == []
    manifest = json.loads((claim / ".modelpvc" / "manifest.json").read_text())
    assert manifest["source"] == m.uri
    [server] = project.predictors()
    assert server["spec"]["nodeName"] == "gpu-1"
    assert project.volume_zone() == "us-east-2b"  # provisioned where the scheduler put the consumer
    events = _events(project)
    assert any(e.startswith("Populated: ") and f"revision {manifest['revision']}" in e for e in events), events
    status = _status(project, "mistral-24b")
    assert status["phase"] == "Succeeded" and status["revision"] == manifest["revision"]
    wait_for("the prime claim and its Job to go", lambda: not [
        p for p in project.api.list("PersistentVolumeClaim", project.ns) if p["metadata"]["name"].startswith("prime-")]
        and not project.api.list("Job", project.ns), timeout=60)
    [populated] = [e for e in events if e.startswith("Populated: ")]
    copy_s = float(populated.split(" copied in ")[1].split("s ")[0])
    # The issue's target (copy time + <= 10 s) is reported, not asserted: timing belongs to measurements.
    print(f"apply -> Ready: {ready_s:.1f}s, of which the copy {copy_s:.1f}s: {ready_s - copy_s:.1f}s around it")


def test_a_missing_source_leaves_the_claim_pending_with_an_event_then_converges(
        project: Project, populator: PopulatorProcess, tmp_path: Path):
    m = project.model(tmp_path)
    missing = m.uri.replace("/full-fp16/", "/not-uploaded-yet/")
    objs = _declare(project, missing, tmp_path, "--kinds", "modelsource,pvc")
    _consumer(project, "consumer", PVC)
    failed = wait_for("a PopulateFailed event naming the prefix", lambda: [
        e for e in _events(project) if e.startswith("PopulateFailed: ") and "not-uploaded-yet" in e], timeout=120)
    assert "retrying in" in failed[0], failed
    assert project.api.get("PersistentVolumeClaim", PVC, project.ns)["status"]["phase"] == "Pending"  # type: ignore[index]
    # Polled: with the tests' 2 s backoff the next attempt may already be Populating when the event is read.
    def failure_in_status() -> bool:
        status = _status(project, objs[0]["metadata"]["name"])
        return status.get("phase") == "Failed" and "not-uploaded-yet" in status.get("message", "")
    wait_for("the ModelSource's status to name the failure", failure_in_status, timeout=60)
    project.upload(m.dir, "not-uploaded-yet")  # the model arrives: the next retry fills the claim
    wait_for("the claim to bind", lambda: (project.api.get("PersistentVolumeClaim", PVC, project.ns) or {}).get(
        "status", {}).get("phase") == "Bound", timeout=180)
    assert same_tree(m.dir, project.volume_dir()) == []


def test_the_populator_killed_mid_copy_resumes_without_fetching_a_complete_file_again(
        project: Project, populator: PopulatorProcess, tmp_path: Path):
    """The populator keeps no state: killed while its Job copies, restarted, it carries on from the API, and
    the Job (which never stopped) completes the claim."""
    m = project.model(tmp_path, spec=SyntheticModel(total_bytes=512 * 1024 * 1024, shards=4))
    project.serving_prerequisites()
    _declare(project, m.uri, tmp_path)
    wait_for("the populate Job", lambda: project.api.list("Job", project.ns), timeout=120)
    populator.kill()
    time.sleep(2)
    populator.start()
    wait_for("the claim to bind", lambda: (project.api.get("PersistentVolumeClaim", PVC, project.ns) or {}).get(
        "status", {}).get("phase") == "Bound", timeout=240)
    assert same_tree(m.dir, project.volume_dir()) == []
    jobs_created = [e for e in _events(project) if e.startswith("Populating: ")]
    assert len(jobs_created) == 1, jobs_created  # one Job, the same copy: nothing started twice


def test_an_update_is_a_new_claim_served_without_downtime_and_a_second_claim_shares_the_source(
        project: Project, populator: PopulatorProcess, tmp_path: Path):
    m = project.model(tmp_path)
    project.serving_prerequisites()
    _declare(project, m.uri, tmp_path)
    wait_for("the first revision to serve", lambda: any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in (project.isvc().get("status") or {}).get("conditions") or []), timeout=240)
    [first] = project.predictors()
    (m.dir / "generation_config.json").write_text('{"temperature": 0.6}')
    v2 = project.upload(m.dir, "v2")

    r = project.cli("update", "--name", "mistral-24b", "--populator", "--revision", "v2", "--source", v2,
                    timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "update took the populator path" in r.stdout and "serving pvc://mistral-24b-v2/" in r.stdout
    assert "oc delete pvc mistral-24b-pvc" in r.stdout  # the old claim stays until the user drops it
    assert project.isvc()["spec"]["predictor"]["model"]["storageUri"] == "pvc://mistral-24b-v2/"
    assert same_tree(m.dir, project.volume_dir("mistral-24b-v2")) == []
    source = project.api.get("ModelSource", "mistral-24b-v2", project.ns)
    assert source is not None and source["spec"]["secretRef"]["name"] == SECRET  # taken from the served claim's
    wait_for("the old predictor pod to go", lambda: first["metadata"]["name"] not in
             {p["metadata"]["name"] for p in project.predictors()}, timeout=60)

    # A second claim from the same ModelSource (another replica's, a canary's): filled on its own.
    project.api.create({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                        "metadata": {"name": "copy", "namespace": project.ns},
                        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "gp3-csi",
                                 "resources": {"requests": {"storage": "1Gi"}},
                                 "dataSourceRef": {"apiGroup": "modelpvc.io", "kind": "ModelSource",
                                                   "name": "mistral-24b-v2"}}})
    _consumer(project, "reader", "copy")
    wait_for("the second claim to bind", lambda: (project.api.get("PersistentVolumeClaim", "copy", project.ns) or {})
             .get("status", {}).get("phase") == "Bound", timeout=180)
    assert same_tree(m.dir, project.volume_dir("copy")) == []


def test_a_claim_too_small_for_the_model_stays_pending_with_an_event_saying_how_much_it_needs(
        project: Project, populator: PopulatorProcess, tmp_path: Path):
    m = project.model(tmp_path)  # 12 MiB of weights
    _declare(project, m.uri, tmp_path, "--kinds", "modelsource,pvc", "--size", "4Mi")  # the last --size wins
    _consumer(project, "consumer", PVC)
    [failed] = wait_for("a PopulateFailed event", lambda: [
        e for e in _events(project) if e.startswith("PopulateFailed: ")], timeout=120)
    assert "free but" in failed and "must be fetched; nothing was written" in failed, failed
    assert project.api.get("PersistentVolumeClaim", PVC, project.ns)["status"]["phase"] == "Pending"  # type: ignore[index]
