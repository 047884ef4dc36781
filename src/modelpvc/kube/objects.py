"""Small readers of Kubernetes objects as dicts (no I/O)."""

from __future__ import annotations

import base64
from typing import Any

Obj = dict[str, Any]
TERMINAL = ("Succeeded", "Failed")
ZONE = "topology.kubernetes.io/zone"
PREDICTOR_LABEL = "serving.kserve.io/inferenceservice"  # KServe labels its predictor pods with the ISVC's name
# The zone populate pinned a claim's first Job to: a project admin may read neither the PV (whose node
# affinity holds the zone) nor nodes, so the claim carries it.
ZONE_ANNOTATION = "modelpvc.io/zone"


def pv_zone(pv: Obj) -> str | None:
    """The zone of a volume: a CSI provisioner puts it in ``spec.nodeAffinity`` only (no label); an in-tree
    or hand-made PV may carry the label instead."""
    for term in (((pv.get("spec") or {}).get("nodeAffinity") or {}).get("required") or {}).get(
            "nodeSelectorTerms") or []:
        for e in term.get("matchExpressions") or []:
            if e.get("key") == ZONE and e.get("operator") == "In" and len(e.get("values") or []) == 1:
                return str(e["values"][0])
    zone = ((pv.get("metadata") or {}).get("labels") or {}).get(ZONE)
    return str(zone) if zone else None


def conditions(obj: Obj) -> dict[str, Obj]:
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}


def is_true(obj: Obj, ctype: str) -> bool:
    return conditions(obj).get(ctype, {}).get("status") == "True"


def claim_names(pod_spec: Obj) -> set[str]:
    """The claims a pod spec (a pod's, or a Job's template's) mounts."""
    return {str(v["persistentVolumeClaim"]["claimName"]) for v in pod_spec.get("volumes") or []
            if (v.get("persistentVolumeClaim") or {}).get("claimName")}


def template_spec(job: Obj) -> Obj:
    """The pod spec of a Job's template."""
    spec: Obj = (((job.get("spec") or {}).get("template") or {}).get("spec")) or {}
    return spec


def pods_using_claim(pods: list[Obj], claim: str) -> list[Obj]:
    """Pods that hold ``claim`` now: mounted and not finished (there is no field selector for this)."""
    return [p for p in pods if (p.get("status") or {}).get("phase") not in TERMINAL
            and claim in claim_names(p.get("spec") or {})]


def secret_values(secret: Obj) -> dict[str, str]:
    out = {}
    for k, v in (secret.get("data") or {}).items():
        try:
            out[k] = base64.b64decode(v).decode().strip()
        except (ValueError, UnicodeDecodeError):
            continue
    for k, v in (secret.get("stringData") or {}).items():
        out[k] = str(v).strip()
    return out


def openshift_fs_group(ns: Obj) -> int | None:
    """The first block of ``openshift.io/sa.scc.supplemental-groups`` (e.g. "1001130000/10000")."""
    ann = (ns.get("metadata") or {}).get("annotations") or {}
    raw = ann.get("openshift.io/sa.scc.supplemental-groups")
    if not raw:
        return None
    try:
        return int(raw.split(",")[0].split("/")[0].split("-")[0])
    except ValueError:
        return None


def terminated_exit_code(pod: Obj) -> int | None:
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        t = (cs.get("state") or {}).get("terminated")
        if t is not None:
            return int(t.get("exitCode", 1))
    return None


def holder_node(pods: list[Obj], claim: str) -> str | None:
    """The single node where ``claim`` is mounted now (a Job must run there for an RWO claim)."""
    nodes = {(p.get("spec") or {}).get("nodeName") for p in pods_using_claim(pods, claim)}
    nodes.discard(None)
    return nodes.pop() if len(nodes) == 1 else None


def is_bare(pod: Obj) -> bool:
    """A pod no controller owns (`oc run`, the runbook's inspector): nothing recreates it once deleted."""
    return not any(r.get("controller") for r in (pod.get("metadata") or {}).get("ownerReferences") or [])
