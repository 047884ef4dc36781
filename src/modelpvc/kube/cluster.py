"""The cluster adapter: lightkube behind a small dict-in, dict-out surface. API errors become ours here.

Waiting is done by polling ``get`` with a deadline (lightkube's ``wait`` has no timeout and a watch needs
reconnect handling; a few GETs a second cost nothing).
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from modelpvc.core.errors import ClusterError, FieldConflict

Obj = dict[str, Any]


ALL_NAMESPACES = "*"  # lightkube's ALL_NS: a list across every namespace
CLUSTER_SCOPED = ("Namespace", "Node", "StorageClass", "PersistentVolume", "ClusterStorageContainer",
                  "ClusterServingRuntime")


class NotFound(ClusterError):
    code = "not-found"


class KindNotServed(ClusterError):
    """The API has no such resource: its CRD is not installed (KServe's, on a cluster without KServe)."""

    code = "kind-not-served"


class Forbidden(ClusterError):
    """RBAC refused the request. A project admin may not read nodes, persistent volumes or storage classes:
    callers with a namespaced way to the same fact catch this and say what they could not check."""

    code = "forbidden"


class Cluster:
    def __init__(self, kubeconfig: Path | None = None, context: str | None = None,
                 namespace: str | None = None) -> None:
        # Imported here: lightkube costs ~0.12 s, which mirror/verify never need.
        import httpx2
        from lightkube import Client, KubeConfig
        from lightkube.generic_resource import create_global_resource, create_namespaced_resource
        from lightkube.resources import apps_v1, batch_v1, core_v1, storage_v1

        try:
            if kubeconfig is not None:
                config = KubeConfig.from_file(str(kubeconfig)).get(context_name=context)
            else:
                config = KubeConfig.from_env().get(context_name=context)
        except Exception as e:
            raise ClusterError(f"cannot load a Kubernetes configuration: {e}",
                               hint="set KUBECONFIG, pass --kubeconfig, or run inside a cluster") from e
        self.client = Client(config, namespace=namespace, field_manager="modelpvc",
                             timeout=httpx2.Timeout(30.0, read=None))
        self.namespace = namespace or (config.namespace if config is not None else None) or "default"
        isvc = create_namespaced_resource("serving.kserve.io", "v1beta1", "InferenceService", "inferenceservices")
        runtime = create_namespaced_resource("serving.kserve.io", "v1alpha1", "ServingRuntime", "servingruntimes")
        csc = create_global_resource("serving.kserve.io", "v1alpha1", "ClusterStorageContainer",
                                     "clusterstoragecontainers")
        cluster_runtime = create_global_resource("serving.kserve.io", "v1alpha1", "ClusterServingRuntime",
                                                 "clusterservingruntimes")
        model_source = create_namespaced_resource("modelpvc.io", "v1alpha1", "ModelSource", "modelsources")
        self.kinds: dict[str, Any] = {
            "Namespace": core_v1.Namespace, "Secret": core_v1.Secret, "Node": core_v1.Node,
            "PersistentVolumeClaim": core_v1.PersistentVolumeClaim, "PersistentVolume": core_v1.PersistentVolume,
            "Pod": core_v1.Pod, "Event": core_v1.Event, "ConfigMap": core_v1.ConfigMap,
            "StorageClass": storage_v1.StorageClass, "Job": batch_v1.Job, "InferenceService": isvc,
            "Deployment": apps_v1.Deployment, "ServiceAccount": core_v1.ServiceAccount,
            "ServingRuntime": runtime, "ClusterStorageContainer": csc, "ClusterServingRuntime": cluster_runtime,
            "ModelSource": model_source,
        }

    # -- errors ---------------------------------------------------------------------------------
    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        import httpx2
        from lightkube.core.exceptions import ApiError

        try:
            return fn()
        except ApiError as e:
            raise _api_error(what, e) from e
        except OSError as e:
            raise ClusterError(f"{what}: cannot reach the Kubernetes API ({e})",
                               hint="check your kubeconfig context and network") from e
        except Exception as e:
            status = getattr(getattr(e, "response", None), "status_code", None)
            if status == 404:  # a list or watch of a kind the API does not serve answers a bare 404
                raise KindNotServed(f"{what}: this cluster does not serve that kind",
                                    hint="install its operator (for InferenceService and ServingRuntime: KServe, "
                                         "or OpenShift AI's single-model serving)") from e
            if isinstance(e, httpx2.HTTPError):
                raise ClusterError(f"{what}: cannot reach the Kubernetes API ({e})",
                                   hint="check your kubeconfig context and network") from e
            raise

    @staticmethod
    def _dict(o: Any) -> Obj:
        return o.to_dict() if hasattr(o, "to_dict") else dict(o)

    # -- verbs ----------------------------------------------------------------------------------
    def get(self, kind: str, name: str, namespace: str | None = None) -> Obj | None:
        res = self.kinds[kind]
        ns = None if kind in CLUSTER_SCOPED else (namespace or self.namespace)
        try:
            return self._dict(self._call(f"{kind} {name}", lambda: self.client.get(res, name, namespace=ns)))
        except NotFound:
            return None

    def list(self, kind: str, namespace: str | None = None, labels: dict[str, str] | None = None,
             fields: dict[str, str] | None = None) -> list[Obj]:
        res = self.kinds[kind]
        kw: dict[str, Any] = {"labels": labels, "fields": fields}
        if kind not in CLUSTER_SCOPED:
            kw["namespace"] = namespace or self.namespace
        found: list[Any] = self._call(f"list {kind}", lambda: list(self.client.list(res, **kw)))
        return [self._dict(o) for o in found]

    def create(self, obj: Obj) -> Obj:
        from lightkube import codecs

        ref = f"{obj['kind']} {obj['metadata']['name']}"
        return self._dict(self._call(f"create {ref}", lambda: self.client.create(codecs.from_dict(obj))))

    def apply(self, obj: Obj, force: bool = False, manager: str | None = None) -> Obj:
        """Server-side apply as ``manager`` (default: our field manager): sets exactly the fields of ``obj``;
        a field this manager applied before and omits now is removed, so a partial change must use a manager
        of its own. A field another manager owns is a FieldConflict unless ``force``."""
        from lightkube import codecs
        from lightkube.core.exceptions import ApiError

        ref = f"{obj['kind']} {obj['metadata']['name']}"

        def send() -> Any:
            try:
                return self.client.apply(codecs.from_dict(obj), force=force, field_manager=manager)
            except ApiError as e:
                if e.status.code == 409:
                    raise FieldConflict(f"apply {ref}: {e.status.message}",
                                        hint="another tool manages these fields (kubectl, Argo CD): change them "
                                             "there, or let modelpvc take them over where it offers to") from e
                raise

        return self._dict(self._call(f"apply {ref}", send))

    def patch(self, kind: str, name: str, patch: Obj, namespace: str | None = None, status: bool = False) -> Obj:
        """A JSON merge patch (RFC 7386) of the object, or of its status subresource."""
        from lightkube.types import PatchType

        res = self.kinds[kind].Status if status else self.kinds[kind]
        ns = None if kind in CLUSTER_SCOPED else (namespace or self.namespace)
        return self._dict(self._call(f"patch {kind} {name}", lambda: self.client.patch(
            res, name, patch, namespace=ns, patch_type=PatchType.MERGE)))

    def watch(self, kind: str, namespace: str | None = None, labels: dict[str, str] | None = None,
              resource_version: str | None = None) -> Iterator[tuple[str, Obj]]:
        """(ADDED|MODIFIED|DELETED, object) until the server or the network ends the stream (a watch is
        bounded by the API server's timeout); the caller lists again and watches from there."""
        import httpx2

        res = self.kinds[kind]
        kw: dict[str, Any] = {"labels": labels, "resource_version": resource_version}
        if kind not in CLUSTER_SCOPED:
            kw["namespace"] = namespace or self.namespace
        stream = self._call(f"watch {kind}", lambda: self.client.watch(res, **kw))
        try:
            for event, obj in stream:
                yield str(event), self._dict(obj)
        except httpx2.TransportError:
            return

    def delete(self, kind: str, name: str, namespace: str | None = None) -> bool:
        from lightkube.types import CascadeType

        res = self.kinds[kind]
        ns = None if kind in CLUSTER_SCOPED else (namespace or self.namespace)
        try:
            self._call(f"delete {kind} {name}", lambda: self.client.delete(
                res, name, namespace=ns, cascade=CascadeType.BACKGROUND))
            return True
        except NotFound:
            return False

    def log(self, pod: str, namespace: str | None = None, follow: bool = False,
            container: str | None = None) -> Iterator[str]:
        """The pod's log lines. A followed stream the network, a proxy or an API server restart cuts simply
        ends: the caller checks whether the pod finished and follows again if not."""
        import httpx2

        lines = self._call(f"log of pod {pod}", lambda: self.client.log(pod, namespace=namespace or self.namespace,
                                                                      follow=follow, container=container))
        try:
            yield from lines
        except httpx2.TransportError:
            return

    def serves(self, group_version: str) -> bool | None:
        """Whether the API serves ``group/version``, from discovery, which every authenticated user may read
        (a list of an unserved kind answers 403, not 404, to a user without cluster-wide rights). None when
        discovery does not answer."""
        try:
            http = self.client._client._client  # lightkube has no discovery call; its HTTP client does
            status = int(http.get(f"/apis/{group_version}").status_code)
        except Exception:  # any failure means "cannot tell", which callers treat as "maybe"
            return None
        return {200: True, 404: False}.get(status)

    def events(self, name: str, namespace: str | None = None) -> builtins.list[Obj]:
        return self.list("Event", namespace, fields={"involvedObject.name": name})

    def poll(self, what: str, fn: Callable[[], Any], timeout: float, interval: float = 0.5) -> Any:
        """Call ``fn`` until it returns something truthy or ``timeout`` seconds pass."""
        deadline = time.monotonic() + timeout
        while True:
            got = fn()
            if got:
                return got
            if time.monotonic() >= deadline:
                raise ClusterError(f"timed out after {timeout:.0f}s waiting for {what}",
                                   hint="raise --timeout, or run `modelpvc doctor` to see what blocks it")
            time.sleep(interval)

    def close(self) -> None:
        self.client.close() if hasattr(self.client, "close") else None


def _api_error(what: str, e: Any) -> ClusterError:
    """An API Status as our error, by its code."""
    code = e.status.code
    msg = e.status.message or e.status.reason or ""
    if code == 404:
        return NotFound(f"{what}: not found ({msg})")
    if code in (401, 403):
        return Forbidden(f"{what}: forbidden ({msg})",
                            hint="your user or the service account lacks RBAC permission for this")
    if code == 409:
        return ClusterError(f"{what}: conflict ({msg})", hint="it exists already or changed meanwhile")
    if code == 422:
        return ClusterError(f"{what}: rejected as invalid ({msg})")
    return ClusterError(f"{what}: API error {code} ({msg})")
