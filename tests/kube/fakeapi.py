"""A fake Kubernetes API server on loopback: a test double, not a product.

It stores objects and answers get/list/create/patch/replace/delete for the kinds our commands use
(namespaces, nodes, secrets, PVCs, pods and their logs, events, jobs, inferenceservices), reached through a
kubeconfig so the real client library and our CLI run unmodified. Small simulated controllers:

* PVC binding: Pending -> Bound with the requested capacity; the claim is a local directory.
* Job -> Pod -> a real local process (``python -m modelpvc ARGS``) with the claim's mountPath mapped to
  its directory, secretKeyRef env resolved from the Secret (a missing key fails the pod as Kubernetes
  does); logs are the process's output. ``backoffLimit`` retries, then the Job fails.
* RWO attachment per node: a pod whose RWO claim is in use by a running pod on another node stays
  Pending with a FailedAttachVolume "Multi-Attach error" event.
* Permissions: a claim annotated ``fake.modelpvc.io/gid`` is a directory owned by that group (mode 2770);
  pods run as uid 1000680000 with their fsGroup (or gid 0): without the right fsGroup, writes fail with
  "Permission denied" like the runbook's Job.
* InferenceService: a predictor pod holds the claim on its node; Ready when ``modelpvc verify`` accepts
  the storageUri's directory, otherwise a CrashLoopBackOff-like failure with the reason.
"""

from __future__ import annotations

import base64
import copy
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

NODES = ("node-a", "node-b")
SERVING_NODE = "node-b"  # where predictors land (the GPU node); Jobs go to node-a unless pinned
FAKE_UID = 1000680000
CORE = {"namespaces", "nodes", "secrets", "persistentvolumeclaims", "pods", "events"}
KINDS = {"namespaces": "Namespace", "nodes": "Node", "secrets": "Secret", "persistentvolumeclaims":
         "PersistentVolumeClaim", "pods": "Pod", "events": "Event", "jobs": "Job",
         "inferenceservices": "InferenceService"}
API = {"jobs": "batch/v1", "inferenceservices": "serving.kserve.io/v1beta1"}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _cstatus(name: str, state: dict[str, Any], ready: bool = False, restarts: int = 0) -> dict[str, Any]:
    """A ContainerStatus with the fields the API requires."""
    return {"name": name, "image": "fake", "imageID": "fake", "ready": ready, "restartCount": restarts,
            "state": state}


def _merge(dst: Any, src: Any) -> Any:
    if isinstance(dst, dict) and isinstance(src, dict):
        out = dict(dst)
        for k, v in src.items():
            if v is None:
                out.pop(k, None)
            else:
                out[k] = _merge(dst.get(k), v)
        return out
    return copy.deepcopy(src)


class FakeCluster:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.lock = threading.RLock()
        self.procs: dict[tuple[str, str], subprocess.Popen[bytes]] = {}
        self.rv = itertools.count(1)
        self.requests: list[tuple[str, str]] = []
        self._stop = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        for n in NODES:
            self.put("nodes", "", {"metadata": {"name": n, "labels": {"kubernetes.io/hostname": n}}})

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> FakeCluster:
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
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": f"http://127.0.0.1:{self.port}"}}],
            "users": [{"name": "dev", "user": {"token": "fake-token"}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "dev", "namespace": namespace}}],
        }))
        return path

    # -- store ----------------------------------------------------------------------------------
    def put(self, plural: str, ns: str, obj: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            obj = copy.deepcopy(obj)
            meta = obj.setdefault("metadata", {})
            if plural not in ("namespaces", "nodes"):
                meta["namespace"] = ns
            meta.setdefault("uid", str(uuid.uuid4()))
            meta.setdefault("creationTimestamp", _now())
            meta["resourceVersion"] = str(next(self.rv))
            obj["kind"] = KINDS[plural]
            obj["apiVersion"] = API.get(plural, "v1")
            self.objects[(plural, ns, meta["name"])] = obj
            return copy.deepcopy(obj)

    def get(self, plural: str, ns: str, name: str) -> dict[str, Any] | None:
        with self.lock:
            o = self.objects.get((plural, ns, name))
            return copy.deepcopy(o) if o else None

    def list(self, plural: str, ns: str | None) -> list[dict[str, Any]]:
        with self.lock:
            return [copy.deepcopy(o) for (p, n, _), o in sorted(self.objects.items())
                    if p == plural and (ns is None or n == ns)]

    def delete(self, plural: str, ns: str, name: str) -> dict[str, Any] | None:
        with self.lock:
            o = self.objects.pop((plural, ns, name), None)
            if plural == "pods":
                p = self.procs.pop((ns, name), None)
                if p is not None and p.poll() is None:
                    p.kill()
            if plural == "jobs":
                for pod in self.list("pods", ns):
                    if pod["metadata"].get("labels", {}).get("job-name") == name:
                        self.delete("pods", ns, pod["metadata"]["name"])
            if plural == "inferenceservices":
                for pod in self.list("pods", ns):
                    if pod["metadata"].get("labels", {}).get("serving.kserve.io/inferenceservice") == name:
                        self.delete("pods", ns, pod["metadata"]["name"])
            return o

    def event(self, ns: str, kind: str, name: str, reason: str, message: str, etype: str = "Warning") -> None:
        n = f"{name}.{next(self.rv)}"
        self.put("events", ns, {"metadata": {"name": n}, "involvedObject": {"kind": kind, "name": name,
                                                                            "namespace": ns},
                                "reason": reason, "message": message, "type": etype, "lastTimestamp": _now()})

    # -- helpers for tests ----------------------------------------------------------------------
    def claim_dir(self, ns: str, name: str) -> Path:
        return self.root / "claims" / ns / name

    def add_namespace(self, name: str, annotations: dict[str, str] | None = None) -> None:
        self.put("namespaces", "", {"metadata": {"name": name, "annotations": annotations or {}}})

    def add_secret(self, ns: str, name: str, data: dict[str, str]) -> None:
        enc = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
        self.put("secrets", ns, {"metadata": {"name": name}, "type": "Opaque", "data": enc})

    def add_pvc(self, ns: str, name: str, size: str = "10Gi", mode: str = "ReadWriteOnce", gid: int | None = None,
                bind: bool = True) -> None:
        ann = {"fake.modelpvc.io/gid": str(gid)} if gid is not None else {}
        if not bind:
            ann["fake.modelpvc.io/no-bind"] = "true"
        self.put("persistentvolumeclaims", ns, {"metadata": {"name": name, "annotations": ann},
                                                "spec": {"accessModes": [mode],
                                                         "resources": {"requests": {"storage": size}}},
                                                "status": {"phase": "Pending"}})

    def add_pod(self, ns: str, name: str, node: str, claim: str) -> None:
        """A running pod that holds ``claim`` on ``node`` (e.g. a serving pod)."""
        self.put("pods", ns, {"metadata": {"name": name, "labels": {"app": "holder"}},
                              "spec": {"nodeName": node, "containers": [{"name": "c", "image": "x"}],
                                       "volumes": [{"name": "m", "persistentVolumeClaim": {"claimName": claim}}]},
                              "status": {"phase": "Running"}})

    # -- controllers ----------------------------------------------------------------------------
    def _controllers(self) -> None:
        while not self._stop.wait(0.05):
            try:
                with self.lock:
                    self._bind_pvcs()
                    self._run_jobs()
                    self._run_pods()
                    self._serve_isvcs()
            except Exception as e:  # a controller bug must show in the test output, not kill the thread
                print(f"fakeapi controller error: {e!r}", file=sys.stderr)

    def _bind_pvcs(self) -> None:
        for pvc in self.list("persistentvolumeclaims", None):
            ann = pvc["metadata"].get("annotations") or {}
            if pvc.get("status", {}).get("phase") == "Bound" or ann.get("fake.modelpvc.io/no-bind"):
                continue
            ns, name = pvc["metadata"]["namespace"], pvc["metadata"]["name"]
            d = self.claim_dir(ns, name)
            d.mkdir(parents=True, exist_ok=True)
            if "fake.modelpvc.io/gid" in ann:
                os.chown(d, 0, int(ann["fake.modelpvc.io/gid"]))
                os.chmod(d, 0o2770)
            else:
                os.chmod(d, 0o777)
            pvc["status"] = {"phase": "Bound", "accessModes": pvc["spec"]["accessModes"],
                             "capacity": {"storage": pvc["spec"]["resources"]["requests"]["storage"]}}
            self.put("persistentvolumeclaims", ns, pvc)

    def _run_jobs(self) -> None:
        for job in self.list("jobs", None):
            ns, name = job["metadata"]["namespace"], job["metadata"]["name"]
            status = job.setdefault("status", {})
            if any(c["type"] in ("Complete", "Failed") for c in status.get("conditions", [])):
                continue
            pods = [p for p in self.list("pods", ns) if p["metadata"].get("labels", {}).get("job-name") == name]
            failed = sum(1 for p in pods if p["status"].get("phase") == "Failed")
            if job["spec"].get("completionMode") == "Indexed":
                self._run_indexed(ns, job, pods, failed)
                continue
            if any(p["status"].get("phase") == "Succeeded" for p in pods):
                status.update(succeeded=1, conditions=[{"type": "Complete", "status": "True"}])
            elif failed > int(job["spec"].get("backoffLimit", 6)):
                status.update(failed=failed, conditions=[{"type": "Failed", "status": "True",
                                                          "reason": "BackoffLimitExceeded",
                                                          "message": "Job has reached the specified backoff limit"}])
            elif all(p["status"].get("phase") == "Failed" for p in pods):
                tpl = job["spec"]["template"]
                pod = {"metadata": {"name": f"{name}-{uuid.uuid4().hex[:5]}",
                                    "labels": {**(tpl.get("metadata", {}).get("labels") or {}), "job-name": name}},
                       "spec": copy.deepcopy(tpl["spec"]), "status": {"phase": "Pending"}}
                self.put("pods", ns, pod)
                status["active"] = 1
            else:
                continue
            self.put("jobs", ns, job)

    def _new_pod(self, ns: str, job: dict[str, Any], index: int | None = None) -> None:
        tpl = job["spec"]["template"]
        name = job["metadata"]["name"]
        meta: dict[str, Any] = {"name": f"{name}-{'' if index is None else f'{index}-'}{uuid.uuid4().hex[:5]}",
                                "labels": {**(tpl.get("metadata", {}).get("labels") or {}), "job-name": name}}
        if index is not None:
            meta["annotations"] = {"batch.kubernetes.io/job-completion-index": str(index)}
        self.put("pods", ns, {"metadata": meta, "spec": copy.deepcopy(tpl["spec"]), "status": {"phase": "Pending"}})

    def _run_indexed(self, ns: str, job: dict[str, Any], pods: list[dict[str, Any]], failed: int) -> None:
        """One pod per completion index; Complete when every index succeeded."""
        status = job["status"]
        n = int(job["spec"]["completions"])
        by_index: dict[int, list[dict[str, Any]]] = {}
        for p in pods:
            by_index.setdefault(int(p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]),
                                []).append(p)
        succeeded = sum(1 for i in range(n) if any(p["status"].get("phase") == "Succeeded"
                                                   for p in by_index.get(i, [])))
        status["succeeded"] = succeeded
        if succeeded == n:
            status["conditions"] = [{"type": "Complete", "status": "True"}]
        elif failed > int(job["spec"].get("backoffLimit", 6)):
            status["conditions"] = [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                                     "message": "Job has reached the specified backoff limit"}]
        else:
            for i in range(n):
                mine = by_index.get(i, [])
                if all(p["status"].get("phase") == "Failed" for p in mine):
                    self._new_pod(ns, job, i)
        self.put("jobs", ns, job)

    def _holders(self, ns: str, claim: str, exclude: str) -> list[dict[str, Any]]:
        return [p for p in self.list("pods", ns) if p["metadata"]["name"] != exclude
                and p["status"].get("phase") == "Running"
                and any((v.get("persistentVolumeClaim") or {}).get("claimName") == claim
                        for v in p["spec"].get("volumes", []))]

    def _attach_blocked(self, ns: str, pod: dict[str, Any], node: str) -> str | None:
        for v in pod["spec"].get("volumes", []):
            claim = (v.get("persistentVolumeClaim") or {}).get("claimName")
            if not claim:
                continue
            pvc = self.get("persistentvolumeclaims", ns, claim)
            if pvc is None or pvc.get("status", {}).get("phase") != "Bound":
                return f"persistentvolumeclaim {claim!r} not found or not bound"
            modes = pvc["spec"]["accessModes"]
            holders = self._holders(ns, claim, pod["metadata"]["name"])
            if "ReadWriteOncePod" in modes and holders:
                return f"Multi-Attach error for volume {claim!r}: ReadWriteOncePod is used by pod " \
                       f"{holders[0]['metadata']['name']}"
            if "ReadWriteOnce" in modes:
                other = [h for h in holders if h["spec"].get("nodeName") != node]
                if other:
                    return (f"Multi-Attach error for volume \"pvc-{claim}\" Volume is already used by pod(s) "
                            f"{', '.join(h['metadata']['name'] for h in other)}")
        return None

    def _run_pods(self) -> None:
        for pod in self.list("pods", None):
            ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
            phase = pod["status"].get("phase")
            labels = pod["metadata"].get("labels", {})
            if "job-name" not in labels:
                continue
            if phase == "Pending" and (ns, name) not in self.procs:
                node = pod["spec"].get("nodeName") or \
                    (pod["spec"].get("nodeSelector") or {}).get("kubernetes.io/hostname") or "node-a"
                pod["spec"]["nodeName"] = node
                why = self._attach_blocked(ns, pod, node)
                if why:
                    if not pod["status"].get("reason"):
                        self.event(ns, "Pod", name, "FailedAttachVolume", why)
                        pod["status"]["reason"] = "ContainerCreating"
                        self.put("pods", ns, pod)
                    continue
                self._start(ns, pod)
            elif phase == "Running" and (ns, name) in self.procs:
                rc = self.procs[(ns, name)].poll()
                if rc is not None:
                    pod["status"]["phase"] = "Succeeded" if rc == 0 else "Failed"
                    pod["status"]["containerStatuses"] = [_cstatus(pod["spec"]["containers"][0]["name"],
                                                                   {"terminated": {"exitCode": rc}})]
                    self.put("pods", ns, pod)

    def _start(self, ns: str, pod: dict[str, Any]) -> None:
        name = pod["metadata"]["name"]
        c = pod["spec"]["containers"][0]
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        for e in c.get("env", []):
            if "value" in e:
                env[e["name"]] = e["value"]
                continue
            ref = e["valueFrom"]["secretKeyRef"]
            secret = self.get("secrets", ns, ref["name"])
            data = (secret or {}).get("data", {})
            if ref["key"] not in data:
                msg = (f"couldn't find key {ref['key']} in Secret {ns}/{ref['name']}" if secret
                       else f"secret \"{ref['name']}\" not found")
                self.event(ns, "Pod", name, "Failed", f"Error: {msg}")
                pod["status"].update(phase="Failed", reason="CreateContainerConfigError", message=msg)
                self.put("pods", ns, pod)
                return
            env[e["name"]] = base64.b64decode(data[ref["key"]]).decode()
        mounts = {}
        for m in c.get("volumeMounts", []):
            vol = next(v for v in pod["spec"]["volumes"] if v["name"] == m["name"])
            claim = (vol.get("persistentVolumeClaim") or {}).get("claimName")
            if claim:
                mounts[m["mountPath"]] = str(self.claim_dir(ns, claim))
        index = (pod["metadata"].get("annotations") or {}).get("batch.kubernetes.io/job-completion-index")
        if index is not None:
            env["JOB_COMPLETION_INDEX"] = index
        args = []
        for a in c.get("args", []):
            for k, v in env.items():  # Kubernetes expands $(VAR) in args from the container's env
                a = a.replace(f"$({k})", v)
            for mp, local in mounts.items():
                if a == mp or a.startswith(mp + "/"):
                    a = local + a[len(mp):]
            args.append(a)
        env["HOME"] = "/"  # a random UID's HOME is not writable: the tool must not need it
        cmd = [sys.executable, "-m", "modelpvc", *args]
        gid_needed = any("fake.modelpvc.io/gid" in ((self.get("persistentvolumeclaims", ns, (
            (v.get("persistentVolumeClaim") or {}).get("claimName") or "")) or {}).get("metadata", {})
            .get("annotations") or {}) for v in pod["spec"].get("volumes", []))
        if gid_needed:
            fs_group = (pod["spec"].get("securityContext") or {}).get("fsGroup", 0)
            caps = "+dac_read_search"  # to reach the interpreter under /root; grants no writes
            cmd = ["setpriv", "--reuid", str(FAKE_UID), "--regid", "0", f"--groups={fs_group}",
                   f"--inh-caps={caps}", f"--ambient-caps={caps}", *cmd]
            env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2] / "src")
        log = self.root / "logs" / ns / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "wb") as out:
            self.procs[(ns, name)] = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                                      stdin=subprocess.DEVNULL)
        pod["status"]["phase"] = "Running"
        self.put("pods", ns, pod)

    def _serve_isvcs(self) -> None:
        from modelpvc.verify.checks import verify_directory

        for isvc in self.list("inferenceservices", None):
            ns, name = isvc["metadata"]["namespace"], isvc["metadata"]["name"]
            gen = int(isvc["metadata"].get("generation", 1))
            status = isvc.setdefault("status", {})
            uri = isvc["spec"]["predictor"]["model"]["storageUri"]
            pod_name = f"{name}-predictor-{gen}"
            pod = self.get("pods", ns, pod_name)
            if status.get("observedGeneration") == gen and status.get("ready") and pod:
                continue
            claim, _, path = uri.removeprefix("pvc://").partition("/")
            if pod is None:
                pod = {"metadata": {"name": pod_name, "labels": {"serving.kserve.io/inferenceservice": name}},
                       "spec": {"nodeName": SERVING_NODE, "containers": [{"name": "kserve-container",
                                                                          "image": "vllm"}],
                                "volumes": [{"name": "m", "persistentVolumeClaim": {"claimName": claim,
                                                                                    "readOnly": True}}]},
                       "status": {"phase": "Pending"}}
                pod = self.put("pods", ns, pod)
            why = self._attach_blocked(ns, pod, SERVING_NODE)
            cond: dict[str, Any]
            if why:
                if pod["status"].get("reason") != "ContainerCreating":
                    self.event(ns, "Pod", pod_name, "FailedAttachVolume", why)
                    pod["status"]["reason"] = "ContainerCreating"
                    self.put("pods", ns, pod)
                cond = {"type": "Ready", "status": "False", "reason": "PredictorNotReady", "message": why}
                status.update(conditions=[cond], ready=False, observedGeneration=gen,
                              modelStatus={"transitionStatus": "InProgress"})
                self.put("inferenceservices", ns, isvc)
                continue
            report = verify_directory(self.claim_dir(ns, claim) / path, require_manifest=True)
            pod["status"]["phase"] = "Running"
            if report.ok:
                pod["status"]["containerStatuses"] = [_cstatus("kserve-container", {"running": {}}, ready=True)]
                cond = {"type": "Ready", "status": "True"}
                status.update(conditions=[cond, {"type": "PredictorReady", "status": "True"}], ready=True,
                              url=f"http://{name}.{ns}.example.com", observedGeneration=gen,
                              modelStatus={"transitionStatus": "UpToDate", "states": {"activeModelState": "Loaded"}})
                for old in self.list("pods", ns):  # the new revision is up: retire older predictors
                    if old["metadata"].get("labels", {}).get("serving.kserve.io/inferenceservice") == name and \
                            old["metadata"]["name"] != pod_name:
                        self.delete("pods", ns, old["metadata"]["name"])
            else:
                first = next(f for f in report.all_findings if f.severity == "error")
                msg = f"{first.path}: {first.message}"
                pod["status"]["containerStatuses"] = [_cstatus("kserve-container",
                                                               {"waiting": {"reason": "CrashLoopBackOff"}}, restarts=3)]
                log = self.root / "logs" / ns / f"{pod_name}.log"
                log.parent.mkdir(parents=True, exist_ok=True)
                log.write_text(f"INFO Starting vLLM API server\nERROR Failed to load model from /mnt/models: {msg}\n")
                cond = {"type": "Ready", "status": "False", "reason": "CrashLoopBackOff", "message": msg}
                status.update(conditions=[cond], ready=False, observedGeneration=gen,
                              modelStatus={"transitionStatus": "BlockedByFailedLoad",
                                           "lastFailureInfo": {"reason": "ModelLoadFailed", "message": msg}})
            self.put("pods", ns, pod)
            self.put("inferenceservices", ns, isvc)

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
                self._send(code, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message,
                                  "reason": reason, "code": code})

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
                    return self._log(ns, name or "", q.get("follow") == ["true"])
                if name is None:
                    items = cluster.list(plural, ns if plural not in ("namespaces", "nodes") else "")
                    for sel in q.get("labelSelector", []):
                        want = dict(kv.split("=", 1) for kv in sel.split(","))
                        items = [o for o in items if want.items() <= (o["metadata"].get("labels") or {}).items()]
                    for sel in q.get("fieldSelector", []):
                        for kv in sel.split(","):
                            k, v = kv.split("=", 1)
                            items = [o for o in items if _field(o, k) == v]
                    return self._send(200, {"kind": KINDS[plural] + "List", "apiVersion": API.get(plural, "v1"),
                                            "metadata": {"resourceVersion": str(next(cluster.rv))}, "items": items})
                obj = cluster.get(plural, ns, name)
                if obj is None:
                    return self._status(404, "NotFound", f'{plural} "{name}" not found')
                return self._send(200, obj)

            def _log(self, ns: str, name: str, follow: bool) -> None:
                path = cluster.root / "logs" / ns / f"{name}.log"
                if cluster.get("pods", ns, name) is None:
                    return self._status(404, "NotFound", f'pods "{name}" not found')
                if not follow:
                    data = path.read_bytes() if path.exists() else b""
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return None
                self.send_response(200)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                pos = 0
                while True:
                    done = (cluster.get("pods", ns, name) or {}).get("status", {}).get("phase") \
                        in ("Succeeded", "Failed", None)
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
                plural, ns, _name, _sub, _q = self._route()
                body = self._body()
                cluster.requests.append(("POST", self.path))
                name = body["metadata"].get("name")
                if cluster.get(plural, ns, name) is not None:
                    return self._status(409, "AlreadyExists", f'{plural} "{name}" already exists')
                if plural in ("jobs", "pods") and ns and cluster.get("namespaces", "", ns) is None:
                    return self._status(404, "NotFound", f'namespaces "{ns}" not found')
                body.setdefault("metadata", {})["generation"] = 1
                if plural == "jobs":
                    body["status"] = {}
                return self._send(201, cluster.put(plural, ns, body))

            def do_PATCH(self) -> None:
                plural, ns, name, _sub, _q = self._route()
                body = self._body()
                cluster.requests.append(("PATCH", self.path))
                with cluster.lock:
                    cur = cluster.get(plural, ns, name or "")
                    apply = "apply-patch" in (self.headers.get("Content-Type") or "")
                    if cur is None and not apply:
                        return self._status(404, "NotFound", f'{plural} "{name}" not found')
                    new = _merge(cur or {}, body)
                    if cur is None or new.get("spec") != cur.get("spec"):
                        new.setdefault("metadata", {})["generation"] = int(
                            (cur or {}).get("metadata", {}).get("generation", 0)) + 1
                    return self._send(200 if cur else 201, cluster.put(plural, ns, new))

            def do_PUT(self) -> None:
                self.do_PATCH()

            def do_DELETE(self) -> None:
                plural, ns, name, _sub, _q = self._route()
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                cluster.requests.append(("DELETE", self.path))
                obj = cluster.delete(plural, ns, name or "")
                if obj is None:
                    return self._status(404, "NotFound", f'{plural} "{name}" not found')
                return self._send(200, obj)

        return Handler


def _field(o: dict[str, Any], path: str) -> Any:
    cur: Any = o
    for part in path.split("."):
        cur = (cur or {}).get(part) if isinstance(cur, dict) else None
    return cur
