"""Multi-buffer MD5 (core/_md5lanes.c, core.md5_native) and the pool that feeds it parts across files
(transfer.md5_pool): every value equals hashlib's, whatever the lengths, order, threads and files."""

from __future__ import annotations

import hashlib
import os
import queue
import random
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from modelpvc.core import digests, md5_native
from modelpvc.core.digests import Expectation
from modelpvc.store.volume import direct_io
from modelpvc.store.volume.hashing import spans_digests
from modelpvc.transfer import digest, md5_pool, ranges

# Every padding case (tails of 0, 55, 56, 63 bytes: one or two final blocks), spans longer than one 32 KiB
# read, and more spans than the 16 lanes of a pass.
SIZES = [0, 1, 55, 56, 63, 64, 65, 119, 120, 128, 4096, 32 * 1024, 32 * 1024 + 1, 100_000, 7, 3000,
         64 * 1024 - 1, 250_000, 17, 900, 33, 65_537]


def _file(path: Path, size: int, seed: int) -> bytes:
    data = random.Random(seed).randbytes(size)
    path.write_bytes(data)
    return data


def test_the_native_module_is_built_and_used_here() -> None:
    # `make install` compiles it (a C compiler is part of the machine); where it is not, hashlib is used.
    from modelpvc.core import _md5lanes

    assert _md5lanes.isa() in ("avx512f", "avx2", "default")
    lanes = md5_native.lanes()
    assert lanes is not None and lanes.md5 is _md5lanes.md5_spans
    assert lanes.min_spans == md5_native.MIN_SPANS[_md5lanes.isa()]


def test_spans_of_two_files_hash_as_hashlib_does(tmp_path: Path) -> None:
    a, b = _file(tmp_path / "a", 400_000, 1), _file(tmp_path / "b", 300_000, 2)
    fa, fb = os.open(tmp_path / "a", os.O_RDONLY), os.open(tmp_path / "b", os.O_RDONLY)
    try:
        rnd = random.Random(3)
        spans = []
        for i, size in enumerate(SIZES * 2):
            fd, data = (fa, a) if i % 3 else (fb, b)
            start = rnd.randrange(0, len(data) - size + 1)
            spans.append((fd, start, start + size, data))
        lanes = md5_native.lanes()
        assert lanes is not None
        got = lanes.md5([(fd, s, e) for fd, s, e, _ in spans])
        assert got == [hashlib.md5(data[s:e]).digest() for _, s, e, data in spans]
        # The same spans of one file through the function every disk-side hash uses, in groups of any size.
        one = [(s, e) for fd, s, e, _ in spans if fd == fa]
        for n in (1, 3, 4, 8, 16, 17, len(one)):
            assert spans_digests(fa, "md5", one[:n]) == [hashlib.md5(a[s:e]).digest() for s, e in one[:n]]
    finally:
        os.close(fa)
        os.close(fb)


def test_a_span_it_cannot_read_is_an_error_that_names_where(tmp_path: Path) -> None:
    _file(tmp_path / "a", 1000, 4)
    fd = os.open(tmp_path / "a", os.O_RDONLY)
    lanes = md5_native.lanes()
    assert lanes is not None
    try:
        with pytest.raises(OSError, match="short read at 1000: the file ends before the span does"):
            lanes.md5([(fd, 0, 10), (fd, 0, 5000)])
        with pytest.raises(ValueError, match="ends before it starts"):
            lanes.md5([(fd, 10, 5)])
    finally:
        os.close(fd)
    with pytest.raises(OSError) as bad:
        lanes.md5([(fd, 0, 10)])
    assert bad.value.errno == 9  # EBADF


def _multipart(data: bytes, part: int) -> Expectation:
    raws = [hashlib.md5(data[s:s + part]).digest() for s in range(0, len(data), part)]
    return Expectation("multipart-etag", "parts", "md5", digests.of_parts("md5", raws), part)


def _land(d: digest.FileDigest, fd: int, spans: list[tuple[int, int]], threads: int) -> None:
    """Ranges complete in several threads at once, in no particular order, as the workers land them."""
    random.Random(5).shuffle(spans)
    chunks = [spans[i::threads] for i in range(threads)]

    def run(chunk: list[tuple[int, int]]) -> None:
        for s, e in chunk:
            d.begin(s, e)
            d.range_done(fd, s, e)

    workers = [threading.Thread(target=run, args=(c,)) for c in chunks]
    for w in workers:
        w.start()
    for w in workers:
        w.join()


PART = 64 * 1024


def _check_pooled_etags(tmp_path: Path, sizes: list[int], seed: int,
                        cut: Callable[[int], list[tuple[int, int]]]) -> list[digest.PieceDigest]:
    """Files of PART-sized parts whose ranges (``cut(size)``) land at once, each file's in three threads:
    each gives its file's ETag, every part read back once from the file, none twice."""
    files = []
    for i, size in enumerate(sizes):
        data = _file(tmp_path / f"f{i}", size, seed + i)
        exp = _multipart(data, PART)
        d = digest.for_expectation(exp, size)
        assert isinstance(d, digest.PieceDigest) and d.pool is not None
        files.append((os.open(tmp_path / f"f{i}", os.O_RDONLY), size, exp, d))
    try:
        landing = [threading.Thread(target=_land, args=(d, fd, cut(size), 3)) for fd, size, _exp, d in files]
        for t in landing:
            t.start()
        for t in landing:
            t.join()
        for fd, size, exp, d in files:
            assert d.finish(fd, size) == exp.expected
            assert d.reread == size
    finally:
        for fd, *_ in files:
            os.close(fd)
    return [d for *_, d in files]


def test_parts_of_several_files_pooled_across_threads_give_each_files_etag(tmp_path: Path) -> None:
    assert md5_pool.shared() is not None
    _check_pooled_etags(tmp_path, [PART * 37 + 11, PART * 5, PART * 2 + 1, PART * 16], 10,
                        lambda size: ranges.split(size, PART))


def test_a_changed_byte_changes_the_pooled_etag_and_an_unreadable_part_fails_its_file(tmp_path: Path) -> None:
    part = 64 * 1024
    data = _file(tmp_path / "f", part * 20, 20)
    exp = _multipart(data, part)
    spoiled = bytearray(data)
    spoiled[part * 7 + 3] ^= 1
    (tmp_path / "f").write_bytes(spoiled)
    fd = os.open(tmp_path / "f", os.O_RDONLY)
    try:
        d = digest.for_expectation(exp, len(data))
        assert d is not None
        _land(d, fd, [(s, s + part) for s in range(0, len(data), part)], 2)
        assert d.finish(fd, len(data)) != exp.expected
    finally:
        os.close(fd)
    # Its descriptor closed while parts wait in the pool (a file discarded mid-run): that file fails, alone.
    gone = digest.for_expectation(exp, len(data))
    assert gone is not None
    for s in range(0, part * 3, part):
        gone.range_done(fd, s, s + part)
    with pytest.raises(OSError):
        gone.finish(fd, len(data))


def test_small_files_landed_together_are_hashed_together_and_each_checks_its_own(tmp_path: Path) -> None:
    files = []
    for i, size in enumerate([1, 55, 64, 65_536, 100_000, 3, 120, 7_000]):
        data = _file(tmp_path / f"s{i}", size, 30 + i)
        d = digest.for_expectation(Expectation("md5", "whole", "md5", hashlib.md5(data).hexdigest()), size)
        assert isinstance(d, digest.SequentialDigest)
        files.append((d, os.open(tmp_path / f"s{i}", os.O_RDONLY), size, data))
    streamed = files[5][0]
    streamed.feed(0, 0, memoryview(files[5][3]), files[5][2])  # this one hashed its bytes as they came
    try:
        digest.hash_whole_files([(d, fd, size) for d, fd, size, _ in files])
        assert [d.whole is not None for d, *_ in files] == [d is not streamed for d, *_ in files]
        for d, fd, size, data in files:
            d.range_done(fd, 0, size)
            assert d.finish(fd, size) == hashlib.md5(data).hexdigest()
            assert d.reread == (0 if d is streamed else size)
    finally:
        for _d, fd, *_ in files:
            os.close(fd)


def test_a_file_given_up_leaves_nothing_of_itself_in_the_pool(tmp_path: Path) -> None:
    part = 64 * 1024
    data = _file(tmp_path / "f", part * 5, 40)
    pool = md5_pool.shared()
    assert pool is not None
    fd = os.open(tmp_path / "f", os.O_RDONLY)
    try:
        d = digest.for_expectation(_multipart(data, part), len(data))
        assert isinstance(d, digest.PieceDigest)
        for s in range(0, part * 3, part):
            d.range_done(fd, s, s + part)
        assert len(pool.parts[d]) == 3  # fewer than a pass: they wait
        d.abandon()
        assert d not in pool.parts
    finally:
        os.close(fd)


def test_a_landed_file_is_finished_by_the_pools_thread_once_its_parts_are_hashed(tmp_path: Path) -> None:
    """The thread that lands a file's last range does not wait for its MD5s: the pool's thread calls back."""
    part = 64 * 1024
    data = _file(tmp_path / "f", part * 6 + 5, 50)
    exp = _multipart(data, part)
    fd = os.open(tmp_path / "f", os.O_RDONLY)
    called: list[str] = []
    done = threading.Event()

    def then() -> None:
        called.append(threading.current_thread().name)
        done.set()

    try:
        d = digest.for_expectation(exp, len(data))
        assert isinstance(d, digest.PieceDigest)
        _land(d, fd, [(s, min(s + part, len(data))) for s in range(0, len(data), part)], 2)
        assert d.hashed_later(then)  # seven parts wait: fewer than a pass, hashed now because the file ends
        assert done.wait(10)
        assert called == ["md5-lanes"]
        assert not d.hashed_later(then)  # nothing left to hash: the caller finishes the file itself
        assert d.finish(fd, len(data)) == exp.expected
        assert called == ["md5-lanes"]
    finally:
        os.close(fd)
    # A file that hashes as it streams has nothing to wait for.
    plain = digest.for_expectation(Expectation("md5", "whole", "md5", hashlib.md5(b"").hexdigest()), 0)
    assert plain is not None and not plain.hashed_later(then)


def test_a_file_given_up_before_its_parts_are_hashed_is_never_called_back(tmp_path: Path) -> None:
    part = 64 * 1024
    data = _file(tmp_path / "f", part * 4, 60)
    pool = md5_pool.shared()
    assert pool is not None
    fd = os.open(tmp_path / "f", os.O_RDONLY)
    called = threading.Event()
    try:
        d = digest.for_expectation(_multipart(data, part), len(data))
        assert isinstance(d, digest.PieceDigest)
        with pool.cond:  # the pool's threads cannot take a batch until both calls are made
            for s in range(0, len(data), part):
                d.range_done(fd, s, s + part)
            assert d.hashed_later(called.set)
            d.abandon()
        assert d not in pool.then and d not in pool.urgent and d not in pool.parts
        # Another file through the pool afterwards: its batch would have carried the first one's follow-up.
        other = digest.for_expectation(_multipart(data, part), len(data))
        assert isinstance(other, digest.PieceDigest)
        _land(other, fd, [(s, s + part) for s in range(0, len(data), part)], 1)
        assert other.finish(fd, len(data)) == _multipart(data, part).expected
        assert not called.is_set()
    finally:
        os.close(fd)


def test_a_message_hashed_in_pieces_resumes_from_the_state_each_piece_hands_back(tmp_path: Path) -> None:
    data = _file(tmp_path / "a", 600_000, 70)
    fd = os.open(tmp_path / "a", os.O_RDONLY)
    lanes = md5_native.lanes()
    assert lanes is not None
    rnd = random.Random(71)
    try:
        for _ in range(20):
            # Up to twenty messages at once, each cut at random block boundaries, pieces of several messages
            # in each call and a message left out of some calls.
            msgs = [(s, s + n) for s, n in ((rnd.randrange(0, 300_000), rnd.choice([*SIZES, 299_999]))
                                            for _ in range(rnd.randint(1, 20)))]
            pos = [s for s, _e in msgs]
            state: list[bytes | None] = [None] * len(msgs)
            out: list[bytes | None] = [None] * len(msgs)
            while None in out:
                call = []
                for i, (s, e) in enumerate(msgs):
                    if out[i] is None and rnd.random() < 0.7:
                        cut = pos[i] + rnd.randint(0, (e - pos[i]) // 64) * 64
                        last = cut == e or rnd.random() < 0.3
                        call.append((i, (fd, pos[i], e if last else cut, state[i], pos[i] - s, last)))
                for (i, piece), raw in zip(call, lanes.md5([p for _i, p in call]), strict=True):
                    if piece[5]:
                        out[i] = raw
                    else:
                        state[i], pos[i] = raw, piece[2]
            assert out == [hashlib.md5(data[s:e]).digest() for s, e in msgs]
        for bad in [(fd, 0, 100, None, 0, False),  # not the last piece, yet not whole blocks
                    (fd, 0, 128, bytes(16), 10, True),  # resumed after a partial block
                    (fd, 0, 128, bytes(3), 0, True),  # not a state
                    (fd, 0, 128, None, 64, True)]:  # resumed from nothing
            with pytest.raises(ValueError, match="resumes a 16-byte state after whole 64-byte blocks"):
                lanes.md5([bad])
    finally:
        os.close(fd)


def test_parts_fetched_in_rows_of_pieces_are_hashed_as_they_land(tmp_path: Path) -> None:
    """The mirror's order for pooled parts (ranges.interleave); ranges that are not whole 64-byte blocks
    too (the pool hashes up to the last whole block landed and keeps the rest for later)."""
    pool = md5_pool.shared()
    assert pool is not None
    sizes = [PART * 9 + 100, PART * 3, PART * 20]
    for size in sizes:
        order = ranges.interleave(size, PART, 1000)
        assert ranges.merge(order) == [(0, size)] and sum(e - s for s, e in order) == size
        assert order[:2] == [(0, 1000), (PART, PART + 1000)]  # every part's first piece, then the seconds
    done = _check_pooled_etags(tmp_path, sizes, 80, lambda size: ranges.interleave(size, PART, 1000))
    assert not any(d in pool.parts for d in done)


def test_a_part_an_earlier_run_wrote_half_of_is_hashed_from_disk_and_never_waited_for(tmp_path: Path) -> None:
    part = 64 * 1024
    data = _file(tmp_path / "f", part * 4, 90)
    exp = _multipart(data, part)
    fd = os.open(tmp_path / "f", os.O_RDONLY)
    done = threading.Event()
    try:
        d = digest.for_expectation(exp, len(data))
        assert isinstance(d, digest.PieceDigest)
        d.resumed([(0, part + 5000)])  # a resumed run: part 0 whole and the start of part 1 are on the file
        for s, e in [(part + 5000, 2 * part), (2 * part, 3 * part), (3 * part, 4 * part)]:
            d.range_done(fd, s, e)
        assert d.hashed_later(done.set)
        assert done.wait(10)
        assert d.finish(fd, len(data)) == exp.expected
    finally:
        os.close(fd)


def test_hashed_pieces_leave_the_page_cache(tmp_path: Path) -> None:
    """Their pages are given back once written (direct_io.release_pages): the next writes reuse them."""
    path = tmp_path / "f"
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        data = random.Random(100).randbytes(4 << 20)
        os.pwrite(fd, data, 0)
        assert _cached(path) == 4 << 20
        direct_io.release_pages(fd, 0, 2 << 20)
        assert _cached(path) == 2 << 20
        direct_io.release_pages(fd, 2 << 20, 2 << 20)
        assert _cached(path) == 0
        assert os.pread(fd, 4 << 20, 0) == data  # read back from the disk
    finally:
        os.close(fd)
    direct_io.release_pages(fd, 0, 1 << 20)  # a closed descriptor: a hint, nothing raised


def _cached(path: Path) -> int:
    out = subprocess.run(["fincore", "--bytes", "--noheadings", "--output", "RES", str(path)],
                         check=True, capture_output=True, text=True).stdout
    return int(out)


def test_pieces_in_memory_hash_as_the_same_bytes_on_file_do(tmp_path: Path) -> None:
    """A span may name a buffer (bytes received and not read back): mixed with spans of a file in one call."""
    data = _file(tmp_path / "a", 300_000, 110)
    fd = os.open(tmp_path / "a", os.O_RDONLY)
    lanes = md5_native.lanes()
    assert lanes is not None
    held = direct_io.aligned_buffer(1 << 20)  # the pool's kind of buffer
    held[:len(data)] = data
    try:
        rnd = random.Random(111)
        for _ in range(10):
            spans: list[md5_native.Piece] = []
            expected = []
            for size in rnd.sample(SIZES, 12):
                start = rnd.randrange(0, len(data) - size)
                where: int | memoryview = rnd.choice([fd, held, memoryview(data)])
                spans.append((where, start, start + size, None, 0, True))
                expected.append(hashlib.md5(data[start:start + size]).digest())
            assert lanes.md5(spans) == expected
        # One message: its first piece from the file, its second from memory, its last from the file.
        first = lanes.md5([(fd, 0, 64_000, None, 0, False)])[0]
        second = lanes.md5([(memoryview(data[64_000:128_000]), 0, 64_000, first, 64_000, False)])[0]
        assert lanes.md5([(fd, 128_000, 200_001, second, 128_000, True)]) == [hashlib.md5(data[:200_001]).digest()]
        with pytest.raises(ValueError, match="outside its 10-byte buffer"):
            lanes.md5([(memoryview(bytes(10)), 0, 11)])
    finally:
        os.close(fd)


def _land_received(pool: md5_pool.Md5Pool, d: digest.PieceDigest, fd: int, data: bytes,
                   spans: list[tuple[int, int]], seed: int) -> int:
    """Ranges received as a worker does: into a buffer the pool lends, kept there (and, here, never written:
    the file keeps zeros where the bytes were kept), or else written to the file. A writer thread gives
    each buffer back as the ring's does, sometimes before the pass, sometimes after; ``lend`` waits while
    this worker keeps its share of pieces not hashed. Returns the bytes kept."""
    rnd = random.Random(seed)
    kept = 0
    written: queue.SimpleQueue[memoryview | None] = queue.SimpleQueue()

    def writer() -> None:
        while (buf := written.get()) is not None:
            time.sleep(rnd.random() / 1000)
            pool.given_back(buf)

    ring = threading.Thread(target=writer)
    ring.start()
    try:
        for s, e in spans:
            d.begin(s, e)
            buf = pool.lend()
            buf[:e - s] = data[s:e]
            if rnd.random() < 0.8 and d.keep(fd, s, buf[:e - s]):
                kept += e - s
            else:
                os.pwrite(fd, data[s:e], s)  # through the page cache, from the lent buffer
            written.put(buf)
            d.range_done(fd, s, e)
    finally:
        written.put(None)
        ring.join()
    return kept


def test_parts_received_into_buffers_the_pool_lends_are_hashed_there_and_the_buffers_come_back(
        tmp_path: Path) -> None:
    pool = md5_pool.shared()
    assert pool is not None
    files = []
    for i, size in enumerate([PART * 9 + 100, PART * 3, PART * 20, PART * 17 + 64]):
        data = _file(tmp_path / f"f{i}", size, 120 + i)
        exp = _multipart(data, PART)
        d = digest.for_expectation(exp, size)
        assert isinstance(d, digest.PieceDigest) and d.lender() is pool
        fd = os.open(tmp_path / f"f{i}", os.O_RDWR)
        os.ftruncate(fd, 0)  # zeros wherever the bytes are not written: a kept piece read back would fail
        os.ftruncate(fd, size)
        files.append((fd, size, data, exp, d))
    try:
        kept = [0] * len(files)

        def land(i: int) -> None:
            fd, size, data, _exp, d = files[i]
            kept[i] = _land_received(pool, d, fd, data, ranges.interleave(size, PART, 16 * 1024), 130 + i)

        threads = [threading.Thread(target=land, args=(i,)) for i in range(len(files))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for i, (fd, size, _data, exp, d) in enumerate(files):
            assert d.finish(fd, size) == exp.expected
            assert d.reread == size - kept[i]  # what was kept is never read back
        assert 0 < sum(kept) < sum(size for _fd, size, *_ in files)  # pieces of both kinds
    finally:
        for fd, *_ in files:
            os.close(fd)
    with pool.cond:
        assert not pool.out and not pool.kept and len(pool.free) == len(pool._buffers) <= md5_pool.LOANS


def test_the_pool_keeps_only_whole_blocks_of_its_own_buffers_and_a_file_given_up_frees_them(
        tmp_path: Path) -> None:
    pool = md5_pool.shared()
    assert pool is not None
    data = _file(tmp_path / "f", PART * 4, 140)
    fd = os.open(tmp_path / "f", os.O_RDONLY)
    try:
        d = digest.for_expectation(_multipart(data, PART), len(data))
        assert isinstance(d, digest.PieceDigest)
        assert not d.keep(fd, 0, memoryview(bytearray(data[:4096])))  # not the pool's: written to the file
        buf = pool.lend()
        assert buf is not None
        buf[:4096] = data[100:4196]
        assert not d.keep(fd, 100, buf[:4096])  # would split a block: written to the file
        buf[:4096] = data[:4096]
        assert d.keep(fd, 0, buf[:4096])
        assert not d.keep(fd, 4096, buf[:4096])  # the buffer holds a piece already
        pool.given_back(buf)  # written: still kept until hashed, or until its file is given up
        with pool.cond:
            assert id(buf.obj) in pool.kept and buf not in pool.free
        d.abandon()
        with pool.cond:
            assert id(buf.obj) not in pool.kept and any(b is buf for b in pool.free)
    finally:
        os.close(fd)


def test_a_borrower_keeping_its_share_waits_for_the_pass_and_a_stalled_pool_hashes_a_pass_not_full(
        tmp_path: Path) -> None:
    """One part streamed as a worker streams it (one GET): ``lend`` gives a buffer while the borrower keeps
    fewer than HELD pieces not hashed; with no other part to fill the lanes and nothing else on its way,
    the pool hashes the one it has, and the waiting borrower goes on. A piece that does not follow what
    the part can be hashed from is not kept (it would hold its buffer until the whole range is done)."""
    pool = md5_pool.shared()
    assert pool is not None
    piece, pieces = 4096, md5_pool.HELD + 3
    part = piece * pieces
    data = _file(tmp_path / "f", part + 1, 150)  # a part streamed, and a second of one byte
    fd = os.open(tmp_path / "f", os.O_RDWR)
    os.ftruncate(fd, 0)  # zeros where bytes are kept: a kept piece read back would give the wrong ETag
    os.ftruncate(fd, len(data))
    exp = _multipart(data, part)
    d = digest.for_expectation(exp, len(data))
    assert isinstance(d, digest.PieceDigest)
    holding: list[int] = []

    def keep(s: int, n: int = piece) -> bool:
        buf = pool.lend()
        with pool.cond:
            holding.append(pool.holding.get(threading.get_ident(), 0))
        buf[:n] = data[s:s + n]
        kept = d.keep(fd, s, buf[:n])
        pool.given_back(buf)  # written at once (or, not kept, never)
        return kept

    def stream() -> None:
        kept = [keep(s) for s in range(0, part - piece, piece)]
        kept.append(keep(part - piece + 64, piece - 64))  # past the part's next piece: not kept
        kept.append(keep(part - piece))
        results.append(kept)

    results: list[list[bool]] = []
    try:
        worker = threading.Thread(target=stream)
        worker.start()
        worker.join(10)
        assert not worker.is_alive(), "the borrower waited for a pass that never came"
        assert results == [[True] * (pieces - 1) + [False, True]]
        assert max(holding) < md5_pool.HELD and len(holding) == pieces + 1
        os.pwrite(fd, data[part:], part)  # the second part, through the page cache
        d.range_done(fd, part, len(data))
        assert d.finish(fd, len(data)) == exp.expected
        assert d.reread == 1  # every piece of the first part was hashed where it was kept
    finally:
        d.abandon()
        os.close(fd)
