"""plan's arithmetic: PVC size, which serving pattern, how long the copy and the load take. Pure."""

from __future__ import annotations

import math
from dataclasses import dataclass

GiB = 1024**3
MiB = 1024**2


@dataclass(frozen=True)
class SizingInput:
    model_bytes: int
    threshold_bytes: int = 20 * 10**9  # above this the S3 storage-initializer pattern is not advised
    node_ephemeral_bytes: int = 100 * 10**9  # ephemeral storage a node can spare for an EmptyDir


# A claim made for a model holds the served revision and the one `update` populates beside it, with room
# for what a filesystem and our records add. render, populate --create-pvc, plan and preflight's "too
# small" hint all size claims with this one rule.
REVISIONS = 2
HEADROOM = 1.1


def pvc_size_gi(model_bytes: int, headroom: float = HEADROOM) -> int:
    """Model bytes x headroom, rounded up to whole Gi (at least 1): one copy (an EmptyDir, a claim that
    never holds two revisions)."""
    return max(1, math.ceil(model_bytes * headroom / GiB))


def claim_size_gi(model_bytes: int, revisions: int = REVISIONS, headroom: float = HEADROOM) -> int:
    """The size of a claim made for a model: ``revisions`` copies x headroom, in whole Gi."""
    return pvc_size_gi(model_bytes * revisions, headroom)


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


_BYTES = {"KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40, "PiB": 2**50,
          "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50,
          "kB": 10**3, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12, "PB": 10**15,
          "k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "B": 1}
_QUANTITY = {"KiB": "Ki", "MiB": "Mi", "GiB": "Gi", "TiB": "Ti", "PiB": "Pi",
             "kB": "k", "KB": "k", "MB": "M", "GB": "G", "TB": "T", "PB": "P", "K": "k", "B": ""}


def _split(text: str, units: dict[str, float] | dict[str, int]) -> tuple[float, str]:
    t = text.strip().replace(" ", "")
    for u in sorted(units, key=len, reverse=True):  # "GiB" before "Gi" before "G" before "B"
        if t.endswith(u):
            number, unit = t[: -len(u)], u
            break
    else:
        number, unit = t, ""
    try:
        value = float(number)
    except ValueError:
        raise ValueError(f"{text!r} is not a size: a number with an optional unit, e.g. 48GB, 45Gi, 1.5TiB") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{text!r} is not a size: it must be a finite number, not negative")
    return value, unit


def parse_size(text: str) -> int:
    """A size as users and Kubernetes write it -> bytes: "48GB", "45G", "80Gi", "1.5TiB", "123456"."""
    value, unit = _split(text, _BYTES)
    return int(value * (_BYTES[unit] if unit else 1))


def to_quantity(text: str) -> str:
    """A size as a Kubernetes quantity, for a field the API validates: "80GB" -> "80G", "80GiB" -> "80Gi"."""
    value, unit = _split(text, _BYTES)
    number = f"{value:g}" if "e" not in f"{value:g}" else str(int(value))
    return number + _QUANTITY.get(unit, unit)


def parse_bandwidth(text: str) -> float:
    """A rate -> bytes per second: "125MiB/s", "500MB/s", "1Gbps" and "1Gb/s" (bits), "2G" (bytes)."""
    t = text.strip().replace(" ", "")
    bits = t.endswith("bps") or t.endswith("b/s")
    t = t.removesuffix("bps").removesuffix("/s")
    if bits:
        t = t.removesuffix("b")
    value, unit = _split(t, _BYTES)
    rate = value * (_BYTES[unit] if unit else 1)
    return rate / 8 if bits else rate


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


