"""The CRC functions S3 checksums need, from the fastest native code installed, checked before use.

S3's CRC32, CRC32C and CRC64NVME are computed by ISA-L (Intel's storage acceleration library) where
it is there: the ``isal`` wheel (a default dependency, ~300 KB) links ISA-L into its extension module and
exports ISA-L's C API, ``crc64_rocksoft_refl`` (CRC-64/NVME is ISA-L's "Rocksoft" polynomial) and
``crc32_iscsi`` (CRC-32C), which we call through ``ctypes`` (the GIL is released during the call, so
workers hash in parallel). CRC32 is ``isal_zlib.crc32``, the wheel's Python API. Measured on this
project's 2-core EPYC (VPCLMULQDQ and AVX2, no AVX-512), CPU-s per GB over 8 MiB pieces:
CRC-64/NVME 0.05 (ISA-L's AVX2 kernel) / 0.10 (its dispatcher's choice) against awscrt's 0.15;
CRC-32C 0.065 / 0.12 against 0.21; CRC-32 0.09 against zlib's 0.36. Loading it costs ≈ 6 ms against
awscrt's 70-100 ms (docs/decisions.md §10).

ISA-L's own dispatcher picks its AVX2 kernels only on CPUs that also have GFNI and VAES, which those
kernels do not use (they need AVX2 and VPCLMULQDQ only: isa-l crc/crc64_iso_refl_avx2.asm), so where the
CPU reports both we call the AVX2 kernel by name. Every function is checked against a bitwise reference
before it is used, on an input long enough to take its vector path; a wheel that does not export the
symbol, or gives another value, falls back to awscrt (CRC32C, CRC64NVME) or zlib (CRC32).
"""

from __future__ import annotations

import logging
import os
import threading
import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import ctypes

# Reflected polynomials of the three S3 CRCs; init and xorout are all ones for each.
REFLECTED_POLY = {"crc32": (32, 0xEDB88320), "crc32c": (32, 0x82F63B78), "crc64nvme": (64, 0x9A6C9329AC4BC9B5)}

CrcFunction = Callable[[Any, int], int]
"""``fn(data, previous) -> crc``: the CRC of what ``previous`` covered followed by ``data`` (0 to start)."""

log = logging.getLogger(__name__)

_SELF_TEST = bytes((i * 37 + 11) & 0xFF for i in range(521))  # > 256 bytes: the folding loop runs
_chosen: dict[str, tuple[str, CrcFunction]] = {}
_lock = threading.Lock()


def crc_function(algorithm: str) -> CrcFunction:
    """The fastest correct implementation of ``algorithm`` (crc32, crc32c, crc64nvme) installed here."""
    return _choose(algorithm)[1]


def implementation(algorithm: str) -> str:
    """Which implementation ``crc_function`` uses, for the bench and the decisions record."""
    return _choose(algorithm)[0]


def _choose(algorithm: str) -> tuple[str, CrcFunction]:
    found = _chosen.get(algorithm)
    if found is None:
        with _lock:
            found = _chosen.get(algorithm)
            if found is None:
                found = _chosen[algorithm] = _first_correct(algorithm)
    return found


def reference(algorithm: str, data: bytes, previous: int = 0) -> int:
    """Bit-at-a-time CRC: slow, obviously right; the yardstick for the native functions."""
    width, poly = REFLECTED_POLY[algorithm]
    mask = (1 << width) - 1
    crc = previous ^ mask
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (poly if crc & 1 else 0)
    return crc ^ mask


def _first_correct(algorithm: str) -> tuple[str, CrcFunction]:
    expected = reference(algorithm, _SELF_TEST)
    for name, fn in _candidates(algorithm):
        try:
            whole = fn(_SELF_TEST, 0)
            chained = fn(memoryview(bytearray(_SELF_TEST))[300:], fn(_SELF_TEST[:300], 0))
        except (ImportError, OSError, TypeError, ValueError, AttributeError):
            continue
        if whole == expected and chained == expected:
            log.debug("%s: %s", algorithm, name)
            return name, fn
        log.warning("%s: %s gives wrong values here; not used", algorithm, name)
    raise RuntimeError(f"no working {algorithm} implementation")  # zlib/awscrt are always there


def _candidates(algorithm: str) -> list[tuple[str, CrcFunction]]:
    out: list[tuple[str, CrcFunction]] = []
    isal_zlib = _isal_zlib()
    if algorithm == "crc32":
        if isal_zlib is not None:
            out.append(("isal_zlib.crc32", isal_zlib.crc32))
        out.append(("zlib.crc32", zlib.crc32))
        return out
    lib = _library(isal_zlib.__file__) if isal_zlib is not None else None
    if lib is not None:
        base = {"crc32c": "crc32_iscsi", "crc64nvme": "crc64_rocksoft_refl"}[algorithm]
        names = [base + "_avx2"] if _has_avx2_clmul() else []
        for symbol in [*names, base]:
            fn = _bind(lib, symbol, algorithm)
            if fn is not None:
                out.append((f"ISA-L {symbol}", fn))
    out.append((f"awscrt {algorithm}", _awscrt(algorithm)))
    return out


def _isal_zlib() -> Any:
    """The ``isal_zlib`` module, or None where the wheel is not installed."""
    try:
        from isal import isal_zlib
    except ImportError:
        return None
    return isal_zlib


def _library(path: str) -> ctypes.CDLL | None:
    import ctypes  # here, not at the top: a run that checks no CRC does not pay for it

    try:
        # Already loaded by the import of the module: dlopen hands back the same library.
        return ctypes.CDLL(path)
    except OSError:
        return None


def _has_avx2_clmul() -> bool:
    if os.uname().machine != "x86_64":
        return False
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return {"avx2", "vpclmulqdq"} <= flags
    except OSError:
        pass
    return False


def _bind(lib: ctypes.CDLL, symbol: str, algorithm: str) -> CrcFunction | None:
    import ctypes

    raw = getattr(lib, symbol, None)
    if raw is None:
        return None
    step: Callable[[int, int, int], int]
    if algorithm == "crc64nvme":
        # uint64_t crc64_rocksoft_refl(uint64_t init_crc, const unsigned char *buf, uint64_t len):
        # inverts on the way in and out itself, so the previous CRC goes in as it is.
        raw.restype = ctypes.c_uint64
        raw.argtypes = [ctypes.c_uint64, ctypes.c_void_p, ctypes.c_uint64]

        def step(ptr: int, n: int, crc: int) -> int:
            return int(raw(crc, ptr, n))
    else:
        # unsigned int crc32_iscsi(unsigned char *buf, int len, unsigned int init_crc): no inversion, and
        # len is an int, so pieces stay below 2 GiB.
        raw.restype = ctypes.c_uint32
        raw.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32]

        def step(ptr: int, n: int, crc: int) -> int:
            return int(raw(ptr, n, crc ^ 0xFFFFFFFF)) ^ 0xFFFFFFFF

    def crc(data: Any, previous: int) -> int:
        return _call(data, previous, step)

    return crc


_PIECE = 1 << 30


def _call(data: Any, crc: int, step: Callable[[int, int, int], int]) -> int:
    """Run ``step(address, length, crc)`` over ``data``'s bytes in place, without copying them."""
    import ctypes

    if isinstance(data, bytes):
        length = len(data)
        base = ctypes.cast(ctypes.c_char_p(data), ctypes.c_void_p).value or 0
    else:
        view = memoryview(data).cast("B")
        length = len(view)
        if length == 0:
            return crc
        if view.readonly:
            # ctypes maps only writable buffers; a read-only view that is not bytes is rare here.
            return _call(bytes(view), crc, step)
        holder = ctypes.c_char.from_buffer(view)
        base = ctypes.addressof(holder)
    for start in range(0, length, _PIECE):
        crc = step(base + start, min(_PIECE, length - start), crc)
    return crc


def _awscrt(algorithm: str) -> CrcFunction:
    def fn(data: Any, previous: int) -> int:
        # Imported on first use: awscrt costs 70-100 ms to import, which a run without CRCs need not pay.
        from awscrt import checksums

        value: int = getattr(checksums, algorithm)(data, previous)
        return value

    return fn
