from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from modelpvc.devtools.s3server import RcloneS3
from tests.conftest import run_cli
from tests.kube.fakeapi import FakeCluster

NS = "private-ai-demo"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SERVING_RUNTIME = yaml.safe_load((FIXTURES / "seed" / "servingruntime-vllm-cuda.yaml").read_text())


@pytest.fixture
def fake(tmp_path: Path, rclone: RcloneS3) -> Iterator[FakeCluster]:
    c = FakeCluster(tmp_path / "cluster").start()
    c.add_openshift_namespace(NS)
    for name in ("rt", "vllm-cuda-runtime"):
        c.put("servingruntimes", NS, SERVING_RUNTIME | {"metadata": {"name": name}})
    c.add_secret(NS, "s3-credentials-kserve", {"AWS_ACCESS_KEY_ID": rclone.access_key,
                                               "AWS_SECRET_ACCESS_KEY": rclone.secret_key})
    yield c
    c.stop()


@pytest.fixture
def kube(fake: FakeCluster, tmp_path: Path, env: dict[str, str], rclone: RcloneS3):  # type: ignore[no-untyped-def]
    """Run the CLI against the fake cluster: ``kube("populate", ...)``; -n and the endpoint are filled in."""
    cfg = fake.kubeconfig(tmp_path / "kubeconfig")
    e = {k: v for k, v in env.items() if not k.startswith("AWS_")}  # the operator's shell has no S3 keys
    e["KUBECONFIG"] = str(cfg)

    def run(cmd: str, *args: str, endpoint: bool = True, timeout: float = 120):  # type: ignore[no-untyped-def]
        extra = ["--endpoint-url", rclone.endpoint] if endpoint and cmd in ("populate", "update") else []
        extra += ["--pending-timeout", "5"] if cmd in ("populate", "deploy", "update") else []
        return run_cli([cmd, "-n", NS, *extra, *args], e, timeout=timeout)

    return run
