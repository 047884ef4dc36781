"""safetensors headers: read only the 8-byte length and the JSON header, never the tensor data."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from modelpvc.model.findings import Finding

# Bits per element, as the format's reference implementation defines them (safetensors Dtype::bitsize);
# sub-byte types pack their elements, so a span is elements x bits / 8.
# Every dtype the safetensors library (0.8) accepts; it refuses a header naming any other.
DTYPE_BITS = {
    "BOOL": 8, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8,
    "F8_E4M3FNUZ": 8, "F8_E5M2FNUZ": 8, "I16": 16, "U16": 16, "F16": 16, "BF16": 16, "I32": 32, "U32": 32,
    "F32": 32, "C64": 64, "F64": 64, "I64": 64, "U64": 64,
}
# The format caps the header at 100 MB; anything larger is hostile or corrupt and is not read.
MAX_HEADER = 100 * 1000 * 1000

ReadAt = Callable[[int, int], bytes]  # (offset, length) -> bytes


@dataclass(frozen=True)
class Tensor:
    name: str
    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int

    @property
    def elements(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


@dataclass
class Header:
    header_len: int
    tensors: list[Tensor] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def data_end(self) -> int:
        return max((t.end for t in self.tensors), default=0)

    @property
    def expected_file_size(self) -> int:
        return 8 + self.header_len + self.data_end


class HeaderError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def read_header(read_at: ReadAt, file_size: int) -> Header:
    """Parse the header of a safetensors file of ``file_size`` bytes; raises HeaderError."""
    if file_size < 8:
        raise HeaderError("truncated", f"{file_size} bytes: too short for a safetensors header")
    (n,) = struct.unpack("<Q", read_at(0, 8))
    if n > MAX_HEADER:
        raise HeaderError("header-too-large", f"header length {n} exceeds the format's 100 MB cap")
    if 8 + n > file_size:
        raise HeaderError("truncated", f"header length {n} runs past the end of the {file_size}-byte file")
    raw = read_at(8, n)
    try:
        obj = json.loads(raw)
    except (ValueError, RecursionError) as e:
        raise HeaderError("bad-header", f"header is not valid JSON ({type(e).__name__})") from None
    if not isinstance(obj, dict):
        raise HeaderError("bad-header", "header is not a JSON object")
    h = Header(header_len=n)
    for name, spec in obj.items():
        if name == "__metadata__":
            h.metadata = spec if isinstance(spec, dict) else {}
            continue
        try:
            dtype = str(spec["dtype"])
            shape = tuple(int(d) for d in spec["shape"])
            start, end = (int(x) for x in spec["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise HeaderError("bad-header", f"tensor {name!r} has a malformed entry") from None
        h.tensors.append(Tensor(name, dtype, shape, start, end))
    return h


def check(path: str, h: Header, file_size: int) -> list[Finding]:
    """What the safetensors library checks when it opens a file (safetensors/src/tensor.rs, ``validate``
    and ``deserialize``): every span equal to shape x dtype size, spans contiguous from 0 with no hole or
    overlap, and the file exactly as long as the header says, every dtype one it knows. Any of these makes
    loading fail: errors."""
    out: list[Finding] = []
    pos = 0
    for t in sorted(h.tensors, key=lambda t: (t.start, t.end)):
        bits = DTYPE_BITS.get(t.dtype)
        if bits is None:
            out.append(Finding(path, "unknown-dtype", f"tensor {t.name} has dtype {t.dtype}, which the safetensors "
                                                      "library does not know: loaders refuse the file"))
        elif t.elements * bits != 8 * (t.end - t.start):
            out.append(Finding(path, "shape-mismatch", f"tensor {t.name}: shape {list(t.shape)} x {t.dtype} is "
                                                       f"{t.elements * bits / 8:g} bytes but its span is "
                                                       f"{t.end - t.start}"))
        if t.start < pos:
            out.append(Finding(path, "overlap", f"tensor {t.name} starts at {t.start}, inside the previous tensor"))
        elif t.start > pos:
            out.append(Finding(path, "gap", f"{t.start - pos} unused bytes before tensor {t.name}"))
        pos = max(pos, t.end)
    expected = h.expected_file_size
    if file_size < expected:
        out.append(Finding(path, "truncated", f"file is {file_size} bytes, header says {expected}"))
    elif file_size > expected:
        out.append(Finding(path, "extended", f"file is {file_size} bytes, header says {expected}"))
    return out


def read_local(path: str) -> tuple[ReadAt, int, Callable[[], None]]:
    """(read_at, size, close) for a local file."""
    import os

    fd = os.open(path, os.O_RDONLY)
    size = os.fstat(fd).st_size
    return (lambda off, n: os.pread(fd, n, off)), size, (lambda: os.close(fd))
