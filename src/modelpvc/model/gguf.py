"""GGUF: magic, version and counts from the fixed-size preamble."""

from __future__ import annotations

import struct

from modelpvc.model.findings import Finding
from modelpvc.model.safetensors import ReadAt


def check(path: str, read_at: ReadAt, size: int) -> list[Finding]:
    if size < 24:
        return [Finding(path, "truncated", f"{size} bytes: too short for a GGUF preamble")]
    magic, version, tensors, kvs = struct.unpack("<4sIQQ", read_at(0, 24))
    if magic != b"GGUF":
        return [Finding(path, "bad-header", f"GGUF magic missing (found {magic!r})")]
    if version not in (1, 2, 3):
        return [Finding(path, "bad-header", f"unsupported GGUF version {version}")]
    if tensors > 1_000_000 or kvs > 1_000_000:
        return [Finding(path, "bad-header", f"implausible GGUF counts: {tensors} tensors, {kvs} keys")]
    return []
