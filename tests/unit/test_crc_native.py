"""The native CRCs give S3's values for every buffer type we hand them, and a wrong one is never used."""

from __future__ import annotations

import mmap
import os
import random

import pytest
from awscrt import checksums

from modelpvc.core import crc_native

ALGORITHMS = ("crc32", "crc32c", "crc64nvme")
# The catalogue's check values (CRC of b"123456789"): reveng.sourceforge.io/crc-catalogue
CHECK = {"crc32": 0xCBF43926, "crc32c": 0xE3069283, "crc64nvme": 0xAE8B14860A799888}


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_every_candidate_installed_here_gives_the_catalogue_value_and_chains(algorithm: str):
    rng = random.Random(algorithm)
    data = rng.randbytes(5000)
    candidates = crc_native._candidates(algorithm)
    assert len(candidates) >= 2  # ISA-L (or isal's crc32) and the fallback
    for name, fn in candidates:
        assert fn(b"123456789", 0) == CHECK[algorithm], name
        for n in (0, 1, 15, 16, 63, 64, 255, 256, 257, 1023, 4999):
            cut = rng.randrange(n + 1)
            expected = crc_native.reference(algorithm, data[:n])
            assert fn(data[:n], 0) == expected, (name, n)
            assert fn(data[cut:n], fn(data[:cut], 0)) == expected, (name, n, cut)


@pytest.mark.parametrize("algorithm", ("crc32c", "crc64nvme"))
def test_the_chosen_function_hashes_bytes_bytearrays_views_and_mmaps_in_place_as_awscrt_does(algorithm: str):
    data = os.urandom((8 << 20) + 77)
    expected = getattr(checksums, algorithm)(data)
    fn = crc_native.crc_function(algorithm)
    buf = mmap.mmap(-1, len(data))
    buf[:] = data
    writable = memoryview(bytearray(data))
    try:
        assert fn(data, 0) == expected
        assert fn(bytearray(data), 0) == expected
        assert fn(buf, 0) == expected
        assert fn(memoryview(buf)[1000:], fn(memoryview(buf)[:1000], 0)) == expected
        assert fn(writable[4097:], fn(writable[:4097], 0)) == expected
        assert fn(memoryview(data)[4097:], fn(memoryview(data)[:4097], 0)) == expected  # read-only view
        assert fn(memoryview(data)[5:5], 123) == 123
    finally:
        writable.release()
        buf.close()  # no export of the mmap is left behind by a call


def test_a_candidate_that_gives_another_value_is_passed_over(monkeypatch: pytest.MonkeyPatch,
                                                              caplog: pytest.LogCaptureFixture):
    real = crc_native._candidates("crc64nvme")

    def wrong(data: object, previous: int) -> int:
        return 42

    def raises(data: object, previous: int) -> int:
        raise OSError("symbol gone")

    monkeypatch.setattr(crc_native, "_candidates", lambda algorithm: [("broken", wrong), ("gone", raises), *real])
    name, fn = crc_native._first_correct("crc64nvme")
    assert name == real[0][0]
    assert fn(b"123456789", 0) == CHECK["crc64nvme"]
    assert "crc64nvme: broken gives wrong values here; not used" in caplog.text


def test_without_isal_the_crcs_come_from_awscrt_and_zlib(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(crc_native, "_isal_zlib", lambda: None)
    assert [n for n, _ in crc_native._candidates("crc64nvme")] == ["awscrt crc64nvme"]
    assert crc_native._first_correct("crc32c")[0] == "awscrt crc32c"
    assert crc_native._first_correct("crc32")[0] == "zlib.crc32"


@pytest.mark.parametrize("algorithm", ["crc32", "crc32c", "crc64nvme"])
def test_combined_ranges_give_the_crc_of_the_whole(algorithm: str):
    """crc(A|B) from crc(A), crc(B) and len(B), as the receiving threads' pieces are combined; lengths
    around the byte/bit boundaries, an 8 MiB piece (the default range) and beyond 4 GiB (shift only)."""
    from modelpvc.core import digests

    f = crc_native.crc_function(algorithm)
    rng = random.Random(7)
    for la, lb in [(0, 0), (1, 0), (0, 1), (5, 7), (300, 1), (1000, 4096), (3, 8 << 20), (7, (8 << 20) + 3)]:
        a, b = rng.randbytes(la), rng.randbytes(lb)
        assert digests.crc_combine(algorithm, f(a, 0), f(b, 0), lb) == f(a + b, 0), (la, lb)
    pieces = [rng.randbytes(n) for n in (4096, 1, 70000, 8 << 20)]
    raws = []
    for p in pieces:
        h = digests.new_hasher(algorithm)
        h.update(p)
        raws.append((len(p), h.digest()))
    raw = digests.combine_ranges(algorithm, raws)
    assert int.from_bytes(raw, "big") == f(b"".join(pieces), 0)
    # Beyond 4 GiB only the shift matters: x^(8n) for n = 2^32 + 1, checked against shifting twice.
    a = f(b"model", 0)
    z = digests.crc_combine(algorithm, a, 0, (1 << 32) + 1)
    assert z == digests.crc_combine(algorithm, digests.crc_combine(algorithm, a, 0, 1 << 32), 0, 1)
