"""Where the server runs, read from the cluster: the nodes an InferenceService's predictor may use (node
selector, node affinity, tolerations), their zones, and whether a second predictor pod fits beside the
running one (what a surge-first rollout needs). Decisions, not scheduling: the cluster schedules."""

from __future__ import annotations

from dataclasses import dataclass

from modelpvc.kube import objects as o
from modelpvc.kube.cluster import ALL_NAMESPACES, Cluster, Forbidden, KindNotServed
from modelpvc.kube.spec import ModelSpec, Placement
from modelpvc.model.sizing import parse_quantity

ZONE = o.ZONE


def _tolerated(tolerations: list[o.Obj], taint: o.Obj) -> bool:
    if taint.get("effect") not in ("NoSchedule", "NoExecute"):
        return True
    return any((t.get("effect") in (None, "", taint.get("effect")))
               and ((t.get("operator") == "Exists" and t.get("key") in (None, "", taint.get("key")))
                    or (t.get("key") == taint.get("key") and t.get("value", "") == taint.get("value", "")))
               for t in tolerations)


def _selected(node: o.Obj, predictor: o.Obj) -> bool:
    labels = (node.get("metadata") or {}).get("labels") or {}
    if any(labels.get(k) != v for k, v in (predictor.get("nodeSelector") or {}).items()):
        return False
    terms = ((((predictor.get("affinity") or {}).get("nodeAffinity") or {})
              .get("requiredDuringSchedulingIgnoredDuringExecution") or {}).get("nodeSelectorTerms") or [])
    for term in terms:
        if all((labels.get(e["key"]) in (e.get("values") or [])) == (e["operator"] == "In")
               for e in term.get("matchExpressions") or [] if e["operator"] in ("In", "NotIn")):
            return True
    return not terms


def serving_nodes(cluster: Cluster, predictor: o.Obj) -> list[o.Obj]:
    """Nodes the predictor's selector, affinity and tolerations allow (capacity aside)."""
    tolerations = predictor.get("tolerations") or []
    return [n for n in cluster.list("Node") if _selected(n, predictor)
            and all(_tolerated(tolerations, t) for t in (n.get("spec") or {}).get("taints") or [])]


def live_predictor(cluster: Cluster, spec: ModelSpec) -> o.Obj | None:
    """The predictor of an InferenceService that serves this claim now, if any (none without KServe)."""
    try:
        isvcs = cluster.list("InferenceService", spec.namespace)
    except KindNotServed:
        return None
    for isvc in isvcs:
        model = ((isvc.get("spec") or {}).get("predictor") or {}).get("model") or {}
        if str(model.get("storageUri", "")).removeprefix("pvc://").split("/")[0] == spec.pvc:
            return dict(isvc["spec"]["predictor"])
    return None


def serving_placement(cluster: Cluster, spec: ModelSpec) -> Placement:
    """For the first Job of a WaitForFirstConsumer claim: the zones of the nodes the server may use (so the
    volume binds where it can be mounted), and the tolerations it has (so the Job may land on them)."""
    predictor = spec.serving.predictor() if (spec.serving.base or spec.serving.node_selector or
                                             spec.serving.tolerations) else live_predictor(cluster, spec)
    tolerations = tuple((predictor or {}).get("tolerations") or ())
    if spec.placement.zones:
        return Placement(zones=spec.placement.zones, tolerations=tolerations)
    if not predictor or not (predictor.get("nodeSelector") or predictor.get("affinity") or tolerations):
        return Placement()
    try:
        nodes = serving_nodes(cluster, predictor)
    except Forbidden:
        return like_predictor(predictor)
    zones = sorted({(n["metadata"].get("labels") or {}).get(ZONE, "") for n in nodes} - {""})
    return Placement(zones=tuple(zones), tolerations=tolerations)


def like_predictor(predictor: o.Obj) -> Placement:
    """Where the predictor's own rules let it run, for a user who may not list nodes: its node selector,
    required node affinity and tolerations, and a preference for GPU nodes when it asks for GPUs."""
    terms = ((((predictor.get("affinity") or {}).get("nodeAffinity") or {})
              .get("requiredDuringSchedulingIgnoredDuringExecution") or {}).get("nodeSelectorTerms") or [])
    gpus = any(str(k).endswith("/gpu") for c in [predictor.get("model") or {}, *(predictor.get("containers") or [])]
               for part in ("requests", "limits") for k in ((c.get("resources") or {}).get(part) or {}))
    return Placement(tolerations=tuple(predictor.get("tolerations") or ()),
                     node_selector=tuple(sorted((predictor.get("nodeSelector") or {}).items())),
                     node_terms=tuple(terms), prefer_gpu_nodes=gpus)


@dataclass(frozen=True)
class Room:
    fits: bool | None  # None: not known (this user may not read nodes or other namespaces' pods)
    why: str


def _requests(pod_or_container_list: list[o.Obj]) -> dict[str, float]:
    out: dict[str, float] = {}
    for c in pod_or_container_list:
        for k, v in ((c.get("resources") or {}).get("requests") or {}).items():
            out[k] = out.get(k, 0.0) + parse_quantity(str(v))
    return out


def room_for_second_predictor(cluster: Cluster, isvc: o.Obj, claim_modes: list[str]) -> Room:
    """Can a new predictor pod be scheduled while the old one runs (RollingUpdate surges first)? With a
    ReadWriteOnce claim it must land on the node that holds the claim; otherwise on any serving node in
    the volume's zone."""
    ns, name = isvc["metadata"]["namespace"], isvc["metadata"]["name"]
    pods = cluster.list("Pod", ns, labels={o.PREDICTOR_LABEL: name})
    running = [p for p in pods if (p.get("status") or {}).get("phase") == "Running" and p["spec"].get("nodeName")]
    if not running:
        return Room(True, "no predictor pod is running")
    pod = running[0]
    want = _requests(pod["spec"].get("containers") or [])
    try:
        return _room_on_nodes(cluster, pod, want, claim_modes)
    except Forbidden as e:
        return Room(None, f"not checked: this user may not read nodes or every namespace's pods ({e.message})")


def _room_on_nodes(cluster: Cluster, pod: o.Obj, want: dict[str, float], claim_modes: list[str]) -> Room:
    candidates = serving_nodes(cluster, pod["spec"])
    if "ReadWriteOnce" in claim_modes:
        candidates = [n for n in candidates if n["metadata"]["name"] == pod["spec"]["nodeName"]]
        where = f"node {pod['spec']['nodeName']} (the claim is ReadWriteOnce: only the node holding it may mount it)"
    else:
        zone = next(((n["metadata"].get("labels") or {}).get(ZONE) for n in cluster.list("Node")
                     if n["metadata"]["name"] == pod["spec"]["nodeName"]), None)
        candidates = [n for n in candidates if (n["metadata"].get("labels") or {}).get(ZONE) == zone]
        where = f"zone {zone} (where the volume is)"
    # A GPU node's room is taken by the pods of every namespace, not only the server's.
    everyone = [p for p in cluster.list("Pod", ALL_NAMESPACES)
                if (p.get("status") or {}).get("phase") not in o.TERMINAL]
    for node in candidates:
        alloc = {k: parse_quantity(str(v)) for k, v in ((node.get("status") or {}).get("allocatable") or {}).items()}
        used = _requests([c for p in everyone if p["spec"].get("nodeName") == node["metadata"]["name"]
                          for c in p["spec"].get("containers") or []])
        short = [k for k, v in want.items() if v > alloc.get(k, 0.0) - used.get(k, 0.0)]
        if not short:
            return Room(True, f"a second predictor pod fits on {node['metadata']['name']}")
        last = f"{node['metadata']['name']} has " + ", ".join(
            f"{_amount(k, alloc.get(k, 0.0) - used.get(k, 0.0))} {k} free (the predictor needs {_amount(k, want[k])})"
            for k in short)
    if not candidates:
        return Room(False, f"no node the predictor may use is in {where}")
    return Room(False, f"a second predictor pod does not fit in {where}: {last}")


def _amount(resource: str, value: float) -> str:
    """A resource amount as a person reads it: bytes in GiB, CPUs and GPUs as counts."""
    if resource in ("memory", "ephemeral-storage") or resource.startswith("hugepages-"):
        return f"{max(value, 0) / 2**30:.0f}Gi"
    return f"{max(value, 0):g}"


@dataclass(frozen=True)
class Explanation:
    evidence: str
    fix: str


# kube-scheduler's VolumeBinding plugin, older and newer wording.
VOLUME_CONFLICT = ("volume node affinity conflict", "didn't match PersistentVolume's node affinity")
ZONAL_FIX = ("a zonal volume is mounted only in its zone: populate a new claim from the serving nodes' zone "
             "(populate --zone, or --isvc-base so it finds them), or move the server there")


def claim_zone(cluster: Cluster, ns: str, claim: str) -> str | None:
    """Where a claim's volume is: its PV's node affinity when this user may read PVs, else the zone
    populate pinned its first Job to (recorded on the claim)."""
    pvc = cluster.get("PersistentVolumeClaim", claim, ns)
    if pvc is None:
        return None
    volume = (pvc.get("spec") or {}).get("volumeName")
    try:
        pv = cluster.get("PersistentVolume", volume) if volume else None
    except Forbidden:
        pv = None
    recorded = ((pvc.get("metadata") or {}).get("annotations") or {}).get(o.ZONE_ANNOTATION)
    return (o.pv_zone(pv) if pv else None) or recorded


def explain_unschedulable(cluster: Cluster, pod: o.Obj) -> Explanation | None:
    """Why a Pending pod fits no node, worked out from the nodes, taints and volume zones (the scheduler's
    own message is quoted as evidence)."""
    cond = next((c for c in (pod.get("status") or {}).get("conditions") or []
                 if c.get("type") == "PodScheduled" and c.get("reason") == "Unschedulable"), None)
    if cond is None:
        return None
    spec = pod.get("spec") or {}
    ns = pod["metadata"]["namespace"]
    volume_zones = {z for v in spec.get("volumes") or [] if (v.get("persistentVolumeClaim") or {}).get("claimName")
                    for z in [claim_zone(cluster, ns, v["persistentVolumeClaim"]["claimName"])] if z}
    message = str(cond.get("message"))
    evidence = f"scheduler: {message}"
    try:
        nodes = cluster.list("Node")
    except Forbidden:
        if volume_zones and any(m in message for m in VOLUME_CONFLICT):
            return Explanation(evidence + f"; its volume is in zone {', '.join(sorted(volume_zones))}", ZONAL_FIX)
        return Explanation(evidence,
                           "nodes not checked (this user may not read them): the scheduler's message above says "
                           "which of its rules no node passes; a project admin's fix is usually the pod's selector, "
                           "tolerations or requests, or a claim in the zone of the nodes it may use")
    selected = [n for n in nodes if _selected(n, spec)]
    taints = sorted({f"{t.get('key')}:{t.get('effect')}" for n in selected for t in (n.get("spec") or {}).get("taints")
                     or [] if not _tolerated(spec.get("tolerations") or [], t)})
    allowed = serving_nodes(cluster, spec)
    node_zones = {(n["metadata"].get("labels") or {}).get(ZONE) for n in allowed}
    if not selected:
        return Explanation(evidence, "no node matches its node selector/affinity: fix the selector")
    if not allowed:
        return Explanation(evidence + f"; untolerated taints: {', '.join(taints)}",
                           f"give it tolerations for {', '.join(taints)} (populate copies the serving pod's)")
    if volume_zones and not volume_zones & node_zones:
        return Explanation(evidence + f"; its volume is in zone {', '.join(sorted(volume_zones))}, the nodes it may "
                                      f"use are in {', '.join(sorted(z for z in node_zones if z))}",
                           ZONAL_FIX)
    return Explanation(evidence, "free capacity on the nodes it may use (CPU, memory, GPUs), or lower its requests")
