"""``doctor``: name the runbook's failure modes from cluster state, each with evidence and the fix."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from modelpvc.core.errors import ModelpvcError
from modelpvc.core.secretkeys import EXPECTED, find_pair
from modelpvc.kube import objects as o
from modelpvc.kube.cluster import Cluster
from modelpvc.kube.populate import annotation_key
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
        out += _isvc(cluster, namespace, isvc_obj, uri)
    for p in pods:
        out += _pod(cluster, namespace, p, pods)
    for job in cluster.list("Job", namespace):
        out += _job(cluster, namespace, job)
    for c in sorted(claims):
        out += _claim(cluster, namespace, c, source_bytes)
    seen: set[tuple[str, str]] = set()
    unique = []
    for d in out:
        if (d.code, d.evidence) not in seen:
            seen.add((d.code, d.evidence))
            unique.append(d)
    return unique


def _isvc(cluster: Cluster, ns: str, isvc: o.Obj, uri: str) -> list[Diagnosis]:
    out = []
    name = isvc["metadata"]["name"]
    model = isvc["spec"]["predictor"]["model"]
    requests = (model.get("resources") or {}).get("requests") or {}
    eph = requests.get("ephemeral-storage")
    if uri.startswith("pvc://") and eph and parse_size(eph) >= EPHEMERAL_WARN:
        out.append(Diagnosis("ephemeral-request", f"{name} is PVC-backed but requests {eph} of ephemeral storage",
                             f"storageUri {uri}; resources.requests.ephemeral-storage {eph}",
                             "remove the ephemeral-storage request: the weights are on the PVC, and the request "
                             "only makes the pod hard to schedule"))
    status = isvc.get("status") or {}
    failure = (status.get("modelStatus") or {}).get("lastFailureInfo") or {}
    ready = o.conditions(isvc).get("Ready", {})
    if ready.get("status") != "True" and (failure or ready.get("reason") == "CrashLoopBackOff"):
        claim, _, path = uri.removeprefix("pvc://").partition("/")
        out.append(Diagnosis("incomplete-claim", f"{name} cannot load its model: the claim is empty or incomplete",
                             f"{failure.get('reason', ready.get('reason'))}: "
                             f"{failure.get('message', ready.get('message'))}",
                             f"populate it: modelpvc populate --pvc {claim} --path '{path.strip('/')}' "
                             "--source s3://... ; deploy verifies the claim before it switches"))
    return out


def _pod(cluster: Cluster, ns: str, pod: o.Obj, pods: list[o.Obj]) -> list[Diagnosis]:
    out = []
    name = pod["metadata"]["name"]
    for ev in cluster.events(name, ns):
        msg = str(ev.get("message", ""))
        if "Multi-Attach" in msg:
            claim = next(((v.get("persistentVolumeClaim") or {}).get("claimName")
                          for v in pod["spec"].get("volumes", []) if v.get("persistentVolumeClaim")), "?")
            holders = [h for h in o.pods_using_claim(pods, claim or "") if h["metadata"]["name"] != name]
            where = ", ".join(f"{h['metadata']['name']} on node {h['spec'].get('nodeName')}" for h in holders)
            out.append(Diagnosis("multi-attach", f"pod {name} is blocked: RWO claim {claim} is attached elsewhere",
                                 f"{ev.get('reason')}: {msg}; held by {where or 'another pod'}",
                                 "run the pod on the holder's node (populate pins its Job there), or stop the holder "
                                 "(modelpvc update --stop-the-world), or use a ReadWriteMany claim"))
        m = re.search(r"couldn't find key (\S+) in Secret (\S+)/(\S+)", msg)
        if m:
            secret = cluster.get("Secret", m.group(3), ns)
            found = sorted((secret or {}).get("data", {}))
            pair = find_pair(found)
            fix = (f"render/populate with --secret-keys {pair[0]},{pair[1]}" if pair else
                   f"add keys {EXPECTED} to the secret")
            out.append(Diagnosis("secret-keys", f"pod {name}: the Job's secret key names do not match the secret",
                                 f"{msg}; the secret has: {', '.join(found) or 'no keys'}", fix))
    return out


def _job(cluster: Cluster, ns: str, job: o.Obj) -> list[Diagnosis]:
    if not o.is_true(job, "Failed"):
        return []
    name = job["metadata"]["name"]
    pods = cluster.list("Pod", ns, labels={"job-name": name})
    tail: list[str] = []
    for p in pods[-1:]:
        try:
            tail = [line.rstrip() for line in cluster.log(p["metadata"]["name"], ns)][-8:]
        except ModelpvcError:
            tail = []
    text = "\n".join(tail)
    evidence = "last log lines:\n      " + "\n      ".join(tail) if tail else "no log"
    if "Permission denied" in text or "cannot write" in text:
        ns_obj = cluster.get("Namespace", ns) or {}
        fs = o.openshift_fs_group(ns_obj)
        fix = (f"on OpenShift leave fsGroup unset (the SCC assigns {fs}); elsewhere set the Job's fsGroup to the "
               "volume's group (--fs-group N)" if fs else
               "set the pod's fsGroup to the group that owns the volume (--fs-group N); HOME must be writable "
               "(modelpvc's Jobs set HOME=/tmp)")
        return [Diagnosis("permission-denied", f"Job {name} could not write the volume", evidence, fix)]
    if "no objects under" in text or "does not exist on" in text:
        return [Diagnosis("source-missing", f"Job {name}: the source model is not in the bucket", evidence,
                          "check the prefix (the log lists the nearest existing ones) or upload the model first")]
    if "access denied" in text:
        return [Diagnosis("access-denied", f"Job {name}: the S3 credentials were refused", evidence,
                          "fix the key pair in the secret; modelpvc never prints it")]
    if "no space" in text or "free but" in text:
        return [Diagnosis("pvc-too-small", f"Job {name}: the volume is too small", evidence,
                          "grow the PVC (modelpvc plan recommends a size) and re-run populate")]
    return [Diagnosis("job-failed", f"Job {name} failed", evidence, "read the log; re-run populate to resume")]


def _claim(cluster: Cluster, ns: str, claim: str, source_bytes: int | None) -> list[Diagnosis]:
    pvc = cluster.get("PersistentVolumeClaim", claim, ns)
    if pvc is None:
        return [Diagnosis("pvc-missing", f"PVC {claim} not found", f"namespace {ns}",
                          "create it (modelpvc populate --create-pvc --size auto)")]
    out = []
    phase = (pvc.get("status") or {}).get("phase")
    if phase != "Bound":
        out.append(Diagnosis("pvc-pending", f"PVC {claim} is {phase}", "not Bound",
                             "check the storage class; WaitForFirstConsumer binds when a pod uses it"))
    cap = ((pvc.get("status") or {}).get("capacity") or {}).get("storage")
    if cap and source_bytes is not None and parse_size(cap) < source_bytes:
        out.append(Diagnosis("pvc-too-small", f"PVC {claim} ({cap}) is smaller than the source "
                                              f"({source_bytes / 1e9:.1f} GB)", f"capacity {cap}",
                             "grow the PVC or select fewer files (duplicate formats are skipped by default)"))
    ann = (pvc.get("metadata") or {}).get("annotations") or {}
    if not any(k.startswith("modelpvc.io/revision") for k in ann) and phase == "Bound":
        out.append(Diagnosis("not-populated", f"PVC {claim} has no populate record",
                             f"no {annotation_key('')} annotation", "run modelpvc populate for it"))
    return out
