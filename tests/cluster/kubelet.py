"""A process kubelet: the one Kubernetes component that cannot run here (no container runtime, no images),
kept to what our code depends on and written from the kubelet's behaviour (pkg/kubelet: status manager,
volume manager, kuberuntime) with its reasons and messages verbatim.

* Registers its Nodes (labels incl. zone, taints, capacity with ``nvidia.com/gpu``, the attach/detach
  annotation), renews their Leases in ``kube-node-lease`` and serves ``/containerLogs`` over HTTPS on a
  port per node, so the apiserver's ``pods/log`` works.
* Runs each pod bound to its nodes: waits until the attach/detach controller reports a CSI volume attached
  (``node.status.volumesAttached``; ``volumesInUse`` while mounted), resolves env like the kubelet (a missing
  secret or key is Waiting ``CreateContainerConfigError``), maps images to local launchers (our image → the
  venv's ``modelpvc``; vLLM images → tests/cluster/vllm_standin.py; KServe's agent → agent_standin.py;
  base OS images → their command with this machine's tools; anything else → ``ErrImagePull`` then
  ``ImagePullBackOff``), applies ``fsGroup`` to volumes, runs init containers then containers as processes in
  a private mount namespace with the volumes at their real paths (tests/cluster/podexec.py), restarts them by
  ``restartPolicy`` with CrashLoopBackOff, probes readiness, and deletes pods with grace.
* Left out: resource enforcement (cgroups), images' own file systems, exec/attach/port-forward, probes other
  than httpGet, ephemeral containers. Serving pods get their own network namespace (two predictors on a
  node both listen on 8080); tool pods share the host's, where the S3 server is. Probe delays are honoured
  up to 2 s: the stand-in loads in milliseconds, and a 180 s initialDelaySeconds would only slow the tests.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import json
import math
import os
import re
import shutil
import signal
import ssl
import stat
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.cluster.api import Api, ApiError, Obj
from tests.cluster.certs import Pair
from tests.cluster.storage import DRIVER, quantity_bytes

REPO = Path(__file__).resolve().parents[2]
TOOL_IMAGES = ("ghcr.io/modelpvc/modelpvc", "registry.local/modelpvc")  # our image, however it was pushed
VLLM_MARKERS = ("vllm",)  # the seed's odh-vllm-cuda-rhel9 and upstream vllm-openai images
AGENT_IMAGE = "kserve/agent"  # KServe's logger/batcher sidecar
# Base OS images run their command with this machine's own tools (sleep, sh, ls): the runbook's inspector.
BASE_IMAGES = ("ubi9/ubi", "ubi8/ubi", "ubi-minimal", "busybox")
IMAGE_UID = 1001  # the Containerfile's USER
PROBE_DELAY_CAP = 2.0
CRASH_BACKOFF = (1.0, 2.0, 4.0, 8.0)  # the kubelet's 10 s doubling to 5 min, scaled down


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class NodeSpec:
    name: str
    zone: str
    cpu: str = "8"
    memory: str = "32Gi"
    gpus: int = 0
    taints: list[Obj] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    port: int = 0


    def capacity(self) -> dict[str, str]:
        cap = {"cpu": self.cpu, "memory": self.memory, "pods": "110", "ephemeral-storage": "100Gi"}
        if self.gpus:
            cap["nvidia.com/gpu"] = str(self.gpus)
        return cap


class ImagePullError(Exception):
    pass


class ConfigError(Exception):
    pass


class Kubelet:
    def __init__(self, api: Api, root: Path, nodes: list[NodeSpec], serving: Pair, hosts: dict[str, str]) -> None:
        self.api = api
        self.root = root
        self.nodes = {n.name: n for n in nodes}
        self.serving = serving
        self.hosts_file = root / "hosts"
        self.hosts = hosts
        self.pods: dict[str, PodWorker] = {}  # uid -> worker
        self._stop = threading.Event()
        self._servers: list[ThreadingHTTPServer] = []
        self._lock = threading.Lock()
        self.in_use: dict[str, set[str]] = {n: set() for n in self.nodes}  # node -> unique volume names

    # -- nodes -----------------------------------------------------------------------------------
    def start(self) -> Kubelet:
        self.root.mkdir(parents=True, exist_ok=True)
        self.hosts_file.write_text("127.0.0.1 localhost\n::1 localhost\n" +
                                   "".join(f"{ip} {name}\n" for name, ip in self.hosts.items()))
        from modelpvc.devtools.s3server import free_port

        for n in self.nodes.values():
            n.port = n.port or free_port()
            self._serve_logs(n)
            self._register(n)
        threading.Thread(target=self._leases, daemon=True, name="kubelet-leases").start()
        threading.Thread(target=self._sync, daemon=True, name="kubelet-sync").start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for w in list(self.pods.values()):
            w.kill()
        for w in list(self.pods.values()):
            w.join(10)  # its cleanup removes the pod's network namespace
        for s in self._servers:
            s.shutdown()

    def _register(self, n: NodeSpec) -> None:
        labels = {"kubernetes.io/hostname": n.name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                  "topology.kubernetes.io/zone": n.zone, "topology.kubernetes.io/region": n.zone[:-1], **n.labels}
        node = {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": n.name, "labels": labels,
                             "annotations": {"volumes.kubernetes.io/controller-managed-attach-detach": "true"}},
                "spec": {"taints": n.taints}}
        self.api.ensure(node)
        self._node_status(n)
        self.api.ensure({"apiVersion": "storage.k8s.io/v1", "kind": "CSINode", "metadata": {"name": n.name},
                         "spec": {"drivers": [{"name": DRIVER, "nodeID": n.name,
                                               "topologyKeys": ["topology.kubernetes.io/zone"]}]}})

    def _node_status(self, n: NodeSpec) -> None:
        cap = n.capacity()
        t = now()
        ready = {"type": "Ready", "status": "True", "reason": "KubeletReady",
                 "message": "kubelet is posting ready status", "lastHeartbeatTime": t, "lastTransitionTime": t}
        status = {"capacity": cap, "allocatable": cap, "conditions": [ready],
                  "addresses": [{"type": "InternalIP", "address": "127.0.0.1"},
                                {"type": "Hostname", "address": n.name}],
                  "daemonEndpoints": {"kubeletEndpoint": {"Port": n.port}},
                  "nodeInfo": {"kubeletVersion": "v1.36.3-process", "containerRuntimeVersion": "process://0",
                               "operatingSystem": "linux", "architecture": "amd64", "machineID": n.name,
                               "systemUUID": n.name, "bootID": n.name, "kernelVersion": os.uname().release,
                               "osImage": "process kubelet", "kubeProxyVersion": ""},
                  "volumesInUse": sorted(self.in_use.get(n.name, ()))}
        self.api.patch("Node", n.name, {"status": status}, sub="status")

    def _leases(self) -> None:
        while not self._stop.is_set():
            for n in self.nodes.values():
                lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                         "metadata": {"name": n.name, "namespace": "kube-node-lease"},
                         "spec": {"holderIdentity": n.name, "leaseDurationSeconds": 40,
                                  "renewTime": datetime.datetime.now(datetime.UTC).strftime(
                                      "%Y-%m-%dT%H:%M:%S.%fZ")}}
                with contextlib.suppress(ApiError, OSError):
                    self.api.apply(lease, manager="kubelet")
                    self._node_status(n)
            self._stop.wait(10)

    def set_in_use(self, node: str, volume: str, used: bool) -> None:
        with self._lock:
            s = self.in_use[node]
            changed = (volume not in s) if used else (volume in s)
            (s.add if used else s.discard)(volume)
        if changed:
            with contextlib.suppress(ApiError, OSError):
                self.api.patch("Node", node, {"status": {"volumesInUse": sorted(self.in_use[node])}}, sub="status")

    def attached(self, node: str, volume: str) -> bool:
        n = self.api.get("Node", node) or {}
        return any(v.get("name") == volume for v in (n.get("status") or {}).get("volumesAttached") or [])

    # -- pods ------------------------------------------------------------------------------------
    def _sync(self) -> None:
        while not self._stop.is_set():
            try:
                pods = self.api.list("Pod")
            except (ApiError, OSError):
                self._stop.wait(0.5)
                continue
            seen = set()
            for pod in pods:
                node = pod["spec"].get("nodeName")
                if node not in self.nodes:
                    continue
                uid = pod["metadata"]["uid"]
                seen.add(uid)
                w = self.pods.get(uid)
                if w is None and pod["status"].get("phase") not in ("Succeeded", "Failed"):
                    w = self.pods[uid] = PodWorker(self, pod)
                    w.start()
                if w is not None and pod["metadata"].get("deletionTimestamp"):
                    w.terminate(int(pod["metadata"].get("deletionGracePeriodSeconds") or 30))
            for uid in list(self.pods):
                if uid not in seen:
                    self.pods.pop(uid).kill()
            self._stop.wait(0.3)

    def event(self, pod: Obj, reason: str, message: str, etype: str = "Normal") -> None:
        m = pod["metadata"]
        t = now()
        ev = {"apiVersion": "v1", "kind": "Event",
              "metadata": {"name": f"{m['name']}.{uuid.uuid4().hex[:12]}", "namespace": m["namespace"]},
              "involvedObject": {"kind": "Pod", "namespace": m["namespace"], "name": m["name"], "uid": m["uid"],
                                 "apiVersion": "v1"},
              "reason": reason, "message": message, "type": etype, "count": 1,
              "firstTimestamp": t, "lastTimestamp": t,
              "source": {"component": "kubelet", "host": pod["spec"].get("nodeName", "")}}
        with contextlib.suppress(ApiError, OSError):
            self.api.create(ev)

    # -- logs ------------------------------------------------------------------------------------
    def log_path(self, ns: str, pod: str, container: str) -> Path:
        return self.root / "logs" / ns / pod / f"{container}.log"

    def _serve_logs(self, n: NodeSpec) -> None:
        kubelet = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: object) -> None:
                return None

            def do_GET(self) -> None:
                u = urllib.parse.urlsplit(self.path)
                parts = u.path.strip("/").split("/")
                if len(parts) != 4 or parts[0] != "containerLogs":
                    self.send_error(404)
                    return
                q = urllib.parse.parse_qs(u.query)
                path = kubelet.log_path(parts[1], parts[2], parts[3])
                follow = q.get("follow", ["false"])[0] == "true"
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                try:
                    self._stream(path, follow, parts[1], parts[2], parts[3])
                    self.wfile.write(b"0\r\n\r\n")
                except OSError:
                    pass

            def _chunk(self, data: bytes) -> None:
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

            def _stream(self, path: Path, follow: bool, ns: str, pod: str, container: str) -> None:
                pos = 0
                while True:
                    if path.exists():
                        with open(path, "rb") as fh:
                            fh.seek(pos)
                            data = fh.read()
                        if data:
                            self._chunk(data)
                            pos += len(data)
                    if not follow or kubelet.finished(ns, pod, container):
                        if path.exists() and path.stat().st_size > pos:
                            continue
                        return
                    time.sleep(0.1)

        server = ThreadingHTTPServer(("127.0.0.1", n.port), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(self.serving.cert), str(self.serving.key))
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
        server.daemon_threads = True
        self._servers.append(server)
        threading.Thread(target=server.serve_forever, daemon=True, name=f"kubelet-logs-{n.name}").start()

    def finished(self, ns: str, pod: str, container: str) -> bool:
        for w in list(self.pods.values()):
            if w.ns == ns and w.name == pod:
                return w.container_done(container)
        return True


def _cstatus(c: Obj, state: Obj, ready: bool = False, restarts: int = 0, last: Obj | None = None) -> Obj:
    out = {"name": c["name"], "image": c.get("image", ""), "imageID": "", "ready": ready, "started": "running" in state,
           "restartCount": restarts, "state": state}
    if last:
        out["lastState"] = last
    return out


class PodWorker(threading.Thread):
    """One pod's life on its node, from volumes to its last container's exit."""

    def __init__(self, kubelet: Kubelet, pod: Obj) -> None:
        super().__init__(daemon=True, name=f"pod-{pod['metadata']['name']}")
        self.k = kubelet
        self.api = kubelet.api
        self.pod = pod
        self.ns = pod["metadata"]["namespace"]
        self.name = pod["metadata"]["name"]
        self.node = pod["spec"]["nodeName"]
        self.dir = kubelet.root / "pods" / pod["metadata"]["uid"]
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.done: set[str] = set()
        self.statuses: dict[str, Obj] = {}
        self.init_statuses: dict[str, Obj] = {}
        self.volumes_in_use: list[str] = []
        self._terminating = threading.Event()
        self._killed = threading.Event()
        self.netns_name: str | None = None
        self.grace = 30

    # -- lifecycle -------------------------------------------------------------------------------
    def terminate(self, grace: int) -> None:
        if not self._terminating.is_set():
            self.grace = grace
            self._terminating.set()

    def kill(self) -> None:
        self._killed.set()
        self._terminating.set()
        for p in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)

    def container_done(self, name: str) -> bool:
        return name in self.done or self._killed.is_set()

    def run(self) -> None:
        try:
            self._run()
        except Exception as e:  # a bug here must show, not leave the pod silently Pending
            (self.dir / "kubelet-error.txt").parent.mkdir(parents=True, exist_ok=True)
            (self.dir / "kubelet-error.txt").write_text(repr(e))
            raise
        finally:
            self._cleanup()

    def _status(self, phase: str, **extra: Any) -> None:
        spec = self.pod["spec"]
        cs = [self.statuses.get(c["name"]) or _cstatus(c, {"waiting": {"reason": "ContainerCreating"}})
              for c in spec["containers"]]
        ics = [self.init_statuses.get(c["name"]) or _cstatus(c, {"waiting": {"reason": "PodInitializing"}})
               for c in spec.get("initContainers") or []]
        ready = phase == "Running" and all(s["ready"] for s in cs)
        init_done = all("terminated" in s["state"] and s["state"]["terminated"]["exitCode"] == 0 for s in ics)
        t = now()
        conds = [{"type": "PodScheduled", "status": "True", "lastTransitionTime": t},
                 {"type": "Initialized", "status": "True" if init_done else "False", "lastTransitionTime": t},
                 {"type": "ContainersReady", "status": "True" if ready else "False", "lastTransitionTime": t},
                 {"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": t}]
        status = {"phase": phase, "conditions": conds, "hostIP": "127.0.0.1", "podIP": "127.0.0.1",
                  "podIPs": [{"ip": "127.0.0.1"}], "startTime": self.pod["status"].get("startTime") or t,
                  "containerStatuses": cs, **extra}
        if ics:
            status["initContainerStatuses"] = ics
        with contextlib.suppress(ApiError, OSError):
            self.pod = self.api.patch("Pod", self.name, {"status": status}, ns=self.ns, sub="status")

    def _run(self) -> None:
        self._status("Pending")
        mounts = self._volumes()
        if mounts is None:
            return
        for c in self.pod["spec"].get("initContainers") or []:
            if not self._run_to_completion(c, mounts, init=True):
                return
        self._run_containers(mounts)

    # -- volumes ---------------------------------------------------------------------------------
    def _volumes(self) -> dict[str, tuple[Path, bool]] | None:
        """volume name -> (host path, read-only); None when the pod went away while waiting."""
        out: dict[str, tuple[Path, bool]] = {}
        for v in self.pod["spec"].get("volumes") or []:
            while True:
                if self._terminating.is_set():
                    return None
                try:
                    got = self._volume(v)
                except ConfigError as e:
                    self.k.event(self.pod, "FailedMount", f'MountVolume.SetUp failed for volume "{v["name"]}" : {e}',
                                 "Warning")
                    got = None
                if got is not None:
                    out[v["name"]] = got
                    break
                self._terminating.wait(1.0)
        self._fs_group(out)
        return out

    def _volume(self, v: Obj) -> tuple[Path, bool] | None:
        d = self.dir / "volumes" / v["name"]
        if "persistentVolumeClaim" in v:
            claim = v["persistentVolumeClaim"]["claimName"]
            pvc = self.api.get("PersistentVolumeClaim", claim, self.ns)
            if pvc is None:
                raise ConfigError(f'persistentvolumeclaim "{claim}" not found')
            pv = self.api.get("PersistentVolume", pvc["spec"].get("volumeName") or "") if pvc["spec"].get(
                "volumeName") else None
            if pv is None or (pvc.get("status") or {}).get("phase") != "Bound":
                return None
            csi = pv["spec"].get("csi") or {}
            unique = f"kubernetes.io/csi/{csi.get('driver')}^{csi.get('volumeHandle')}"
            self.k.set_in_use(self.node, unique, True)
            if unique not in self.volumes_in_use:
                self.volumes_in_use.append(unique)
            if not self.k.attached(self.node, unique):
                return None  # the attach/detach controller reports Multi-Attach itself
            return Path(csi["volumeAttributes"]["path"]), bool(v["persistentVolumeClaim"].get("readOnly"))
        if "emptyDir" in v:
            d.mkdir(parents=True, exist_ok=True)
            d.chmod(0o777)
            return d, False
        if "secret" in v or "configMap" in v:
            kind, ref = ("Secret", v["secret"]) if "secret" in v else ("ConfigMap", v["configMap"])
            name = ref.get("secretName") or ref.get("name")
            obj = self.api.get(kind, name, self.ns)
            if obj is None:
                if ref.get("optional"):
                    obj = {}
                else:
                    raise ConfigError(f'{kind.lower()} "{name}" not found')
            d.mkdir(parents=True, exist_ok=True)
            data = obj.get("data") or {}
            for key, val in data.items():
                raw = base64.b64decode(val) if kind == "Secret" else str(val).encode()
                (d / key).write_bytes(raw)
                (d / key).chmod(0o644)
            return d, True
        if "projected" in v or "downwardAPI" in v:
            d.mkdir(parents=True, exist_ok=True)
            (d / "token").write_text("process-kubelet-projected-token")
            (d / "namespace").write_text(self.ns)
            return d, True
        raise ConfigError(f"volume type of {v['name']} is not supported by the process kubelet")

    def _fs_group(self, vols: dict[str, tuple[Path, bool]]) -> None:
        """The kubelet's fsGroup handling (pkg/volume/volume_linux.go): group ownership, group rw, setgid
        dirs; with fsGroupChangePolicy OnRootMismatch a root that already matches is left alone."""
        sc = self.pod["spec"].get("securityContext") or {}
        group = sc.get("fsGroup")
        if group is None:
            return
        for v in self.pod["spec"].get("volumes") or []:
            if ("persistentVolumeClaim" not in v and "emptyDir" not in v) or v["name"] not in vols:
                continue
            root = vols[v["name"]][0]
            st = root.stat()
            if sc.get("fsGroupChangePolicy") == "OnRootMismatch" and st.st_gid == int(group) and \
                    st.st_mode & 0o2070 == 0o2070:
                continue
            for dirpath, _dirs, files in os.walk(root):
                os.chown(dirpath, -1, int(group))
                os.chmod(dirpath, stat.S_IMODE(os.stat(dirpath).st_mode) | 0o2070)
                for f in files:
                    p = os.path.join(dirpath, f)
                    if not os.path.islink(p):
                        os.chown(p, -1, int(group))
                        os.chmod(p, stat.S_IMODE(os.stat(p).st_mode) | 0o060)

    # -- containers ------------------------------------------------------------------------------
    def _launcher(self, c: Obj) -> list[str]:
        image = c.get("image", "")
        args = [str(a) for a in c.get("args") or []]
        if any(image.startswith(t) for t in TOOL_IMAGES):
            cmd = [str(x) for x in c.get("command") or ["modelpvc"]]
            exe = {"modelpvc": [sys.executable, "-m", "modelpvc"],
                   "modelpvc-storage-initializer": [sys.executable, "-m", "modelpvc", "storage-initializer"]}
            if cmd[0] not in exe:
                raise ImagePullError(f"{cmd[0]}: executable file not found in $PATH")
            return [*exe[cmd[0]], *cmd[1:], *args]
        if any(m in image for m in VLLM_MARKERS):
            return [sys.executable, "-m", "tests.cluster.vllm_standin", *args]
        if AGENT_IMAGE in image:
            return [sys.executable, "-m", "tests.cluster.agent_standin", *args]
        if any(b in image for b in BASE_IMAGES) and c.get("command"):
            return [*[str(x) for x in c["command"]], *args]
        raise ImagePullError(image)

    def _env(self, c: Obj) -> dict[str, str]:
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOSTNAME": self.name,
               "KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}
        for src in c.get("envFrom") or []:
            kind, ref = ("Secret", src["secretRef"]) if "secretRef" in src else ("ConfigMap", src["configMapRef"])
            obj = self.api.get(kind, ref["name"], self.ns)
            if obj is None:
                if ref.get("optional"):
                    continue
                raise ConfigError(f'{kind.lower()} "{ref["name"]}" not found')
            for k, v in (obj.get("data") or {}).items():
                env[src.get("prefix", "") + k] = base64.b64decode(v).decode() if kind == "Secret" else str(v)
        for e in c.get("env") or []:
            if "value" in e:
                env[e["name"]] = expand(str(e["value"]), env)
                continue
            vf = e.get("valueFrom") or {}
            for kind, key in (("Secret", "secretKeyRef"), ("ConfigMap", "configMapKeyRef")):
                ref = vf.get(key)
                if not ref:
                    continue
                obj = self.api.get(kind, ref["name"], self.ns)
                data = (obj or {}).get("data") or {}
                if ref["key"] not in data:
                    if ref.get("optional"):
                        break
                    if obj is None:
                        raise ConfigError(f'{kind.lower()} "{ref["name"]}" not found')
                    raise ConfigError(f"couldn't find key {ref['key']} in {kind} {self.ns}/{ref['name']}")
                env[e["name"]] = base64.b64decode(data[ref["key"]]).decode() if kind == "Secret" else str(
                    data[ref["key"]])
            if "fieldRef" in vf:
                path = vf["fieldRef"]["fieldPath"]
                env[e["name"]] = self._field(path)
            if "resourceFieldRef" in vf:
                env[e["name"]] = self._resource(c, vf["resourceFieldRef"])
        env.setdefault("HOME", "/")  # a random UID has no passwd entry: HOME is / and not writable
        env["PYTHONPATH"] = f"{REPO / 'src'}:{REPO}"
        return env

    def _resource(self, c: Obj, ref: Obj) -> str:
        """resourceFieldRef as the kubelet resolves it (kubelet_pods.go, containerResourceRuntimeValue): the
        named container's (else this one's) limit or request, the node's allocatable when a limit is unset,
        divided by ``divisor`` and rounded up."""
        spec = self.pod["spec"]
        name = ref.get("containerName")
        target = next((x for x in [*spec.get("initContainers", []), *spec["containers"]] if x["name"] == name), c) \
            if name else c
        kind, _, what = ref.get("resource", "").partition(".")
        val = ((target.get("resources") or {}).get(kind) or {}).get(what)
        if val is None and kind == "limits":
            val = self.k.nodes[self.node].capacity().get(what, "0")
        if what == "cpu":
            cores = float(str(val).removesuffix("m")) / (1000 if str(val).endswith("m") else 1)
            return str(math.ceil(cores / (quantity_bytes(ref.get("divisor", "1")) or 1)))
        return str(math.ceil(quantity_bytes(str(val or "0")) / (quantity_bytes(str(ref.get("divisor", "1"))) or 1)))

    def _field(self, path: str) -> str:
        """The downward API's fieldRef paths the kubelet resolves (pkg/fieldpath): the Job controller's
        JOB_COMPLETION_INDEX is ``metadata.labels['batch.kubernetes.io/job-completion-index']``."""
        simple = {"metadata.name": self.name, "metadata.namespace": self.ns, "spec.nodeName": self.node,
                  "status.podIP": "127.0.0.1", "metadata.uid": self.pod["metadata"]["uid"]}
        if path in simple:
            return simple[path]
        m = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
        if m is None:
            raise ConfigError(f"unsupported fieldPath {path}")
        return str((self.pod["metadata"].get(m.group(1)) or {}).get(m.group(2), ""))

    def _identity(self, c: Obj) -> tuple[int, int, list[int]]:
        psc = self.pod["spec"].get("securityContext") or {}
        csc = c.get("securityContext") or {}
        uid = csc.get("runAsUser", psc.get("runAsUser", IMAGE_UID))
        gid = csc.get("runAsGroup", psc.get("runAsGroup", 0))
        groups = [int(g) for g in psc.get("supplementalGroups") or []]
        if psc.get("fsGroup") is not None:
            groups.append(int(psc["fsGroup"]))
        return int(uid), int(gid), sorted(set(groups))

    def _netns(self) -> str:
        """The pod's network namespace, shared by its containers (created on first use)."""
        name = f"mpvc-{self.pod['metadata']['uid'][:13]}"
        if not Path(f"/run/netns/{name}").exists():
            subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
            subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True, capture_output=True)
        self.netns_name = name
        return name

    def _start(self, c: Obj, mounts: dict[str, tuple[Path, bool]], netns: bool) -> subprocess.Popen[bytes]:
        env = self._env(c)
        c = c | {k: [expand(str(a), env) for a in c[k]] for k in ("command", "args") if c.get(k)}
        argv = self._launcher(c)
        uid, gid, groups = self._identity(c)
        mlist = []
        for m in c.get("volumeMounts") or []:
            src, ro = mounts[m["name"]]
            if m.get("subPath"):
                src = src / m["subPath"]
                if not src.exists():
                    src.mkdir(parents=True, exist_ok=True)
            mlist.append({"source": str(src), "target": m["mountPath"], "readonly": ro or bool(m.get("readOnly"))})
        spec = {"mounts": mlist, "hosts": str(self.k.hosts_file), "uid": uid, "gid": gid, "groups": groups,
                "env": env, "argv": argv, "workdir": c.get("workingDir") or "/",
                "caps": "" if _world_readable(Path(sys.executable).resolve(), REPO) else "+dac_read_search",
                "keep": sorted({str(REPO), sys.prefix, sys.base_prefix})}
        spec_file = self.dir / f"{c['name']}.spec.json"
        spec_file.parent.mkdir(parents=True, exist_ok=True)
        spec_file.write_text(json.dumps(spec))
        log = self.k.log_path(self.ns, self.name, c["name"])
        log.parent.mkdir(parents=True, exist_ok=True)
        enter = ["nsenter", f"--net=/run/netns/{self._netns()}"] if netns else []
        cmd = [*enter, "unshare", "--mount", "--propagation", "private", sys.executable,
               str(Path(__file__).with_name("podexec.py")), str(spec_file)]
        with open(log, "ab") as out:
            return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)

    def _prepare(self, c: Obj, init: bool) -> bool:
        """Image and env, the kubelet's order; False (with the Waiting reason set) while they fail."""
        table = self.init_statuses if init else self.statuses
        pulls = 0
        while not self._terminating.is_set():
            try:
                self._launcher(c)
                self._env(c)
                return True
            except ImagePullError as e:
                pulls += 1
                reason = "ErrImagePull" if pulls == 1 else "ImagePullBackOff"
                msg = f'Back-off pulling image "{c.get("image")}"' if pulls > 1 else \
                    f'failed to pull and unpack image "{c.get("image")}": not found'
                table[c["name"]] = _cstatus(c, {"waiting": {"reason": reason, "message": msg}})
                if pulls == 1:
                    self.k.event(self.pod, "Failed", f'Failed to pull image "{c.get("image")}": {e}', "Warning")
            except ConfigError as e:
                table[c["name"]] = _cstatus(c, {"waiting": {"reason": "CreateContainerConfigError", "message": str(e)}})
                self.k.event(self.pod, "Failed", f"Error: {e}", "Warning")
            self._status("Pending")
            self._terminating.wait(2.0)
        return False

    def _run_to_completion(self, c: Obj, mounts: dict[str, tuple[Path, bool]], init: bool) -> bool:
        restarts = 0
        policy = self.pod["spec"].get("restartPolicy", "Always")
        while not self._terminating.is_set():
            if not self._prepare(c, init):
                return False
            p = self._start(c, mounts, netns=False)
            self.procs[c["name"]] = p
            self.init_statuses[c["name"]] = _cstatus(c, {"running": {"startedAt": now()}}, restarts=restarts)
            self._status("Pending")
            rc = p.wait()
            term = {"terminated": {"exitCode": rc, "reason": "Completed" if rc == 0 else "Error", "finishedAt": now()}}
            if rc == 0:
                self.init_statuses[c["name"]] = _cstatus(c, term, True, restarts)
                self.done.add(c["name"])
                return True
            if policy == "Never":
                self.init_statuses[c["name"]] = _cstatus(c, term, restarts=restarts)
                self.done.add(c["name"])
                self._status("Failed")
                return False
            restarts += 1
            self.init_statuses[c["name"]] = _cstatus(c, {"waiting": {"reason": "CrashLoopBackOff"}},
                                                     restarts=restarts, last=term)
            self._status("Pending")
            self._terminating.wait(CRASH_BACKOFF[min(restarts, len(CRASH_BACKOFF)) - 1])
        return False

    def _run_containers(self, mounts: dict[str, tuple[Path, bool]]) -> None:
        containers = self.pod["spec"]["containers"]
        policy = self.pod["spec"].get("restartPolicy", "Always")
        serving = any(any(m in c.get("image", "") for m in (*VLLM_MARKERS, AGENT_IMAGE)) for c in containers)
        for c in containers:
            if not self._prepare(c, False):
                return
        restarts = dict.fromkeys((c["name"] for c in containers), 0)
        started: dict[str, float] = {}
        for c in containers:
            self.procs[c["name"]] = self._start(c, mounts, netns=serving)
            started[c["name"]] = time.monotonic()
            self.statuses[c["name"]] = _cstatus(c, {"running": {"startedAt": now()}}, ready=not c.get("readinessProbe"))
        self._status("Running")
        while not self._terminating.is_set():
            changed = False
            for c in containers:
                name = c["name"]
                p = self.procs[name]
                rc = p.poll()
                st = self.statuses[name]
                if rc is None:
                    if c.get("readinessProbe") and not st["ready"] and self._probe(c, p, started[name]):
                        st["ready"] = True
                        changed = True
                    continue
                if "running" not in st["state"]:
                    continue
                term = {"terminated": {"exitCode": rc, "reason": "Completed" if rc == 0 else "Error",
                                       "finishedAt": now()}}
                if policy == "Never" or (policy == "OnFailure" and rc == 0):
                    self.statuses[name] = _cstatus(c, term, restarts=restarts[name])
                    self.done.add(name)
                    changed = True
                    continue
                restarts[name] += 1
                self.statuses[name] = _cstatus(c, {"waiting": {"reason": "CrashLoopBackOff", "message": (
                    f"back-off restarting failed container {name} in pod {self.name}")}},
                    restarts=restarts[name], last=term)
                self.k.event(self.pod, "BackOff", f"Back-off restarting failed container {name} in pod "
                             f"{self.name}_{self.ns}({self.pod['metadata']['uid']})", "Warning")
                self._status("Running")
                self._terminating.wait(CRASH_BACKOFF[min(restarts[name], len(CRASH_BACKOFF)) - 1])
                if self._terminating.is_set():
                    return
                self.procs[name] = self._start(c, mounts, netns=serving)
                started[name] = time.monotonic()
                self.statuses[name] = _cstatus(c, {"running": {"startedAt": now()}}, restarts=restarts[name],
                                               ready=not c.get("readinessProbe"), last=term)
                changed = True
            if all(c["name"] in self.done for c in containers):
                failed = any(self.statuses[c["name"]]["state"]["terminated"]["exitCode"] != 0 for c in containers)
                self._status("Failed" if failed else "Succeeded")
                return
            if changed:
                self._status("Running")
            self._terminating.wait(0.2)

    def _probe(self, c: Obj, p: subprocess.Popen[bytes], started: float) -> bool:
        probe = c["readinessProbe"]
        if time.monotonic() - started < min(float(probe.get("initialDelaySeconds", 0)), PROBE_DELAY_CAP):
            return False
        get = probe.get("httpGet")
        if not get:
            return True
        port = get.get("port")
        path = get.get("path", "/")
        # The server runs in the pod's network namespace: probe from inside it, as the kubelet reaches a pod IP.
        script = ("import urllib.request,sys\ntry:\n sys.exit(0 if urllib.request.urlopen("
                  f"'http://127.0.0.1:{port}{path}',timeout=1).status<400 else 1)\nexcept Exception: sys.exit(1)")
        where = [f"--net=/run/netns/{self.netns_name}"] if self.netns_name else ["-t", str(p.pid), "-n"]
        r = subprocess.run(["nsenter", *where, sys.executable, "-c", script], check=False,
                           capture_output=True, timeout=10)
        return r.returncode == 0

    # -- deletion --------------------------------------------------------------------------------
    def _cleanup(self) -> None:
        if self._terminating.is_set() and not self._killed.is_set():
            for p in self.procs.values():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGTERM)
            deadline = time.monotonic() + self.grace
            while any(p.poll() is None for p in self.procs.values()) and time.monotonic() < deadline:
                time.sleep(0.1)
            for p in self.procs.values():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
        for p in self.procs.values():
            with contextlib.suppress(Exception):
                p.wait(5)
        self.done.update(self.procs)
        for v in self.volumes_in_use:
            self.k.set_in_use(self.node, v, False)
        if self._terminating.is_set() and not self._killed.is_set():
            with contextlib.suppress(ApiError, OSError):  # the kubelet's final delete
                self.api.delete("Pod", self.name, self.ns, grace=0)
        shutil.rmtree(self.dir / "volumes", ignore_errors=True)
        if self.netns_name:
            subprocess.run(["ip", "netns", "delete", self.netns_name], check=False, capture_output=True)


_REFERENCE = re.compile(r"\$\$|\$\(([^)]*)\)")


def expand(text: str, env: dict[str, str]) -> str:
    """The kubelet's $(VAR) expansion in env values, command and args (k8s.io/kubernetes
    third_party/forked/golang/expansion): a defined variable is replaced, ``$$`` is a literal ``$``, an
    undefined reference stays as written."""
    return _REFERENCE.sub(lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), text)


def _world_readable(exe: Path, repo: Path) -> bool:
    for p in (exe, repo):
        for parent in [p, *p.parents]:
            if parent.exists() and not os.stat(parent).st_mode & stat.S_IXOTH:
                return False
    return True
