"""plan's arithmetic: PVC size, which serving pattern, how long the copy and the load take. Pure."""

from __future__ import annotations

import math
from dataclasses import dataclass

GiB = 1024**3
MiB = 1024**2


@dataclass(frozen=True)
class SizingInput:
    model_bytes: int
    headroom: float = 1.2  # the PVC holds the model x headroom (a revision beside it needs 2x)
    threshold_bytes: int = 20 * 10**9  # above this the S3 storage-initializer pattern is not advised
    node_ephemeral_bytes: int = 100 * 10**9  # ephemeral storage a node can spare for an EmptyDir


def pvc_size_gi(model_bytes: int, headroom: float) -> int:
    """Model bytes x headroom, rounded up to whole Gi (at least 1)."""
    return max(1, math.ceil(model_bytes * headroom / GiB))


def pattern(inp: SizingInput) -> tuple[str, str]:
    """("storage-initializer"|"pvc", why)."""
    fits = inp.model_bytes * 2 <= inp.node_ephemeral_bytes  # download + the serving copy's page cache
    if inp.model_bytes <= inp.threshold_bytes and fits:
        return ("storage-initializer",
                f"{inp.model_bytes / 1e9:.2f} GB is under the {inp.threshold_bytes / 1e9:.2f} GB threshold and "
                "fits comfortably in node ephemeral storage")
    reason = (f"{inp.model_bytes / 1e9:.2f} GB exceeds the {inp.threshold_bytes / 1e9:.2f} GB threshold"
              if inp.model_bytes > inp.threshold_bytes else
              "twice the model does not fit in the node's ephemeral storage")
    return "pvc", reason + ": a per-pod download would risk DiskPressure and slow every cold start"


def seconds_at(nbytes: int, bytes_per_second: float) -> float:
    return nbytes / bytes_per_second if bytes_per_second > 0 else float("inf")


def parse_bandwidth(text: str) -> float:
    """"125MiB/s", "1GiB/s", "500MB/s" -> bytes per second."""
    t = text.strip().removesuffix("/s")
    units = {"KiB": 1024, "MiB": MiB, "GiB": GiB, "KB": 1e3, "MB": 1e6, "GB": 1e9, "B": 1}
    for u, f in units.items():
        if t.endswith(u):
            return float(t[: -len(u)]) * f
    return float(t)


# Binary suffixes first: "Gi" must match before "G".
_SIZE_UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50,
               "k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15}


def parse_quantity(text: str) -> float:
    """A Kubernetes quantity as a number: "500m" -> 0.5, "4" -> 4, "80Gi" -> bytes."""
    t = text.strip()
    if t.endswith("m"):
        return float(t[:-1]) / 1000
    for u, f in _SIZE_UNITS.items():
        if t.endswith(u):
            return float(t[: -len(u)]) * f
    return float(t)


def parse_size(text: str) -> int:
    """A Kubernetes quantity or a user's size -> bytes: "80Gi", "45G", "1.5Ti", "123456"."""
    return int(parse_quantity(text))
