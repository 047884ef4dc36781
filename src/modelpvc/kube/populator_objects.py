"""The objects the volume populator makes for a claim: its prime claim, the hand-over of the filled volume,
its events. Pure builders (kube/populator.py sequences them)."""

from __future__ import annotations

from modelpvc.kube import objects as o

SELECTED_NODE = "volume.kubernetes.io/selected-node"
FOR_CLAIM = "modelpvc.io/populating"  # on the prime claim and the Job: the user's claim's uid
POPULATED_FROM = "modelpvc.io/populated-from"  # on the PV: namespace/ModelSource
COMPONENT = "modelpvc-populator"


def prime_name(pvc: o.Obj) -> str:
    return f"prime-{pvc['metadata']['uid']}"


def job_name(pvc: o.Obj) -> str:
    return f"populate-{pvc['metadata']['uid']}"


def owned_meta(pvc: o.Obj, name: str) -> o.Obj:
    """Metadata of an object made for the user's claim: labelled with its uid, owned by it (deleting the claim
    removes it)."""
    meta = pvc["metadata"]
    return {"name": name, "namespace": meta["namespace"],
            "labels": {FOR_CLAIM: meta["uid"], "app.kubernetes.io/managed-by": "modelpvc",
                       "app.kubernetes.io/component": COMPONENT},
            # No blockOwnerDeletion: setting it needs update on the claim's finalizers (OpenShift enforces
            # OwnerReferencesPermissionEnforcement), a right the populator does not otherwise need.
            "ownerReferences": [{"apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": meta["name"],
                                 "uid": meta["uid"]}]}


def prime_claim(pvc: o.Obj, node: str | None) -> o.Obj:
    """The claim the Job fills: the user's class, size and access modes, on the node its consumer was given."""
    meta = owned_meta(pvc, prime_name(pvc))
    if node:
        meta["annotations"] = {SELECTED_NODE: node}
    spec = {k: pvc["spec"][k] for k in ("accessModes", "resources", "storageClassName", "volumeMode")
            if pvc["spec"].get(k) is not None}
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": meta, "spec": spec}


def handover(pvc: o.Obj, source: o.Obj) -> o.Obj:
    """The patch pointing the prime claim's filled volume at the user's claim (the PV controller binds them)."""
    meta = pvc["metadata"]
    return {"metadata": {"annotations": {POPULATED_FROM: f"{meta['namespace']}/{source['metadata']['name']}"}},
            "spec": {"claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": meta["namespace"],
                                  "name": meta["name"], "uid": meta["uid"],
                                  "resourceVersion": meta["resourceVersion"]}}}


def claim_event(pvc: o.Obj, name: str, kind: str, reason: str, message: str, stamp: str) -> o.Obj:
    meta = pvc["metadata"]
    return {"apiVersion": "v1", "kind": "Event", "metadata": {"name": name, "namespace": meta["namespace"]},
            "involvedObject": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": meta["name"],
                               "namespace": meta["namespace"], "uid": meta["uid"]},
            "reason": reason, "message": message, "type": kind, "count": 1, "firstTimestamp": stamp,
            "lastTimestamp": stamp, "source": {"component": COMPONENT}}
