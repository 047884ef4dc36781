"""The cluster logic that needs no cluster: rules in, decisions out (milliseconds each). The flows around
them run on the real control plane (tests/kube)."""

from __future__ import annotations

from modelpvc.core.errors import DestinationFull, IntegrityError
from modelpvc.core.events import NullSink
from modelpvc.kube.doctor import crash_cause
from modelpvc.kube.placement import _selected, _tolerated, like_predictor
from modelpvc.kube.podlog import JobResult, failure, read_line
from modelpvc.kube.podstate import downloads, foreign_initializer, init_failure, serves, waiting_reason
from modelpvc.kube.spec import ModelSpec, spec_from_isvc

GPU_TAINT = {"key": "nvidia.com/gpu", "effect": "NoSchedule"}


def test_taints_are_tolerated_as_the_scheduler_matches_them():
    assert not _tolerated([], GPU_TAINT)
    assert _tolerated([{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}], GPU_TAINT)
    assert _tolerated([{"operator": "Exists"}], GPU_TAINT)  # tolerates everything
    assert not _tolerated([{"key": "other", "operator": "Exists"}], GPU_TAINT)
    assert _tolerated([], {"key": "x", "effect": "PreferNoSchedule"})  # only a preference


def test_a_predictor_selects_nodes_by_selector_and_required_affinity():
    gpu = {"metadata": {"labels": {"nvidia.com/gpu.present": "true", "topology.kubernetes.io/zone": "us-east-2b"}}}
    cpu = {"metadata": {"labels": {"topology.kubernetes.io/zone": "us-east-2a"}}}
    by_label = {"nodeSelector": {"nvidia.com/gpu.present": "true"}}
    assert _selected(gpu, by_label) and not _selected(cpu, by_label)
    by_zone = {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["us-east-2a"]}]}]}}}}
    assert _selected(cpu, by_zone) and not _selected(gpu, by_zone)
    assert _selected(cpu, {})


def test_a_job_runs_where_the_predictor_may_when_nodes_cannot_be_read():
    predictor = {"tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}],
                 "nodeSelector": {"pool": "gpu"},
                 "model": {"resources": {"limits": {"nvidia.com/gpu": "4"}}}}
    p = like_predictor(predictor)
    assert p.tolerations == ({"key": "nvidia.com/gpu", "operator": "Exists"},)
    assert p.node_selector == (("pool", "gpu"),) and p.prefer_gpu_nodes
    assert not like_predictor({"model": {"resources": {"limits": {"cpu": "2"}}}}).prefer_gpu_nodes


def _pod(**status: object) -> dict:  # type: ignore[type-arg]
    return {"metadata": {"name": "p"}, "spec": {
        "volumes": [{"name": "m", "persistentVolumeClaim": {"claimName": "c"}}],
        "containers": [{"name": "kserve-container", "volumeMounts": [
            {"name": "m", "mountPath": "/mnt/models", "subPath": "revisions/abc/"}]}],
        "initContainers": [{"name": "storage-initializer", "image": "kserve/storage-initializer:v0.14",
                            "args": ["s3://b/p/", "/mnt/models"]}]}, "status": status}


def test_pod_states_are_read_as_the_kubelet_reports_them():
    pod = _pod(containerStatuses=[{"state": {"waiting": {"reason": "CreateContainerConfigError"}}}],
               initContainerStatuses=[{"name": "storage-initializer",
                                       "lastState": {"terminated": {"exitCode": 4}}, "state": {"running": {}}}])
    assert waiting_reason(pod) == "CreateContainerConfigError"
    assert init_failure(pod) == 4
    assert serves(pod, "c", "revisions/abc") and not serves(pod, "c", "")
    assert not serves(pod, "other", "revisions/abc")
    assert downloads(pod, "s3://b/p/") and not downloads(pod, "s3://b/q/")
    assert foreign_initializer(pod) == "kserve/storage-initializer:v0.14"


def test_a_crashing_servers_log_says_why():
    assert crash_cause(["INFO start", "torch.OutOfMemoryError: CUDA out of memory"])[0] == "oom"
    assert crash_cause(["safetensors_rust.SafetensorError: incomplete metadata, file not fully covered"])[0] == "load"
    assert crash_cause(["api_server.py: error: unrecognized arguments: --max-modle-len"])[0] == "args"
    assert crash_cause(["something else"]) == (None, "something else")


def test_a_failed_jobs_pod_log_becomes_the_error_it_reported():
    r = JobResult("j", "j-abc", 4)
    for line in ["plan: s3://b/p/: 3 files to fetch", "modelpvc: error: /mnt/models has 1 GB free but 2 GB must "
                 "be fetched", '{"event":"error","code":"destination-full","error":"DestinationFull",'
                 '"exit_code":4,"message":"/mnt/models has 1 GB free","hint":"grow the volume"}']:
        read_line(line, r, NullSink())
    err = failure("j", "ns", r, {"reason": "PodFailureTarget"})
    assert isinstance(err, DestinationFull) and err.hint == "grow the volume"
    assert err.message == "Job j failed (pod j-abc, exit 4): /mnt/models has 1 GB free"
    verdict = JobResult("v", "v-1", 5, records=[{"event": "verify", "findings": [
        {"path": "config.json", "message": "does not parse", "severity": "error"}]}])
    assert isinstance(failure("v", "ns", verdict, {}), IntegrityError)


def test_update_reads_the_served_claim_path_and_loader_from_the_inference_service():
    isvc = {"metadata": {"name": "m"}, "spec": {"predictor": {"model": {
        "storageUri": "pvc://claim/revisions/abc/", "args": ["--tokenizer-mode=mistral", "--load-format=mistral"]}}}}
    spec = spec_from_isvc(isvc, ModelSpec(name="m", namespace="ns", source="", pvc="x", secret=""))
    assert (spec.pvc, spec.path, spec.loader) == ("claim", "revisions/abc", "vllm-mistral")
