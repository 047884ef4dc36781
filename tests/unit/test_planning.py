from __future__ import annotations

import argparse
import os
import threading
from pathlib import Path

import pytest

from modelpvc.cli.credentials import s3_settings
from modelpvc.core.errors import ConfigError, UnsafeKey
from modelpvc.core.models import Action, FileRecord, ObjectInfo
from modelpvc.transfer import ranges
from modelpvc.transfer.digest import SequentialDigest, multipart_etag
from modelpvc.transfer.journal import Journal
from modelpvc.transfer.keys import check_keys, unsafe_reason
from modelpvc.transfer.planner import LocalFile, LocalState, plan_mirror


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
    plan = plan_mirror("s3://b/p/", objects, local, delete=True, select=lambda objs: {"dup": "duplicate"})
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
            d.feed(s, s, memoryview(data)[s:e])
            d.completed(fd, s, e)
        assert d.finish(fd, len(data)).hex() == hashlib.md5(data).hexdigest()
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
                d.feed(s, off, memoryview(data)[off:min(e, off + 8192)])
            d.completed(fd, s, e)

    threads = [threading.Thread(target=work, args=(parts[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert d.finish(fd, len(data)).hex() == hashlib.md5(data).hexdigest()
    os.close(fd)


def test_multipart_etag_formula():
    import hashlib
    parts = [b"a" * 10, b"b" * 5]
    md5s = [hashlib.md5(x).digest() for x in parts]
    assert multipart_etag(md5s) == hashlib.md5(b"".join(md5s)).hexdigest() + "-2"
    assert obj("x", etag=multipart_etag(md5s)).multipart_parts == 2
    assert obj("x", etag="0" * 32).etag_is_md5


def test_journal_round_trip_and_torn_line(tmp_path: Path):
    j = Journal(tmp_path)
    j.ranges_done([("a", "e", 100, 0, 40), ("a", "e", 100, 40, 60)])
    j.published(FileRecord("b", "p/b", 5, "x", "md5", {"md5": "x"}, 7))
    j.close()
    with open(tmp_path / "journal.jsonl", "a") as fh:
        fh.write('{"t":"range","path":"a"')  # a kill mid-write
    rngs, pub = Journal(tmp_path).load()
    assert rngs == {("a", "e", 100): [(0, 40), (40, 60)]}
    assert pub["b"].mtime_ns == 7


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
