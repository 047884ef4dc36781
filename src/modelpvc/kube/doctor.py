"""``doctor``: name the runbook's failure modes from cluster state, each with evidence and the fix.

Every diagnosis comes from typed state: container waiting reasons, pod conditions, the SCC annotation
OpenShift puts on a pod, the claims and nodes involved, and the error records our Jobs log as their last
JSON line (their ``error`` type). Messages from the cluster are quoted as evidence, never parsed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modelpvc.core.errors import ModelpvcError, error_types
from modelpvc.core.secretkeys import EXPECTED, find_pair
from modelpvc.core.units import human_bytes
from modelpvc.kube import objects as o
from modelpvc.kube.claimrecord import annotation_key
from modelpvc.kube.cluster import Cluster
from modelpvc.kube.placement import explain_unschedulable
from modelpvc.kube.podlog import pod_of, read_pod
from modelpvc.kube.podstate import (
    IMAGE_PULL,
    attach_holders,
    image_fix,
    missing_secret_keys,
    waiting_reason,
)
from modelpvc.kube.serving import missing_runtime, runtime_fix
from modelpvc.model.sizing import parse_size

EPHEMERAL_WARN = 10 * 2**30  # a PVC-backed predictor asking more ephemeral storage than this is suspicious


@dataclass(frozen=True)
class Diagnosis:
    code: str  # stable: multi-attach, permission-denied, source-missing, ...
    title: str
    evidence: str
    fix: str

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "title": self.title, "evidence": self.evidence, "fix": self.fix}


# What a Job's error record means, by the error's stable code (core/errors.py): (diagnosis, title, fix).
# Every error class has its own line; a code missing here (a newer image) takes its nearest parent's.
JOB_ERRORS: dict[str, tuple[str, str, str]] = {
    "error": ("job-failed", "failed", "read its log (oc logs job/NAME); re-run populate to resume"),
    "usage": ("job-arguments", "refused its arguments",
              "the message names the argument: fix the command (or re-render the Job) and re-run"),
    "source": ("source-error", "could not read the source", "the message says why; check --source and the secret"),
    "source-missing": ("source-missing", "the source model is not in the bucket",
                       "check the prefix (the log lists the nearest existing ones) or import the model first"),
    "source-too-high": ("source-too-high", "the source prefix holds model directories, not a model",
                        "point --source at the model's own directory (the message lists them)"),
    "access-denied": ("access-denied", "the S3 credentials were refused",
                      "fix the key pair in the secret; modelpvc never prints it"),
    "source-gated": ("source-gated", "the Hub repository is gated or private",
                     "accept its terms on the Hub with the token's account, or put a token that may read it in "
                     "the --hub-secret Secret (key HF_TOKEN)"),
    "source-unreachable": ("source-unreachable", "the S3 endpoint did not answer from the pod",
                           "check the endpoint (AWS_S3_ENDPOINT / --endpoint-url) and network policies"),
    "unsafe-key": ("unsafe-key", "the bucket holds a key that would land outside the volume",
                   "rename or remove the object the message names; nothing was written for it"),
    "transient": ("source-flaky", "the S3 endpoint kept failing (errors, throttling, resets) after every retry",
                  "check the endpoint's health, then re-run populate: it resumes"),
    "no-answer": ("source-slow", "the S3 endpoint took requests and did not answer in time",
                  "a busy server: retry later, or give the Job's mirror a longer --read-timeout; it resumes"),
    "source-changed": ("source-changed", "the model changed in the bucket during the copy",
                       "wait until the upload into the prefix has finished (modelpvc import writes source.json "
                       "last), then re-run populate"),
    "upload-gone": ("upload-gone", "a multipart upload was removed during the import",
                    "a lifecycle rule or another client aborted it; re-run the import: it starts that file over"),
    "destination": ("volume-error", "could not write the volume", "the message says why; oc describe pvc"),
    "destination-full": ("pvc-too-small", "the volume is too small",
                         "grow the PVC (modelpvc plan recommends a size) and re-run populate"),
    "destination-not-writable": ("permission-denied", "the Job could not write the volume", ""),
    "destination-locked": ("volume-locked", "another copy is writing the same directory",
                           "wait for that Job or process to finish (the message has its pid); a killed one "
                           "releases the lock"),
    "destination-missing": ("bucket-missing", "the destination bucket does not exist",
                            "create it (mc mb / aws s3 mb) or fix the bucket name, then re-run the import"),
    "destination-denied": ("bucket-denied", "the credentials may not write to the bucket",
                           "grant the secret's key s3:PutObject and the multipart-upload permissions on it"),
    "checksum-refused": ("checksum-refused", "the bucket refused the upload's checksums",
                         "an older S3 server; modelpvc retried without them: upgrade the server if it persists"),
    "integrity": ("integrity", "the bytes did not match the source, or the copy is not a whole model",
                  "check the object in the bucket (the message names it); re-run populate: it fetches failed "
                  "files again"),
    "interrupted": ("job-interrupted", "was stopped (evicted or deleted)", "re-run populate: it resumes"),
    "cluster": ("cluster-error", "hit a Kubernetes API error", "the message names the request; check the API"),
    "field-conflict": ("field-conflict", "found a field another tool owns",
                       "change it where that tool manages it (Git, for Argo CD)"),
    "pod-blocked": ("pod-blocked", "could not start a pod", "the message names the reason; fix it and re-run"),
    "not-found": ("not-found", "needs an object that does not exist", "create it (the message names it)"),
    "kind-not-served": ("kind-not-served", "needs a kind this cluster does not serve",
                        "install its operator (KServe, for InferenceServices)"),
    "forbidden": ("forbidden", "was refused by RBAC",
                  "grant the verb the message names, or ask the platform admin"),
}


def job_error_advice(record: dict[str, Any]) -> tuple[str, str, str]:
    """(diagnosis, title, fix) for a Job's error record: its code's own advice, else the nearest parent's."""
    code = str(record.get("code") or "")
    if code in JOB_ERRORS:
        return JOB_ERRORS[code]
    types = error_types()
    cls = types.get(code) or {t.__name__: t for t in types.values()}.get(str(record.get("error")))
    for klass in (cls.__mro__ if cls is not None else ()):
        parent = getattr(klass, "code", None)
        if parent in JOB_ERRORS:
            return JOB_ERRORS[str(parent)]
    return JOB_ERRORS["error"]


def diagnose(cluster: Cluster, namespace: str, isvc: str | None = None, pvc: str | None = None,
             source_bytes: int | None = None) -> list[Diagnosis]:
    out: list[Diagnosis] = []
    pods = cluster.list("Pod", namespace)
    claims: set[str] = {pvc} if pvc else set()
    isvc_obj = cluster.get("InferenceService", isvc, namespace) if isvc else None
    if isvc and isvc_obj is None:
        out.append(Diagnosis("isvc-missing", f"InferenceService {isvc} not found", f"namespace {namespace}",
                             "deploy it: modelpvc deploy --name ..."))
    if isvc_obj is not None:
        uri = str(isvc_obj["spec"]["predictor"]["model"].get("storageUri", ""))
        if uri.startswith("pvc://"):
            claims.add(uri.removeprefix("pvc://").split("/")[0])
        out += _isvc(cluster, namespace, isvc_obj, uri, pods)
    ns_obj = cluster.get("Namespace", namespace) or {}
    jobs = cluster.list("Job", namespace)
    if isvc_obj is not None:
        # About that InferenceService: its pods, and the pods and Jobs that use its claim.
        pods = [p for p in pods if (p["metadata"].get("labels") or {}).get(o.PREDICTOR_LABEL) == isvc
                or o.claim_names(p.get("spec") or {}) & claims]
        jobs = [j for j in jobs if o.claim_names(o.template_spec(j)) & claims]
    for p in pods:
        out += _pod(cluster, p, ns_obj)
    for job in jobs:
        out += _job(cluster, namespace, job, ns_obj)
    for c in sorted(claims):
        out += _claim(cluster, namespace, c, source_bytes)
    seen: set[tuple[str, str]] = set()
    unique = []
    for d in out:
        if (d.code, d.evidence) not in seen:
            seen.add((d.code, d.evidence))
            unique.append(d)
    return unique


def _isvc(cluster: Cluster, ns: str, isvc: o.Obj, uri: str, pods: list[o.Obj]) -> list[Diagnosis]:
    out = []
    name = isvc["metadata"]["name"]
    model = isvc["spec"]["predictor"]["model"]
    runtime = model.get("runtime")
    here = missing_runtime(cluster, ns, runtime)
    if here is not None:
        out.append(Diagnosis("runtime-missing", f"{name} names ServingRuntime {runtime}, which is not in {ns}",
                             "ServingRuntimes in the namespace: " + (", ".join(here) or "none"), runtime_fix(here)))
    requests = (model.get("resources") or {}).get("requests") or {}
    eph = requests.get("ephemeral-storage")
    if uri.startswith("pvc://") and eph and parse_size(eph) >= EPHEMERAL_WARN:
        out.append(Diagnosis("ephemeral-request", f"{name} is PVC-backed but requests {eph} of ephemeral storage",
                             f"storageUri {uri}; resources.requests.ephemeral-storage {eph}",
                             "remove the ephemeral-storage request: the weights are on the PVC, and the request "
                             "only makes the pod hard to schedule"))
    predictors = [p for p in pods if (p["metadata"].get("labels") or {}).get(o.PREDICTOR_LABEL) == name]
    crashing = [p for p in predictors if waiting_reason(p) == "CrashLoopBackOff"]
    failure = ((isvc.get("status") or {}).get("modelStatus") or {}).get("lastFailureInfo") or {}
    if crashing:
        pod = crashing[0]["metadata"]["name"]
        cause, line = crash_cause(_server_log(cluster, ns, pod))
        evidence = f"pod {pod} is in CrashLoopBackOff; its log: {line}" if line else \
            f"pod {pod} is in CrashLoopBackOff; {failure.get('reason', '')}: {failure.get('message', '')}"
        claim, _, path = uri.removeprefix("pvc://").partition("/")
        if cause == "load" or (cause is None and not line):
            out.append(Diagnosis("incomplete-claim", f"{name} cannot load its model: the claim is empty or "
                                 "incomplete", evidence,
                                 f"populate it: modelpvc populate --pvc {claim} --path '{path.strip('/')}' "
                                 "--source s3://... ; deploy verifies the claim before it switches"))
        elif cause == "oom":
            out.append(Diagnosis("server-memory", f"{name}'s server runs out of GPU memory", evidence,
                                 "lower --max-model-len or --gpu-memory-utilization, or give it more GPUs with "
                                 "--tensor-parallel-size equal to its nvidia.com/gpu"))
        elif cause == "args":
            out.append(Diagnosis("server-arguments", f"{name}'s server refuses its arguments", evidence,
                                 "fix spec.predictor.model.args (modelpvc deploy --arg=...); the claim is fine"))
        else:
            out.append(Diagnosis("server-crash", f"{name}'s server keeps crashing", evidence,
                                 f"read its log: oc logs {pod} -c kserve-container -n {ns}"))
    return out


# What a crash-looping vLLM says, by cause (its log is the only record of it; the line is quoted as evidence).
CRASH_CAUSES = (
    ("load", ("Failed to load model", "SafetensorError", "FileNotFoundError", "No such file",
              "does not appear to have a file named", "Error no file named", "incomplete metadata")),
    ("oom", ("CUDA out of memory", "OutOfMemoryError", "larger than the maximum number of tokens that can be "
             "stored in KV cache")),
    ("args", ("unrecognized arguments", "error: argument", "invalid choice")),
)


def crash_cause(lines: list[str]) -> tuple[str | None, str]:
    """(load|oom|args|None, the line that says so, else the last line) for a crashing server's log."""
    for line in reversed(lines):
        for cause, marks in CRASH_CAUSES:
            if any(m in line for m in marks):
                return cause, line.strip()
    return None, lines[-1].strip() if lines else ""


def _server_log(cluster: Cluster, ns: str, pod: str) -> list[str]:
    try:
        return list(cluster.log(pod, ns, container="kserve-container"))[-50:]
    except ModelpvcError:
        return []


def _pod(cluster: Cluster, pod: o.Obj, ns_obj: o.Obj) -> list[Diagnosis]:
    out = []
    name = pod["metadata"]["name"]
    phase = (pod.get("status") or {}).get("phase")
    reason = waiting_reason(pod)
    if reason in IMAGE_PULL:
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            waiting = (cs.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") == reason:
                out.append(Diagnosis("image-pull", f"pod {name} cannot pull image {cs.get('image')}",
                                     f"{reason}: {waiting.get('message') or 'no message'}",
                                     image_fix(str(cs.get("image")))))
                break
    # Whatever the pod waits for first (its image is pulled before its env is built), keys its Secrets lack
    # keep it from ever starting.
    missing = missing_secret_keys(cluster, pod) if phase == "Pending" else []
    if missing:
        secrets = {(e.get("valueFrom") or {}).get("secretKeyRef", {}).get("name")
                   for c in pod["spec"].get("containers") or [] for e in c.get("env") or []} - {None}
        found: list[str] = []
        for s in secrets:
            found += sorted((cluster.get("Secret", str(s), pod["metadata"]["namespace"]) or {}).get("data") or {})
        pair = find_pair(found)
        fix = f"render/populate with --secret-keys {pair[0]},{pair[1]}" if pair else f"add keys {EXPECTED}"
        out.append(Diagnosis("secret-keys", f"pod {name}: its secret key names do not match the secret",
                             "it needs " + "; ".join(missing), fix))
    if phase == "Pending":
        holders = attach_holders(cluster, pod)
        if holders:
            claim = next((v["persistentVolumeClaim"]["claimName"] for v in pod["spec"].get("volumes") or []
                          if v.get("persistentVolumeClaim")), "?")
            where = ", ".join(f"{h['metadata']['name']} on node {h['spec'].get('nodeName')}" for h in holders)
            bare = [h["metadata"]["name"] for h in holders if o.is_bare(h)]
            fix = (f"delete the pod that holds it: oc delete pod {' '.join(bare)} -n {pod['metadata']['namespace']} "
                   "(a pod no controller owns, such as the runbook's pvc-inspector: nothing recreates it)"
                   if bare else
                   "run the pod on the holder's node (populate pins its Jobs there), or stop the holder (modelpvc "
                   "update --stop-the-world), or use a ReadWriteMany claim")
            out.append(Diagnosis("multi-attach", f"pod {name} is blocked: RWO claim {claim} is attached elsewhere",
                                 f"pod on node {pod['spec'].get('nodeName')}; claim held by {where}", fix))
        why = explain_unschedulable(cluster, pod)
        if why is not None:
            out.append(Diagnosis("unschedulable", f"pod {name} cannot be scheduled", why.evidence, why.fix))
    return out


def _last_record(cluster: Cluster, ns: str, job: str, event: str) -> tuple[dict[str, Any] | None, o.Obj | None]:
    """The last ``event`` record (error, summary) the Job's newest pod logged, and that pod."""
    pod = pod_of(cluster, ns, job)
    if pod is None:
        return None, None
    try:
        return read_pod(cluster, job, pod).last(event), pod
    except ModelpvcError:
        return None, pod


def _last_error(cluster: Cluster, ns: str, job: str) -> tuple[dict[str, Any] | None, o.Obj | None]:
    return _last_record(cluster, ns, job, "error")


def _filled_by(cluster: Cluster, ns: str, claim: str) -> str | None:
    """A completed Job that populated ``claim`` and logged its revision (a GitOps hook records nothing on the
    claim: its pod may not write to the API); None when none is left to tell."""
    for job in cluster.list("Job", ns):
        if o.is_true(job, "Complete") and claim in o.claim_names(o.template_spec(job)):
            rec, _pod = _last_record(cluster, ns, job["metadata"]["name"], "summary")
            if rec is not None and rec.get("revision"):
                return f"Job {job['metadata']['name']} (revision {rec['revision']})"
    return None


def _job(cluster: Cluster, ns: str, job: o.Obj, ns_obj: o.Obj) -> list[Diagnosis]:
    if not o.is_true(job, "Failed"):
        return []
    name = job["metadata"]["name"]
    cond = o.conditions(job).get("Failed", {})
    record, pod = _last_error(cluster, ns, name)
    if record is None:
        if cond.get("reason") == "DeadlineExceeded":
            return [Diagnosis("job-deadline", f"Job {name} ran out of time", f"{cond.get('message')}",
                              "it could not start or the copy is slower than the deadline assumes; see its pod's "
                              "events, re-run populate to resume")]
        return [Diagnosis("job-failed", f"Job {name} failed", f"{cond.get('reason')}: {cond.get('message')}",
                          "read its log; re-run populate to resume"), *_scc_risk(pod, ns_obj)]
    code, title, fix = job_error_advice(record)
    evidence = f"{record.get('error')}: {record.get('message')}"
    if code == "permission-denied":
        fix = _fs_group_fix(pod, ns_obj)
        scc = ((pod or {}).get("metadata", {}).get("annotations") or {}).get("openshift.io/scc")
        if scc:
            evidence += f"; the pod was admitted by SCC {scc}"
    return [Diagnosis(code, f"Job {name}: {title}", evidence, fix)]


def _fs_group_fix(pod: o.Obj | None, ns_obj: o.Obj) -> str:
    group = o.openshift_fs_group(ns_obj)
    scc = (((pod or {}).get("metadata") or {}).get("annotations") or {}).get("openshift.io/scc")
    if scc == "anyuid":
        return (f"the anyuid SCC sets no fsGroup, so a fresh volume (owned by root) is not writable: set "
                f"securityContext.fsGroup: {group} on the Job (render/populate --fs-group {group}), or remove the "
                "anyuid grant from its service account so restricted-v2 assigns it")
    if group is not None:
        return (f"restricted-v2 assigns fsGroup {group}; the volume's files belong to another group: set "
                "fsGroupChangePolicy: Always once (or --fs-group) so the kubelet fixes the ownership")
    return ("set the pod's fsGroup to a group that may write the volume (render/populate --fs-group N); HOME must "
            "be writable (modelpvc's Jobs set HOME=/tmp)")


def _scc_risk(pod: o.Obj | None, ns_obj: o.Obj) -> list[Diagnosis]:
    """A Job that is not ours failed; if it ran under anyuid without fsGroup, that is the runbook's
    "Permission denied" whatever its log says."""
    if pod is None:
        return []
    scc = ((pod.get("metadata") or {}).get("annotations") or {}).get("openshift.io/scc")
    has_group = ((pod.get("spec") or {}).get("securityContext") or {}).get("fsGroup") is not None
    mounts_claim = any(v.get("persistentVolumeClaim") for v in (pod.get("spec") or {}).get("volumes") or [])
    if scc == "anyuid" and not has_group and mounts_claim:
        return [Diagnosis("permission-denied", f"pod {pod['metadata']['name']} writes a volume without fsGroup",
                          "admitted by SCC anyuid, no securityContext.fsGroup", _fs_group_fix(pod, ns_obj))]
    return []


def _claim(cluster: Cluster, ns: str, claim: str, source_bytes: int | None) -> list[Diagnosis]:
    pvc = cluster.get("PersistentVolumeClaim", claim, ns)
    if pvc is None:
        return [Diagnosis("pvc-missing", f"PVC {claim} not found", f"namespace {ns}",
                          "create it (modelpvc populate --create-pvc --size auto)")]
    out = []
    status = pvc.get("status") or {}
    phase = status.get("phase")
    meta = pvc.get("metadata") or {}
    # A claim has no condition saying it waits: the PV controller's event does (reason WaitForFirstConsumer).
    waits_for_consumer = phase != "Bound" and any(e.get("reason") == "WaitForFirstConsumer"
                                                  for e in cluster.events(claim, ns))
    selected = (meta.get("annotations") or {}).get("volume.kubernetes.io/selected-node")
    if phase != "Bound" and (not waits_for_consumer or selected):
        # Pending before its first consumer is scheduled is how WaitForFirstConsumer classes work (a consumer
        # that cannot be scheduled is diagnosed as such); once the scheduler chose a node, it should bind.
        out.append(Diagnosis("pvc-pending", f"PVC {claim} is {phase}",
                             f"not Bound although the scheduler chose node {selected} for its consumer"
                             if selected else "not Bound",
                             "check the storage class and its provisioner (oc describe pvc)"))
    cap = (status.get("capacity") or {}).get("storage") if phase == "Bound" else \
        (((pvc.get("spec") or {}).get("resources") or {}).get("requests") or {}).get("storage")
    if cap and source_bytes is not None and parse_size(cap) < source_bytes:
        out.append(Diagnosis("pvc-too-small", f"PVC {claim} ({cap}) is smaller than the source "
                                              f"({human_bytes(source_bytes)})",
                             f"capacity {cap}" if phase == "Bound" else f"request {cap} (not bound yet)",
                             "grow the PVC or select fewer files (duplicate formats are skipped by default)"))
    ann = (pvc.get("metadata") or {}).get("annotations") or {}
    if not any(k.startswith("modelpvc.io/revision") for k in ann) and phase == "Bound" and \
            _filled_by(cluster, ns, claim) is None:
        out.append(Diagnosis("not-populated", f"PVC {claim} has no populate record",
                             f"no {annotation_key('')} annotation", "run modelpvc populate for it"))
    return out
