"""``modelpvc import`` side by side with what people run today, into the same loopback S3 server:

* a local directory into the bucket: ``modelpvc import DIR s3://...`` against ``s5cmd cp DIR/* s3://...``;
* a Hugging Face model into the bucket, through the fake Hub (tests/support/fakehub.py, serving files
  from disk): ``modelpvc import hf://...`` (streamed, no local copy) against the two steps it replaces,
  ``hf download --local-dir`` then ``s5cmd cp``.

Each upload goes to an empty prefix; wall time includes a final ``sync``.
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from modelpvc.devtools.s3server import RcloneS3, find_binary
from modelpvc.model.synthetic import same_tree

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.support.fakehub import FakeHub, FakeRepo  # the bench borrows the tests' fake Hub

BIN = Path(sys.executable).parent
Measure = Callable[[list[str], dict[str, str]], tuple[int, float, float, float, str]]
Row = tuple[str, str, float, float, float, bool]  # (dataset, tool, wall, cpu, rss MB, ok)


def _same(src: Path, dest: Path) -> bool:
    """Byte for byte, ignoring modelpvc's .modelpvc/ and huggingface_hub's .cache/ bookkeeping."""
    diffs = [d for d in same_tree(src, dest) if "/.cache/" not in d and ": .cache/" not in d]
    if diffs:
        print(f"  differences: {diffs[:3]}", file=sys.stderr)
    return not diffs


def _median(label: str, dataset: str, runs: list[tuple[int, float, float, float, str]], ok: bool) -> Row:
    walls = sorted(r[1] for r in runs)
    return (dataset, label, walls[len(walls) // 2], statistics.median(r[2] for r in runs), max(r[3] for r in runs),
            ok and all(r[0] == 0 for r in runs))


def local_upload(srv: RcloneS3, env: dict[str, str], src: Path, root: Path, measure: Measure,
                 repeat: int) -> list[Row]:
    dataset = f"dir -> S3 ({sum(p.stat().st_size for p in src.iterdir()) / 1e9:.2f} GB)"
    (root / "upload").mkdir(exist_ok=True)
    tools = {
        "modelpvc import": lambda d: [str(BIN / "modelpvc"), "import", str(src), f"s3://upload/{d}/", "-q",
                                      "--progress", "none", "--select", "all"],
        "s5cmd cp (upload)": lambda d: [find_binary("s5cmd"), "--endpoint-url", srv.endpoint, "cp",
                                        f"{src}/*", f"s3://upload/{d}/"],
    }
    # The first writes into fresh page-cache pages pay this VM's lazy host faults: one discarded upload.
    measure(tools["s5cmd cp (upload)"]("warm-up"), env)
    shutil.rmtree(root / "upload" / "warm-up", ignore_errors=True)
    rows = []
    for label, cmd in tools.items():
        runs, ok = [], True
        for i in range(repeat):
            d = f"{label.split()[0]}-{i}"
            shutil.rmtree(root / "upload" / d, ignore_errors=True)
            r = measure(cmd(d), env)
            ok &= r[0] == 0 and _same(src, root / "upload" / d)
            if r[0] != 0:
                print(f"  {label}: rc={r[0]} {r[4][-300:]}", file=sys.stderr)
            runs.append(r)
            shutil.rmtree(root / "upload" / d, ignore_errors=True)
            print(f"  {dataset} {label:24} {r[1]:7.2f}s cpu {r[2]:6.2f}s rss {r[3]:6.0f} MB", file=sys.stderr)
        rows.append(_median(label, dataset, runs, ok))
    return rows


def hub_upload(srv: RcloneS3, env: dict[str, str], model: Path, root: Path, measure: Measure,
               repeat: int) -> list[Row]:
    hub = FakeHub().start()
    try:
        files: dict[str, bytes | Path] = {p.name: p for p in sorted(model.iterdir()) if p.is_file()}
        hub.add(FakeRepo("bench/model", files))
        for p in files:  # the Hub's digests are known before anyone downloads
            hub.repos["bench/model"].sha256(p)
        e = {**env, "HF_ENDPOINT": hub.endpoint, "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_XET": "1",
             "HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_HOME": str(root.parent / "hf-home")}
        dataset = f"Hub -> S3 ({sum(p.stat().st_size for p in model.iterdir()) / 1e9:.2f} GB)"
        (root / "upload").mkdir(exist_ok=True)
        rows = []
        runs, ok = [], True
        for i in range(repeat):
            d = f"hub-modelpvc-{i}"
            r = measure([str(BIN / "modelpvc"), "import", "hf://bench/model", f"s3://upload/{d}/", "-q",
                         "--progress", "none", "--select", "all"], e)
            ok &= r[0] == 0 and _same(model, root / "upload" / d)
            runs.append(r)
            shutil.rmtree(root / "upload" / d, ignore_errors=True)
            print(f"  {dataset} modelpvc import {r[1]:7.2f}s cpu {r[2]:6.2f}s rss {r[3]:6.0f} MB", file=sys.stderr)
        rows.append(_median("modelpvc import hf://", dataset, runs, ok))
        runs, ok = [], True
        for i in range(repeat):
            d = f"hub-two-{i}"
            with tempfile.TemporaryDirectory(dir=root.parent) as tmp:
                t0 = time.perf_counter()
                a = measure([find_binary("hf"), "download", "bench/model", "--local-dir", tmp], e)
                b = measure([find_binary("s5cmd"), "--endpoint-url", srv.endpoint, "cp", f"{tmp}/*",
                             f"s3://upload/{d}/"], e)
                wall = time.perf_counter() - t0
                ok &= a[0] == 0 and b[0] == 0 and _same(model, root / "upload" / d)
                if a[0] or b[0]:
                    print(f"  two-step: rc={a[0]},{b[0]} {a[4][-300:]} {b[4][-300:]}", file=sys.stderr)
            runs.append((a[0] or b[0], wall, a[2] + b[2], max(a[3], b[3]), ""))
            shutil.rmtree(root / "upload" / d, ignore_errors=True)
            print(f"  {dataset} hf download + s5cmd cp {wall:7.2f}s (download {a[1]:.2f}s, upload {b[1]:.2f}s)",
                  file=sys.stderr)
        rows.append(_median("hf download, then s5cmd cp", dataset, runs, ok))
        return rows
    finally:
        hub.stop()
