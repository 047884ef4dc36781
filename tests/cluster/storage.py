"""The storage backend, the one part of a volume's life no real component here can play: an external
provisioner and a CSI attacher for a gp3-like driver, each as small as the contract it honours.

* Provisioner (kubernetes-csi/external-provisioner's contract): a claim of one of our classes that the PV
  controller annotated ``volume.kubernetes.io/storage-provisioner`` (and, for WaitForFirstConsumer, that the
  scheduler gave ``volume.kubernetes.io/selected-node``) gets a PV whose zone is **only** in
  ``spec.nodeAffinity`` (no zone label: a CSI driver reports topology, it does not label), ``spec.csi`` with
  our driver, and ``claimRef`` to the claim. The real PV controller binds them. The volume is a directory
  with a tmpfs of the claim's size mounted on it, so a full volume says ENOSPC as a real one does. A
  released PV whose policy is Delete is unmounted and deleted.
* Attacher (external-attacher's contract): a VolumeAttachment for our driver gets ``status.attached``. The
  real attach/detach controller creates and deletes them and reports Multi-Attach for ReadWriteOnce.
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
from pathlib import Path

from tests.cluster.api import Api, ApiError, Obj

DRIVER = "hostpath.csi.modelpvc.test"
ZONE = "topology.kubernetes.io/zone"


def quantity_bytes(q: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
    for u, m in sorted(units.items(), key=lambda kv: -len(kv[0])):
        if q.endswith(u):
            return int(float(q[: -len(u)]) * m)
    return int(float(q))


class Storage:
    def __init__(self, api: Api, root: Path) -> None:
        self.api = api
        self.root = root
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="storage")

    def install(self, class_name: str = "gp3-csi", default: bool = True) -> None:
        """The CSIDriver (attach required: RWO volumes attach to one node) and a gp3-like class."""
        self.api.ensure({"apiVersion": "storage.k8s.io/v1", "kind": "CSIDriver", "metadata": {"name": DRIVER},
                         "spec": {"attachRequired": True, "podInfoOnMount": False,
                                  "volumeLifecycleModes": ["Persistent"]}})
        ann = {"storageclass.kubernetes.io/is-default-class": "true"} if default else {}
        self.api.ensure({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                         "metadata": {"name": class_name, "annotations": ann}, "provisioner": DRIVER,
                         "reclaimPolicy": "Delete", "volumeBindingMode": "WaitForFirstConsumer",
                         "allowVolumeExpansion": True, "parameters": {"type": "gp3"}})

    def start(self) -> Storage:
        self.root.mkdir(parents=True, exist_ok=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for d in sorted(self.root.glob("pvc-*")):
            subprocess.run(["umount", "-l", str(d)], check=False, capture_output=True)

    def path_of(self, pv: Obj) -> Path:
        return Path(pv["spec"]["csi"]["volumeAttributes"]["path"])

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._provision()
                self._attach()
                self._reclaim()
            except (ApiError, OSError):
                pass  # the next round retries; the API may be restarting
            self._stop.wait(0.2)

    def _provision(self) -> None:
        for pvc in self.api.list("PersistentVolumeClaim"):
            meta = pvc["metadata"]
            ann = meta.get("annotations") or {}
            if ann.get("volume.kubernetes.io/storage-provisioner") != DRIVER or pvc["spec"].get("volumeName"):
                continue
            node_name = ann.get("volume.kubernetes.io/selected-node")
            sc = self.api.get("StorageClass", pvc["spec"].get("storageClassName") or "")
            if sc is None or (sc.get("volumeBindingMode") == "WaitForFirstConsumer" and not node_name):
                continue
            if (pvc["spec"].get("dataSourceRef") or {}).get("kind") not in (None, "PersistentVolumeClaim"):
                continue  # a populator's claim: the populator fills a prime claim instead
            name = f"pvc-{meta['uid']}"
            if self.api.get("PersistentVolume", name) is not None:
                continue
            zone = None
            if node_name:
                node = self.api.get("Node", node_name)
                zone = ((node or {}).get("metadata", {}).get("labels") or {}).get(ZONE)
            size = pvc["spec"]["resources"]["requests"]["storage"]
            path = self.root / name
            path.mkdir(parents=True, exist_ok=True)
            subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={quantity_bytes(size)},mode=0755", "tmpfs", str(path)],
                           check=True, capture_output=True)
            pv: Obj = {
                "apiVersion": "v1", "kind": "PersistentVolume",
                "metadata": {"name": name, "annotations": {"pv.kubernetes.io/provisioned-by": DRIVER}},
                "spec": {"capacity": {"storage": size}, "accessModes": pvc["spec"]["accessModes"],
                         "persistentVolumeReclaimPolicy": sc.get("reclaimPolicy", "Delete"),
                         "storageClassName": sc["metadata"]["name"], "volumeMode": "Filesystem",
                         "csi": {"driver": DRIVER, "volumeHandle": name, "fsType": "ext4",
                                 "volumeAttributes": {"path": str(path)}},
                         "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                                      "namespace": meta["namespace"], "name": meta["name"], "uid": meta["uid"]}}}
            if zone:
                pv["spec"]["nodeAffinity"] = {"required": {"nodeSelectorTerms": [
                    {"matchExpressions": [{"key": ZONE, "operator": "In", "values": [zone]}]}]}}
            try:
                self.api.create(pv)
            except ApiError as e:
                if e.code != 409:
                    raise

    def _attach(self) -> None:
        for va in self.api.list("VolumeAttachment"):
            if va["spec"].get("attacher") == DRIVER and not (va.get("status") or {}).get("attached"):
                with contextlib.suppress(ApiError):
                    self.api.patch("VolumeAttachment", va["metadata"]["name"], {"status": {"attached": True}},
                                   sub="status")

    def _reclaim(self) -> None:
        for pv in self.api.list("PersistentVolume"):
            if (pv["spec"].get("csi") or {}).get("driver") != DRIVER:
                continue
            if (pv.get("status") or {}).get("phase") == "Released" and \
                    pv["spec"].get("persistentVolumeReclaimPolicy") == "Delete":
                path = self.path_of(pv)
                subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)
                with contextlib.suppress(OSError):
                    path.rmdir()
                self.api.delete("PersistentVolume", pv["metadata"]["name"])


def wait_for(what: str, fn, timeout: float = 60, interval: float = 0.2):  # type: ignore[no-untyped-def]
    """Poll ``fn`` until it returns something truthy (no sleeps to wait for things: poll with a deadline)."""
    deadline = time.monotonic() + timeout
    while True:
        got = fn()
        if got:
            return got
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
