"""How many CPUs this process may use: its affinity mask and its cgroup's CPU quota, whichever is less.

A pod with ``limits.cpu: 2`` on a 64-core node has two (cgroup v2 ``cpu.max`` "200000 100000", v1
``cpu.cfs_quota_us``/``cpu.cfs_period_us``); sizing the pool by ``os.cpu_count()`` there would run 128
threads into a throttled quota.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP = Path("/sys/fs/cgroup")


def cgroup_quota(root: Path = CGROUP) -> float | None:
    """CPUs allowed by the cgroup's quota, or None when unlimited or unknown."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        if quota != "max":
            return int(quota) / int(period)
        return None
    except (OSError, ValueError):
        pass
    try:
        q = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        p = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return q / p if q > 0 and p > 0 else None
    except (OSError, ValueError):
        return None


def usable_cpus(root: Path = CGROUP) -> int:
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    quota = cgroup_quota(root)
    if quota is not None:
        n = min(n, max(1, math.ceil(quota)))
    return max(1, n)


def describe_cpus(cpus: int, root: Path = CGROUP) -> str:
    """Where the CPU count came from, for the summary."""
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = os.cpu_count() or 1
    quota = cgroup_quota(root)
    why = [f"affinity {affinity}"]
    if quota is not None:
        why.append(f"cgroup quota {quota:g}")
    return f"{cpus} CPU{'s' if cpus != 1 else ''} usable: {', '.join(why)}"


def default_workers(cpus: int) -> int:
    """Two requests per CPU, at least 4 (a slow or distant endpoint needs several streams whatever the
    CPUs), at most 32. Measured on 2 CPUs against a loopback server: 4 workers beat 8 (docs/decisions.md)."""
    return max(4, min(32, 2 * cpus))
