"""The loader tier's own Python environment: torch, transformers, peft and safetensors (requirements.txt).

Several GB, so it lives outside the checkout, under ``$XDG_CACHE_HOME/modelpvc`` (``~/.cache/modelpvc``),
named by the hash of requirements.txt: a fresh clone on the same machine finds it, a change of pins makes a
new one. ``python -m tests.loaders.env`` creates it when missing (``make loaders``) and prints its python.
Standard library only: it runs before anything is installed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

REQUIREMENTS = Path(__file__).resolve().with_name("requirements.txt")


def location() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    digest = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()[:12]
    return cache / "modelpvc" / f"loaders-{digest}"


def python() -> Path:
    """The environment's interpreter; it is complete only when its marker exists."""
    return location() / "bin" / "python"


def ready() -> bool:
    return (location() / ".complete").exists()


def ensure() -> Path:
    where = location()
    if ready():
        return python()
    shutil.rmtree(where, ignore_errors=True)  # an interrupted install is started again, not trusted
    where.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(where)], check=True)
    subprocess.run([str(python()), "-m", "pip", "install", "-q", "-r", str(REQUIREMENTS)], check=True)
    (where / ".complete").touch()
    return python()


if __name__ == "__main__":
    print(ensure())
