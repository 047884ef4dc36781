"""One parser for sizes and rates (model.sizing, cli.units): what users type, what Kubernetes writes."""

from __future__ import annotations

import subprocess
import sys

import pytest

from modelpvc.model.sizing import parse_bandwidth, parse_size, to_quantity


@pytest.mark.parametrize("text,expected", [
    ("48GB", 48 * 10**9), ("48G", 48 * 10**9), ("45Gi", 45 * 2**30), ("45GiB", 45 * 2**30),
    ("1.5TiB", int(1.5 * 2**40)), ("123456", 123456), ("500 MB", 500 * 10**6), ("80Gi", 80 * 2**30),
    ("2k", 2000), ("7B", 7)])
def test_sizes_in_every_spelling(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["48XB", "GB", "", "-1G", "nan", "inf", "1.2.3G"])
def test_what_is_not_a_size_says_so(text):
    with pytest.raises(ValueError, match="is not a size"):
        parse_size(text)


@pytest.mark.parametrize("text,expected", [("80GB", "80G"), ("80GiB", "80Gi"), ("80Gi", "80Gi"),
                                           ("1.5TB", "1.5T"), ("512MB", "512M"), ("120", "120")])
def test_kubernetes_quantities_are_normalised_where_written(text, expected):
    assert to_quantity(text) == expected


@pytest.mark.parametrize("text,expected", [("125MiB/s", 125 * 2**20), ("500MB/s", 500e6), ("1Gbps", 1e9 / 8),
                                           ("1Gb/s", 1e9 / 8), ("2G", 2e9)])
def test_rates_in_bytes_and_bits(text, expected):
    assert parse_bandwidth(text) == pytest.approx(expected)


@pytest.mark.parametrize("args,flag", [
    (["render", "--name", "m", "--namespace", "n", "--source", "s3://b/p/", "--pvc", "p", "--secret", "s",
      "--model-bytes", "48XB"], "--model-bytes"),
    (["render", "--name", "m", "--namespace", "n", "--source", "s3://b/p/", "--pvc", "p", "--secret", "s",
      "--memory", "lots"], "--memory"),
    (["plan", "s3://b/p/", "--bandwidth", "fast"], "--bandwidth"),
    (["plan", "s3://b/p/", "--threshold", "big"], "--threshold")])
def test_a_bad_size_is_a_usage_error_naming_the_flag(args, flag):
    r = subprocess.run([sys.executable, "-m", "modelpvc", *args], capture_output=True, text=True, check=False)
    assert r.returncode == 2, r.stderr
    assert f"argument {flag}" in r.stderr and "internal error" not in r.stderr


def test_render_writes_a_memory_the_api_accepts(tmp_path):
    r = subprocess.run([sys.executable, "-m", "modelpvc", "render", "--name", "m", "--namespace", "n", "--source",
                        "s3://b/p/", "--pvc", "p", "--secret", "s", "--model-bytes", "48GB", "--memory", "80GB",
                        "-o", str(tmp_path), "--validate"], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    isvc = next(tmp_path.glob("*-isvc-m.yaml")).read_text()
    assert "memory: 80G\n" in isvc
