"""Shared fixtures: a real S3 server on loopback (rclone serve s3), a fault proxy in front of it, moto
for AWS-faithful corner cases, and a helper that runs the real CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from modelpvc.devtools.s3server import RcloneS3, find_binary, free_port, wait_for_port
from tests.support.faultproxy import FaultProxy

# The real servers `make tools` builds (MinIO, the control plane) are found on PATH, where `make` puts them;
# this does the same for a bare `pytest`.
os.environ["PATH"] = f"{Path(__file__).resolve().parents[1] / '.tools' / 'bin'}{os.pathsep}{os.environ['PATH']}"


def new_s3root(tmp_path_factory: pytest.TempPathFactory, name: str = "s3root") -> Path:
    root = tmp_path_factory.mktemp(name)
    (root / "models").mkdir()
    return root


def serve_rclone(root: Path, tmp_path_factory: pytest.TempPathFactory, logs: str = "logs") -> Iterator[RcloneS3]:
    # A short directory cache: tests edit the source between runs (each CLI run starts later than 100 ms);
    # test models are small, so rclone re-hashing them costs little. Not 0s: with 0s rclone (1.75.2)
    # re-arms its directory-cache cleanup timer at once, forever — a goroutine dump of a hung server showed
    # 50 million of them created and 415 queued on one directory's lock, and it stopped accepting
    # connections (docs/decisions.md §12).
    log = tmp_path_factory.mktemp(logs) / "rclone.log"
    srv = RcloneS3(root, log_path=log, extra=["--dir-cache-time", "100ms"]).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def s3root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return new_s3root(tmp_path_factory)


@pytest.fixture(scope="session")
def rclone(s3root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RcloneS3]:
    yield from serve_rclone(s3root, tmp_path_factory)


@pytest.fixture(scope="session")
def _proxy(rclone: RcloneS3) -> Iterator[FaultProxy]:
    p = FaultProxy(rclone.port).start()
    yield p
    p.stop()


@pytest.fixture
def proxy(_proxy: FaultProxy) -> FaultProxy:
    _proxy.reset()
    return _proxy


@dataclass
class Source:
    uri: str
    dir: Path
    publish: Callable[[], None] = lambda: None  # after editing ``dir``: make the server hold the edit


def server_env(server: dict[str, str]) -> dict[str, str]:
    """The CLI's environment for one S3 server: its keys and endpoint, nobody else's, no writable HOME."""
    e = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    e.update(server)
    e["HOME"] = "/nonexistent"  # a writable HOME is not needed
    return e


@pytest.fixture
def env(rclone: RcloneS3) -> dict[str, str]:
    return server_env(rclone.env())


# The CLI's working directory in tests: what it writes there (update --stop-the-world's backup of the
# InferenceService) must not land in the checkout.
CLI_CWD = tempfile.mkdtemp(prefix="modelpvc-cli-cwd-")


def run_cli(args: list[str], env: dict[str, str], timeout: float = 120,
            **kw: object) -> subprocess.CompletedProcess[str]:
    kw.setdefault("cwd", CLI_CWD)
    return subprocess.run([sys.executable, "-m", "modelpvc", *args], env=env, capture_output=True,
                          text=True, timeout=timeout, check=False, **kw)  # type: ignore[call-overload]


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = tmp_path_factory.mktemp("logs") / "moto.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([find_binary("moto_server"), "-p", str(port), "-H", "127.0.0.1"],
                                stdout=out, stderr=out)
    wait_for_port(port, timeout=30, proc=proc)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def moto_env(moto: str) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    e.update({"AWS_ACCESS_KEY_ID": "testing-access", "AWS_SECRET_ACCESS_KEY": "testing-secret",
              "AWS_ENDPOINT_URL": moto, "AWS_DEFAULT_REGION": "us-east-1", "HOME": "/nonexistent"})
    return e


@pytest.fixture
def s3client(moto: str):  # type: ignore[no-untyped-def]
    import boto3

    return boto3.client("s3", endpoint_url=moto, aws_access_key_id="testing-access",
                        aws_secret_access_key="testing-secret", region_name="us-east-1")
