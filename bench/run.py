"""Side-by-side benchmark: modelpvc against s5cmd, rclone, aws s3 sync and KServe's storage initializer.

Same loopback S3 servers (rclone serve s3, then MinIO: bench/minio.py), same synthetic files, each tool
into an empty directory with the source warm in the page cache, wall time including a final `sync`, CPU
and peak RSS of the tool's process tree (wait4), every result compared byte for byte with the source.

    make bench                      # 8 GB model + 2,000 x 64 KiB, 3 rounds
    make bench BENCH_ARGS="--size-gb 2 --small-count 500 --repeat 1 --tools modelpvc,s5cmd"
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from modelpvc.devtools.s3server import RcloneS3, find_binary
from modelpvc.model.synthetic import SyntheticModel, generate_model, generate_small_files, same_tree, tree_bytes

sys.path.insert(0, str(Path(__file__).resolve().parent))
import checksums
import imports
import limits
import minio

BIN = Path(sys.executable).parent


@dataclass
class Result:
    tool: str
    dataset: str
    wall: float
    cpu: float
    rss_mb: float
    rc: int
    ok: bool
    gb: float


def _tree_rss_kb(root: int) -> int:
    """Sum of VmRSS over ``root`` and its descendants (KServe's initializer forks a pool)."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as fh:
                    ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(d))
            except (OSError, ValueError, IndexError):
                continue
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        try:
            with open(f"/proc/{pid}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            continue
    return total


def run_measured(cmd: list[str], env: dict[str, str]) -> tuple[int, float, float, float, str]:
    """(rc, wall incl. sync, cpu s, peak rss MB, stderr tail).

    CPU comes from wait4 (the tool and the children it waited for). Peak RSS is sampled from /proc every
    20 ms over the process tree: wait4's ru_maxrss would include the RSS of this Python parent, which a
    forked child inherits as its starting high-water mark.
    """
    subprocess.run(["sync"], check=False)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.wait(0.02):
            peak = max(peak, _tree_rss_kb(proc.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    assert proc.stderr is not None
    err = proc.stderr.read()
    stop.set()
    sampler.join()
    _pid, status, ru = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    subprocess.run(["sync"], check=False)
    wall = time.perf_counter() - t0
    return proc.returncode, wall, ru.ru_utime + ru.ru_stime, peak / 1024, err.decode()[-400:]


def tool_commands(srv: RcloneS3, prefix: str, dest: Path) -> dict[str, list[str]]:
    src = f"s3://bench/{prefix}/"
    rclone_cfg = ["--s3-provider", "Other", "--s3-access-key-id", srv.access_key, "--s3-secret-access-key",
                  srv.secret_key, "--s3-endpoint", srv.endpoint, "--s3-force-path-style"]
    kserve = ("import sys; from kserve_storage import Storage; Storage.download(sys.argv[1], sys.argv[2])")
    return {
        "modelpvc": [str(BIN / "modelpvc"), "mirror", src, str(dest), "--progress", "none", "-q"],
        "modelpvc --verify size": [str(BIN / "modelpvc"), "mirror", src, str(dest), "--progress", "none", "-q",
                                   "--verify", "size"],
        "modelpvc --buffered-io": [str(BIN / "modelpvc"), "mirror", src, str(dest), "--progress", "none", "-q",
                                   "--buffered-io"],
        "s5cmd": [find_binary("s5cmd"), "--endpoint-url", srv.endpoint, "cp", f"s3://bench/{prefix}/*",
                  str(dest) + "/"],
        "rclone": [find_binary("rclone"), "copy", f":s3:bench/{prefix}", str(dest), *rclone_cfg,
                   "--config", "/dev/null"],
        "aws s3 sync": [find_binary("aws"), "s3", "sync", src, str(dest), "--endpoint-url", srv.endpoint,
                        "--only-show-errors"],
        "kserve storage": [sys.executable, "-c", kserve, src, str(dest)],
        # The same two arguments KServe's pod mutator gives any storage initializer (URI, mount path).
        "modelpvc as initializer": [str(BIN / "modelpvc-storage-initializer"), src.rstrip("/"), str(dest)],
    }


def _reports_free_pages() -> bool:
    """Whether this VM's balloon hands free pages back to the host (virtio feature 5, free page reporting)."""
    return any(f.read_text()[5:6] == "1"
               for f in Path("/sys/bus/virtio/drivers/virtio_balloon").glob("virtio*/features"))


# Seconds each run waits, its destination emptied, before it starts. Where the balloon reports free pages,
# a page freed ~2 s ago has gone back to the host and its next first touch faults there: a tool writing
# through the page cache right after a run that freed its 2 GB ran at up to twice the speed of the same
# tool after one that had written direct (decisions §19). Waiting lets every tool start as a copy does on an
# idle node, whatever ran before it.
SETTLE_S = 4.0 if _reports_free_pages() else 0.0


def bench_copy(srv: RcloneS3, env: dict[str, str], root: Path, prefix: str, tools: list[str],
               repeat: int, work: Path) -> list[Result]:
    out = []
    src_dir = root / "bench" / prefix
    gb = tree_bytes(src_dir) / 1e9
    # Round robin, not each tool's runs in a row: this VM's disk drifts by 30 % over minutes (13.8-16.1 s
    # for the same 8 GB alone), and a tool measured in one stretch took the drift as its own speed.
    # Each round starts one tool later and every other round runs backwards: rotating alone kept each tool
    # behind the same one in all but one slot, so whatever a run leaves behind on this VM (the first run
    # after the warm-up took 29-36 s in four benches of five, where the same tool later took 21-24) fell on
    # the same neighbour every round.
    by_tool: dict[str, list[Result]] = {tool: [] for tool in tools}
    for rnd in range(repeat):
        order = tools[rnd % len(tools):] + tools[:rnd % len(tools)]
        for tool in (order if rnd % 2 == 0 else order[::-1]):
            runs = by_tool[tool]
            dest = work / "dest"
            shutil.rmtree(dest, ignore_errors=True)
            dest.mkdir(parents=True)
            time.sleep(SETTLE_S)
            cmd = tool_commands(srv, prefix, dest)[tool]
            rc, wall, cpu, rss, err = run_measured(cmd, env)
            ok = rc == 0 and not same_tree(src_dir, dest)
            if not ok:
                print(f"  {tool}: rc={rc} or bytes differ; {err.strip()[-300:]}", file=sys.stderr)
            runs.append(Result(tool, prefix, wall, cpu, rss, rc, ok, gb))
            print(f"  {prefix:6} {tool:24} {wall:7.2f}s {gb / wall * 1000:7.0f} MB/s cpu {cpu:6.2f}s "
                  f"rss {rss:6.0f} MB {'ok' if ok else 'FAILED'}", file=sys.stderr)
    for tool, runs in by_tool.items():
        med = sorted(runs, key=lambda r: r.wall)[len(runs) // 2]
        out.append(Result(tool, prefix, med.wall, statistics.median(r.cpu for r in runs),
                          max(r.rss_mb for r in runs), med.rc, all(r.ok for r in runs), gb))
    return out


def noop_times(srv: RcloneS3, env: dict[str, str], prefix: str, work: Path) -> dict[str, float]:
    """Re-run on a complete destination: wall of the second run."""
    out = {}
    cmds = tool_commands(srv, prefix, work / "dest")
    cmds["s5cmd"] = [find_binary("s5cmd"), "--endpoint-url", srv.endpoint, "sync", f"s3://bench/{prefix}/*",
                     str(work / "dest") + "/"]
    for tool in ("modelpvc", "s5cmd", "rclone", "aws s3 sync"):
        shutil.rmtree(work / "dest", ignore_errors=True)
        (work / "dest").mkdir(parents=True)
        subprocess.run(cmds[tool], env=env, check=False, capture_output=True)
        walls = []
        for _ in range(3):
            rc, wall, _cpu, _rss, _ = run_measured(cmds[tool], env)
            walls.append(wall if rc == 0 else float("nan"))
        out[tool] = statistics.median(walls)
    return out


def kill_and_resume(srv: RcloneS3, env: dict[str, str], prefix: str, work: Path) -> tuple[float, int, int]:
    """SIGKILL modelpvc at ~50 % of the bytes, re-run; (fraction killed at, bytes re-fetched, total)."""
    dest = work / "dest"
    shutil.rmtree(dest, ignore_errors=True)
    cmd = [*tool_commands(srv, prefix, dest)["modelpvc"][:-3], "--progress", "json"]
    proc = subprocess.Popen(cmd, env={**env, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    frac = 0.0
    total = 1
    for line in proc.stderr:
        ev = json.loads(line)
        if ev.get("event") == "progress":
            total = ev["bytes_total"]
            frac = ev["bytes_done"] / max(1, total)
            if frac >= 0.5:
                proc.send_signal(signal.SIGKILL)
                break
    proc.wait()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    summary = [json.loads(x) for x in r.stderr.splitlines() if '"summary"' in x]
    refetched = summary[-1]["bytes_fetched"] if summary else -1
    leftovers = list(dest.rglob("*.partial"))
    if leftovers or same_tree(work.parent / "root" / "bench" / prefix, dest):
        print(f"  kill/resume left {leftovers} or a differing tree", file=sys.stderr)
    return frac, refetched, total


LABELS = {"modelpvc": "modelpvc (verified: stored CRC, else MD5 ETags)", "rclone": "rclone copy (verifies MD5)",
          "kserve storage": "KServe storage initializer (no check)", "s5cmd": "s5cmd cp (no check)",
          "aws s3 sync": "aws s3 sync (no check)",
          "modelpvc as initializer": "modelpvc as KServe's storage initializer (verified)",
          "modelpvc --buffered-io": "modelpvc --buffered-io (verified, through the page cache)"}


def table(results: list[Result]) -> str:
    lines = ["| dataset | tool | wall s | MB/s | CPU s/GB | peak RSS MB | x s5cmd wall | bytes equal |",
             "|---|---|---|---|---|---|---|---|"]
    for ds in dict.fromkeys(r.dataset for r in results):
        base = next((r.wall for r in results if r.dataset == ds and r.tool == "s5cmd"), None)
        for r in (x for x in results if x.dataset == ds):
            ratio = f"{r.wall / base:.2f}" if base else "-"
            rss = f"{r.rss_mb:.0f}" if r.rss_mb else "-"
            lines.append(f"| {ds} ({r.gb:.2f} GB) | {LABELS.get(r.tool, r.tool)} | {r.wall:.2f} | "
                         f"{r.gb / r.wall * 1000:.0f} | {r.cpu / r.gb:.2f} | {rss} | {ratio} | "
                         f"{'yes' if r.ok else 'NO' if r.rc >= 0 else '-'} |")
    return "\n".join(lines)


def import_table(rows: list[imports.Row]) -> str:
    lines = ["| dataset | tool | wall s | CPU s | peak RSS MB | bytes equal |", "|---|---|---|---|---|---|"]
    lines += [f"| {d} | {t} | {w:.2f} | {c:.2f} | {r:.0f} | {'yes' if ok else 'NO'} |" for d, t, w, c, r, ok in rows]
    return "\n".join(lines)


def targets(results: list[Result], md5_cpu_per_gb: float, noop: dict[str, float], resumed: float,
            cksum: list[tuple[str, float, float, bool]], import_rows: list[imports.Row]) -> str:
    """The issue's targets, side by side in this run."""
    def get(ds: str, tool: str) -> Result | None:
        return next((r for r in results if r.dataset == ds and r.tool == tool), None)

    rows = []
    m, sz, s5, rc = get("model", "modelpvc"), get("model", "modelpvc --verify size"), get("model", "s5cmd"), \
        get("model", "rclone")
    if m and rc:
        ratio = m.wall / rc.wall
        rows.append(("verified wall <= 0.85x rclone's verified copy", f"{ratio:.2f}x", ratio <= 0.85))
    if m and md5_cpu_per_gb:  # measured with the limits (not under --skip-extras)
        extra = m.cpu / m.gb - md5_cpu_per_gb
        rows.append(("verified client CPU <= MD5 CPU + 1.0 CPU-s/GB", f"MD5 {md5_cpu_per_gb:.2f} + {extra:.2f}",
                     extra <= 1.0))
    if sz and s5:
        rows.append(("--verify size wall <= 1.0x s5cmd", f"{sz.wall / s5.wall:.2f}x", sz.wall <= s5.wall))
    by = {label: (wall, cpu) for label, wall, cpu, _ok in cksum}
    for algo in ("CRC64NVME multipart (full-object)",):
        a = next((v for k, v in by.items() if k.startswith(f"{algo}, checksum-verified")), None)
        b = by.get(f"{algo}, --verify size")
        if a and b:
            rows.append((f"{algo}: checksum-verified CPU <= 1.15x --verify size", f"{a[1] / b[1]:.2f}x",
                         a[1] <= 1.15 * b[1]))
    ki, mi = get("model", "kserve storage"), get("model", "modelpvc as initializer")
    if ki and mi:
        rows.append(("modelpvc as initializer vs KServe's (wall)", f"{mi.wall / ki.wall:.2f}x", mi.wall <= ki.wall))
    peak = max((r.rss_mb for r in results if r.tool.startswith("modelpvc")), default=None)
    if peak is not None:  # an --imports-only run copies nothing
        rows.append(("peak RSS <= 200 MB", f"{peak:.0f} MB", peak <= 200))
    if "modelpvc" in noop:
        rows.append(("no-op re-run <= 0.3 s", f"{noop['modelpvc']:.2f} s", noop["modelpvc"] <= 0.3))
    if resumed >= 0:
        rows.append(("resume after SIGKILL at 50 % fetches <= 55 %", f"{100 * resumed:.0f} %", resumed <= 0.55))
    for ds in ("small", "minio small"):
        sm, ss = get(ds, "modelpvc"), get(ds, "s5cmd")
        if sm and ss:
            rows.append((f"{ds}: 2,000 x 64 KiB <= 1.0x s5cmd (sync included)", f"{sm.wall / ss.wall:.2f}x",
                         sm.wall <= ss.wall))
    c, csz, cs5 = get("minio crc64nvme", "modelpvc"), get("minio crc64nvme", "modelpvc --verify size"), \
        get("minio crc64nvme", "s5cmd")
    if c and csz:
        rows.append(("MinIO CRC64NVME: verified wall <= 1.05x --verify size", f"{c.wall / csz.wall:.2f}x",
                     c.wall <= 1.05 * csz.wall))
        extra = (c.cpu - csz.cpu) / c.gb
        rows.append(("MinIO CRC64NVME: verified CPU <= --verify size + 0.2 CPU-s/GB", f"+{extra:.2f} CPU-s/GB",
                     extra <= 0.2))
    if c and cs5:
        rows.append(("MinIO CRC64NVME: verified wall <= 0.6x s5cmd", f"{c.wall / cs5.wall:.2f}x",
                     c.wall <= 0.6 * cs5.wall))
    mi, misz = get("minio import", "modelpvc"), get("minio import", "modelpvc --verify size")
    if mi and misz:
        rows.append(("MinIO import (SHA-256 record): verified wall vs --verify size (no target)",
                     f"{mi.wall / misz.wall:.2f}x, +{(mi.cpu - misz.cpu) / mi.gb:.2f} CPU-s/GB", True))
    lims = [r.wall for r in results if r.dataset == "minio crc64nvme" and r.rc == -1]
    if c and lims:
        ratio = c.wall / max(lims)
        rows.append(("MinIO CRC64NVME: verified wall <= 1.3x the slower limit", f"{ratio:.2f}x", ratio <= 1.3))
    m5, r5 = get("minio md5", "modelpvc"), get("minio md5", "rclone")
    if m5 and r5:
        # rclone checks an MD5 only against a single-part ETag: on multipart objects its CPU shows no hashing.
        rows.append(("MinIO MD5-only: verified wall <= 0.8x rclone's verified copy",
                     f"{m5.wall / r5.wall:.2f}x (CPU-s/GB: modelpvc {m5.cpu / m5.gb:.2f}, rclone {r5.cpu / r5.gb:.2f};"
                     f" part MD5s: {_md5_lanes()})",
                     m5.wall <= 0.8 * r5.wall))
    imp = {t: (w, r) for _d, t, w, _c, r, _ok in import_rows}
    if "modelpvc import" in imp and "s5cmd cp (upload)" in imp:
        ratio = imp["modelpvc import"][0] / imp["s5cmd cp (upload)"][0]
        rows.append(("import DIR -> S3 wall <= 1.0x s5cmd cp", f"{ratio:.2f}x", ratio <= 1.0))
        rss = max(r for t, (_w, r) in imp.items() if t.startswith("modelpvc"))
        rows.append(("import peak RSS <= 300 MB", f"{rss:.0f} MB", rss <= 300))
    if "modelpvc import hf://" in imp and "hf download, then s5cmd cp" in imp:
        ratio = imp["modelpvc import hf://"][0] / imp["hf download, then s5cmd cp"][0]
        rows.append(("import hf:// -> S3 wall <= 0.6x hf download + s5cmd cp", f"{ratio:.2f}x", ratio <= 0.6))
    lines = ["| target | measured | met |", "|---|---|---|"]
    lines += [f"| {t} | {v} | {'yes' if ok else 'NO'} |" for t, v, ok in rows]
    return "\n".join(lines)


def _md5_lanes() -> str:
    from modelpvc.core import md5_native

    lanes = md5_native.lanes()
    return f"{md5_native.LANES} lanes, {md5_native.isa()}" if lanes is not None else f"hashlib ({md5_native.isa()})"


def main() -> int:
    # An installed wheel has bytecode (pip compiles it); an editable checkout under PYTHONDONTWRITEBYTECODE
    # compiles every module at each start: 0.1 s of a 0.3 s no-op. Measure what users run.
    compileall.compile_dir(str(Path(__file__).resolve().parents[1] / "src"), quiet=1)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-gb", type=float, default=8.0)
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--small-count", type=int, default=2000)
    ap.add_argument("--small-kib", type=int, default=64)
    # The targets are medians of at least 3 alternating rounds: one run a tool varies by 10-30 % on this VM.
    ap.add_argument("--repeat", type=int, default=3, help="rounds (runs per tool); the median is reported")
    ap.add_argument("--tools", default="modelpvc,modelpvc --verify size,s5cmd,rclone,aws s3 sync,kserve storage,"
                                       "modelpvc as initializer")
    ap.add_argument("--workdir", type=Path, default=Path(os.environ.get("BENCH_WORKDIR", "/tmp/modelpvc-bench")))
    ap.add_argument("--skip-extras", action="store_true",
                    help="no limits, no checksummed source, no no-op and kill/resume measurements")
    ap.add_argument("--imports-only", action="store_true", help="only the import rows")
    ap.add_argument("--import-gb", type=float, default=2.0,
                    help="size of the model the fake Hub serves for the import rows (0: no import rows)")
    ap.add_argument("--no-minio", action="store_true", help="only rclone serve s3 (MinIO needs `make tools`)")
    ap.add_argument("--checksum-gb", type=float, default=1.0,
                    help="size of the checksummed model served by moto (in memory: keep it small)")
    args = ap.parse_args()
    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    root = args.workdir / "root"
    work = args.workdir / "work"
    model_dir = root / "bench" / "model"
    small_dir = root / "bench" / "small"
    want = int(args.size_gb * 1e9)
    marker = args.workdir / f"model-{want}-{args.shards}.ok"
    # One marker per dataset directory: a run with other sizes regenerates it and takes the others away
    # (a stale marker once made a 2,000-file run measure the 200 files an earlier run left).
    if not marker.exists():
        for old in args.workdir.glob("model-*.ok"):
            old.unlink()
        shutil.rmtree(model_dir, ignore_errors=True)
        print(f"generating a {args.size_gb} GB model ...", file=sys.stderr)
        generate_model(model_dir, SyntheticModel(total_bytes=want, shards=args.shards))
        marker.touch()
    small_marker = args.workdir / f"small-{args.small_count}-{args.small_kib}.ok"
    if args.small_count and not small_marker.exists():
        for old in args.workdir.glob("small-*.ok"):
            old.unlink()
        shutil.rmtree(small_dir, ignore_errors=True)
        generate_small_files(small_dir, args.small_count, args.small_kib * 1024)
        small_marker.touch()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    # rclone keeps the MD5 ETags of a listing with its directory cache (5 min by default); a listing after
    # that re-reads every byte (measured: 26 s for 8 GB, charged to whichever tool listed first).
    # The upload bucket exists before the server starts: with a long directory cache rclone would not see a
    # bucket made behind its back.
    (root / "upload").mkdir(exist_ok=True)
    with RcloneS3(root, log_path=args.workdir / "server.log", extra=["--dir-cache-time", "24h"]) as srv:
        env.update(srv.env())
        env["HOME"] = str(args.workdir / "home")
        # Warm the server's MD5 ETag cache and the page cache, the same for every tool.
        for prefix in ("model", "small"):
            subprocess.run([find_binary("s5cmd"), "--endpoint-url", srv.endpoint, "ls",
                            f"s3://bench/{prefix}/*"], env=env, capture_output=True, check=False)
            limits.read_through(root / "bench" / prefix)
        # This VM backs guest memory lazily: the first run to touch fresh page-cache pages pays host
        # faults (measured: 2x the wall of the same run repeated). One discarded run warms the source's
        # pages, which stay cached; what each tool writes starts from reported pages (SETTLE_S).
        print("warm-up run (discarded) ...", file=sys.stderr)
        bench_copy(srv, env, root, "model", ["s5cmd"] if not args.imports_only else [], 1, work)
        print("copying (each into an empty directory) ...", file=sys.stderr)
        results = bench_copy(srv, env, root, "model", tools if not args.imports_only else [], args.repeat, work)
        if args.small_count and not args.imports_only:
            results += bench_copy(srv, env, root, "small", [t for t in tools if t != "modelpvc --verify size"],
                                  args.repeat, work)
        md5_cpu = 0.0
        noop: dict[str, float] = {}
        resumed = -1.0
        cksum: list[tuple[str, float, float, bool]] = []
        import_rows: list[imports.Row] = []
        if not args.skip_extras and not args.imports_only:
            gb = tree_bytes(model_dir) / 1e9
            files = limits.shards(model_dir)
            wall, cpu = limits.server_to_devnull(srv, env, "model", files)
            results.append(Result("server to /dev/null (s5cmd cat, all shards at once)", "model", wall, cpu, 0, -1,
                                  False, gb))
            wall, cpu = limits.md5_from_page_cache(files)
            md5_cpu = cpu / (sum(f.stat().st_size for f in files) / 1e9)
            results.append(Result("MD5 of the same bytes from the page cache", "model", wall, cpu, 0, -1, False, gb))
            wall, cpu = limits.disk_alone(files, work / "disk-alone")
            results.append(Result("the disk alone: the same sizes written direct, 8 MiB, then fsync", "model", wall,
                                  cpu, 0, -1, False, gb))
            noop = noop_times(srv, env, "model", work)
            frac, refetched, total = kill_and_resume(srv, env, "model", work)
            resumed = refetched / max(1, total) if refetched >= 0 else -1.0
            extras = ["no-op re-run on a complete destination (wall s): "
                      + ", ".join(f"{k} {v:.2f}" for k, v in noop.items()),
                      f"SIGKILL at {frac * 100:.0f} % then re-run: modelpvc fetched {refetched / 1e9:.2f} GB of "
                      f"{total / 1e9:.2f} GB again ({100 * resumed:.0f} %)"]
        if not args.skip_extras and args.import_gb > 0:
            hub_dir = args.workdir / "hub-model"
            hub_marker = args.workdir / f"hub-{args.import_gb}.ok"
            if not hub_marker.exists():
                shutil.rmtree(hub_dir, ignore_errors=True)
                generate_model(hub_dir, SyntheticModel(total_bytes=int(args.import_gb * 1e9), shards=2, seed=5))
                hub_marker.touch()
            print("imports ...", file=sys.stderr)
            import_rows = imports.local_upload(srv, env, model_dir, root, run_measured, args.repeat)
            import_rows += imports.hub_upload(srv, env, hub_dir, root, run_measured, args.repeat)
    if not args.no_minio and not args.imports_only:
        print("MinIO ...", file=sys.stderr)
        sources = {"model": model_dir, **({"small": small_dir} if args.small_count else {})}
        tag = f"{want}-{args.shards}-{args.small_count}-{args.small_kib}"
        results += minio.run(args.workdir, sources, tag, tools, args.repeat, bench_copy, limits, Result)
    if not args.skip_extras and args.checksum_gb > 0 and not args.imports_only:
        ck_dir = args.workdir / "cksum-model"
        ck_marker = args.workdir / f"cksum-{args.checksum_gb}.ok"
        if not ck_marker.exists():
            shutil.rmtree(ck_dir, ignore_errors=True)
            generate_model(ck_dir, SyntheticModel(total_bytes=int(args.checksum_gb * 1e9), shards=2))
            ck_marker.touch()
        work.mkdir(parents=True, exist_ok=True)
        # CPU differs by tenths of a second between runs here: five rounds for a steadier median.
        cksum = checksums.run(ck_dir, work, lambda cmd, e: run_measured(cmd, e), repeat=max(5, args.repeat))
        gb = tree_bytes(ck_dir) / 1e9
        results += [Result(label, "checksummed (moto)", wall, cpu, 0, 0, ok, gb) for label, wall, cpu, ok in cksum]
    print()
    print(table(results))
    if not args.skip_extras:
        print()
        print("\n".join(extras if not args.imports_only else []))
        print()
        if import_rows:
            print()
            print(import_table(import_rows))
    print()
    print(targets(results, md5_cpu, noop, resumed, cksum, import_rows))
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
