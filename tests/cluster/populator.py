"""The volume populator on the local cluster, as a platform admin installs it (what `render --populator
--install` writes: CRD, ServiceAccount, RBAC) and run as a process with its service account's token, from a
TokenRequest: it can do exactly what the rendered RBAC allows. Its Deployment is not applied: the process
kubelet gives pods no in-cluster credentials."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from modelpvc.kube.populator_install import NAME, install_objects
from modelpvc.kube.spec import DEFAULT_IMAGE
from tests.cluster.api import Api
from tests.cluster.plane import ControlPlane, User
from tests.cluster.storage import wait_for

SYSTEM = "modelpvc-system"
INSTALLED = {"CustomResourceDefinition", "ServiceAccount", "ClusterRole", "ClusterRoleBinding"}


def install(api: Api, plane: ControlPlane, out: Path) -> Path:
    """Install the populator's API and identity; returns a kubeconfig of its service account."""
    api.ensure({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": SYSTEM}})
    for obj in install_objects(SYSTEM, DEFAULT_IMAGE):
        if obj["kind"] in INSTALLED:
            api.apply(obj)
    wait_for("the ModelSource CRD to be established", lambda: any(
        c["type"] == "Established" and c["status"] == "True" for c in (api.get(
            "CustomResourceDefinition", "modelsources.modelpvc.io") or {}).get("status", {}).get("conditions", [])))
    token = api.request("POST", api.path("ServiceAccount", SYSTEM, NAME, "token"),
                        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                         "spec": {"expirationSeconds": 7 * 86400}})["status"]["token"]
    return plane.write_kubeconfig(out / "populator.kubeconfig", User(f"system:serviceaccount:{SYSTEM}:{NAME}", token))


class PopulatorProcess:
    """`modelpvc populator` with that kubeconfig; its log in ``log``."""

    def __init__(self, kubeconfig: Path, log: Path, backoff: float = 2.0) -> None:
        self.kubeconfig, self.log, self.backoff = kubeconfig, log, backoff
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> PopulatorProcess:
        out = open(self.log, "ab")  # noqa: SIM115  (the child keeps it)
        self.proc = subprocess.Popen([sys.executable, "-m", "modelpvc", "populator", "--kubeconfig",
                                      str(self.kubeconfig), "--backoff", str(self.backoff)], stdout=out, stderr=out,
                                     stdin=subprocess.DEVNULL, env={**os.environ, "HOME": "/nonexistent"})
        return self

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
