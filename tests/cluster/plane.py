"""The real Kubernetes control plane on loopback: etcd, kube-apiserver, kube-controller-manager and
kube-scheduler, built from their Go modules by ``make tools`` (docs/decisions.md §15), started the way
controller-runtime's envtest starts them, plus the controllers envtest leaves out.

Binaries come from ``KUBEBUILDER_ASSETS`` (envtest's convention; ``TEST_ASSET_<NAME>`` per binary) or PATH
(``.tools/bin`` first). Identities are static tokens: ``admin`` (system:masters), the components' own
users (bound by the apiserver's bootstrap RBAC) and ``developer``, a project admin who holds the upstream
``admin`` ClusterRole in its namespace only, as on OpenShift AI.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from modelpvc.devtools.s3server import free_port
from tests.cluster.certs import CA

SERVICE_CIDR = "10.0.0.0/24"  # allocated from, never reached: the tests talk to 127.0.0.1 only


def binary(name: str) -> str:
    """Where envtest would look (TEST_ASSET_KUBE_APISERVER, KUBEBUILDER_ASSETS), then PATH."""
    explicit = os.environ.get("TEST_ASSET_" + name.upper().replace("-", "_"))
    if explicit:
        return explicit
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    if assets and (Path(assets) / name).exists():
        return str(Path(assets) / name)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} not found: run `make tools` (it builds it into .tools/bin from its Go "
                           "module) or point KUBEBUILDER_ASSETS at a directory that holds it")
    return found


@dataclass(frozen=True)
class User:
    name: str
    token: str
    groups: tuple[str, ...] = ()


ADMIN = User("admin", "admin-token-local-only", ("system:masters",))
PROJECT_ADMIN = User("developer", "developer-token-local-only")
_COMPONENTS = (User("system:kube-controller-manager", "kcm-token-local-only"),
               User("system:kube-scheduler", "scheduler-token-local-only"))


@dataclass
class ControlPlane:
    root: Path
    log_dir: Path | None = None
    port: int = 0
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> ControlPlane:
        self.root.mkdir(parents=True, exist_ok=True)
        self.log_dir = self.log_dir or self.root / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.ca = CA(self.root / "pki")
        serving = self.ca.serving("kube-apiserver", ("127.0.0.1", "localhost", "10.0.0.1", "kubernetes",
                                                     "kubernetes.default", "kubernetes.default.svc"))
        sa = self.ca.service_account_keys()
        tokens = self.root / "tokens.csv"
        tokens.write_text("".join(f'{u.token},{u.name},{u.name},"{",".join(u.groups)}"\n'
                                  for u in (ADMIN, PROJECT_ADMIN, *_COMPONENTS)))
        tokens.chmod(0o600)
        deadline = time.monotonic() + timeout

        etcd_port, peer = free_port(), free_port()
        self._run("etcd", [binary("etcd"), "--data-dir", str(self.root / "etcd"),
                           "--listen-client-urls", f"http://127.0.0.1:{etcd_port}",
                           "--advertise-client-urls", f"http://127.0.0.1:{etcd_port}",
                           "--listen-peer-urls", f"http://127.0.0.1:{peer}",
                           "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
                           "--initial-cluster", f"default=http://127.0.0.1:{peer}",
                           "--unsafe-no-fsync", "--quota-backend-bytes", str(2**31)])
        self._wait(f"http://127.0.0.1:{etcd_port}/health", deadline, "etcd")

        self.port = free_port()
        self._run("kube-apiserver", [
            binary("kube-apiserver"), f"--etcd-servers=http://127.0.0.1:{etcd_port}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={self.port}",
            f"--tls-cert-file={serving.cert}", f"--tls-private-key-file={serving.key}",
            f"--client-ca-file={self.ca.cert}", f"--token-auth-file={tokens}",
            "--authorization-mode=Node,RBAC", "--allow-privileged=true",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={sa.cert}", f"--service-account-signing-key-file={sa.key}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            # The pod logs API reaches the process kubelets over HTTPS at 127.0.0.1.
            "--kubelet-preferred-address-types=InternalIP",
            "--enable-admission-plugins=NamespaceLifecycle,LimitRanger,ServiceAccount,DefaultStorageClass,"
            "ResourceQuota,PodSecurity,MutatingAdmissionWebhook,ValidatingAdmissionWebhook",
            "--cert-dir", str(self.root / "apiserver-certs")])
        self._wait(f"{self.url}/readyz", deadline, "kube-apiserver")

        self.write_kubeconfig(self.root / "kubeconfig", ADMIN)
        for comp in _COMPONENTS:
            short = comp.name.removeprefix("system:")
            cfg = self.write_kubeconfig(self.root / f"{short}.kubeconfig", comp)
            extra = ([f"--service-account-private-key-file={sa.key}", f"--root-ca-file={self.ca.cert}",
                      "--use-service-account-credentials=true", "--cluster-cidr=10.1.0.0/16",
                      "--allocate-node-cidrs=false", "--node-monitor-grace-period=40s"]
                     if short == "kube-controller-manager" else [])
            self._run(short, [binary(short), f"--kubeconfig={cfg}", "--leader-elect=false",
                              "--bind-address=127.0.0.1", f"--secure-port={free_port()}", *extra])
        self._wait_for_controllers(deadline)
        return self

    def write_kubeconfig(self, path: Path, user: User, namespace: str = "default") -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        cfg = {"apiVersion": "v1", "kind": "Config", "current-context": "local",
               "clusters": [{"name": "local", "cluster": {"server": self.url,
                                                         "certificate-authority": str(self.ca.cert)}}],
               "users": [{"name": user.name, "user": {"token": user.token}}],
               "contexts": [{"name": "local", "context": {"cluster": "local", "user": user.name,
                                                         "namespace": namespace}}]}
        path.write_text(json.dumps(cfg, indent=1))
        path.chmod(0o600)
        return path

    def _run(self, name: str, cmd: list[str]) -> None:
        assert self.log_dir is not None
        out = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115  (the child keeps it)
        self.procs[name] = subprocess.Popen(cmd, stdout=out, stderr=out, stdin=subprocess.DEVNULL,
                                            start_new_session=True)

    def _get(self, url: str) -> tuple[int, bytes]:
        ctx = ssl.create_default_context(cafile=str(self.ca.cert))
        req = urllib.request.Request(url, headers={"Authorization": f"Bearer {ADMIN.token}"})
        try:
            with urllib.request.urlopen(req, timeout=2, context=ctx) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def _wait(self, url: str, deadline: float, name: str) -> None:
        while time.monotonic() < deadline:
            proc = self.procs[name]
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}; see {self.log_dir}/{name}.log")
            try:
                if self._get(url)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{name} was not ready within the deadline; see {self.log_dir}/{name}.log")

    def _wait_for_controllers(self, deadline: float) -> None:
        # The service-account controller making `default` in `default` proves the controllers run; the
        # scheduler answers its own health check only once it has synced its informers.
        while time.monotonic() < deadline:
            for name in ("kube-controller-manager", "kube-scheduler"):
                if self.procs[name].poll() is not None:
                    raise RuntimeError(f"{name} exited; see {self.log_dir}/{name}.log")
            if self._get(f"{self.url}/api/v1/namespaces/default/serviceaccounts/default")[0] == 200:
                return
            time.sleep(0.1)
        raise RuntimeError(f"the controllers did not start; see {self.log_dir}")

    def stop(self) -> None:
        for name in reversed(list(self.procs)):
            proc = self.procs.pop(name)
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
