from __future__ import annotations

import argparse
import json
import os
import threading
from pathlib import Path

import pytest

from modelpvc.cli.credentials import s3_settings
from modelpvc.core import digests
from modelpvc.core.errors import ConfigError, UnsafeKey
from modelpvc.core.models import Action, FileRecord, LocalFile, ObjectInfo, Selection
from modelpvc.store.volume import journal as journal_mod
from modelpvc.store.volume.journal import Journal
from modelpvc.transfer import ranges
from modelpvc.transfer.digest import SequentialDigest
from modelpvc.transfer.keys import check_keys, unsafe_reason
from modelpvc.transfer.planner import LocalState, plan_mirror


def obj(rel: str, size: int = 10, etag: str = "e" * 32) -> ObjectInfo:
    return ObjectInfo(key="p/" + rel, rel=rel, size=size, etag=etag)


def test_split_and_merge_cover_exactly():
    assert ranges.split(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert ranges.split(0, 4) == [(0, 0)]
    assert ranges.split(10, 0) == [(0, 10)]
    assert ranges.merge([(4, 8), (0, 4), (9, 10)]) == [(0, 8), (9, 10)]
    assert ranges.gaps([(0, 4), (6, 8)], 10) == [(4, 6), (8, 10)]
    assert ranges.contiguous_end([(0, 4), (4, 8), (9, 10)], 0) == 8
    assert ranges.contiguous_end([(0, 4)], 2) == 4


@pytest.mark.parametrize("rel", ["../x", "a/../../b", "/abs", "a//b", "a/./b", "x\0y", ".modelpvc/manifest.json",
                                 "w.bin.partial", "a\\..\\b"])
def test_unsafe_keys_are_named(rel):
    assert unsafe_reason(rel) is not None
    with pytest.raises(UnsafeKey):
        check_keys([obj(rel)], "s3://b/p/")


def test_safe_nested_keys_pass():
    assert unsafe_reason("original/params.json") is None
    assert unsafe_reason("..hidden/ok") is None


def test_planner_decides_keep_fetch_resume_delete_skip():
    objects = [obj("same"), obj("changed", etag="f" * 32), obj("new"), obj("half", size=100), obj("dup")]
    local = LocalState(
        files={"same": LocalFile(10, 5), "changed": LocalFile(10, 5), "gone": LocalFile(3, 1)},
        partials={"half": LocalFile(100, 1)},
        published={"same": FileRecord("same", "p/same", 10, "e" * 32, "md5", mtime_ns=5),
                   "changed": FileRecord("changed", "p/changed", 10, "e" * 32, "md5", mtime_ns=5)},
        journal_ranges={("half", "e" * 32, 100): [(0, 40)]},
    )
    plan = plan_mirror("s3://b/p/", objects, local, delete=True, select=lambda objs: Selection({"dup": "duplicate"}))
    by = {op.rel: op for op in plan.operations}
    assert by["same"].action is Action.KEEP
    assert by["changed"].action is Action.FETCH and by["changed"].reason == "changed in the source"
    assert by["new"].action is Action.FETCH
    assert by["half"].action is Action.RESUME and by["half"].done_bytes == 40
    assert by["dup"].action is Action.SKIP
    assert by["gone"].action is Action.DELETE
    assert plan.bytes_to_fetch == 10 + 10 + 60


def test_locally_modified_file_is_fetched_again():
    local = LocalState(files={"a": LocalFile(10, 99)},
                       published={"a": FileRecord("a", "p/a", 10, "e" * 32, "md5", mtime_ns=5)})
    [op] = plan_mirror("s3://b/p/", [obj("a")], local).operations
    assert op.action is Action.FETCH and op.reason == "local file was modified"


def test_sequential_digest_matches_md5_whatever_the_completion_order(tmp_path: Path):
    import hashlib
    data = os.urandom(1 << 20)
    p = tmp_path / "f"
    p.write_bytes(data)
    fd = os.open(p, os.O_RDONLY)
    try:
        d = SequentialDigest("md5")
        parts = ranges.split(len(data), 100_000)
        for s, e in reversed(parts):  # worst order: nothing can be hashed in-stream
            d.feed(s, s, memoryview(data)[s:e], e)
            d.range_done(fd, s, e)
        assert d.finish(fd, len(data)) == hashlib.md5(data).hexdigest()
    finally:
        os.close(fd)


def test_a_catch_up_never_reads_bytes_still_being_written_behind(tmp_path: Path):
    """Written behind (store.direct_io.WriteBehind), a chunk is hashed from memory before it is on the file.
    If that in-stream hash is skipped (another thread held the hasher), a catch-up must not read the chunk
    back before it has landed: the file still holds what was there before (here: zeros)."""
    import hashlib
    data = os.urandom(3 << 16)
    p = tmp_path / "f"
    p.write_bytes(data[: 1 << 16] + bytes(2 << 16))  # range A landed; B's bytes not yet
    fd = os.open(p, os.O_RDWR)
    try:
        d = SequentialDigest("md5")
        a, b = (0, 1 << 16), (1 << 16, 3 << 16)
        with d.lock:  # a catch-up elsewhere holds the hasher: nothing is hashed in-stream
            d.feed(a[0], 0, memoryview(data)[: 1 << 16], a[1])
            d.feed(b[0], b[0], memoryview(data)[b[0]:2 << 16], b[0])
        d.range_done(fd, *a)  # A completes: its catch-up hashes A from the file and may follow into B ...
        assert d.cursor == b[0]  # ... but only as far as B's bytes are on the file
        os.pwrite(fd, data[b[0]:], b[0])
        d.range_done(fd, *b)
        assert d.finish(fd, len(data)) == hashlib.md5(data).hexdigest()
    finally:
        os.close(fd)


def test_sequential_digest_under_concurrent_completion(tmp_path: Path):
    import hashlib
    data = os.urandom(4 << 20)
    p = tmp_path / "f"
    p.write_bytes(data)
    fd = os.open(p, os.O_RDONLY)
    d = SequentialDigest("md5")
    parts = ranges.split(len(data), 64 * 1024)

    def work(mine: list[tuple[int, int]]) -> None:
        for s, e in mine:
            for off in range(s, e, 8192):
                d.feed(s, off, memoryview(data)[off:min(e, off + 8192)], min(e, off + 8192))
            d.range_done(fd, s, e)

    threads = [threading.Thread(target=work, args=(parts[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert d.finish(fd, len(data)) == hashlib.md5(data).hexdigest()
    os.close(fd)


def test_multipart_etag_formula():
    import hashlib
    parts = [b"a" * 10, b"b" * 5]
    md5s = [hashlib.md5(x).digest() for x in parts]
    assert digests.of_parts("md5", md5s) == hashlib.md5(b"".join(md5s)).hexdigest() + "-2"
    assert obj("x", etag=digests.of_parts("md5", md5s)).multipart_parts == 2
    assert obj("x", etag="0" * 32).etag_is_md5


def test_journal_round_trip_and_torn_line(tmp_path: Path):
    j = Journal(tmp_path)
    j.begin(tmp_path)
    j.ranges_written([("a", "e", 100, 0, 40), ("a", "e", 100, 40, 60)])
    j.published([FileRecord("b", "p/b", 5, "x", "md5", {"md5": "x"}, 7)])
    j.close()
    with open(tmp_path / "journal.jsonl", "a") as fh:
        fh.write('{"t":"range","path":"a"')  # a kill mid-write
    state = Journal(tmp_path).load()
    assert state.ranges == {("a", "e", 100): [(0, 60)]}
    assert state.published["b"].mtime_ns == 7
    assert state.unsynced  # written since this boot, not yet behind a sync marker


def test_journal_after_a_reboot_believes_only_what_was_synced(tmp_path: Path, monkeypatch):
    j = Journal(tmp_path)
    j.begin(tmp_path)
    j.ranges_written([("a", "e", 100, 0, 40)])
    upto = j.mark()
    j.ranges_written([("a", "e", 100, 40, 70)])  # appended while the sync ran: not covered by it
    j.synced(upto)
    j.ranges_written([("a", "e", 100, 70, 90)])
    j.close()
    assert Journal(tmp_path).load().ranges == {("a", "e", 100): [(0, 90)]}  # same boot: the page cache holds it
    monkeypatch.setattr(journal_mod, "boot_id", lambda: "another-boot")
    assert Journal(tmp_path).load().ranges == {("a", "e", 100): [(0, 40)]}  # after a crash: only synced bytes


def test_journal_drop_forgets_ranges_of_a_file_that_failed_verification(tmp_path: Path):
    j = Journal(tmp_path)
    j.begin(tmp_path)
    j.ranges_written([("a", "e", 100, 0, 100), ("b", "e", 10, 0, 5)])
    j.dropped("a")
    j.close()
    assert Journal(tmp_path).load().ranges == {("b", "e", 10): [(0, 5)]}


def test_journal_records_held_together_are_written_once_at_the_end_even_on_an_error(tmp_path: Path):
    j = Journal(tmp_path)
    j.begin(tmp_path)
    before = (tmp_path / "journal.jsonl").read_text()
    rec = FileRecord("b", "p/b", 5, "x", "md5", {"md5": "x"}, 7)
    with pytest.raises(OSError), j.together():
        j.published([rec])
        j.dropped("a")
        assert (tmp_path / "journal.jsonl").read_text() == before  # held
        other = threading.Thread(target=j.ranges_written, args=([("c", "e", 10, 0, 5)],))
        other.start()
        other.join()  # another thread's records are not held by this one
        assert '"path":"c"' in (tmp_path / "journal.jsonl").read_text()
        raise OSError("the batch failed")
    j.close()
    lines = (tmp_path / "journal.jsonl").read_text().splitlines()
    assert [json.loads(x)["t"] for x in lines[-2:]] == ["published", "drop"]
    assert Journal(tmp_path).load().published["b"].mtime_ns == 7


def test_begin_compacts_the_journal(tmp_path: Path):
    j = Journal(tmp_path)
    j.begin(tmp_path)
    j.ranges_written([("a", "e", 100, s, s + 10) for s in range(0, 100, 10)])
    j.close()
    state = Journal(tmp_path).begin(tmp_path)
    assert state.ranges == {("a", "e", 100): [(0, 100)]}
    lines = (tmp_path / "journal.jsonl").read_text().splitlines()
    assert len(lines) == 3  # one merged range, a sync marker, the new run's boot record


def test_planner_adopts_unrecorded_complete_copies_and_hashes_instead_of_fetching():
    objects = [obj("final"), obj("partial"), obj("short"), obj("recorded-changed", etag="f" * 32)]
    local = LocalState(
        files={"final": LocalFile(10, 1), "short": LocalFile(3, 1), "recorded-changed": LocalFile(10, 5)},
        partials={"partial": LocalFile(10, 1)},
        published={"recorded-changed": FileRecord("recorded-changed", "k", 10, "e" * 32, "md5", mtime_ns=5)})
    by = {op.rel: op for op in plan_mirror("s3://b/p/", objects, local).operations}
    assert (by["final"].action, by["final"].local) == (Action.ADOPT, "final")
    assert (by["partial"].action, by["partial"].local) == (Action.ADOPT, "partial")
    assert by["short"].action is Action.FETCH
    assert by["recorded-changed"].action is Action.FETCH  # a known older version: not worth hashing
    local.can_adopt = False  # --verify size: nothing to hash against
    assert {op.action for op in plan_mirror("s3://b/p/", objects, local).operations} == {Action.FETCH}


@pytest.mark.parametrize("algo", ["crc32", "crc32c", "crc64nvme"])
def test_crc_of_ranges_combines_to_the_whole_objects_crc(algo):
    data = os.urandom(300_001)
    whole = digests.new_hasher(algo)
    whole.update(data)
    pieces = []
    for s, e in ranges.split(len(data), 65_536):
        h = digests.new_hasher(algo)
        h.update(data[s:e])
        pieces.append((e - s, h.digest()))
    assert digests.combine_ranges(algo, pieces) == whole.digest()


def test_piece_digest_hashes_each_range_in_its_thread_and_what_is_missing_from_disk(tmp_path: Path):
    import base64

    from awscrt import checksums

    from modelpvc.transfer.digest import PieceDigest
    data = os.urandom(1 << 20)
    p = tmp_path / "f"
    p.write_bytes(data)
    exp = digests.Expectation("checksum-crc64nvme", "whole", "crc64nvme",
                              base64.b64encode(checksums.crc64nvme(data).to_bytes(8, "big")).decode())
    fd = os.open(p, os.O_RDONLY)
    try:
        d = PieceDigest(exp, len(data))
        for s, e in ranges.split(len(data), 100_000)[1::2]:  # every other range streamed; the rest "resumed"
            d.begin(s, e)
            d.feed(s, s, memoryview(data)[s:e], e)
            d.range_done(fd, s, e)
        assert d.finish(fd, len(data)) == exp.expected
    finally:
        os.close(fd)


def _args(**kw: object) -> argparse.Namespace:
    base = {"endpoint_url": None, "region": None, "credentials_dir": None, "anonymous": False, "ca_bundle": None,
            "insecure": False, "virtual_hosted": False, "connect_timeout": 5.0, "read_timeout": 10.0,
            "retries": 4}
    base.update(kw)
    return argparse.Namespace(**base)


def test_endpoint_precedence_and_data_connection_keys(tmp_path: Path):
    env = {"AWS_S3_ENDPOINT": "minio.model-storage.svc:9000", "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE12345",
           "AWS_SECRET_ACCESS_KEY": "s3cr3t-value"}
    s = s3_settings(_args(), env)
    assert s.endpoint_url == "https://minio.model-storage.svc:9000"
    assert s.credentials is not None and s.credentials.origin == "environment"
    assert "s3cr3t" not in repr(s)
    s = s3_settings(_args(endpoint_url="http://x:1"), {**env, "AWS_ENDPOINT_URL": "http://y:2"})
    assert s.endpoint_url == "http://x:1"


def test_credentials_dir_with_wrong_key_names_lists_what_it_found(tmp_path: Path):
    (tmp_path / "access_key_id").write_text("a")
    (tmp_path / "secret").write_text("b")
    with pytest.raises(ConfigError) as e:
        s3_settings(_args(credentials_dir=tmp_path), {})
    assert "found: access_key_id, secret" in str(e.value)
    assert "accesskey + secretkey" in (e.value.hint or "")
