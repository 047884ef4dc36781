"""The real KServe controller (``cmd/manager`` of github.com/kserve/kserve, built by ``make tools``) on the
local plane, set up the way its own envtest suites and OpenShift AI's single-model serving set it up:

* its CRDs generated from its Go types by controller-gen (the version its go.mod pins), applied server-side
  (the InferenceService CRD is too large for a last-applied annotation);
* namespace ``kserve`` with the ``inferenceservice-config`` ConfigMap from its own module, changed where
  OpenShift AI changes it: RawDeployment (Standard) mode, no Istio/ingress, PVCs mounted directly
  (``enableDirectPvcVolumeMount``: the predictor reads the claim at /mnt/models, no initializer copy);
* its webhooks (config/webhook/manifests.yaml: the InferenceService defaulter and validator, and the pod
  mutator that mounts ``pvc://`` and injects ClusterStorageContainers) registered by URL with our CA, as
  envtest does; no cert-manager. Its webhook server listens on every interface (the manager has no flag for
  the host), on a free port.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import yaml

from modelpvc.devtools.s3server import free_port
from tests.cluster.api import Api, Obj
from tests.cluster.certs import CA
from tests.cluster.plane import binary
from tests.cluster.storage import wait_for

REPO = Path(__file__).resolve().parents[2]
WRAPPER = REPO / "tools" / "kserve"
NAMESPACE = "kserve"


def module_dir() -> Path:
    """KServe's module in the Go module cache, at the version our wrapper pins (config/, the CRDs' types)."""
    out = subprocess.run(["go", "list", "-m", "-f", "{{.Dir}}", "github.com/kserve/kserve"], cwd=WRAPPER,
                         capture_output=True, text=True, check=True, env={**os.environ, "GOFLAGS": "-mod=readonly"})
    return Path(out.stdout.strip())


def crds(cache: Path) -> list[Obj]:
    """The CRDs, generated once per wrapper version (controller-gen takes ~8 s) and kept in ``cache``."""
    key = hashlib.sha256((WRAPPER / "go.sum").read_bytes()).hexdigest()[:16]
    out = cache / f"kserve-crds-{key}"
    if not (out / ".done").exists():
        out.mkdir(parents=True, exist_ok=True)
        subprocess.run([binary("controller-gen"), "crd:maxDescLen=0",
                        "paths=github.com/kserve/kserve/pkg/apis/serving/...", f"output:crd:dir={out}"],
                       cwd=WRAPPER, check=True, capture_output=True, env={**os.environ, "GOFLAGS": "-mod=readonly"})
        (out / ".done").touch()
    return [yaml.safe_load(p.read_text()) for p in sorted(out.glob("*.yaml"))]


def config_map(module: Path) -> Obj:
    cm: Obj = yaml.safe_load((module / "config" / "configmap" / "inferenceservice.yaml").read_text())
    data = cm["data"]
    data.pop("_example", None)

    def change(key: str, **values: Any) -> None:
        cfg = json.loads(data[key])
        cfg.update(values)
        data[key] = json.dumps(cfg)

    change("deploy", defaultDeploymentMode="RawDeployment")
    change("ingress", disableIstioVirtualHost=True, disableIngressCreation=True)
    change("storageInitializer", enableDirectPvcVolumeMount=True)
    cm["metadata"] = {"name": "inferenceservice-config", "namespace": NAMESPACE}
    return cm


def webhooks(module: Path, url: str, ca_bundle: str) -> list[Obj]:
    out = []
    for doc in yaml.safe_load_all((module / "config" / "webhook" / "manifests.yaml").read_text()):
        if not doc:
            continue
        doc["metadata"] = {"name": doc["metadata"]["name"]}
        for hook in doc["webhooks"]:
            path = hook["clientConfig"]["service"]["path"]
            hook["clientConfig"] = {"url": url + path, "caBundle": ca_bundle}
        out.append(doc)
    return out


class KServe:
    def __init__(self, api: Api, ca: CA, root: Path, kubeconfig: Path, cache: Path) -> None:
        self.api = api
        self.ca = ca
        self.root = root
        self.kubeconfig = kubeconfig
        self.cache = cache
        self.proc: subprocess.Popen[bytes] | None = None

    def install_crds(self) -> None:
        for crd in crds(self.cache):
            self.api.apply(crd, manager="platform-admin")
        for crd in crds(self.cache):
            name = crd["metadata"]["name"]
            wait_for(f"CRD {name} Established", lambda n=name: any(
                c["type"] == "Established" and c["status"] == "True"
                for c in ((self.api.get("CustomResourceDefinition", n) or {}).get("status") or {}).get(
                    "conditions") or []), timeout=60)

    def start(self) -> KServe:
        module = module_dir()
        self.install_crds()
        self.api.ensure({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
        self.api.apply(config_map(module), manager="platform-admin")
        tmp = self.root / "tmp"
        certs = tmp / "k8s-webhook-server" / "serving-certs"
        certs.mkdir(parents=True, exist_ok=True)
        pair = self.ca.serving("kserve-webhook")
        (certs / "tls.crt").write_bytes(pair.cert.read_bytes())
        (certs / "tls.key").write_bytes(pair.key.read_bytes())
        port, probe = free_port(), free_port()
        log = open(self.root / "kserve-manager.log", "ab")  # noqa: SIM115  (the child keeps it)
        self.proc = subprocess.Popen(
            [binary("kserve-manager"), "--metrics-addr=0", f"--health-probe-addr=127.0.0.1:{probe}",
             f"--webhook-port={port}", "--leader-elect=false"],
            env={**os.environ, "KUBECONFIG": str(self.kubeconfig), "POD_NAMESPACE": NAMESPACE, "TMPDIR": str(tmp)},
            stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
        ca_bundle = base64.b64encode(self.ca.cert.read_bytes()).decode()
        for hook in webhooks(module, f"https://127.0.0.1:{port}", ca_bundle):
            self.api.apply(hook, manager="platform-admin")
        wait_for("the KServe manager's health probe", lambda: self._healthy(probe), timeout=60)
        return self

    def _healthy(self, port: int) -> bool:
        import urllib.request

        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"kserve-manager exited with {self.proc.returncode}; see {self.root}/kserve-manager.log")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
