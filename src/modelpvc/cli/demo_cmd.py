"""``modelpvc demo``: the whole flow on one machine — an embedded S3 server on loopback, a synthetic
model laid out like the runbook's (HF shards + tokenizer), a local directory as the "PVC"."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from modelpvc.model.synthetic import SyntheticModel, generate_model, tree_bytes


def register(sub: Any) -> None:
    p = sub.add_parser("demo", help="run the whole flow locally: embedded S3 server, a directory as the PVC",
                       description="Run the whole flow on this machine, nothing to set up: a local S3 server "
                                   "(MinIO when `make tools` built it, else rclone serve s3) on loopback with a "
                                   "synthetic model laid out like the runbook's (HF shards, tokenizer, a "
                                   "Mistral-native duplicate), a directory under --workdir as the PVC. It imports, "
                                   "mirrors, resumes an interrupted copy, verifies, plans and renders, printing "
                                   "each command it runs.")
    p.add_argument("--workdir", type=Path, default=Path("demo"), help="where the bucket and the PVC live")
    p.add_argument("--size-mb", type=int, default=1024, help="weights size of the synthetic model (default 1024)")
    p.set_defaults(run=run)


def _step(text: str) -> None:
    print(f"\n=== {text}", flush=True)


def _cli(args: list[str], env: dict[str, str]) -> int:
    cmd = [sys.executable, "-m", "modelpvc", *args]
    print("$ modelpvc " + " ".join(args), flush=True)
    return subprocess.run(cmd, env=env, check=False).returncode


def _server(work: Path, bucket_root: Path) -> Any:
    """MinIO (the seed's store) when `make tools` built it, else rclone serve s3 over ``bucket_root``."""
    from modelpvc.devtools.s3server import MinioS3, RcloneS3, minio_built  # dev extra: only the demo needs them

    if minio_built():
        return MinioS3(work / "minio", log_path=work / "s3-server.log")
    return RcloneS3(bucket_root, log_path=work / "s3-server.log")


def _into_minio(srv: Any, model_dir: Path, src: str, env: dict[str, str]) -> int:
    import boto3  # type: ignore[import-untyped]  # dev extra

    boto3.client("s3", endpoint_url=srv.endpoint, aws_access_key_id=srv.access_key,
                 aws_secret_access_key=srv.secret_key, region_name="us-east-1").create_bucket(Bucket="llm-models")
    _step("import: the model directory into the bucket, each object with its full-object CRC64NVME checksum")
    return _cli(["import", str(model_dir), src, "--progress", "none"], env)


def run(args: argparse.Namespace) -> int:

    work: Path = args.workdir.resolve()
    bucket_root = work / "s3"
    model_dir = bucket_root / "llm-models" / "Mistral-Small-24B-Instruct" / "full-fp16"
    pvc = work / "pvc"
    _step(f"synthetic model: {args.size_mb} MB of safetensors shards + index, config, tokenizer")
    if not (model_dir / "config.json").exists():
        generate_model(model_dir, SyntheticModel(total_bytes=args.size_mb * 1024 * 1024, shards=4))
    for p in sorted(model_dir.iterdir()):
        print(f"  {p.name:40} {p.stat().st_size:>12,} bytes")
    shutil.rmtree(pvc, ignore_errors=True)
    shutil.rmtree(work / "minio", ignore_errors=True)
    with _server(work, bucket_root) as srv:
        env = {**os.environ, **srv.env()}
        src = "s3://llm-models/Mistral-Small-24B-Instruct/full-fp16/"
        kind = "MinIO" if hasattr(srv, "data_dir") else "rclone serve s3 (run `make tools` for MinIO)"
        _step(f"embedded S3 server on {srv.endpoint} ({kind}); the 'PVC' is {pvc}")
        if hasattr(srv, "data_dir") and _into_minio(srv, model_dir, src, env):
            return 1
        _step("plan: what would be copied (dry run)")
        if _cli(["mirror", src, str(pvc), "--dry-run"], env):
            return 1
        _step("mirror: concurrent ranged GETs, verified against what the server stored, published atomically")
        # The live line on a terminal; piped (`make demo | tee log`) the summary only, not \r-joined frames.
        live = "tty" if sys.stderr.isatty() else "none"
        if _cli(["mirror", src, str(pvc), "--progress", live, "-v"], env):
            return 1
        _step("mirror again: the destination is complete, so nothing is fetched")
        if _cli(["mirror", src, str(pvc), "--progress", "none"], env):
            return 1
        _step("a typo in the prefix: exit 3 and the nearest existing prefix")
        rc = _cli(["mirror", src.rstrip("/") + "-typo/", str(work / "elsewhere"), "--progress", "none"], env)
        print(f"(exit code {rc})")
        _step("verify: is the 'PVC' a complete, intact model? (structure + manifest + every digest)")
        if _cli(["verify", str(pvc), "--deep"], env):
            return 1
        _step("plan: sizes, formats, PVC size, serving pattern and time estimates")
        if _cli(["plan", src, "--threshold", "100M"], env):
            return 1
        _step("render: the Kubernetes objects for a GitOps repository (validated offline)")
        rc = _cli(["render", "--name", "mistral-24b", "--namespace", "private-ai-demo", "--source", src,
                   "--endpoint-url", "http://minio.model-storage.svc:9000", "--secret", "s3-credentials-kserve",
                   "--pvc", "mistral-24b-pvc", "--size", "auto", "--model-bytes", str(tree_bytes(model_dir)),
                   "--storage-class", "gp3-csi", "--runtime", "vllm-cuda-runtime", "--gpus", "4",
                   "--arg=--max-model-len=32768", "--arg=--tensor-parallel-size=4", "-o", str(work / "manifests"),
                   "--validate"], env)
        if rc:
            return 1
    print("\npopulate, deploy, update and doctor run against a real Kubernetes control plane and KServe on this "
          "machine: `make cluster` (README, 'A local cluster').")
    print(f"  {pvc}/.modelpvc/manifest.json records source, revision, files, sizes, ETags and digests;")
    print("  a directory without it is incomplete by definition.")
    print("\ndemo complete")
    return 0
