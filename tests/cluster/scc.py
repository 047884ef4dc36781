"""OpenShift's SecurityContextConstraints admission, which upstream Kubernetes does not have, as a mutating
admission webhook registered by URL: the part our code depends on, restricted-v2 and anyuid.

What OpenShift does (openshift/apiserver-library-go pkg/securitycontextconstraints): in a namespace with the
``openshift.io/sa.scc.*`` annotations, a pod's service account may use anyuid when an RBAC binding grants it
(``system:openshift:scc:anyuid``; anyuid has the higher priority), else restricted-v2. restricted-v2 assigns
``runAsUser`` (the first UID of ``sa.scc.uid-range``) to each container that sets none and ``fsGroup`` (the
first GID of ``sa.scc.supplemental-groups``) when the pod sets none, defaults what the SCC requires
(``allowPrivilegeEscalation: false``, capabilities drop ALL, ``runAsNonRoot``, seccomp RuntimeDefault: so a
KServe predictor passes Pod Security "restricted" afterwards, as on OpenShift), and **refuses** a pod whose runAsUser,
fsGroup or supplementalGroups fall outside those ranges, or that asks for privilege. anyuid assigns nothing.
Either way the admitted pod is annotated ``openshift.io/scc: <name>``, as OpenShift does.
Left out: SELinux labels, capabilities beyond privilege, volume-type and host-namespace restrictions. The
refusal reaches the Job controller's FailedCreate event with the webhook's prefix
(``admission webhook "scc.openshift.test" denied the request: ...``) where OpenShift's text starts
``pods "..." is forbidden: unable to validate against any security context constraint: ...``.
"""

from __future__ import annotations

import base64
import copy
import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.cluster.api import Api, Obj
from tests.cluster.certs import CA

ANYUID_ROLE = "system:openshift:scc:anyuid"


def _range(value: str | None) -> tuple[int, int] | None:
    """``1001130000/10000`` (or ``start-end``) -> [start, end]."""
    if not value:
        return None
    first = value.split(",")[0]
    if "/" in first:
        start, size = first.split("/")
        return int(start), int(start) + int(size) - 1
    start, _, end = first.partition("-")
    return int(start), int(end or start)


def decide(pod: Obj, ns: Obj, anyuid: bool) -> tuple[Obj | None, str | None]:
    """(the admitted pod, or None; the refusal). Pure: the rules above, nothing read from the cluster."""
    ann = ns["metadata"].get("annotations") or {}
    uids, groups = _range(ann.get("openshift.io/sa.scc.uid-range")), _range(
        ann.get("openshift.io/sa.scc.supplemental-groups"))
    if uids is None or groups is None:
        return pod, None
    out = copy.deepcopy(pod)
    # The SCC admission records which constraint admitted the pod; doctor reads it.
    out["metadata"].setdefault("annotations", {})["openshift.io/scc"] = "anyuid" if anyuid else "restricted-v2"
    if anyuid:
        return out, None
    spec = out["spec"]
    psc = spec.setdefault("securityContext", {})
    errors = []
    # restricted-v2's defaults, applied before Pod Security admission validates the pod.
    psc.setdefault("runAsNonRoot", True)
    psc.setdefault("seccompProfile", {"type": "RuntimeDefault"})
    for c in [*spec.get("initContainers", []), *spec["containers"]]:
        csc = c.setdefault("securityContext", {})
        if csc.get("allowPrivilegeEscalation") is True:
            errors.append(f"spec.containers[{c['name']}].securityContext.allowPrivilegeEscalation: Invalid value: "
                          "true: Allowing privilege escalation for containers is not allowed")
        csc["allowPrivilegeEscalation"] = False
        caps = csc.setdefault("capabilities", {})
        caps["drop"] = sorted({*caps.get("drop", []), "ALL"})
        uid = csc.get("runAsUser", psc.get("runAsUser"))
        if uid is None:
            csc["runAsUser"] = uids[0]
        elif not uids[0] <= int(uid) <= uids[1]:
            errors.append(f"spec.containers[{c['name']}].securityContext.runAsUser: Invalid value: {uid}: "
                          f"must be in the ranges: [{uids[0]}, {uids[1]}]")
        if csc.get("privileged"):
            errors.append(f"spec.containers[{c['name']}].securityContext.privileged: Invalid value: true: "
                          "Privileged containers are not allowed")
    fs = psc.get("fsGroup")
    if fs is None:
        psc["fsGroup"] = groups[0]
    elif not groups[0] <= int(fs) <= groups[1]:
        errors.append(f".spec.securityContext.fsGroup: Invalid value: []int64{{{fs}}}: {fs} is not an allowed group")
    for g in psc.get("supplementalGroups") or []:
        if not groups[0] <= int(g) <= groups[1]:
            errors.append(f".spec.securityContext.supplementalGroups: Invalid value: []int64{{{g}}}: "
                          f"{g} is not an allowed group")
    if errors:
        return None, ("unable to validate against any security context constraint: [provider \"anyuid\": "
                      "Forbidden: not usable by user or serviceaccount, provider restricted-v2: "
                      + ", provider restricted-v2: ".join(errors) + "]")
    return out, None


class SCCWebhook:
    def __init__(self, api: Api, ca: CA) -> None:
        self.api = api
        self.ca = ca
        self.port = 0

    def _anyuid(self, ns: str, sa: str) -> bool:
        for rb in self.api.list("RoleBinding", ns):
            if rb["roleRef"]["name"] == ANYUID_ROLE and any(
                    s.get("kind") == "ServiceAccount" and s.get("name") == sa for s in rb.get("subjects") or []):
                return True
        return False

    def review(self, req: Obj) -> Obj:
        pod = req["object"]
        ns = self.api.get("Namespace", req["namespace"]) or {"metadata": {}}
        sa = pod["spec"].get("serviceAccountName") or "default"
        admitted, refusal = decide(pod, ns, self._anyuid(req["namespace"], sa))
        resp: Obj = {"uid": req["uid"], "allowed": refusal is None}
        if refusal is not None:
            resp["status"] = {"code": 403, "reason": "Forbidden", "message": refusal}
        elif admitted != pod:
            assert admitted is not None
            patch = [{"op": "replace", "path": "/spec", "value": admitted["spec"]},
                     {"op": "add", "path": "/metadata/annotations", "value": admitted["metadata"]["annotations"]}]
            resp["patchType"] = "JSONPatch"
            resp["patch"] = base64.b64encode(json.dumps(patch).encode()).decode()
        return resp

    def start(self) -> SCCWebhook:
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:
                return None

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                out = json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                                  "response": hook.review(body["request"])}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        pair = self.ca.serving("scc-webhook")
        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(pair.cert), str(pair.key))
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True, name="scc-webhook").start()
        ca_bundle = base64.b64encode(self.ca.cert.read_bytes()).decode()
        self.api.apply({
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": "scc.openshift.test"},
            "webhooks": [{"name": "scc.openshift.test", "admissionReviewVersions": ["v1"], "sideEffects": "None",
                          "failurePolicy": "Fail", "reinvocationPolicy": "IfNeeded", "timeoutSeconds": 10,
                          "clientConfig": {"url": f"https://127.0.0.1:{self.port}/scc", "caBundle": ca_bundle},
                          "namespaceSelector": {"matchExpressions": [
                              {"key": "kubernetes.io/metadata.name", "operator": "NotIn",
                               "values": ["kube-system", "kube-node-lease", "kube-public"]}]},
                          "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
                                     "resources": ["pods"], "scope": "Namespaced"}]}]})
        return self

    def stop(self) -> None:
        self._server.shutdown()
