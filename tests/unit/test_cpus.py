"""The pool is sized by the CPUs this process may use: its affinity mask and its cgroup's quota."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from modelpvc.cli.cpus import cgroup_quota, default_workers, describe_cpus, usable_cpus


def _v2(tmp_path: Path, line: str) -> Path:
    (tmp_path / "cpu.max").write_text(line + "\n")
    return tmp_path


def test_a_pod_limited_to_two_cpus_has_two_whatever_the_node_has(tmp_path):
    root = _v2(tmp_path, "200000 100000")  # limits.cpu: 2
    assert cgroup_quota(root) == 2.0
    assert usable_cpus(root) == min(2, len(os.sched_getaffinity(0)))
    assert "cgroup quota 2" in describe_cpus(usable_cpus(root), root)


def test_a_fractional_quota_rounds_up_and_never_reaches_zero(tmp_path):
    assert usable_cpus(_v2(tmp_path, "50000 100000")) == 1  # limits.cpu: 500m
    assert usable_cpus(_v2(tmp_path, "150000 100000")) == min(2, len(os.sched_getaffinity(0)))


def test_no_quota_means_the_affinity_mask(tmp_path):
    assert cgroup_quota(_v2(tmp_path, "max 100000")) is None
    assert usable_cpus(tmp_path) == len(os.sched_getaffinity(0))
    assert cgroup_quota(tmp_path / "missing") is None


def test_cgroup_v1_quota(tmp_path):
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("300000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_quota(tmp_path) == 3.0
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert cgroup_quota(tmp_path) is None


def test_workers_follow_the_cpus_within_bounds():
    assert [default_workers(n) for n in (1, 2, 3, 8, 64)] == [4, 4, 6, 16, 32]


def test_the_affinity_mask_is_honoured_by_a_process_pinned_to_one_cpu():
    out = subprocess.run(["taskset", "-c", "0", sys.executable, "-c",
                          "from modelpvc.cli.cpus import usable_cpus, describe_cpus; "
                          "n = usable_cpus(); print(n, describe_cpus(n))"],
                         capture_output=True, text=True, check=True).stdout
    assert out.startswith("1 1 CPU usable: affinity 1")
