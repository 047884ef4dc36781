"""Digest algorithms and how per-range results combine into whole-object values. Pure: no I/O.

One module for every place that hashes (mirror's receive path, adoption of files found on disk,
``verify --deep``), so a value recorded by one is checked the same way by the others.

S3 offers three kinds of end-to-end values:

* a digest of the whole object (the single-part ETag's MD5; full-object SHA-1/SHA-256): sequential, so
  bytes must be hashed in offset order;
* a full-object CRC (CRC32, CRC32C, CRC64NVME): CRCs of ranges combine exactly (``crc(A|B)`` from
  ``crc(A)``, ``crc(B)`` and ``len(B)``), so every range is hashed by the thread that received it, in any
  order;
* a per-part value of a multipart upload (the ETag ``md5(md5(p1)|md5(p2)|...)-N``, and AWS's composite
  checksums ``crc(crc(p1)|crc(p2)|...)-N``): parts are independent, ranges are cut on part boundaries.

The CRCs come from ISA-L through the ``isal`` wheel where it works, else awscrt and zlib
(``crc_native``; docs/decisions.md §10 for the candidates measured): they release the GIL and run at
10-20 GB/s per core.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any, Protocol

from modelpvc.core.crc_native import REFLECTED_POLY, crc_function

SEQUENTIAL = ("md5", "sha1", "sha256")
CRCS = ("crc32", "crc32c", "crc64nvme")
# Preference when a source offers several: cheapest to compute first (all are end-to-end checks).
CHECKSUM_PREFERENCE = ("crc64nvme", "crc32c", "crc32", "sha1", "sha256")


class Hasher(Protocol):
    def update(self, data: Any, /) -> None: ...
    def digest(self) -> bytes: ...


class _Crc:
    """A running CRC with hashlib's interface. ``fn(data, previous)`` is the library's incremental form."""

    def __init__(self, name: str, width: int) -> None:
        self.fn = crc_function(name)
        self.width = width
        self.value = 0

    def update(self, data: Any) -> None:
        self.value = self.fn(data, self.value)

    def digest(self) -> bytes:
        return int(self.value).to_bytes(self.width, "big")


_CRC_WIDTH = {"crc32": 4, "crc32c": 4, "crc64nvme": 8}


def new_hasher(algorithm: str) -> Hasher:
    """A fresh hasher; raises ValueError for an algorithm we do not know."""
    if algorithm in SEQUENTIAL:
        h: Hasher = hashlib.new(algorithm, usedforsecurity=False)
        return h
    if algorithm in _CRC_WIDTH:
        return _Crc(algorithm, _CRC_WIDTH[algorithm])
    raise ValueError(f"no hasher for {algorithm!r}")


def known(algorithm: str) -> bool:
    return algorithm in SEQUENTIAL or algorithm in _CRC_WIDTH


def encode(algorithm: str, raw: bytes) -> str:
    """How S3 and our manifest write a value: MD5 in hex (ETags), checksums in base64 (x-amz-checksum-*)."""
    return raw.hex() if algorithm == "md5" else base64.b64encode(raw).decode()


# -- CRC combination ---------------------------------------------------------------------------------
# The three S3 CRCs are reflected with init == xorout (all ones), so crc(A|B) = crc(A) * x^(8 len(B)) mod P
# ^ crc(B). The shift is a product of polynomials mod P, with x^(2^k) mod P kept per k: the method of
# zlib 1.2.12's crc32_combine (multmodp, x2nmodp), generalised to 64 bits. In reflected form bit w-1 is
# x^0. The previous 64x64 bit-matrix squaring cost 15 ms of pure Python before the first combine.


class _Shifts:
    def __init__(self, width: int, poly: int) -> None:
        self.poly = poly
        self.one = 1 << (width - 1)  # x^0
        self.powers = [self.one >> 1]  # x^(2^0) = x
        for _ in range(1, 64):
            self.powers.append(self.times(self.powers[-1], self.powers[-1]))

    def times(self, a: int, b: int) -> int:
        """a * b mod P, both reflected."""
        m = self.one
        p = 0
        while a:
            if a & m:
                p ^= b
                a ^= m
            m >>= 1
            b = (b >> 1) ^ self.poly if b & 1 else b >> 1
        return p

    def zeros(self, crc: int, nbytes: int) -> int:
        """``crc`` after ``nbytes`` zero bytes: times x^(8 nbytes)."""
        k = 3  # 8 = 2^3
        while nbytes:
            if nbytes & 1:
                crc = self.times(self.powers[k], crc)
            nbytes >>= 1
            k += 1
        return crc


_shifts: dict[str, _Shifts] = {}


def crc_combine(algorithm: str, crc_a: int, crc_b: int, len_b: int) -> int:
    """CRC of A followed by B, from the CRCs of each and the length of B."""
    z = _shifts.get(algorithm)
    if z is None:
        z = _shifts[algorithm] = _Shifts(*REFLECTED_POLY[algorithm])
    return z.zeros(crc_a, len_b) ^ crc_b


def combine_ranges(algorithm: str, parts: list[tuple[int, bytes]]) -> bytes:
    """Whole-object CRC from (length, raw CRC) of consecutive ranges, in offset order."""
    width = _CRC_WIDTH[algorithm]
    value = 0
    for length, raw in parts:
        value = crc_combine(algorithm, value, int.from_bytes(raw, "big"), length)
    return value.to_bytes(width, "big")


def of_parts(algorithm: str, part_digests: list[bytes]) -> str:
    """The per-part form: multipart ETag (md5, hex) or composite checksum (base64), with its ``-N``."""
    h = new_hasher(algorithm)
    h.update(b"".join(part_digests))
    return f"{encode(algorithm, h.digest())}-{len(part_digests)}"


@dataclass(frozen=True)
class Expectation:
    """How one file's bytes are checked, and what the manifest records as ``verified``.

    ``form``:
      * ``"whole"``: one value over the whole object (``algorithm`` sequential or a CRC);
      * ``"parts"``: one value per upload part of ``part_size`` bytes, combined by hashing them (multipart
        ETags, composite checksums);
      * ``"size"``: lengths only.
    ``expected`` is None when the source offers nothing to compare (a digest is still recorded), or, with
    ``from_answer``, until the GET of the whole object brings the stored checksum (transfer.expectations).
    """

    kind: str  # recorded: "md5", "checksum-crc64nvme", "multipart-etag", "composite-crc32c", "digest-md5", "size"
    form: str = "size"
    algorithm: str | None = None
    expected: str | None = None
    part_size: int | None = None
    from_answer: bool = False

    @property
    def key(self) -> str:
        """The manifest digest key: the algorithm, or the per-part form's name."""
        if self.form == "parts":
            return "multipart-etag" if self.algorithm == "md5" else f"composite-{self.algorithm}"
        return self.algorithm or ""

    @property
    def combinable(self) -> bool:
        """Ranges can be hashed independently, in whichever thread received them."""
        return self.form == "parts" or (self.form == "whole" and self.algorithm in _CRC_WIDTH)

    def record(self, value: str) -> dict[str, str]:
        out = {self.key: value}
        if self.form == "parts" and self.part_size:
            out["part_size"] = str(self.part_size)
        return out


SIZE_ONLY = Expectation("size")


def from_record(digest: dict[str, str]) -> Expectation | None:
    """The Expectation a manifest's digest record was computed under (``verify --deep``), or None."""
    part = int(digest.get("part_size", "0") or 0)
    if "multipart-etag" in digest:
        return Expectation("multipart-etag", "parts", "md5", digest["multipart-etag"], part or None)
    for key, value in digest.items():
        if key.startswith("composite-") and known(key.removeprefix("composite-")):
            return Expectation(key, "parts", key.removeprefix("composite-"), value, part or None)
    for algo in (*CRCS, *SEQUENTIAL):
        if algo in digest:
            return Expectation(algo, "whole", algo, digest[algo])
    return None
