from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
import yaml

from modelpvc.devtools.s3server import RcloneS3
from tests.cluster.local import MINIO_SERVICE, LocalCluster
from tests.cluster.storage import wait_for
from tests.conftest import run_cli
from tests.kube.fakeapi import FakeCluster

NS = "private-ai-demo"
SECRET = "s3-credentials-kserve"
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


# -- the real control plane (tests/cluster) -----------------------------------------------------------------
@dataclass
class Project:
    """A namespace of its own on the real plane, as a project admin sees it, with the seed's secret."""

    cluster: LocalCluster
    ns: str
    kubeconfig: Path
    bucket_prefix: str

    def env(self) -> dict[str, str]:
        """The project admin's shell on a laptop: no S3 keys, the in-cluster endpoint unknown."""
        e = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        e.update(KUBECONFIG=str(self.kubeconfig), HOME="/nonexistent")
        return e

    def cli(self, cmd: str, *args: str, timeout: float = 180, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
        e = {**self.env(), **(env or {})}
        extra = ["--pending-timeout", "20"] if cmd in ("populate", "deploy", "update") else []
        return run_cli([cmd, "-n", self.ns, *extra, *args], e, timeout=timeout)

    def upload(self, local: Path, name: str) -> str:
        """Upload a model directory as the seed's users do (boto3's defaults); returns its s3:// URI."""
        assert self.cluster.minio is not None
        m = self.cluster.minio
        s3 = boto3.client("s3", endpoint_url=m.endpoint, aws_access_key_id=m.access_key,
                          aws_secret_access_key=m.secret_key, region_name="us-east-1")
        with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
            s3.create_bucket(Bucket="models")
        key = f"{self.bucket_prefix}/{name}/"
        for p in sorted(local.rglob("*")):
            if p.is_file():
                s3.upload_file(str(p), "models", key + p.relative_to(local).as_posix())
        return f"s3://models/{key}"


@pytest.fixture(scope="session")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    if os.geteuid() != 0:
        pytest.fail("the process kubelet mounts volumes in private mount namespaces: run the kube tier as root")
    c = LocalCluster(tmp_path_factory.mktemp("cluster")).start()
    yield c
    c.stop()


_projects = itertools.count()


@pytest.fixture
def project(plane: LocalCluster, tmp_path: Path) -> Iterator[Project]:
    """A fresh OpenShift project per test (envtest's convention), its data connection, its admin. Deleted
    after the test, and waited for: the nodes (one GPU node) are shared by every test of the session."""
    ns = f"private-ai-demo-{next(_projects)}"
    plane.add_project(ns)
    assert plane.minio is not None
    plane.add_secret(ns, SECRET, {"AWS_ACCESS_KEY_ID": plane.minio.access_key,
                                  "AWS_SECRET_ACCESS_KEY": plane.minio.secret_key,
                                  "AWS_S3_ENDPOINT": f"http://{MINIO_SERVICE}:9000",
                                  "AWS_DEFAULT_REGION": "us-east-2", "AWS_S3_BUCKET": "models"})
    yield Project(plane, ns, plane.kubeconfig(tmp_path / "kubeconfig", namespace=ns), ns)
    plane.api.delete("Namespace", ns)
    wait_for(f"namespace {ns} to go", lambda: plane.api.get("Namespace", ns) is None, timeout=120)
