"""Why a pod of ours does not start, read from typed state only: container waiting reasons, the
PodScheduled condition, event reasons, the Secret it references, the pods that hold its claims. Never
from message text (a scheduler's or kubelet's message is shown to the user, not parsed).

A real cluster leaves such pods Pending forever; waiting on them costs hours. These are terminal unless a
human acts: a missing secret key, an image that cannot be pulled, unschedulable past a grace period (the
cluster autoscaler may still add a node), a ReadWriteOnce claim attached to another node.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from modelpvc.kube import objects as o
from modelpvc.kube.cluster import Cluster
from modelpvc.kube.spec import IMAGE_FIX, MOUNT

PENDING_GRACE = 120.0  # seconds a pod may stay unschedulable or unattachable before we call it stuck


@dataclass(frozen=True)
class Blocked:
    reason: str  # "config", "image", "unschedulable", "multi-attach", "crash"
    message: str
    hint: str


def waiting_reason(pod: o.Obj) -> str | None:
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        waiting = (cs.get("state") or {}).get("waiting")
        if waiting:
            return str(waiting.get("reason") or "")
    return None


IMAGE_PULL = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName")


def image_fix(image: str) -> str:
    """What to do about an image the cluster cannot pull: ours is built and mirrored by the user."""
    return IMAGE_FIX if "modelpvc" in image else \
        "check the image's name, that the cluster can reach its registry, and its pull secret"


INITIALIZER = "storage-initializer"  # KServe's init container name (StorageInitializerContainerName)


def init_failure(pod: o.Obj) -> int | None:
    """The exit code of a storage initializer that failed (and is being restarted), else None."""
    for cs in (pod.get("status") or {}).get("initContainerStatuses") or []:
        if cs.get("name") != INITIALIZER:
            continue
        term = (cs.get("state") or {}).get("terminated") or (cs.get("lastState") or {}).get("terminated")
        if term and int(term.get("exitCode", 0)) != 0:
            return int(term["exitCode"])
    return None


def missing_secret_keys(cluster: Cluster, pod: o.Obj) -> list[str]:
    """"KEY in Secret NAME" for every required secretKeyRef the pod's Secrets do not have."""
    ns = pod["metadata"]["namespace"]
    out = []
    spec = pod.get("spec") or {}
    for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        for e in c.get("env") or []:
            ref = (e.get("valueFrom") or {}).get("secretKeyRef")
            if not ref or ref.get("optional"):
                continue
            secret = cluster.get("Secret", ref["name"], ns)
            if secret is None:
                out.append(f"Secret {ref['name']} (it does not exist)")
            elif ref["key"] not in (secret.get("data") or {}) and ref["key"] not in (secret.get("stringData") or {}):
                have = ", ".join(sorted(secret.get("data") or {})) or "no keys"
                out.append(f"key {ref['key']} in Secret {ref['name']} (it has: {have})")
    return out


def _unschedulable(pod: o.Obj) -> str | None:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "PodScheduled" and c.get("status") == "False" and c.get("reason") == "Unschedulable":
            return str(c.get("message") or "unschedulable")
    return None


def _claims(pod: o.Obj) -> list[str]:
    return [v["persistentVolumeClaim"]["claimName"] for v in (pod.get("spec") or {}).get("volumes") or []
            if v.get("persistentVolumeClaim")]


def attach_holders(cluster: Cluster, pod: o.Obj) -> list[o.Obj]:
    """Pods on other nodes holding a ReadWriteOnce claim this (scheduled) pod needs, once the attach/detach
    controller reported this pod's attach failed (FailedAttachVolume): of two pods on two nodes, the blocked
    one is the one that has the event, not the one the volume is attached to."""
    ns, node = pod["metadata"]["namespace"], (pod.get("spec") or {}).get("nodeName")
    if not node or not any(e.get("reason") == "FailedAttachVolume"
                           for e in cluster.events(pod["metadata"]["name"], ns)):
        return []
    others = cluster.list("Pod", ns)
    out = []
    for claim in _claims(pod):
        pvc = cluster.get("PersistentVolumeClaim", claim, ns) or {}
        if "ReadWriteOnce" not in ((pvc.get("spec") or {}).get("accessModes") or []):
            continue
        out += [p for p in o.pods_using_claim(others, claim)
                if p["metadata"]["name"] != pod["metadata"]["name"] and p["spec"].get("nodeName") not in (None, node)]
    return out


class Watch:
    """Follows one pod's reasons to be stuck; ``check`` answers Blocked once one is terminal."""

    def __init__(self, cluster: Cluster, grace: float) -> None:
        self.cluster = cluster
        self.grace = grace
        self.since: dict[tuple[str, str], float] = {}

    def _held(self, key: tuple[str, str]) -> bool:
        first = self.since.setdefault(key, time.monotonic())
        return time.monotonic() - first >= self.grace

    def check(self, pod: o.Obj) -> Blocked | None:
        name = pod["metadata"]["name"]
        code = init_failure(pod)
        if code is not None:
            return Blocked("init", f"pod {name}: its storage initializer failed (exit {code})",
                           f"read its log: oc logs {name} -c {INITIALIZER}")
        reason = waiting_reason(pod)
        for cs in (pod.get("status") or {}).get("initContainerStatuses") or []:
            reason = reason or ((cs.get("state") or {}).get("waiting") or {}).get("reason")
        if reason == "CreateContainerConfigError":
            missing = missing_secret_keys(self.cluster, pod)
            what = "; ".join(missing) or "its configuration (a Secret or ConfigMap it references)"
            return Blocked("config", f"pod {name} cannot start: it needs {what}",
                           "name the keys the Secret really has with --secret-keys ACCESS,SECRET, or add them")
        if reason in IMAGE_PULL:
            image = ((pod.get("spec") or {}).get("containers") or [{}])[0].get("image")
            return Blocked("image", f"pod {name} cannot pull image {image} ({reason})",
                           image_fix(str(image)))
        if reason == "CrashLoopBackOff":
            return Blocked("crash", f"pod {name} keeps crashing (CrashLoopBackOff)", "read its log")
        unsched = _unschedulable(pod)
        if unsched and self._held((name, "unschedulable")):
            return Blocked("unschedulable", f"pod {name} cannot be scheduled: {unsched}",
                           "free room on the nodes it may use, or change its tolerations/node selector/zone")
        holders = attach_holders(self.cluster, pod)
        if holders and self._held((name, "attach")):
            names = ", ".join(f"{h['metadata']['name']} on {h['spec'].get('nodeName')}" for h in holders)
            return Blocked("multi-attach", f"pod {name} on node {pod['spec'].get('nodeName')} cannot attach its "
                                           f"ReadWriteOnce claim: it is in use by {names} (Multi-Attach)",
                           "run it on the holder's node (populate pins its Jobs there), stop the holder, or use a "
                           "ReadWriteMany claim")
        return None


def serves(pod: o.Obj, claim: str, path: str) -> bool:
    """The pod mounts ``pvc://claim/path`` at /mnt/models (how KServe mounts a pvc:// storageUri)."""
    spec = pod.get("spec") or {}
    vols = {v["name"]: (v.get("persistentVolumeClaim") or {}).get("claimName") for v in spec.get("volumes") or []}
    for c in spec.get("containers") or []:
        for m in c.get("volumeMounts") or []:
            if m.get("mountPath") == MOUNT and vols.get(m.get("name")) == claim:
                return (m.get("subPath") or "").strip("/") == path.strip("/")
    return False


def downloads(pod: o.Obj, uri: str) -> bool:
    """The pod's storage initializer fills /mnt/models from ``uri`` (an s3:// storageUri)."""
    for c in (pod.get("spec") or {}).get("initContainers") or []:
        if c.get("name") == INITIALIZER and (c.get("args") or [None])[0] in (uri, uri.rstrip("/")):
            return True
    return False


def foreign_initializer(pod: o.Obj) -> str | None:
    """The image of the pod's storage initializer when it is not modelpvc's (KServe's own, another
    ClusterStorageContainer's); None when it is ours or there is none."""
    for c in (pod.get("spec") or {}).get("initContainers") or []:
        if c.get("name") == INITIALIZER and "modelpvc" not in str(c.get("image")):
            return str(c.get("image"))
    return None


def is_ready(pod: o.Obj) -> bool:
    return o.is_true(pod, "Ready") and not (pod.get("metadata") or {}).get("deletionTimestamp")
