"""Issue 3's targets, measured: structural verify of a 100-shard 100 GB model (sparse files), verify --deep
against `cat > /dev/null` on the same files (warm page cache, and cold where caches can be dropped), and
plan of the bench model from the loopback S3 server.

    .venv/bin/python bench/verify_plan.py [--model-dir DIR_OF_A_MIRRORED_MODEL]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

from modelpvc.devtools.s3server import RcloneS3, find_binary
from modelpvc.model.synthetic import SyntheticModel, generate_model, tree_bytes

BIN = Path(sys.executable).parent


def sparse_model(d: Path, shards: int = 100, shard_bytes: int = 10**9) -> None:
    """A 100 GB HF layout whose shards are sparse: real headers, holes for the tensor data."""
    shutil.rmtree(d, ignore_errors=True)
    generate_model(d, SyntheticModel(total_bytes=shards * 1024 * 1024, shards=shards, tensors_per_shard=2))
    weight_map: dict[str, str] = {}
    total = 0
    rows = shard_bytes // 2 // 4096 // 2
    for i in range(shards):
        name = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        header: dict[str, object] = {"__metadata__": {"format": "pt"}}
        off = 0
        for j in range(2):
            size = rows * 4096 * 2
            header[f"layers.{i}.w{j}"] = {"dtype": "BF16", "shape": [rows, 4096], "data_offsets": [off, off + size]}
            weight_map[f"layers.{i}.w{j}"] = name
            off += size
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)
        with open(d / name, "wb") as fh:
            fh.write(struct.pack("<Q", len(raw)) + raw)
            fh.truncate(8 + len(raw) + off)
        total += off
    (d / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": total},
                                                                "weight_map": weight_map}))


def timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, int, str]:
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    return time.perf_counter() - t, r.returncode, r.stdout + r.stderr


def drop_caches() -> bool:
    subprocess.run(["sync"], check=False)
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", type=Path, default=Path(os.environ.get("BENCH_WORKDIR", "/tmp/modelpvc-bench")))
    args = ap.parse_args()
    work = args.workdir
    big = work / "sparse100"
    sparse_model(big)
    print(f"100-shard model: {tree_bytes(big) / 1e9:.0f} GB apparent size (sparse)")
    walls = []
    for _ in range(3):
        w, rc, out = timed([str(BIN / "modelpvc"), "verify", str(big)])
        assert rc == 0, out
        walls.append(w)
    print(f"verify (structural, 100 shards, 100 GB): {min(walls):.3f} s wall (best of 3, incl. interpreter start; "
          "target <= 0.3 s)")

    model = work / "root" / "bench" / "model"
    dest = work / "verify-dest"
    with RcloneS3(work / "root") as srv:
        env = {**os.environ, **srv.env()}
        shutil.rmtree(dest, ignore_errors=True)
        # A fresh rclone computes the MD5 ETags of the 8 GB on the first listing (≈ 26 s): more than our
        # 2 x 10 s for an answer. Wait for it as run.py does, so the plan timing below is not that.
        subprocess.run([find_binary("s5cmd"), "--endpoint-url", srv.endpoint, "ls", "s3://bench/model/*"], env=env,
                       capture_output=True, check=False)
        subprocess.run([str(BIN / "modelpvc"), "mirror", "s3://bench/model/", str(dest), "-q"], env=env, check=True)
        plans = [timed([str(BIN / "modelpvc"), "plan", "s3://bench/model/", "--json"], env)[0] for _ in range(3)]
        print(f"plan of the {tree_bytes(model) / 1e9:.1f} GB bench model: {min(plans):.3f} s wall (target <= 1 s)")
    files = sorted(str(p) for p in dest.iterdir() if p.is_file())
    nbytes = tree_bytes(dest)
    for label, cold in (("warm page cache", False), ("cold (caches dropped)", True)):
        if cold and not drop_caches():
            print("cannot drop caches here; cold measurement skipped")
            continue
        tc, _, _ = timed(["sh", "-c", 'cat "$@" > /dev/null', "cat", *files])
        if cold:
            drop_caches()
        td, rc, out = timed([str(BIN / "modelpvc"), "verify", str(dest), "--deep"])
        assert rc == 0, out
        print(f"{label}: cat {nbytes / tc / 1e6:.0f} MB/s, verify --deep {nbytes / td / 1e6:.0f} MB/s "
              f"= {100 * tc / td:.0f} % of cat (target >= 80 %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
