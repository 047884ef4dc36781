"""The seed's cluster on this machine: the real control plane (plane.py), the doubles below it (kubelet.py,
storage.py, scc.py) and the seed's shape — two zones, a 4-GPU node tainted ``nvidia.com/gpu=NoSchedule``
and CPU workers, a gp3-like ReadWriteOnce WaitForFirstConsumer default class, OpenShift project namespaces
with restricted-v2 annotations, MinIO as ``minio.model-storage.svc:9000`` and a project admin.

The project admin (``developer``) holds the upstream ``admin`` ClusterRole in each project namespace only;
the InferenceService and ServingRuntime rules reach it through ``aggregate-to-admin``, as OpenShift AI's
roles do. No cluster-scoped read: nodes, persistent volumes and storage classes are forbidden to it.
"""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from modelpvc.devtools.s3server import MinioS3
from tests.cluster.api import Api, Obj
from tests.cluster.kserve import KServe
from tests.cluster.kubelet import Kubelet, NodeSpec
from tests.cluster.plane import ADMIN, PROJECT_ADMIN, ControlPlane
from tests.cluster.scc import ANYUID_ROLE, SCCWebhook
from tests.cluster.storage import Storage, wait_for

REPO = Path(__file__).resolve().parents[2]
GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
MINIO_SERVICE = "minio.model-storage.svc"


def seed_nodes() -> list[NodeSpec]:
    """The seed's shape: CPU workers in two zones, one g6.12xlarge (4 GPUs) in the second zone."""
    return [NodeSpec("worker-1", "us-east-2a"), NodeSpec("worker-2", "us-east-2b"),
            NodeSpec("gpu-1", "us-east-2b", cpu="48", memory="192Gi", gpus=4, taints=[GPU_TAINT],
                     labels={"node.kubernetes.io/instance-type": "g6.12xlarge",
                             "nvidia.com/gpu.present": "true"})]


@dataclass
class LocalCluster:
    root: Path
    nodes: list[NodeSpec] = field(default_factory=seed_nodes)
    minio: MinioS3 | None = None

    def start(self) -> LocalCluster:
        self.root.mkdir(parents=True, exist_ok=True)
        self.plane = ControlPlane(self.root / "plane").start()
        self.api = Api(self.plane.url, ADMIN.token, str(self.plane.ca.cert))
        # MinIO answers on port 9000 of a loopback address of its own, which pods know by its Service name.
        host = f"127.{random.randint(64, 250)}.{random.randint(1, 250)}.{random.randint(1, 250)}"
        self.minio = MinioS3(self.root / "minio", port=9000, host=host, log_path=self.root / "minio.log").start()
        self.storage = Storage(self.api, self.root / "volumes")
        self.storage.install()
        self.storage.start()
        self.kubelet = Kubelet(self.api, self.root / "kubelet", self.nodes, self.plane.ca.serving("kubelet"),
                               {f"{MINIO_SERVICE}.cluster.local": host, MINIO_SERVICE: host}).start()
        self.scc = SCCWebhook(self.api, self.plane.ca).start()
        self.kserve = KServe(self.api, self.plane.ca, self.root / "kserve", self.root / "plane" / "kubeconfig",
                             cache=REPO / ".tools" / "cache").start()
        self._aggregate_kserve_roles()
        wait_for("nodes Ready and schedulable", self._nodes_ready, timeout=60)
        return self

    def stop(self) -> None:
        for part in ("kserve", "kubelet", "scc", "storage", "minio", "plane"):
            obj = getattr(self, part, None)
            if obj is not None:
                obj.stop()

    def _nodes_ready(self) -> bool:
        nodes = {n["metadata"]["name"]: n for n in self.api.list("Node")}
        return all(n.name in nodes and not any(t.get("key", "").startswith("node.kubernetes.io/")
                                               for t in nodes[n.name]["spec"].get("taints") or [])
                   for n in self.nodes)

    # -- identities ------------------------------------------------------------------------------
    def kubeconfig(self, path: Path, admin: bool = False, namespace: str = "default") -> Path:
        return self.plane.write_kubeconfig(path, ADMIN if admin else PROJECT_ADMIN, namespace)

    def _aggregate_kserve_roles(self) -> None:
        self.api.ensure({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                         "metadata": {"name": "modelpvc-test:kserve-admin",
                                      "labels": {"rbac.authorization.k8s.io/aggregate-to-admin": "true"}},
                         "rules": [{"apiGroups": ["serving.kserve.io"],
                                    "resources": ["inferenceservices", "servingruntimes", "inferenceservices/status"],
                                    "verbs": ["*"]}]})
        self.api.ensure({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                         "metadata": {"name": ANYUID_ROLE},
                         "rules": [{"apiGroups": ["security.openshift.io"], "resources": ["securitycontextconstraints"],
                                    "resourceNames": ["anyuid"], "verbs": ["use"]}]})

    def add_project(self, ns: str, block: int = 1001130000) -> None:
        """An OpenShift project as `oc new-project` makes it, and its admin: the SCC ranges, Pod Security
        restricted enforced, the project admin bound to ``admin`` there."""
        self.api.ensure({"apiVersion": "v1", "kind": "Namespace", "metadata": {
            "name": ns,
            "labels": {"pod-security.kubernetes.io/enforce": "restricted",
                       "pod-security.kubernetes.io/warn": "restricted",
                       "opendatahub.io/dashboard": "true"},
            "annotations": {"openshift.io/sa.scc.uid-range": f"{block}/10000",
                            "openshift.io/sa.scc.supplemental-groups": f"{block}/10000",
                            "openshift.io/sa.scc.mcs": "s0:c34,c9"}}})
        self.api.ensure({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                         "metadata": {"name": "admin", "namespace": ns},
                         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "admin"},
                         "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                                       "name": PROJECT_ADMIN.name}]})
        wait_for(f"service account default in {ns}", lambda: self.api.get("ServiceAccount", "default", ns))

    def grant_anyuid(self, ns: str, service_account: str = "default") -> None:
        self.api.ensure({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                         "metadata": {"name": f"anyuid-{service_account}", "namespace": ns},
                         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                     "name": ANYUID_ROLE},
                         "subjects": [{"kind": "ServiceAccount", "name": service_account, "namespace": ns}]})
        self.api.patch("Namespace", ns, {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "baseline"}}})

    def add_secret(self, ns: str, name: str, data: dict[str, str]) -> Obj:
        return self.api.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": ns},
                                "stringData": data})

    # -- what a test looks at --------------------------------------------------------------------
    def volume_dir(self, ns: str, claim: str) -> Path:
        pvc = self.api.get("PersistentVolumeClaim", claim, ns)
        assert pvc is not None and pvc["spec"].get("volumeName"), f"claim {claim} is not bound"
        pv = self.api.get("PersistentVolume", pvc["spec"]["volumeName"])
        assert pv is not None
        return Path(pv["spec"]["csi"]["volumeAttributes"]["path"])

    def volume_zone(self, ns: str, claim: str) -> str | None:
        pvc = self.api.get("PersistentVolumeClaim", claim, ns)
        pv = self.api.get("PersistentVolume", (pvc or {}).get("spec", {}).get("volumeName") or "")
        terms = (((pv or {}).get("spec", {}).get("nodeAffinity") or {}).get("required") or {}).get(
            "nodeSelectorTerms") or []
        return next((e["values"][0] for t in terms for e in t.get("matchExpressions") or []
                     if e["key"] == "topology.kubernetes.io/zone"), None)

    def write_state(self) -> None:
        """For `make cluster`: where things are, so `make cluster-down` and a user can find them."""
        assert self.minio is not None
        (self.root / "state.json").write_text(json.dumps({
            "apiserver": self.plane.url, "minio": self.minio.endpoint, "minio_service": f"http://{MINIO_SERVICE}:9000",
            "pids": {n: p.pid for n, p in self.plane.procs.items()}}, indent=1))


def clean(root: Path) -> None:
    shutil.rmtree(root, ignore_errors=True)
