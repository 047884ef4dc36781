"""A source whose objects carry checksums, as AWS stores them today: uploaded with
``ChecksumAlgorithm=CRC64NVME`` (full-object, also for multipart uploads). Composite (per-part) checksums
are left to the tests: moto stores them without their ``-N`` and, for CRC32C, with CRC32's value, so
modelpvc rightly refuses them and falls back to the multipart ETag. Served by moto (AWS semantics; slow
and in memory, so the dataset is small). What matters is modelpvc's client CPU with checksum verification
against its own ``--verify size`` on the same source: the target is at most 1.15x.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

from modelpvc.devtools.s3server import find_binary, free_port, wait_for_port
from modelpvc.model.synthetic import same_tree

BIN = Path(sys.executable).parent


def _upload(endpoint: str, src: Path, prefix: str, algorithm: str) -> None:
    import boto3
    from boto3.s3.transfer import TransferConfig

    s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="bench", aws_secret_access_key="bench-secret",
                      region_name="us-east-1")
    with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
        s3.create_bucket(Bucket="bench")
    cfg = TransferConfig(multipart_threshold=64 << 20, multipart_chunksize=64 << 20, max_concurrency=4)
    for p in sorted(src.iterdir()):
        s3.upload_file(str(p), "bench", f"{prefix}/{p.name}", Config=cfg,
                       ExtraArgs={"ChecksumAlgorithm": algorithm})


def run(src: Path, work: Path, measure, repeat: int = 3) -> list[tuple[str, float, float, bool]]:  # type: ignore[no-untyped-def]
    """[(label, median wall, median CPU, bytes equal)] for each source x verification mode."""
    port = free_port()
    log = open(work / "moto.log", "wb")  # noqa: SIM115
    moto = subprocess.Popen([find_binary("moto_server"), "-p", str(port), "-H", "127.0.0.1"], stdout=log, stderr=log)
    out = []
    try:
        wait_for_port(port, timeout=30, proc=moto)
        endpoint = f"http://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench-secret", AWS_ENDPOINT_URL=endpoint,
                   AWS_DEFAULT_REGION="us-east-1", HOME=str(work))
        for prefix, algorithm in (("crc64nvme", "CRC64NVME"),):
            print(f"uploading {src} to moto with {algorithm} ...", file=sys.stderr)
            _upload(endpoint, src, prefix, algorithm)
            modes = ("checksum", "size")
            walls: dict[str, list[float]] = {m: [] for m in modes}
            cpus: dict[str, list[float]] = {m: [] for m in modes}
            ok = dict.fromkeys(modes, True)
            for _ in range(repeat):
                for mode in modes:  # round robin: the machine's drift is shared, not given to one mode
                    dest = work / "cksum-dest"
                    shutil.rmtree(dest, ignore_errors=True)
                    cmd = [str(BIN / "modelpvc"), "mirror", f"s3://bench/{prefix}/", str(dest), "-q",
                           "--progress", "none", *(["--verify", "size"] if mode == "size" else [])]
                    rc, wall, cpu, _rss, err = measure(cmd, env)
                    ok[mode] &= rc == 0 and not same_tree(src, dest)
                    if rc != 0:
                        print(f"  {prefix} {mode}: rc={rc} {err[-300:]}", file=sys.stderr)
                    walls[mode].append(wall)
                    cpus[mode].append(cpu)
            label = f"{algorithm} multipart (full-object)"
            for mode in modes:
                how = f"checksum-verified ({_implementation(algorithm)})" if mode == "checksum" else "--verify size"
                out.append((f"{label}, {how}", statistics.median(walls[mode]), statistics.median(cpus[mode]),
                            ok[mode]))
                print(f"  {out[-1]}", file=sys.stderr)
    finally:
        moto.terminate()
        moto.wait(10)
        log.close()
    return out


def _implementation(algorithm: str) -> str:
    """Which CRC code the installed modelpvc runs (ISA-L's kernel, or the awscrt/zlib fallback)."""
    code = f"from modelpvc.core import crc_native; print(crc_native.implementation({algorithm.lower()!r}))"
    done = subprocess.run([str(BIN / "python"), "-c", code], capture_output=True, text=True)
    return done.stdout.strip() or "unknown"
