"""A small JSON client for the doubles that sit below the real control plane (kubelet, provisioner,
attacher, webhooks). Plain REST over one keep-alive connection per thread; no client library, so what the
doubles send is exactly what a kubelet or a CSI sidecar would."""

from __future__ import annotations

import http.client
import json
import ssl
import threading
import urllib.parse
from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]

# (group/version prefix, plural) by kind: what the doubles touch.
PATHS = {
    "Pod": ("api/v1", "pods"), "Node": ("api/v1", "nodes"), "Event": ("api/v1", "events"),
    "PersistentVolumeClaim": ("api/v1", "persistentvolumeclaims"),
    "PersistentVolume": ("api/v1", "persistentvolumes"), "Secret": ("api/v1", "secrets"),
    "ConfigMap": ("api/v1", "configmaps"), "Namespace": ("api/v1", "namespaces"),
    "ServiceAccount": ("api/v1", "serviceaccounts"),
    "Lease": ("apis/coordination.k8s.io/v1", "leases"),
    "StorageClass": ("apis/storage.k8s.io/v1", "storageclasses"),
    "CSIDriver": ("apis/storage.k8s.io/v1", "csidrivers"), "CSINode": ("apis/storage.k8s.io/v1", "csinodes"),
    "VolumeAttachment": ("apis/storage.k8s.io/v1", "volumeattachments"),
    "RoleBinding": ("apis/rbac.authorization.k8s.io/v1", "rolebindings"),
    "ClusterRole": ("apis/rbac.authorization.k8s.io/v1", "clusterroles"),
    "ClusterRoleBinding": ("apis/rbac.authorization.k8s.io/v1", "clusterrolebindings"),
    "Role": ("apis/rbac.authorization.k8s.io/v1", "roles"),
    "ResourceQuota": ("api/v1", "resourcequotas"), "LimitRange": ("api/v1", "limitranges"),
    "Job": ("apis/batch/v1", "jobs"),
    "MutatingWebhookConfiguration": ("apis/admissionregistration.k8s.io/v1", "mutatingwebhookconfigurations"),
    "ValidatingWebhookConfiguration": ("apis/admissionregistration.k8s.io/v1", "validatingwebhookconfigurations"),
    "CustomResourceDefinition": ("apis/apiextensions.k8s.io/v1", "customresourcedefinitions"),
    "InferenceService": ("apis/serving.kserve.io/v1beta1", "inferenceservices"),
    "ServingRuntime": ("apis/serving.kserve.io/v1alpha1", "servingruntimes"),
    "ClusterStorageContainer": ("apis/serving.kserve.io/v1alpha1", "clusterstoragecontainers"),
    "ModelSource": ("apis/modelpvc.io/v1alpha1", "modelsources"),
}
CLUSTER_SCOPED = {"Node", "PersistentVolume", "StorageClass", "CSIDriver", "CSINode", "VolumeAttachment",
                  "Namespace", "ClusterRole", "ClusterRoleBinding", "MutatingWebhookConfiguration",
                  "ValidatingWebhookConfiguration", "CustomResourceDefinition", "ClusterStorageContainer"}


class ApiError(Exception):
    def __init__(self, code: int, body: Obj) -> None:
        super().__init__(f"{code}: {body.get('message', body)}")
        self.code = code
        self.body = body


@dataclass
class Api:
    url: str
    token: str
    ca: str

    def __post_init__(self) -> None:
        u = urllib.parse.urlsplit(self.url)
        self._host, self._port = u.hostname or "127.0.0.1", u.port or 443
        self._ctx = ssl.create_default_context(cafile=self.ca)
        self._local = threading.local()

    def path(self, kind: str, ns: str | None = None, name: str | None = None, sub: str | None = None) -> str:
        prefix, plural = PATHS[kind]
        p = f"/{prefix}" + (f"/namespaces/{ns}" if ns and kind not in CLUSTER_SCOPED else "") + f"/{plural}"
        return p + (f"/{name}" if name else "") + (f"/{sub}" if sub else "")

    def request(self, method: str, path: str, body: Any = None, ctype: str = "application/json",
                query: dict[str, str] | None = None, timeout: float = 30) -> Any:
        status, raw = self._send(method, path, body, ctype, query, timeout)
        out = json.loads(raw) if raw else {}
        if status >= 400:
            raise ApiError(status, out if isinstance(out, dict) else {"message": str(out)})
        return out

    def log(self, pod: str, ns: str) -> str:
        """A pod's log as ``oc logs`` prints it (the apiserver's pods/log, served by the kubelet)."""
        status, raw = self._send("GET", self.path("Pod", ns, pod, "log"), None, "", None, 30)
        if status >= 400:
            raise ApiError(status, json.loads(raw) if raw.startswith(b"{") else {"message": raw.decode()})
        return raw.decode()

    def _send(self, method: str, path: str, body: Any, ctype: str, query: dict[str, str] | None,
              timeout: float) -> tuple[int, bytes]:
        if query:
            path += "?" + urllib.parse.urlencode(query)
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = ctype
        for attempt in (0, 1):
            conn = getattr(self._local, "conn", None)
            if conn is None:
                conn = http.client.HTTPSConnection(self._host, self._port, context=self._ctx, timeout=timeout)
                self._local.conn = conn
            try:
                conn.request(method, path, body=data, headers=headers)
                resp = conn.getresponse()
                raw = resp.read()
                break
            except (OSError, http.client.HTTPException):
                conn.close()
                self._local.conn = None
                if attempt:
                    raise
        return resp.status, raw

    # -- verbs -----------------------------------------------------------------------------------
    def get(self, kind: str, name: str, ns: str | None = None) -> Obj | None:
        try:
            got: Obj = self.request("GET", self.path(kind, ns, name))
            return got
        except ApiError as e:
            if e.code == 404:
                return None
            raise

    def list(self, kind: str, ns: str | None = None, **query: str) -> list[Obj]:
        items: list[Obj] = self.request("GET", self.path(kind, ns), query=query or None).get("items") or []
        return items

    def create(self, obj: Obj, ns: str | None = None) -> Obj:
        ns = ns or obj.get("metadata", {}).get("namespace")
        out: Obj = self.request("POST", self.path(obj["kind"], ns), obj)
        return out

    def ensure(self, obj: Obj) -> Obj:
        """Create, or leave what exists (seeding is idempotent)."""
        try:
            return self.create(obj)
        except ApiError as e:
            if e.code != 409:
                raise
            got = self.get(obj["kind"], obj["metadata"]["name"], obj["metadata"].get("namespace"))
            assert got is not None
            return got

    def patch(self, kind: str, name: str, patch: Any, ns: str | None = None, sub: str | None = None,
              ctype: str = "application/merge-patch+json") -> Obj:
        out: Obj = self.request("PATCH", self.path(kind, ns, name, sub), patch, ctype=ctype)
        return out

    def apply(self, obj: Obj, manager: str = "test-harness") -> Obj:
        ns = obj.get("metadata", {}).get("namespace")
        out: Obj = self.request("PATCH", self.path(obj["kind"], ns, obj["metadata"]["name"]), obj,
                                ctype="application/apply-patch+yaml",
                                query={"fieldManager": manager, "force": "true"})
        return out

    def delete(self, kind: str, name: str, ns: str | None = None, grace: int | None = None) -> bool:
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
        if grace is not None:
            body["gracePeriodSeconds"] = grace  # type: ignore[assignment]
        try:
            self.request("DELETE", self.path(kind, ns, name), body)
            return True
        except ApiError as e:
            if e.code == 404:
                return False
            raise
