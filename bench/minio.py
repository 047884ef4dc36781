"""The same copies on MinIO, the seed's object store (built by ``make tools``), in the same run.

Three datasets, the same local files as the rclone rows:

* ``minio import``: the model uploaded by ``modelpvc import`` (CRC64NVME full-object checksums, and its
  ``.modelpvc/source.json`` with each file's SHA-256): a verified mirror checks the SHA-256 end to end;
* ``minio crc64nvme``: the model uploaded by boto3 with ``ChecksumAlgorithm=CRC64NVME`` (full-object, what
  AWS and current SDKs store by default), no record: a verified mirror checks the stored CRC;
* ``minio md5``: the same model uploaded with no checksum (boto3 ``request_checksum_calculation=
  when_required``, what ``mc mirror`` of old uploads left): only the ETags, today's MD5 path;
* ``minio small``: the 2,000 small files, uploaded by ``modelpvc import``.

Plus the two limits on the CRC dataset: the server to /dev/null and the disk written alone.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modelpvc.devtools.s3server import MinioS3

BIN = Path(sys.executable).parent
# dataset label: (prefix in the bench bucket, local source directory key)
DATASETS = {"minio import": ("model-import", "model"), "minio crc64nvme": ("model-crc", "model"),
            "minio md5": ("model-md5", "model"), "minio small": ("small", "small")}


def _import(env: dict[str, str], src: Path, prefix: str) -> None:
    cmd = [str(BIN / "modelpvc"), "import", str(src), f"s3://bench/{prefix}/", "--select", "all", "-q",
           "--progress", "none"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"modelpvc import {src} -> {prefix}: {done.stderr[-600:]}")


def _upload(srv: MinioS3, src: Path, prefix: str, algorithm: str | None) -> None:
    """boto3's upload_file: with ``algorithm`` (full-object CRC64NVME), or with no checksum at all."""
    import boto3
    from boto3.s3.transfer import TransferConfig
    from botocore.config import Config

    s3 = boto3.client("s3", endpoint_url=srv.endpoint, aws_access_key_id=srv.access_key,
                      aws_secret_access_key=srv.secret_key, region_name="us-east-1",
                      config=Config(request_checksum_calculation="when_required"))
    cfg = TransferConfig(multipart_threshold=64 << 20, multipart_chunksize=64 << 20, max_concurrency=4)
    extra = {"ChecksumAlgorithm": algorithm} if algorithm else {}
    for p in sorted(src.iterdir()):
        s3.upload_file(str(p), "bench", f"{prefix}/{p.name}", Config=cfg, ExtraArgs=extra)


def run(workdir: Path, sources: dict[str, Path], tag: str, tools: list[str], repeat: int,
        bench_copy: Callable[..., Any], limits: Any, result: Callable[..., Any]) -> list[Any]:
    """The MinIO rows: every tool on each dataset, then the limits; returns ``Result``s labelled by dataset.

    ``tag`` names the local datasets' generation: MinIO's drive is kept between runs and refilled when it
    changes (uploading 8 GB through import costs a minute)."""
    data = workdir / "minio-data"
    uploaded = workdir / f"minio-{tag}.ok"
    if not uploaded.exists():
        for old in workdir.glob("minio-*.ok"):
            old.unlink()
        shutil.rmtree(data, ignore_errors=True)
    # The comparison tree bench_copy reads: <root>/bench/<prefix> -> the local files uploaded there.
    root = workdir / "minio-root" / "bench"
    root.mkdir(parents=True, exist_ok=True)
    for prefix, key in DATASETS.values():
        link = root / prefix
        if not link.is_symlink():
            link.symlink_to(sources[key].resolve())
    out: list[Any] = []
    with MinioS3(data, log_path=workdir / "minio.log") as srv:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(srv.env())
        env["HOME"] = str(workdir / "home")
        if not uploaded.exists():
            print("uploading the MinIO datasets ...", file=sys.stderr)
            import boto3

            boto3.client("s3", endpoint_url=srv.endpoint, aws_access_key_id=srv.access_key,
                         aws_secret_access_key=srv.secret_key, region_name="us-east-1").create_bucket(Bucket="bench")
            _import(env, sources["model"], "model-import")
            _upload(srv, sources["model"], "model-crc", "CRC64NVME")
            _upload(srv, sources["model"], "model-md5", None)
            if "small" in sources:
                _import(env, sources["small"], "small")
            uploaded.touch()
        work = workdir / "work"
        for label, (prefix, key) in DATASETS.items():
            if key not in sources:
                continue
            wanted = [t for t in tools if key == "model" or t != "modelpvc --verify size"]
            # As for the local rows: one discarded run first. The drive's files of a dataset not read for a
            # while are cold, and round one's first tool (always the same) paid it: 3.1-4.8 s where its
            # later runs took 1.3-2.0 (decisions §19). That run writes through the page cache and evicts
            # part of what it read, so the drive's files are read once more after it.
            bench_copy(srv, env, root.parent, prefix, ["s5cmd"], 1, work)
            limits.read_through(data / "bench" / prefix)
            rows = bench_copy(srv, env, root.parent, prefix, wanted, repeat, work)
            for r in rows:
                r.dataset = label
            out += rows
        files = limits.shards(sources["model"])
        gb = sum(f.stat().st_size for f in files) / 1e9
        wall, cpu = limits.server_to_devnull(srv, env, "model-crc", files)
        out.append(result("server to /dev/null (s5cmd cat, all shards at once)", "minio crc64nvme", wall, cpu, 0,
                          -1, False, gb))
        wall, cpu = limits.disk_alone(files, work / "disk-alone")
        out.append(result("the disk alone: the same sizes written direct, 8 MiB, then fsync", "minio crc64nvme",
                          wall, cpu, 0, -1, False, gb))
    return out
