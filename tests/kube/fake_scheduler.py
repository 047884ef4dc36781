"""Where a pod may run, as kube-scheduler's filters decide it (pkg/scheduler/framework/plugins:
NodeResourcesFit, TaintToleration, NodeAffinity (nodeSelector + required node affinity), VolumeBinding
and VolumeZone). Pure functions over dicts: the fake's controller calls them and turns "no node" into a
Pending pod with a FailedScheduling event whose message has the scheduler's shape:
"0/2 nodes are available: 1 Insufficient nvidia.com/gpu, 1 node(s) had untolerated taint {...}."

Simpler than the real scheduler, written down: no scoring (the first feasible node in name order wins,
except that preferred pod affinity is honoured as a tie-break), no preemption, requests only (limits are
not checked), and pod affinity is understood for ``kubernetes.io/hostname`` only.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

Obj = dict[str, Any]
ZONE = "topology.kubernetes.io/zone"
HOSTNAME = "kubernetes.io/hostname"


def quantity(value: Any) -> float:
    """A Kubernetes quantity as a number: "500m" -> 0.5, "16Gi" -> 17179869184."""
    s = str(value)
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
    for u in sorted(units, key=len, reverse=True):
        if s.endswith(u):
            return float(s[: -len(u)]) * units[u]
    return float(s)


def requests(pod: Obj) -> Counter[str]:
    total: Counter[str] = Counter()
    for c in (pod.get("spec") or {}).get("containers") or []:
        for k, v in ((c.get("resources") or {}).get("requests") or {}).items():
            total[k] += quantity(v)
    return total


def tolerates(pod: Obj, taint: Obj) -> bool:
    if taint.get("effect") not in ("NoSchedule", "NoExecute"):
        return True  # PreferNoSchedule does not filter
    for t in (pod.get("spec") or {}).get("tolerations") or []:
        if t.get("effect") and t["effect"] != taint.get("effect"):
            continue
        if t.get("operator") == "Exists" and (not t.get("key") or t.get("key") == taint.get("key")):
            return True
        if t.get("key") == taint.get("key") and t.get("value", "") == taint.get("value", ""):
            return True
    return False


def _term_matches(labels: dict[str, str], term: Obj) -> bool:
    for expr in term.get("matchExpressions") or []:
        have = labels.get(expr["key"])
        op, values = expr["operator"], expr.get("values") or []
        if (op == "In" and have not in values) or (op == "NotIn" and have in values):
            return False
        if (op == "Exists" and have is None) or (op == "DoesNotExist" and have is not None):
            return False
    return True


def affinity_allows(pod: Obj, node: Obj) -> bool:
    labels = node["metadata"].get("labels") or {}
    spec = pod.get("spec") or {}
    for k, v in (spec.get("nodeSelector") or {}).items():
        if labels.get(k) != v:
            return False
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    terms = required.get("nodeSelectorTerms") or []
    return not terms or any(_term_matches(labels, t) for t in terms)


def _pod_affinity_node(pod: Obj, running: list[Obj], required: bool) -> str | None:
    """The node a pod affinity term (topologyKey hostname) points at, when a matching pod runs."""
    aff = ((pod.get("spec") or {}).get("affinity") or {}).get("podAffinity") or {}
    terms = (
        list(aff.get("requiredDuringSchedulingIgnoredDuringExecution") or [])
        if required
        else [w["podAffinityTerm"] for w in aff.get("preferredDuringSchedulingIgnoredDuringExecution") or []]
    )
    for term in terms:
        if term.get("topologyKey") != HOSTNAME:
            continue
        want = (term.get("labelSelector") or {}).get("matchLabels") or {}
        for other in running:
            if want.items() <= ((other["metadata"].get("labels") or {}).items()) and other["spec"].get("nodeName"):
                return str(other["spec"]["nodeName"])
    return None


def schedule(
    pod: Obj, nodes: list[Obj], pods_on: dict[str, list[Obj]], volume_zones: list[str | None], running: list[Obj]
) -> tuple[str | None, str]:
    """(node name, "") or (None, the FailedScheduling message). ``volume_zones``: the zone each bound
    volume of the pod is in (None for a volume that binds where the pod lands)."""
    want = requests(pod)
    reasons: Counter[str] = Counter()
    feasible = []
    has_required = bool(
        (((pod.get("spec") or {}).get("affinity") or {}).get("podAffinity") or {}).get(
            "requiredDuringSchedulingIgnoredDuringExecution"
        )
    )
    required_node = _pod_affinity_node(pod, running, required=True) if has_required else None
    for node in sorted(nodes, key=lambda n: n["metadata"]["name"]):
        name = node["metadata"]["name"]
        if has_required and name != required_node:
            reasons["node(s) didn't match pod affinity rules"] += 1
            continue
        labels = node["metadata"].get("labels") or {}
        untolerated = [t for t in (node.get("spec") or {}).get("taints") or [] if not tolerates(pod, t)]
        if untolerated:
            t = untolerated[0]
            reasons[f"node(s) had untolerated taint {{{t['key']}: {t.get('value', '')}}}"] += 1
            continue
        if not affinity_allows(pod, node):
            reasons["node(s) didn't match Pod's node affinity/selector"] += 1
            continue
        zones = {z for z in volume_zones if z}
        if zones and labels.get(ZONE) not in zones:
            reasons["node(s) had volume node affinity conflict"] += 1
            continue
        alloc = {k: quantity(v) for k, v in ((node.get("status") or {}).get("allocatable") or {}).items()}
        used: Counter[str] = Counter()
        for other in pods_on.get(name, []):
            used.update(requests(other))
        short = [k for k, v in want.items() if v > alloc.get(k, 0) - used.get(k, 0)]
        if short:
            reasons[f"Insufficient {short[0]}"] += 1
            continue
        feasible.append(name)
    if feasible:
        preferred = _pod_affinity_node(pod, running, required=False)
        return (preferred if preferred in feasible else feasible[0]), ""
    detail = ", ".join(f"{n} {r}" for r, n in sorted(reasons.items()))
    return None, f"0/{len(nodes)} nodes are available: {detail}. preemption: not eligible."
