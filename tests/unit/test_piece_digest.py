"""transfer.digest.PieceDigest: ranges hashed from their buffers, gaps from the file, combined in offset order."""

from __future__ import annotations

import os
import random
from pathlib import Path

from modelpvc.core import digests
from modelpvc.core.digests import Expectation
from modelpvc.transfer import digest


def _crc64(data: bytes) -> str:
    h = digests.new_hasher("crc64nvme")
    h.update(data)
    return digests.encode("crc64nvme", h.digest())


def test_a_full_object_crc_from_streamed_ranges_and_from_a_gap_on_disk(tmp_path: Path) -> None:
    data = random.Random(1).randbytes(300_000)
    (tmp_path / "f").write_bytes(data)
    exp = Expectation("checksum-crc64nvme", "whole", "crc64nvme", _crc64(data))
    fd = os.open(tmp_path / "f", os.O_RDONLY)
    try:
        # Every byte streamed: nothing is read back.
        whole = digest.for_expectation(exp, len(data))
        assert isinstance(whole, digest.PieceDigest)
        for s, e in [(100_000, 300_000), (0, 100_000)]:
            whole.begin(s, e)
            whole.feed(s, s, memoryview(data)[s:e], e)
            whole.range_done(fd, s, e)
        assert whole.finish(fd, len(data)) == exp.expected and whole.reread == 0
        # A range an earlier run wrote is hashed from the file.
        resumed = digest.for_expectation(exp, len(data))
        assert resumed is not None
        resumed.begin(0, 100_000)
        resumed.feed(0, 0, memoryview(data)[:100_000], 100_000)
        resumed.range_done(fd, 0, 100_000)
        assert resumed.finish(fd, len(data)) == exp.expected and resumed.reread == 200_000
    finally:
        os.close(fd)
