"""`make cluster`: the seed's cluster on this machine until `make cluster-down`.

    python -m tests.cluster up [DIR]     start everything, write DIR/kubeconfig (admin) and
                                         DIR/kubeconfig-project-admin, then serve until SIGTERM
    python -m tests.cluster down [DIR]   stop what `up` started and remove DIR

Runs as root (the process kubelet mounts volumes in private mount namespaces). The project `private-ai-demo`
has the seed's data connection `s3-credentials-kserve` (MinIO as minio.model-storage.svc:9000 in pods) and
the seed's ServingRuntime `vllm-cuda-runtime` and service account `ai-workload-sa`. The volume populator is
installed and running (its log: DIR/populator.log), so claims naming a ModelSource are filled.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
PROJECT = "private-ai-demo"


def up(root: Path) -> None:
    from tests.cluster.local import MINIO_SERVICE, LocalCluster

    if os.geteuid() != 0:
        sys.exit("make cluster: run as root (the process kubelet mounts volumes in private mount namespaces)")
    shutil.rmtree(root / "state", ignore_errors=True)
    t = time.monotonic()
    c = LocalCluster(root / "state").start()
    populator = None
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        c.add_project(PROJECT)
        assert c.minio is not None
        c.add_secret(PROJECT, "s3-credentials-kserve", {
            "AWS_ACCESS_KEY_ID": c.minio.access_key, "AWS_SECRET_ACCESS_KEY": c.minio.secret_key,
            "AWS_S3_ENDPOINT": f"http://{MINIO_SERVICE}:9000", "AWS_DEFAULT_REGION": "us-east-2",
            "AWS_S3_BUCKET": "models"})
        rt = yaml.safe_load((REPO / "tests" / "fixtures" / "seed" / "servingruntime-vllm-cuda.yaml").read_text())
        rt["metadata"]["namespace"] = PROJECT
        c.api.ensure(rt)
        # The service account the seed's InferenceService names (its project set it up beside the runtime).
        c.api.ensure({"apiVersion": "v1", "kind": "ServiceAccount",
                      "metadata": {"name": "ai-workload-sa", "namespace": PROJECT}})
        c.kubeconfig(root / "kubeconfig", admin=True, namespace=PROJECT)
        c.kubeconfig(root / "kubeconfig-project-admin", namespace=PROJECT)
        import boto3

        s3 = boto3.client("s3", endpoint_url=c.minio.endpoint, aws_access_key_id=c.minio.access_key,
                          aws_secret_access_key=c.minio.secret_key, region_name="us-east-1")
        for bucket in ("llm-models", "models"):  # the runbook's bucket, and the data connection's default
            s3.create_bucket(Bucket=bucket)
        (root / "minio.env").write_text(
            f"AWS_ENDPOINT_URL={c.minio.endpoint}\nAWS_ACCESS_KEY_ID={c.minio.access_key}\n"
            f"AWS_SECRET_ACCESS_KEY={c.minio.secret_key}\nAWS_DEFAULT_REGION=us-east-1\n")
        from tests.cluster.populator import PopulatorProcess, install

        populator = PopulatorProcess(install(c.api, c.plane, root), root / "populator.log", backoff=10.0).start()
        (root / "ready").write_text(f"{time.monotonic() - t:.1f}\n")
        print(f"cluster ready in {time.monotonic() - t:.1f}s", flush=True)
        while not stopping:
            time.sleep(0.5)
    finally:
        (root / "ready").unlink(missing_ok=True)
        if populator is not None:
            populator.stop()
        c.stop()


def down(root: Path) -> None:
    pid_file = root / "pid"
    if pid_file.exists():
        pid = int(pid_file.read_text())
        try:
            os.kill(pid, signal.SIGTERM)
            for _ in range(200):
                os.kill(pid, 0)
                time.sleep(0.1)
        except ProcessLookupError:
            pass
    # Whatever a killed `up` left: the claims' tmpfs mounts, then the directory.
    for mount in sorted((root / "state" / "volumes").glob("pvc-*")) if (root / "state").exists() else []:
        subprocess.run(["umount", "-l", str(mount)], check=False, capture_output=True)
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    verb = sys.argv[1] if len(sys.argv) > 1 else "up"
    where = Path(sys.argv[2] if len(sys.argv) > 2 else REPO / ".cluster").resolve()
    {"up": up, "down": down}[verb](where)
