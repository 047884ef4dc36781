from __future__ import annotations

import contextlib
import itertools
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
import yaml

from modelpvc.model.synthetic import SyntheticModel, generate_model
from tests.cluster.api import Api, Obj
from tests.cluster.local import MINIO_SERVICE, LocalCluster
from tests.cluster.storage import wait_for
from tests.conftest import run_cli

SECRET = "s3-credentials-kserve"
PVC = "mistral-24b-pvc"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SEED = FIXTURES / "seed"
REFERENCE = SEED / "inferenceservice-mistral-24b.yaml"
SERVING_RUNTIME = yaml.safe_load((FIXTURES / "seed" / "servingruntime-vllm-cuda.yaml").read_text())


# -- the real control plane (tests/cluster) -----------------------------------------------------------------
@dataclass
class Project:
    """A namespace of its own on the real plane, as a project admin sees it, with the seed's secret."""

    cluster: LocalCluster
    ns: str
    kubeconfig: Path
    bucket_prefix: str

    @property
    def api(self) -> Api:
        """The platform admin's view, for what a test looks at (and the few steps a platform admin does)."""
        return self.cluster.api

    def env(self) -> dict[str, str]:
        """The project admin's shell on a laptop: no S3 keys, the in-cluster endpoint unknown."""
        e = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        e.update(KUBECONFIG=str(self.kubeconfig), HOME="/nonexistent")
        return e

    def cli(self, cmd: str, *args: str, timeout: float = 180, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
        e = {**self.env(), **(env or {})}
        extra = ["--pending-timeout", "20"] if cmd in ("populate", "deploy", "update") else []
        return run_cli([cmd, "-n", self.ns, *extra, *args], e, timeout=timeout)

    def s3(self):  # type: ignore[no-untyped-def]
        m = self.cluster.minio
        assert m is not None
        return boto3.client("s3", endpoint_url=m.endpoint, aws_access_key_id=m.access_key,
                            aws_secret_access_key=m.secret_key, region_name="us-east-1")

    def bucket(self, name: str):  # type: ignore[no-untyped-def]
        """A client of the cluster's MinIO, with bucket ``name`` there (shared by the session's projects)."""
        s3 = self.s3()
        with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
            s3.create_bucket(Bucket=name)
        return s3

    def upload(self, local: Path, name: str, bucket: str = "models") -> str:
        """Upload a model directory as the seed's users do (boto3's defaults); returns its s3:// URI."""
        s3 = self.bucket(bucket)
        key = f"{self.bucket_prefix}/{name}/"
        for p in sorted(local.rglob("*")):
            if p.is_file():
                s3.upload_file(str(p), bucket, key + p.relative_to(local).as_posix())
        return f"s3://{bucket}/{key}"

    def model(self, tmp_path: Path, name: str = "full-fp16", spec: SyntheticModel | None = None) -> Model:
        """A synthetic model published under this project's prefix of the ``models`` bucket."""
        d = tmp_path / name
        generate_model(d, spec or SyntheticModel(total_bytes=12 * 1024 * 1024, shards=2))
        return Model(self.upload(d, name), d, lambda: self.upload(d, name))

    def populate(self, uri: str, *extra: str, pvc: str = PVC, size: str = "1Gi",  # type: ignore[no-untyped-def]
                 secret: str = SECRET, env: dict[str, str] | None = None):
        """The first populate of a claim it creates (gp3-csi, WaitForFirstConsumer)."""
        return self.cli("populate", "--pvc", pvc, "--create-pvc", "--size", size, "--source", uri,
                        "--secret", secret, *extra, env=env)

    def serving_prerequisites(self) -> None:
        """What the reference InferenceService needs in the project: the seed's ServingRuntime (created as
        OpenShift AI's dashboard does) and its service account."""
        rt = SERVING_RUNTIME | {"metadata": {**SERVING_RUNTIME["metadata"], "namespace": self.ns}}
        self.api.create(rt)
        self.api.create({"apiVersion": "v1", "kind": "ServiceAccount",
                         "metadata": {"name": "ai-workload-sa", "namespace": self.ns}})

    def deploy(self, base: Path = REFERENCE, *extra: str, pvc: str = PVC):  # type: ignore[no-untyped-def]
        return self.cli("deploy", "--isvc-base", str(base), "--pvc", pvc, "--deployment-mode", "RawDeployment",
                        *extra, timeout=300)

    def predictors(self, name: str = "mistral-24b") -> list[Obj]:
        return [p for p in self.api.list("Pod", self.ns, labelSelector=f"serving.kserve.io/inferenceservice={name}")
                if not p["metadata"].get("deletionTimestamp")]

    def isvc(self, name: str = "mistral-24b") -> Obj:
        got = self.api.get("InferenceService", name, self.ns)
        assert got is not None, f"no InferenceService {name}"
        return got

    def volume_dir(self, pvc: str = PVC) -> Path:
        return self.cluster.volume_dir(self.ns, pvc)

    def volume_zone(self, pvc: str = PVC) -> str | None:
        return self.cluster.volume_zone(self.ns, pvc)

    def doctor(self, *args: str) -> tuple[int, dict[str, Obj]]:
        r = self.cli("doctor", "--json", *args)
        return r.returncode, {d["code"]: d for d in json.loads(r.stdout)["diagnoses"]}


@dataclass
class Model:
    uri: str
    dir: Path
    publish: Callable[[], str]


def with_gpus(n: int, tmp_path: Path, **annotations: str) -> Path:
    """The reference InferenceService asking for ``n`` GPUs, room for a second pod on the 4-GPU node; and
    without its 80Gi ephemeral-storage request (doctor's advice for a PVC-backed server), which would
    leave no room for a second pod on the node's disk either."""
    base = yaml.safe_load(REFERENCE.read_text())
    for k in ("requests", "limits"):
        base["spec"]["predictor"]["model"]["resources"][k]["nvidia.com/gpu"] = str(n)
        base["spec"]["predictor"]["model"]["resources"][k].pop("ephemeral-storage", None)
    base["metadata"]["annotations"].update(annotations)
    path = tmp_path / f"isvc-{n}gpu.yaml"
    path.write_text(yaml.safe_dump(base))
    return path


def kept(want: object, live: object) -> bool:
    """Whether every field of ``want`` is in ``live`` with its value (what the API server and KServe's
    defaulting add is allowed; what they drop or change is not)."""
    if isinstance(want, dict):
        return isinstance(live, dict) and all(k in live and kept(v, live[k]) for k, v in want.items())
    if isinstance(want, list):
        return isinstance(live, list) and len(want) == len(live) and all(map(kept, want, live))
    return want == live or str(want) == str(live)


def ready(obj: Obj) -> bool:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


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
