"""A fake Kubernetes API server on loopback: a test double, not a product.

It stores objects and answers get/list/create/patch (merge and server-side apply)/replace/delete for the
kinds our commands use, reached through a kubeconfig so the real client library and our CLI run
unmodified. Its controllers behave the way the real ones do where our commands depend on it:

* **server-side apply** with managed fields per manager, conflicts, and removal of fields a manager no
  longer applies (fake_ssa.py);
* **scheduling** over nodes with CPU/memory/GPU capacity, labels, zones and taints (fake_scheduler.py):
  a pod that fits nowhere stays Pending with a FailedScheduling event;
* **volumes**: StorageClasses with Immediate or WaitForFirstConsumer binding (a WFFC claim stays Pending,
  with the WaitForFirstConsumer condition, until its first pod is scheduled; the volume then takes that
  node's zone); a ReadWriteOnce claim attaches to one node (a pod elsewhere waits in ContainerCreating
  with a FailedAttachVolume "Multi-Attach" event); a fresh volume's root is owned by root (0755) and only
  a pod's fsGroup makes it group-writable (what the kubelet does for fsGroup);
* **pods that a real cluster leaves Pending stay Pending**: a missing secret key
  (CreateContainerConfigError), an image that cannot be pulled (ErrImagePull/ImagePullBackOff),
  unschedulable; Jobs enforce backoffLimit and activeDeadlineSeconds;
* **SCC admission** (OpenShift): in a namespace with ``openshift.io/sa.scc.*`` annotations a pod is
  admitted by restricted-v2 (uid and fsGroup from the namespace's ranges) or, for a service account granted
  it, anyuid (the image's uid, no fsGroup); the pod carries ``openshift.io/scc``;
* **KServe** (fake_kserve.py): a predictor Deployment per InferenceService, rolled out surge-first
  (RollingUpdate 25 %/25 %: the new pod must be scheduled while the old one runs); the InferenceService's
  ``status.observedGeneration`` is the Deployment's, as KServe's PropagateRawStatus copies it, and Ready
  stays True during a rollout while an old pod serves. Readiness is decided from the files vLLM would open.

Job pods with the modelpvc image are real local processes (``python -m modelpvc ARGS``) running as the
admitted uid, with each claim's mountPath mapped to its directory; their output is the pod's log.
Simplifications are listed in the helper modules and in docs/decisions.md.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import itertools
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

from tests.kube import fake_kserve, fake_scheduler, fake_ssa

Obj = dict[str, Any]
CLUSTER_SCOPED = {
    "namespaces",
    "nodes",
    "storageclasses",
    "persistentvolumes",
    "clusterstoragecontainers",
    "clusterservingruntimes",
}
KINDS = {
    "namespaces": "Namespace",
    "nodes": "Node",
    "secrets": "Secret",
    "persistentvolumeclaims": "PersistentVolumeClaim",
    "persistentvolumes": "PersistentVolume",
    "pods": "Pod",
    "events": "Event",
    "jobs": "Job",
    "inferenceservices": "InferenceService",
    "storageclasses": "StorageClass",
    "servingruntimes": "ServingRuntime",
    "clusterservingruntimes": "ClusterServingRuntime",
    "clusterstoragecontainers": "ClusterStorageContainer",
    "configmaps": "ConfigMap",
    "serviceaccounts": "ServiceAccount",
}
API = {
    "jobs": "batch/v1",
    "inferenceservices": "serving.kserve.io/v1beta1",
    "storageclasses": "storage.k8s.io/v1",
    "servingruntimes": "serving.kserve.io/v1alpha1",
    "clusterservingruntimes": "serving.kserve.io/v1alpha1",
    "clusterstoragecontainers": "serving.kserve.io/v1alpha1",
}
IMAGE_UID = 1001  # the Containerfile's USER: what a pod runs as when nothing sets runAsUser
PODS_GRACE = 0.2  # seconds a deleted pod stays Terminating (and keeps its volumes attached)
ZONE = fake_scheduler.ZONE


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _cstatus(name: str, state: Obj, ready: bool = False, restarts: int = 0) -> Obj:
    return {"name": name, "image": "fake", "imageID": "fake", "ready": ready, "restartCount": restarts, "state": state}


def _merge(dst: Any, src: Any) -> Any:
    """JSON merge patch (RFC 7386)."""
    if isinstance(dst, dict) and isinstance(src, dict):
        out = dict(dst)
        for k, v in src.items():
            if v is None:
                out.pop(k, None)
            else:
                out[k] = _merge(dst.get(k), v)
        return out
    return copy.deepcopy(src)


def _quantity(q: str) -> int:
    units = {
        "Ki": 1 << 10,
        "Mi": 1 << 20,
        "Gi": 1 << 30,
        "Ti": 1 << 40,
        "k": 10**3,
        "M": 10**6,
        "G": 10**9,
        "T": 10**12,
    }
    for u, f in units.items():
        if q.endswith(u):
            return int(float(q[: -len(u)]) * f)
    return int(float(q))


NODE_ALLOCATABLE_EPHEMERAL = 100 * 10**9  # what the downward API reports for an unset ephemeral-storage limit


def _resource_value(pod: Obj, c: Obj, field: Obj) -> int:
    """The downward API's resourceFieldRef: a container's limit or request (another container's when named),
    in units of the divisor; an unset limit is the node's allocatable (defaultPodLimitsForDownwardAPI)."""
    target = c
    if field.get("containerName"):
        pool = [*(pod["spec"].get("containers") or []), *(pod["spec"].get("initContainers") or [])]
        target = next(x for x in pool if x["name"] == field["containerName"])
    kind, _, res = field["resource"].partition(".")
    value = ((target.get("resources") or {}).get(kind) or {}).get(res)
    n = _quantity(str(value)) if value is not None else NODE_ALLOCATABLE_EPHEMERAL
    return n // _quantity(str(field.get("divisor", "1")))


def _labels_match(obj: Obj, selector: str) -> bool:
    """Equality-based label selectors: ``k=v``, ``k==v``, ``k!=v``, ``k``."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    for term in filter(None, selector.split(",")):
        if "!=" in term:
            k, v = term.split("!=", 1)
            if labels.get(k) == v:
                return False
        elif "=" in term:
            k, v = term.replace("==", "=").split("=", 1)
            if labels.get(k) != v:
                return False
        elif term not in labels:
            return False
    return True


class FakeCluster:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.objects: dict[tuple[str, str, str], Obj] = {}
        self.lock = threading.RLock()
        self.procs: dict[tuple[str, str], subprocess.Popen[bytes]] = {}
        self.rv = itertools.count(1)
        self.requests: list[tuple[str, str]] = []
        self.pullable = ["modelpvc", "vllm"]  # image substrings the registry serves
        self.runnable = ["modelpvc"]  # images whose container is our CLI, run as a local process
        self.scc_grants: dict[tuple[str, str], str] = {}  # (namespace, service account) -> SCC, e.g. anyuid
        # Cluster DNS as the pods see it: a service name (host:port) -> where it answers on loopback. Names
        # that resolve only inside the cluster stay unresolvable from the test process, as from a laptop.
        self.cluster_dns: dict[str, str] = {}
        self.deployments: dict[tuple[str, str], Obj] = {}  # the predictor Deployment KServe keeps per isvc
        self._stop = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> FakeCluster:
        if not self.list("nodes", None):
            self.add_node("node-a", gpus=2)
            self.add_node("node-b", gpus=2)
        if not self.list("storageclasses", None):
            self.add_storage_class("standard", "Immediate", default=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        threading.Thread(target=self._controllers, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.server.shutdown()
        for p in self.procs.values():
            if p.poll() is None:
                p.kill()

    def kubeconfig(self, path: Path, namespace: str = "default") -> Path:
        path.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "current-context": "fake",
                    "clusters": [{"name": "fake", "cluster": {"server": f"http://127.0.0.1:{self.port}"}}],
                    "users": [{"name": "dev", "user": {"token": "fake-token"}}],
                    "contexts": [
                        {"name": "fake", "context": {"cluster": "fake", "user": "dev", "namespace": namespace}}
                    ],
                }
            )
        )
        return path

    # -- store ----------------------------------------------------------------------------------
    def put(self, plural: str, ns: str, obj: Obj) -> Obj:
        with self.lock:
            obj = copy.deepcopy(obj)
            meta = obj.setdefault("metadata", {})
            if plural not in CLUSTER_SCOPED:
                meta["namespace"] = ns
            else:
                ns = ""
            meta.setdefault("uid", str(uuid.uuid4()))
            meta.setdefault("creationTimestamp", _now())
            meta.setdefault("generation", 1)
            meta["resourceVersion"] = str(next(self.rv))
            obj["kind"] = KINDS[plural]
            obj["apiVersion"] = API.get(plural, "v1")
            self.objects[(plural, ns, meta["name"])] = obj
            return copy.deepcopy(obj)

    def get(self, plural: str, ns: str, name: str) -> Obj | None:
        with self.lock:
            o = self.objects.get((plural, "" if plural in CLUSTER_SCOPED else ns, name))
            return copy.deepcopy(o) if o else None

    def list(self, plural: str, ns: str | None) -> list[Obj]:
        with self.lock:
            return [
                copy.deepcopy(o)
                for (p, n, _), o in sorted(self.objects.items())
                if p == plural and (ns is None or n == ns or plural in CLUSTER_SCOPED)
            ]

    def remove(self, plural: str, ns: str, name: str) -> Obj | None:
        """Delete as the API does: pods terminate gracefully; Jobs and InferenceServices take their pods."""
        with self.lock:
            key = (plural, "" if plural in CLUSTER_SCOPED else ns, name)
            o = self.objects.get(key)
            if o is None:
                return None
            if plural == "pods":
                o["metadata"].setdefault("deletionTimestamp", _now())
                o["metadata"]["_deleted_at"] = time.monotonic()
                p = self.procs.pop((ns, name), None)
                if p is not None and p.poll() is None:
                    p.kill()
                return copy.deepcopy(o)
            del self.objects[key]
            owner_label = {"jobs": "job-name", "inferenceservices": "serving.kserve.io/inferenceservice"}.get(plural)
            if owner_label:
                for pod in self.list("pods", ns):
                    if (pod["metadata"].get("labels") or {}).get(owner_label) == name:
                        self.remove("pods", ns, pod["metadata"]["name"])
            if plural == "inferenceservices":
                self.deployments.pop((ns, name), None)
            return o

    def event(self, ns: str, kind: str, name: str, reason: str, message: str, etype: str = "Warning") -> None:
        for ev in self.list("events", ns):
            if ev["involvedObject"]["name"] == name and ev["reason"] == reason and ev["message"] == message:
                return  # the real event recorder aggregates repeats into a count
        n = f"{name}.{next(self.rv)}"
        self.put(
            "events",
            ns,
            {
                "metadata": {"name": n},
                "involvedObject": {"kind": kind, "name": name, "namespace": ns},
                "reason": reason,
                "message": message,
                "type": etype,
                "lastTimestamp": _now(),
            },
        )

    # -- the cluster's shape (helpers for tests) ------------------------------------------------
    def add_node(
        self,
        name: str,
        zone: str = "zone-a",
        cpu: str = "16",
        memory: str = "64Gi",
        gpus: int = 0,
        labels: dict[str, str] | None = None,
        taints: list[Obj] | None = None,
    ) -> None:
        alloc = {
            "cpu": cpu,
            "memory": memory,
            "ephemeral-storage": "300Gi",
            "pods": "250",
            **({"nvidia.com/gpu": str(gpus)} if gpus else {}),
        }
        self.put(
            "nodes",
            "",
            {
                "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, ZONE: zone, **(labels or {})}},
                "spec": {"taints": taints or []},
                "status": {"allocatable": alloc, "capacity": alloc},
            },
        )

    def add_storage_class(self, name: str, binding: str = "WaitForFirstConsumer", default: bool = False) -> None:
        ann = {"storageclass.kubernetes.io/is-default-class": "true"} if default else {}
        self.put(
            "storageclasses",
            "",
            {
                "metadata": {"name": name, "annotations": ann},
                "provisioner": "ebs.csi.aws.com",
                "volumeBindingMode": binding,
                "reclaimPolicy": "Delete",
                "allowVolumeExpansion": True,
            },
        )

    def claim_dir(self, ns: str, name: str) -> Path:
        return self.root / "claims" / ns / name

    def add_namespace(self, name: str, annotations: dict[str, str] | None = None) -> None:
        self.put("namespaces", "", {"metadata": {"name": name, "annotations": annotations or {}}})

    def add_openshift_namespace(self, name: str, block: int = 1001130000) -> None:
        """A project as OpenShift creates it: the SCC annotations restricted-v2 admission reads."""
        self.add_namespace(
            name,
            {
                "openshift.io/sa.scc.uid-range": f"{block}/10000",
                "openshift.io/sa.scc.supplemental-groups": f"{block}/10000",
                "openshift.io/sa.scc.mcs": "s0:c27,c4",
            },
        )

    def grant_scc(self, ns: str, service_account: str, scc: str) -> None:
        """``oc adm policy add-scc-to-user SCC -z SERVICE_ACCOUNT -n NS``."""
        self.scc_grants[(ns, service_account)] = scc

    def add_secret(self, ns: str, name: str, data: dict[str, str]) -> None:
        enc = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
        self.put("secrets", ns, {"metadata": {"name": name}, "type": "Opaque", "data": enc})

    def add_pvc(
        self, ns: str, name: str, size: str = "10Gi", mode: str = "ReadWriteOnce", storage_class: str | None = None
    ) -> None:
        spec: Obj = {"accessModes": [mode], "resources": {"requests": {"storage": size}}}
        if storage_class:
            spec["storageClassName"] = storage_class
        self.put(
            "persistentvolumeclaims", ns, {"metadata": {"name": name}, "spec": spec, "status": {"phase": "Pending"}}
        )

    def add_pod(self, ns: str, name: str, node: str, claim: str, labels: dict[str, str] | None = None) -> None:
        """A running pod that holds ``claim`` on ``node`` (e.g. a serving pod started by hand)."""
        self.put(
            "pods",
            ns,
            {
                "metadata": {"name": name, "labels": labels or {"app": "holder"}},
                "spec": {
                    "nodeName": node,
                    "containers": [{"name": "c", "image": "vllm"}],
                    "volumes": [{"name": "m", "persistentVolumeClaim": {"claimName": claim}}],
                },
                "status": {"phase": "Running"},
            },
        )
        self._attach_claims(ns, self.get("pods", ns, name) or {}, node)

    # -- admission ------------------------------------------------------------------------------
    def admit_pod(self, ns: str, pod: Obj) -> Obj:
        """OpenShift SCC admission where the namespace has the annotations; nothing elsewhere."""
        nso = self.get("namespaces", "", ns) or {}
        ann = (nso.get("metadata") or {}).get("annotations") or {}
        if "openshift.io/sa.scc.uid-range" not in ann:
            return pod
        spec = pod.setdefault("spec", {})
        sa = spec.get("serviceAccountName") or "default"
        scc = self.scc_grants.get((ns, sa), "restricted-v2")
        sc = spec.setdefault("securityContext", {})
        if scc == "restricted-v2":
            first = int(ann["openshift.io/sa.scc.uid-range"].split("/")[0])
            groups = int(ann["openshift.io/sa.scc.supplemental-groups"].split(",")[0].split("/")[0])
            sc.setdefault("fsGroup", groups)
            for c in spec.get("containers") or []:
                c.setdefault("securityContext", {}).setdefault("runAsUser", first)
        pod.setdefault("metadata", {}).setdefault("annotations", {})["openshift.io/scc"] = scc
        return pod

    # -- controllers ----------------------------------------------------------------------------
    def _controllers(self) -> None:
        while not self._stop.wait(0.05):
            try:
                with self.lock:
                    self._reap_terminating()
                    self._bind_immediate()
                    self._run_jobs()
                    self._run_inference_services()
                    self._schedule_pods()
                    self._kubelet()
            except Exception as e:  # a controller bug must show in the test output, not kill the thread
                import traceback

                print(f"fakeapi controller error: {e!r}\n{traceback.format_exc()}", file=sys.stderr)

    def _reap_terminating(self) -> None:
        for pod in self.list("pods", None):
            t = pod["metadata"].get("_deleted_at")
            if t is not None and time.monotonic() - t >= PODS_GRACE:
                self.objects.pop(("pods", pod["metadata"]["namespace"], pod["metadata"]["name"]), None)

    def _class_of(self, pvc: Obj) -> Obj | None:
        name = (pvc.get("spec") or {}).get("storageClassName")
        for sc in self.list("storageclasses", None):
            if sc["metadata"]["name"] == name or (
                name is None
                and (sc["metadata"].get("annotations") or {}).get("storageclass.kubernetes.io/is-default-class")
                == "true"
            ):
                return sc
        return None

    def _bind_immediate(self) -> None:
        for pvc in self.list("persistentvolumeclaims", None):
            if (pvc.get("status") or {}).get("phase") == "Bound":
                continue
            sc = self._class_of(pvc)
            if sc is None:
                continue
            ns = pvc["metadata"]["namespace"]
            if sc.get("volumeBindingMode") == "WaitForFirstConsumer":
                if not any(
                    c.get("reason") == "WaitForFirstConsumer" for c in (pvc.get("status") or {}).get("conditions") or []
                ):
                    pvc["status"] = {
                        "phase": "Pending",
                        "conditions": [{"type": "Pending", "status": "True", "reason": "WaitForFirstConsumer"}],
                    }
                    self.put("persistentvolumeclaims", ns, pvc)
                    self.event(
                        ns,
                        "PersistentVolumeClaim",
                        pvc["metadata"]["name"],
                        "WaitForFirstConsumer",
                        "waiting for first consumer to be created before binding",
                        "Normal",
                    )
                continue
            zones = sorted({(n["metadata"].get("labels") or {}).get(ZONE, "") for n in self.list("nodes", None)})
            self._provision(pvc, zones[0] if zones else "")

    def _provision(self, pvc: Obj, zone: str) -> None:
        """Create the volume in ``zone`` and bind the claim: a fresh filesystem, its root owned by root."""
        ns, name = pvc["metadata"]["namespace"], pvc["metadata"]["name"]
        d = self.claim_dir(ns, name)
        d.mkdir(parents=True, exist_ok=True)
        os.chown(d, 0, 0)
        os.chmod(d, 0o755)
        pv = f"pvc-{pvc['metadata']['uid']}"
        size = pvc["spec"]["resources"]["requests"]["storage"]
        self.put(
            "persistentvolumes",
            "",
            {
                "metadata": {"name": pv, "labels": {ZONE: zone}},
                "spec": {
                    "capacity": {"storage": size},
                    "accessModes": pvc["spec"]["accessModes"],
                    "claimRef": {"namespace": ns, "name": name},
                    "nodeAffinity": {
                        "required": {
                            "nodeSelectorTerms": [
                                {"matchExpressions": [{"key": ZONE, "operator": "In", "values": [zone]}]}
                            ]
                        }
                    },
                },
                "status": {"phase": "Bound"},
            },
        )
        pvc["spec"]["volumeName"] = pv
        pvc["status"] = {"phase": "Bound", "accessModes": pvc["spec"]["accessModes"], "capacity": {"storage": size}}
        self.put("persistentvolumeclaims", ns, pvc)

    def volume_zone(self, ns: str, claim: str) -> str | None:
        pvc = self.get("persistentvolumeclaims", ns, claim)
        if not pvc or (pvc.get("status") or {}).get("phase") != "Bound":
            return None
        pv = self.get("persistentvolumes", "", pvc["spec"].get("volumeName", ""))
        return ((pv or {}).get("metadata", {}).get("labels") or {}).get(ZONE)

    # Jobs ------------------------------------------------------------------------------------------
    def _job_pods(self, ns: str, name: str) -> list[Obj]:
        return [p for p in self.list("pods", ns) if (p["metadata"].get("labels") or {}).get("job-name") == name]

    def _new_job_pod(self, ns: str, job: Obj, index: int | None = None) -> None:
        tpl = job["spec"]["template"]
        name = job["metadata"]["name"]
        meta: Obj = {
            "name": f"{name}-{'' if index is None else f'{index}-'}{uuid.uuid4().hex[:5]}",
            "labels": {
                **(tpl.get("metadata", {}).get("labels") or {}),
                "job-name": name,
                "controller-uid": job["metadata"]["uid"],
            },
            "annotations": dict((tpl.get("metadata") or {}).get("annotations") or {}),
        }
        if index is not None:
            meta["annotations"]["batch.kubernetes.io/job-completion-index"] = str(index)
        pod = self.admit_pod(ns, {"metadata": meta, "spec": copy.deepcopy(tpl["spec"]), "status": {"phase": "Pending"}})
        self.put("pods", ns, pod)

    def _run_jobs(self) -> None:
        for job in self.list("jobs", None):
            ns, name = job["metadata"]["namespace"], job["metadata"]["name"]
            status = job.setdefault("status", {})
            if any(c["type"] in ("Complete", "Failed") for c in status.get("conditions", [])):
                continue
            status.setdefault("startTime", _now())
            job["metadata"].setdefault("_started", time.monotonic())
            pods = [p for p in self._job_pods(ns, name) if "deletionTimestamp" not in p["metadata"]]
            failed = sum(1 for p in pods if p["status"].get("phase") == "Failed")
            deadline = job["spec"].get("activeDeadlineSeconds")
            if deadline is not None and time.monotonic() - job["metadata"]["_started"] > float(deadline):
                for p in pods:
                    if p["status"].get("phase") not in ("Succeeded", "Failed"):
                        self.remove("pods", ns, p["metadata"]["name"])
                status.update(
                    active=0,
                    conditions=[
                        {
                            "type": "Failed",
                            "status": "True",
                            "reason": "DeadlineExceeded",
                            "message": "Job was active longer than specified deadline",
                        }
                    ],
                )
                self.objects[("jobs", ns, name)].update(status=status)
                continue
            if job["spec"].get("completionMode") == "Indexed":
                self._run_indexed(ns, job, pods, failed)
                continue
            if any(p["status"].get("phase") == "Succeeded" for p in pods):
                status.update(succeeded=1, active=0, conditions=[{"type": "Complete", "status": "True"}])
            elif failed > int(job["spec"].get("backoffLimit", 6)):
                status.update(
                    failed=failed,
                    active=0,
                    conditions=[
                        {
                            "type": "Failed",
                            "status": "True",
                            "reason": "BackoffLimitExceeded",
                            "message": "Job has reached the specified backoff limit",
                        }
                    ],
                )
            elif all(p["status"].get("phase") == "Failed" for p in pods):
                self._new_job_pod(ns, job)
                status.update(active=1, failed=failed)
            else:
                continue
            self.objects[("jobs", ns, name)].update(status=status)

    def _run_indexed(self, ns: str, job: Obj, pods: list[Obj], failed: int) -> None:
        status = job["status"]
        n = int(job["spec"]["completions"])
        by_index: dict[int, list[Obj]] = {}
        for p in pods:
            by_index.setdefault(
                int(p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]), []
            ).append(p)
        succeeded = sum(
            1 for i in range(n) if any(p["status"].get("phase") == "Succeeded" for p in by_index.get(i, []))
        )
        status["succeeded"] = succeeded
        if succeeded == n:
            status["conditions"] = [{"type": "Complete", "status": "True"}]
        elif failed > int(job["spec"].get("backoffLimit", 6)):
            status["conditions"] = [
                {
                    "type": "Failed",
                    "status": "True",
                    "reason": "BackoffLimitExceeded",
                    "message": "Job has reached the specified backoff limit",
                }
            ]
        else:
            for i in range(n):
                mine = by_index.get(i, [])
                if all(p["status"].get("phase") == "Failed" for p in mine):
                    self._new_job_pod(ns, job, i)
        self.objects[("jobs", job["metadata"]["namespace"], job["metadata"]["name"])].update(status=status)

    # InferenceServices (KServe + the Deployment controller) -----------------------------------------
    def _runtime(self, ns: str, name: str) -> Obj | None:
        return self.get("servingruntimes", ns, name) or self.get("clusterservingruntimes", "", name)

    def _run_inference_services(self) -> None:
        for isvc in self.list("inferenceservices", None):
            ns, name = isvc["metadata"]["namespace"], isvc["metadata"]["name"]
            status = isvc.setdefault("status", {})
            model = isvc["spec"]["predictor"]["model"]
            runtime = self._runtime(ns, model.get("runtime", ""))
            if runtime is None:
                status.update(
                    conditions=[
                        {
                            "type": "Ready",
                            "status": "False",
                            "reason": "RuntimeNotRecognized",
                            "message": f"ServingRuntime {model.get('runtime')} not found",
                        }
                    ],
                    modelStatus={"transitionStatus": "InvalidSpec"},
                )
                self.objects[("inferenceservices", ns, name)]["status"] = status
                continue
            spec, _claim, _sub = fake_kserve.predictor_pod_spec(
                isvc, runtime, self.list("clusterstoragecontainers", None), self._s3_credentials(ns, isvc)
            )
            template_hash = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:10]
            dep = self.deployments.setdefault((ns, name), {"generation": 0, "hash": None})
            if dep["hash"] != template_hash:
                dep.update(generation=dep["generation"] + 1, hash=template_hash, spec=spec)
            replicas = max(1, int(isvc["spec"]["predictor"].get("minReplicas", 1) or 1))
            pods = [
                p
                for p in self.list("pods", ns)
                if (p["metadata"].get("labels") or {}).get("serving.kserve.io/inferenceservice") == name
                and "deletionTimestamp" not in p["metadata"]
            ]
            new = [p for p in pods if p["metadata"]["labels"].get("pod-template-hash") == template_hash]
            old = [p for p in pods if p not in new]
            # RollingUpdate maxSurge 25 % (rounded up: 1) / maxUnavailable 25 % (rounded down: 0).
            for _ in range(replicas - len(new)):
                meta = {
                    "name": f"{name}-predictor-{template_hash}-{uuid.uuid4().hex[:5]}",
                    "labels": {
                        "serving.kserve.io/inferenceservice": name,
                        "component": "predictor",
                        "app": f"isvc.{name}-predictor",
                        "pod-template-hash": template_hash,
                    },
                }
                self.put(
                    "pods",
                    ns,
                    self.admit_pod(ns, {"metadata": meta, "spec": copy.deepcopy(spec), "status": {"phase": "Pending"}}),
                )
            ready = [p for p in pods if _ready(p)]
            new_ready = [p for p in new if _ready(p)]
            if len(new_ready) >= replicas:
                for p in old:
                    self.remove("pods", ns, p["metadata"]["name"])
            available = len(ready) >= replicas
            crashing = [p for p in new if _waiting_reason(p) == "CrashLoopBackOff"]
            cond = {"type": "Ready", "status": "True" if available else "False"}
            pred = {"type": "PredictorReady", "status": cond["status"]}
            model_status: Obj = {
                "transitionStatus": "UpToDate" if len(new_ready) >= replicas and not old else "InProgress"
            }
            if crashing:
                msg = (self._pod_log(ns, crashing[0]["metadata"]["name"]).strip().splitlines() or ["failed"])[-1]
                model_status = {
                    "transitionStatus": "BlockedByFailedLoad",
                    "lastFailureInfo": {"reason": "ModelLoadFailed", "message": msg},
                }
                if not available:
                    cond.update(reason="CrashLoopBackOff", message=msg)
            status.update(
                conditions=[cond, pred],
                observedGeneration=dep["generation"],
                modelStatus=model_status,
                url=f"https://{name}-{ns}.apps.example.com" if available else None,
            )
            self.objects[("inferenceservices", ns, name)]["status"] = status

    def _s3_credentials(self, ns: str, isvc: Obj) -> list[Obj]:
        """KServe's CreateSecretVolumeAndEnv: the S3 secret listed by the predictor's service account."""
        sa = self.get("serviceaccounts", ns, isvc["spec"]["predictor"].get("serviceAccountName") or "default")
        for ref in (sa or {}).get("secrets") or []:
            secret = self.get("secrets", ns, ref["name"])
            if secret is not None:
                return fake_kserve.s3_env(secret)
        return []

    def _pod_log(self, ns: str, name: str) -> str:
        p = self.root / "logs" / ns / f"{name}.log"
        return p.read_text() if p.exists() else ""

    # Scheduling -------------------------------------------------------------------------------------
    def _pods_on_nodes(self) -> dict[str, list[Obj]]:
        out: dict[str, list[Obj]] = {}
        for p in self.list("pods", None):
            node = p["spec"].get("nodeName")
            if node and p["status"].get("phase") not in ("Succeeded", "Failed"):
                out.setdefault(node, []).append(p)
        return out

    def _schedule_pods(self) -> None:
        nodes = self.list("nodes", None)
        for pod in self.list("pods", None):
            if (
                pod["spec"].get("nodeName")
                or pod["status"].get("phase") != "Pending"
                or "deletionTimestamp" in pod["metadata"]
            ):
                continue
            ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
            claims = _claims(pod)
            # kube-scheduler's VolumeBinding filter: a pod whose claim does not exist yet stays Pending and is
            # retried when the claim appears (Argo CD, for one, may create the Job before the PVC of its wave).
            missing = [c for c in claims if self.get("persistentvolumeclaims", ns, c) is None]
            if missing:
                self._unschedulable(
                    ns, pod, f'0/{len(nodes)} nodes are available: persistentvolumeclaim "{missing[0]}" not found.')
                continue
            rwop = [c for c in claims if self._rwop_in_use(ns, c, name)]
            if rwop:
                self._unschedulable(
                    ns,
                    pod,
                    f"0/{len(nodes)} nodes are available: {len(nodes)} node has pod using "
                    f"PersistentVolumeClaim with the same name and ReadWriteOncePod access mode.",
                )
                continue
            zones = [self.volume_zone(ns, c) for c in claims]
            node, why = fake_scheduler.schedule(
                pod,
                nodes,
                self._pods_on_nodes(),
                zones,
                [p for p in self.list("pods", ns) if p["status"].get("phase") == "Running"],
            )
            if node is None:
                self._unschedulable(ns, pod, why)
                continue
            zone = next((n["metadata"]["labels"].get(ZONE, "") for n in nodes if n["metadata"]["name"] == node), "")
            for c in claims:  # WaitForFirstConsumer: the volume is provisioned where its first pod landed
                pvc = self.get("persistentvolumeclaims", ns, c)
                if pvc is not None and (pvc.get("status") or {}).get("phase") != "Bound":
                    self._provision(pvc, zone)
            live = self.objects[("pods", ns, name)]
            live["spec"]["nodeName"] = node
            live["status"]["conditions"] = [{"type": "PodScheduled", "status": "True"}]
            self.event(ns, "Pod", name, "Scheduled", f"Successfully assigned {ns}/{name} to {node}", "Normal")

    def _unschedulable(self, ns: str, pod: Obj, message: str) -> None:
        live = self.objects[("pods", ns, pod["metadata"]["name"])]
        live["status"]["conditions"] = [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}
        ]
        self.event(ns, "Pod", pod["metadata"]["name"], "FailedScheduling", message)

    def _rwop_in_use(self, ns: str, claim: str, me: str) -> bool:
        pvc = self.get("persistentvolumeclaims", ns, claim) or {}
        if "ReadWriteOncePod" not in (pvc.get("spec") or {}).get("accessModes", []):
            return False
        return any(
            p["metadata"]["name"] != me
            and claim in _claims(p)
            and p["spec"].get("nodeName")
            and p["status"].get("phase") not in ("Succeeded", "Failed")
            for p in self.list("pods", ns)
        )

    # Kubelet -----------------------------------------------------------------------------------------
    def _attach_claims(self, ns: str, pod: Obj, node: str) -> str | None:
        """Attach the pod's RWO volumes to ``node``; the Multi-Attach message when one is used elsewhere."""
        for claim in _claims(pod):
            pvc = self.get("persistentvolumeclaims", ns, claim) or {}
            if "ReadWriteOnce" not in (pvc.get("spec") or {}).get("accessModes", []):
                continue
            users = [
                p
                for p in self.list("pods", ns)
                if p["metadata"]["name"] != pod["metadata"]["name"]
                and claim in _claims(p)
                and p["spec"].get("nodeName") not in (None, node)
                and p["status"].get("phase") in ("Running", "Pending")
                and _attached(p)
            ]
            if users:
                names = ", ".join(p["metadata"]["name"] for p in users)
                return (
                    f'Multi-Attach error for volume "{pvc["spec"].get("volumeName", claim)}" Volume is already '
                    f"used by pod(s) {names}"
                )
        return None

    def _kubelet(self) -> None:
        for pod in self.list("pods", None):
            ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
            node = pod["spec"].get("nodeName")
            live = self.objects.get(("pods", ns, name))
            if live is None or not node or "deletionTimestamp" in pod["metadata"]:
                continue
            phase = pod["status"].get("phase")
            if phase == "Running":
                if _waiting_reason(pod) == "CrashLoopBackOff":
                    self._start_server(ns, live)  # the container restarts and tries to load again
                self._watch_process(ns, live)
                continue
            if phase != "Pending":
                continue
            why = self._attach_claims(ns, pod, node)
            if why:
                self.event(ns, "Pod", name, "FailedAttachVolume", why)
                live["status"]["containerStatuses"] = [
                    _cstatus(c["name"], {"waiting": {"reason": "ContainerCreating"}}) for c in pod["spec"]["containers"]
                ]
                continue
            live["metadata"]["_attached"] = True
            c = pod["spec"]["containers"][0]
            if not any(s in c.get("image", "") for s in self.pullable):
                reason = (
                    "ImagePullBackOff"
                    if (live["status"].get("containerStatuses") or [{}])[0]
                    .get("state", {})
                    .get("waiting", {})
                    .get("reason")
                    in ("ErrImagePull", "ImagePullBackOff")
                    else "ErrImagePull"
                )
                live["status"]["containerStatuses"] = [
                    _cstatus(
                        c["name"],
                        {"waiting": {"reason": reason, "message": f'Back-off pulling image "{c.get("image")}"'}},
                    )
                ]
                self.event(ns, "Pod", name, "Failed", f'Failed to pull image "{c.get("image")}": manifest unknown')
                continue
            env, missing = self._resolve_env(ns, c)
            if missing:
                live["status"]["containerStatuses"] = [
                    _cstatus(c["name"], {"waiting": {"reason": "CreateContainerConfigError", "message": missing}})
                ]
                self.event(ns, "Pod", name, "Failed", f"Error: {missing}")
                continue
            self._mount_volumes(ns, pod)
            if pod["spec"].get("initContainers") and not live["metadata"].get("_initialized"):
                self._run_init(ns, live)
                continue
            if (pod["metadata"].get("labels") or {}).get("component") == "predictor":
                self._start_server(ns, live)
            elif any(s in c.get("image", "") for s in self.runnable):
                self._start_process(ns, live, c, env)
            else:
                live["status"].update(phase="Running", containerStatuses=[_cstatus(c["name"], {"running": {}}, True)])

    def _run_init(self, ns: str, live: Obj) -> None:
        """The pod's (one) init container: a real process for our image, run to completion before the main
        container starts; a failure leaves the pod Pending in Init:CrashLoopBackOff, as restarts would."""
        name = live["metadata"]["name"]
        c = live["spec"]["initContainers"][0]
        key = (ns, f"{name}/{c['name']}")
        statuses = live["status"].get("initContainerStatuses") or []
        if statuses and (statuses[0]["state"].get("waiting") or {}).get("reason") == "CrashLoopBackOff":
            return
        p = self.procs.get(key)
        if p is None:
            log = self.root / "logs" / ns / f"{name}.{c['name']}.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            if not any(s in c.get("image", "") for s in self.runnable):
                log.write_text(f"fake: image {c.get('image')} (KServe's own initializer) is not simulated\n")
                self._init_failed(live, c, 1)
                return
            env, missing = self._resolve_env(ns, c, live)
            if missing:
                live["status"]["initContainerStatuses"] = [
                    _cstatus(c["name"], {"waiting": {"reason": "CreateContainerConfigError", "message": missing}})
                ]
                return
            self._start_process(ns, live, c, env, key=key, log=log)
            live["status"].update(phase="Pending", initContainerStatuses=[_cstatus(c["name"], {"running": {}})])
            return
        if p.poll() is None:
            return
        if p.returncode != 0:
            self._init_failed(live, c, p.returncode)
            return
        live["status"]["initContainerStatuses"] = [
            _cstatus(c["name"], {"terminated": {"exitCode": 0, "reason": "Completed"}}, True)
        ]
        live["metadata"]["_initialized"] = True

    def _init_failed(self, live: Obj, c: Obj, rc: int) -> None:
        st = _cstatus(c["name"], {"waiting": {"reason": "CrashLoopBackOff"}}, restarts=1)
        st["lastState"] = {"terminated": {"exitCode": rc, "reason": "Error"}}
        live["status"].update(phase="Pending", initContainerStatuses=[st])

    def emptydir(self, ns: str, pod: str, volume: str) -> Path:
        """An EmptyDir's directory on this "node": world-writable, as the kubelet makes it."""
        d = self.root / "emptydirs" / ns / pod / volume
        if not d.exists():
            d.mkdir(parents=True)
            d.chmod(0o777)
        return d

    def _resolve_env(self, ns: str, c: Obj, pod: Obj | None = None) -> tuple[dict[str, str], str | None]:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        for e in c.get("env", []):
            if "value" in e:
                env[e["name"]] = str(e["value"])
                continue
            field = (e.get("valueFrom") or {}).get("resourceFieldRef")
            if field is not None and pod is not None:
                env[e["name"]] = str(_resource_value(pod, c, field))
                continue
            ref = (e.get("valueFrom") or {}).get("secretKeyRef")
            if not ref:
                continue
            secret = self.get("secrets", ns, ref["name"])
            data = (secret or {}).get("data") or {}
            if ref["key"] not in data:
                if ref.get("optional"):
                    continue
                if secret is None:
                    return env, f'secret "{ref["name"]}" not found'
                return env, f"couldn't find key {ref['key']} in Secret {ns}/{ref['name']}"
            env[e["name"]] = base64.b64decode(data[ref["key"]]).decode()
        for k, v in env.items():
            for name, target in self.cluster_dns.items():
                env[k] = v = v.replace(name, target)
        return env, None

    def _mount_volumes(self, ns: str, pod: Obj) -> None:
        """The kubelet's fsGroup handling: the volume's files get the group, group rw and setgid dirs."""
        group = (pod["spec"].get("securityContext") or {}).get("fsGroup")
        if group is None:
            return
        for claim in _claims(pod):
            d = self.claim_dir(ns, claim)
            st = d.stat()
            if st.st_gid == int(group) and st.st_mode & 0o2070 == 0o2070:
                continue  # OnRootMismatch: the root already matches
            for dirpath, _dirs, files in os.walk(d):
                os.chown(dirpath, -1, int(group))
                os.chmod(dirpath, os.stat(dirpath).st_mode | 0o2070)
                for f in files:
                    p = os.path.join(dirpath, f)
                    os.chown(p, -1, int(group))
                    os.chmod(p, os.stat(p).st_mode | 0o060)

    def _identity(self, pod: Obj, c: Obj) -> tuple[int, list[int]]:
        uid = (
            (c.get("securityContext") or {}).get("runAsUser")
            or (pod["spec"].get("securityContext") or {}).get("runAsUser")
            or IMAGE_UID
        )
        group = (pod["spec"].get("securityContext") or {}).get("fsGroup")
        return int(uid), [int(group)] if group is not None else []

    def _start_process(
        self,
        ns: str,
        live: Obj,
        c: Obj,
        env: dict[str, str],
        key: tuple[str, str] | None = None,
        log: Path | None = None,
    ) -> None:
        name = live["metadata"]["name"]
        mounts = {}
        for m in c.get("volumeMounts", []):
            vol = next(v for v in live["spec"]["volumes"] if v["name"] == m["name"])
            claim = (vol.get("persistentVolumeClaim") or {}).get("claimName")
            if claim:
                mounts[m["mountPath"]] = str(self.claim_dir(ns, claim) / m.get("subPath", ""))
            elif "emptyDir" in vol:
                mounts[m["mountPath"]] = str(self.emptydir(ns, name, vol["name"]))
        index = (live["metadata"].get("annotations") or {}).get("batch.kubernetes.io/job-completion-index")
        if index is not None:
            env["JOB_COMPLETION_INDEX"] = index
        args = []
        for a in c.get("args", []):
            for k, v in env.items():  # Kubernetes expands $(VAR) in args from the container's env
                a = a.replace(f"$({k})", v)
            for mp, local in sorted(mounts.items(), key=lambda kv: -len(kv[0])):  # the deepest mount wins
                if a == mp or a.startswith(mp + "/"):
                    a = local + a[len(mp) :]
                    break
            args.append(a)
        env.setdefault("HOME", "/")  # a random UID's HOME is not writable: the tool must not need it
        env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2] / "src")
        uid, groups = self._identity(live, c)
        caps = "+dac_read_search"  # to reach the interpreter under /root; grants no writes
        cmd = [
            "setpriv",
            "--reuid",
            str(uid),
            "--regid",
            "0",
            f"--groups={','.join(map(str, groups))}" if groups else "--clear-groups",
            f"--inh-caps={caps}",
            f"--ambient-caps={caps}",
            sys.executable,
            "-m",
            "modelpvc",
            # The image's scripts: `modelpvc ARGS`, or KServe's initializer contract `modelpvc-storage-initializer`.
            *(["storage-initializer"] if c.get("command") == ["modelpvc-storage-initializer"] else []),
            *args,
        ]
        log = log or self.root / "logs" / ns / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "wb") as out:
            self.procs[key or (ns, name)] = subprocess.Popen(
                cmd, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        if key is None:
            live["status"].update(phase="Running", containerStatuses=[_cstatus(c["name"], {"running": {}}, True)])

    def _watch_process(self, ns: str, live: Obj) -> None:
        p = self.procs.get((ns, live["metadata"]["name"]))
        if p is None or p.poll() is None:
            return
        rc = p.returncode
        live["status"]["phase"] = "Succeeded" if rc == 0 else "Failed"
        live["status"]["containerStatuses"] = [
            _cstatus(
                live["spec"]["containers"][0]["name"],
                {"terminated": {"exitCode": rc, "reason": "Completed" if rc == 0 else "Error"}},
            )
        ]

    def _start_server(self, ns: str, live: Obj) -> None:
        """A vLLM predictor: Ready if it would load what it finds at /mnt/models, else CrashLoopBackOff."""
        c = live["spec"]["containers"][0]
        mount = next(m for m in c["volumeMounts"] if m["mountPath"] == fake_kserve.MOUNT)
        vol = next(v for v in live["spec"]["volumes"] if v["name"] == mount["name"])
        if "emptyDir" in vol:
            d = self.emptydir(ns, live["metadata"]["name"], vol["name"])
        else:
            d = self.claim_dir(ns, vol["persistentVolumeClaim"]["claimName"]) / mount.get("subPath", "")
        err = fake_kserve.would_load(d, [str(a) for a in c.get("args", [])])
        log = self.root / "logs" / ns / f"{live['metadata']['name']}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        if err is None:
            log.write_text("INFO Starting vLLM API server\nINFO Application startup complete.\n")
            live["status"].update(
                phase="Running",
                containerStatuses=[_cstatus(c["name"], {"running": {}}, True)],
                conditions=[{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True"}],
            )
        else:
            log.write_text(
                f"INFO Starting vLLM API server\nERROR Failed to load model from {fake_kserve.MOUNT}: {err}\n"
            )
            live["status"].update(
                phase="Running",
                containerStatuses=[_cstatus(c["name"], {"waiting": {"reason": "CrashLoopBackOff"}}, restarts=3)],
            )

    # -- HTTP -----------------------------------------------------------------------------------
    def _handler(self) -> type[BaseHTTPRequestHandler]:
        cluster = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                return None

            def _send(self, code: int, body: Any) -> None:
                raw = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def _status(self, code: int, reason: str, message: str) -> None:
                self._send(
                    code,
                    {
                        "kind": "Status",
                        "apiVersion": "v1",
                        "status": "Failure",
                        "message": message,
                        "reason": reason,
                        "code": code,
                    },
                )

            def _route(self) -> tuple[str, str, str | None, str | None, dict[str, list[str]]]:
                u = urlsplit(self.path)
                parts = [p for p in u.path.split("/") if p]
                q = parse_qs(u.query)
                parts = parts[2:] if parts[0] == "api" else parts[3:]
                ns = ""
                if parts and parts[0] == "namespaces" and len(parts) >= 3:
                    ns = parts[1]
                    parts = parts[2:]
                plural = parts[0]
                name = parts[1] if len(parts) > 1 else None
                sub = parts[2] if len(parts) > 2 else None
                return plural, ns, name, sub, q

            def _body(self) -> Any:
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n) if n else b"{}"
                return yaml.safe_load(raw) if "yaml" in (self.headers.get("Content-Type") or "") else json.loads(raw)

            def do_GET(self) -> None:
                plural, ns, name, sub, q = self._route()
                cluster.requests.append(("GET", self.path))
                if sub == "log":
                    return self._log(ns, name or "", q.get("follow") == ["true"], (q.get("container") or [""])[0])
                if name is None:
                    items = cluster.list(plural, ns or None)
                    for sel in q.get("labelSelector", []):
                        items = [o for o in items if _labels_match(o, sel)]
                    for sel in q.get("fieldSelector", []):
                        for kv in sel.split(","):
                            k, v = kv.split("=", 1)
                            items = [o for o in items if _field(o, k) == v]
                    return self._send(
                        200,
                        {
                            "kind": KINDS[plural] + "List",
                            "apiVersion": API.get(plural, "v1"),
                            "metadata": {"resourceVersion": str(next(cluster.rv))},
                            "items": [fake_ssa.public(o) for o in items],
                        },
                    )
                obj = cluster.get(plural, ns, name)
                if obj is None:
                    return self._status(404, "NotFound", f'{plural} "{name}" not found')
                return self._send(200, fake_ssa.public(obj))

            def _send_file(self, path: Path) -> None:
                data = path.read_bytes() if path.exists() else b""
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _log(self, ns: str, name: str, follow: bool, container: str = "") -> None:
                path = cluster.root / "logs" / ns / f"{name}.log"
                pod = cluster.get("pods", ns, name)
                if pod is None:
                    return self._status(404, "NotFound", f'pods "{name}" not found')
                if container and container in [c["name"] for c in pod["spec"].get("initContainers") or []]:
                    path = cluster.root / "logs" / ns / f"{name}.{container}.log"
                    return self._send_file(path)
                if pod["status"].get("phase") == "Pending":
                    return self._status(
                        400,
                        "BadRequest",
                        f'container "{pod["spec"]["containers"][0]["name"]}" in '
                        f'pod "{name}" is waiting to start: ContainerCreating',
                    )
                if not follow:
                    return self._send_file(path)
                self.send_response(200)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                pos = 0
                while True:
                    cur = cluster.get("pods", ns, name) or {}
                    done = (
                        cur.get("status", {}).get("phase") in ("Succeeded", "Failed", None)
                        or "deletionTimestamp" in cur.get("metadata", {})
                        or ((cur.get("metadata", {}).get("labels") or {}).get("component") == "predictor")
                    )
                    data = path.read_bytes()[pos:] if path.exists() else b""
                    if data:
                        pos += len(data)
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                        self.wfile.flush()
                    if done and not data:
                        break
                    time.sleep(0.05)
                self.wfile.write(b"0\r\n\r\n")
                return None

            def do_POST(self) -> None:
                plural, ns, _name, _sub, q = self._route()
                body = self._body()
                cluster.requests.append(("POST", self.path))
                name = body["metadata"].get("name")
                with cluster.lock:
                    if cluster.get(plural, ns, name) is not None:
                        return self._status(409, "AlreadyExists", f'{plural} "{name}" already exists')
                    if plural not in CLUSTER_SCOPED and ns and cluster.get("namespaces", "", ns) is None:
                        return self._status(404, "NotFound", f'namespaces "{ns}" not found')
                    body.pop("status", None)
                    if plural == "pods":
                        body = cluster.admit_pod(ns, body)
                        body["status"] = {"phase": "Pending"}
                    if plural == "persistentvolumeclaims":
                        body["status"] = {"phase": "Pending"}
                    obj = fake_ssa.record_update(None, body, (q.get("fieldManager") or ["kubectl-create"])[0])
                    return self._send(201, fake_ssa.public(cluster.put(plural, ns, obj)))

            def do_PATCH(self) -> None:
                plural, ns, name, _sub, q = self._route()
                body = self._body()
                cluster.requests.append(("PATCH", self.path))
                manager = (q.get("fieldManager") or ["unknown"])[0]
                with cluster.lock:
                    cur = cluster.get(plural, ns, name or "")
                    if "apply-patch" in (self.headers.get("Content-Type") or ""):
                        try:
                            new = fake_ssa.apply(cur, body, manager, force=q.get("force") == ["true"])
                        except fake_ssa.Conflict as e:
                            return self._status(409, "Conflict", str(e))
                    else:
                        if cur is None:
                            return self._status(404, "NotFound", f'{plural} "{name}" not found')
                        new = fake_ssa.record_update(cur, _merge(cur, body), manager)
                    return self._write(plural, ns, cur, new)

            def do_PUT(self) -> None:
                plural, ns, name, _sub, q = self._route()
                body = self._body()
                cluster.requests.append(("PUT", self.path))
                with cluster.lock:
                    cur = cluster.get(plural, ns, name or "")
                    if cur is None:
                        return self._status(404, "NotFound", f'{plural} "{name}" not found')
                    body["status"] = cur.get("status", {})
                    new = fake_ssa.record_update(cur, body, (q.get("fieldManager") or ["unknown"])[0])
                    return self._write(plural, ns, cur, new)

            def _write(self, plural: str, ns: str, cur: Obj | None, new: Obj) -> None:
                if cur is not None:
                    if plural == "inferenceservices":
                        key = "serving.kserve.io/deploymentMode"
                        before = (cur["metadata"].get("annotations") or {}).get(key)
                        after = (new["metadata"].get("annotations") or {}).get(key)
                        if before != after and before is not None:
                            # KServe's validating webhook: the deployment mode is immutable.
                            return self._status(
                                422,
                                "Invalid",
                                f"update rejected: the {key} annotation cannot be changed from {before} to {after}",
                            )
                    new["status"] = cur.get("status", {})
                    gen = int(cur["metadata"].get("generation", 1))
                    new["metadata"]["generation"] = gen + 1 if new.get("spec") != cur.get("spec") else gen
                    for k in ("uid", "creationTimestamp"):
                        new["metadata"][k] = cur["metadata"][k]
                elif plural == "persistentvolumeclaims":
                    new["status"] = {"phase": "Pending"}
                obj = cluster.put(plural, ns, new)
                return self._send(200 if cur else 201, fake_ssa.public(obj))

            def do_DELETE(self) -> None:
                plural, ns, name, _sub, _q = self._route()
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                cluster.requests.append(("DELETE", self.path))
                obj = cluster.remove(plural, ns, name or "")
                if obj is None:
                    return self._status(404, "NotFound", f'{plural} "{name}" not found')
                return self._send(200, fake_ssa.public(obj))

        return Handler


def _claims(pod: Obj) -> list[str]:
    return [
        v["persistentVolumeClaim"]["claimName"]
        for v in (pod.get("spec") or {}).get("volumes") or []
        if v.get("persistentVolumeClaim")
    ]


def _attached(pod: Obj) -> bool:
    return bool(pod["metadata"].get("_attached")) or pod["status"].get("phase") == "Running"


def _ready(pod: Obj) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in pod["status"].get("conditions") or [])


def _waiting_reason(pod: Obj) -> str | None:
    for cs in pod["status"].get("containerStatuses") or []:
        w = (cs.get("state") or {}).get("waiting")
        if w:
            return str(w.get("reason"))
    return None


def _field(o: Obj, path: str) -> Any:
    cur: Any = o
    for part in path.split("."):
        cur = (cur or {}).get(part) if isinstance(cur, dict) else None
    return cur
