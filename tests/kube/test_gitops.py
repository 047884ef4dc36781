"""The files `render --gitops argocd` writes, synced onto the real control plane as Argo CD syncs them: by
sync wave, hooks recreated, each wave waiting until its resources are healthy (argo-cd docs, "Sync Phases
and Waves"; health: a Pending PVC is Progressing, a Job must complete, an InferenceService be Ready)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelpvc.model.synthetic import same_tree
from tests.conftest import run_cli
from tests.kube.conftest import PVC, REFERENCE, SECRET, Project, with_gpus

pytestmark = pytest.mark.kube


def _healthy(project: Project, obj: dict[str, Any]) -> bool:
    cur = project.api.get(obj["kind"], obj["metadata"]["name"], project.ns) or {}
    st = cur.get("status") or {}
    conds = {c["type"]: c["status"] for c in st.get("conditions") or []}
    if obj["kind"] == "PersistentVolumeClaim":
        return st.get("phase") == "Bound"
    if obj["kind"] == "Job":
        return conds.get("Complete") == "True"
    return conds.get("Ready") == "True"


def _argo_sync(project: Project, objects: list[dict[str, Any]], wave_timeout: float = 120) -> None:
    """Sync-phase objects by wave, then the PostSync hooks once everything is healthy."""
    def phase(obj: dict[str, Any]) -> str:
        return str(obj["metadata"].get("annotations", {}).get("argocd.argoproj.io/hook", "Sync"))

    for hooks in ([o for o in objects if phase(o) != "PostSync"], [o for o in objects if phase(o) == "PostSync"]):
        waves: dict[int, list[dict[str, Any]]] = {}
        for obj in hooks:
            wave = int(obj["metadata"].get("annotations", {}).get("argocd.argoproj.io/sync-wave", "0"))
            waves.setdefault(wave, []).append(obj)
        for wave in sorted(waves):
            for obj in waves[wave]:
                if obj["kind"] == "Job":  # a hook: recreated on every sync
                    project.api.delete("Job", obj["metadata"]["name"], project.ns)
                project.api.apply(obj | {"metadata": {**obj["metadata"], "namespace": project.ns}},
                                  manager="argocd")
            deadline = time.monotonic() + wave_timeout
            while not all(_healthy(project, o) for o in waves[wave]):
                assert time.monotonic() < deadline, f"sync stuck in wave {wave}"
                time.sleep(0.5)


def _render(project: Project, uri: str, out: Path, kinds: str, *extra: str, base: Path = REFERENCE
            ) -> list[dict[str, Any]]:
    """What a platform engineer renders on a laptop, offline: --size and --zone given, no S3 keys."""
    r = run_cli(["render", "--isvc-base", str(base), "--namespace", project.ns, "--source", uri,
                 "--secret", SECRET, "--pvc", PVC, "--size", "1Gi", "--gitops", "argocd", "--kinds", kinds,
                 "-o", str(out), *extra], project.env())
    assert r.returncode == 0, r.stderr
    return _load(out)


def _load(out: Path) -> list[dict[str, Any]]:
    return [yaml.safe_load(p.read_text()) for p in sorted(out.iterdir())]


def test_argo_first_sync_completes_on_a_wait_for_first_consumer_class(project: Project, tmp_path: Path):
    """The seed's setup as one sync: claim and populate Job, then the verify Job, then the InferenceService."""
    m = project.model(tmp_path)
    project.serving_prerequisites()
    objects = _render(project, m.uri, tmp_path / "gitops", "pvc,job,verify-job,isvc", "--storage-class", "gp3-csi",
                      "--zone", "us-east-2b", "--deployment-mode", "RawDeployment")
    waves = {o["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"] for o in objects}
    assert len(waves) == 3  # the PVC and the populate Job together (a WFFC claim binds for its Job), verify, server
    _argo_sync(project, objects)
    assert project.volume_zone() == "us-east-2b"
    assert (project.volume_dir() / ".modelpvc" / "manifest.json").exists()
    [server] = project.predictors()
    assert server["spec"]["nodeName"] == "gpu-1"
    # The hooks record nothing on the claim (their pods may not write to the API); doctor reads the
    # populate hook's own summary instead of calling the served claim "not populated".
    rc, found = project.doctor("--pvc", PVC)
    assert "not-populated" not in found, found
    assert rc == 0, found


def test_a_job_applied_before_its_claim_waits_for_it_as_the_scheduler_does(project: Project, tmp_path: Path):
    """Argo CD applies a wave's files in its own order, and `render` names them 1-job-... before 1-pvc-...:
    kube-scheduler keeps a pod whose claim does not exist Pending and schedules it once the claim appears."""
    m = project.model(tmp_path)
    objects = _render(project, m.uri, tmp_path / "gitops", "pvc,job", "--storage-class", "gp3-csi",
                      "--zone", "us-east-2b")
    [job] = [o for o in objects if o["kind"] == "Job"]
    [pvc] = [o for o in objects if o["kind"] == "PersistentVolumeClaim"]
    project.api.apply(job | {"metadata": {**job["metadata"], "namespace": project.ns}}, manager="argocd")
    deadline = time.monotonic() + 30
    while True:
        pods = project.api.list("Pod", project.ns, labelSelector=f"job-name={job['metadata']['name']}")
        conds = [c for p in pods for c in (p.get("status") or {}).get("conditions") or []]
        if any(f'persistentvolumeclaim "{PVC}" not found' in c.get("message", "") for c in conds):
            break
        assert time.monotonic() < deadline, pods
        time.sleep(0.2)
    assert not pods[0]["spec"].get("nodeName")
    _argo_sync(project, [pvc, job])
    assert project.volume_zone() == "us-east-2b"


def test_argo_hook_job_lands_on_the_servers_node_instead_of_hanging_on_multi_attach(project: Project,
                                                                                   tmp_path: Path):
    m = project.model(tmp_path)
    project.serving_prerequisites()
    assert project.populate(m.uri, "--isvc-base", str(REFERENCE)).returncode == 0
    assert project.deploy().returncode == 0
    [server] = project.predictors()
    [job] = _render(project, m.uri, tmp_path / "gitops", "job")
    job["metadata"]["name"] = "hook-populate"
    _argo_sync(project, [job])
    [pod] = project.api.list("Pod", project.ns, labelSelector="job-name=hook-populate")
    assert pod["spec"]["nodeName"] == server["spec"]["nodeName"]  # preferred affinity to the predictor, taint


def test_populate_follows_the_hook_job_argo_started(project: Project, tmp_path: Path):
    """An Argo CD hook Job is running (here: waiting for its claim); the project admin wants to watch it.
    `populate` with the same source and claim follows that Job instead of refusing ("still running")."""
    m = project.model(tmp_path)
    [job] = _render(project, m.uri, tmp_path / "gitops", "job", "--zone", "us-east-2a")
    project.api.apply(job | {"metadata": {**job["metadata"], "namespace": project.ns}}, manager="argocd")
    r = project.populate(m.uri, "--zone", "us-east-2a")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Job mistral-24b-populate is already running (an earlier run started it): following it" in r.stdout
    assert "done: 8 files copied; 8 files verified" in r.stdout
    assert project.api.get("Job", f"{PVC}-populate", project.ns) is None  # no second writer


def test_a_source_change_synced_by_argo_goes_beside_the_served_revision_until_git_points_at_it(
        project: Project, tmp_path: Path):
    """The hooks re-run at every sync. After a source change they write the new revision beside the served
    one (the server's files are never rewritten), `update --gitops` points the manifests at it, and once
    Argo CD serves it the PostSync hook removes the old one."""
    m = project.model(tmp_path)
    project.serving_prerequisites()
    out = tmp_path / "gitops"
    objects = _render(project, m.uri, out, "pvc,job,verify-job,isvc,gc-job", "--storage-class", "gp3-csi",
                      "--zone", "us-east-2b", "--deployment-mode", "RawDeployment",
                      base=with_gpus(1, tmp_path))  # room for KServe's surge-first rollout on the GPU node
    _argo_sync(project, objects)
    claim = project.volume_dir()
    served = json.loads((claim / ".modelpvc" / "manifest.json").read_text())["revision"]
    shard = next(p.name for p in m.dir.iterdir() if p.suffix == ".safetensors")
    inode = (claim / shard).stat().st_ino

    (m.dir / "generation_config.json").write_text('{"temperature": 0.6}')
    m.publish()
    _argo_sync(project, objects)  # Git unchanged, the bucket changed
    latest = json.loads((claim / "revisions" / "latest.json").read_text())
    assert latest["revision"] != served and latest["path"] == f"revisions/{latest['revision']}"
    new_dir = claim / latest["path"]
    assert same_tree(m.dir, new_dir) == []
    assert json.loads((claim / ".modelpvc" / "manifest.json").read_text())["revision"] == served
    assert (claim / shard).stat().st_ino == inode == (new_dir / shard).stat().st_ino  # untouched; linked
    assert project.isvc()["spec"]["predictor"]["model"]["storageUri"] == f"pvc://{PVC}/"

    r = project.cli("update", "--name", "mistral-24b", "--gitops", str(out), "--source", m.uri, "--secret", SECRET,
                    timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "commit and push" in r.stdout
    _argo_sync(project, _load(out))  # the commit, synced
    assert project.isvc()["spec"]["predictor"]["model"]["storageUri"] == f"pvc://{PVC}/{latest['path']}/"
    assert sorted(p.name for p in claim.iterdir()) == ["revisions"]  # the root's revision collected
    assert sorted(p.name for p in (claim / "revisions").iterdir()) == sorted([latest["revision"], "latest.json"])
    assert same_tree(m.dir, new_dir) == []
