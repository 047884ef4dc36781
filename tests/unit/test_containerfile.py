"""The image cannot be built here; check what it declares and run the entrypoint it runs."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_containerfile_is_ubi9_python_nonroot_with_our_entrypoint():
    text = (ROOT / "Containerfile").read_text()
    bases = re.findall(r"^FROM (\S+)", text, re.M)
    assert bases and all(b.startswith("registry.access.redhat.com/ubi9/python-311") for b in bases)
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users[-1].isdigit() and int(users[-1]) != 0
    assert "HOME=/tmp" in text
    entry = re.findall(r'^ENTRYPOINT \["(\S+)"\]', text, re.M)
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert entry == ["modelpvc"] and entry[0] in scripts


def test_entrypoint_runs_as_an_arbitrary_uid_with_a_readonly_home(tmp_path):
    script = Path(sys.executable).parent / "modelpvc"
    r = subprocess.run(["setpriv", "--reuid", "1000680000", "--regid", "0", "--clear-groups",
                        "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search",
                        "env", "HOME=/", str(script), "--help"], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    for cmd in ("mirror", "verify", "plan", "render"):
        assert cmd in r.stdout
    assert "exit codes:" in r.stdout
