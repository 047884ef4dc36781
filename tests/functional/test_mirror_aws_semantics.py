"""Cases rclone's quirks would hide, against moto (AWS semantics): 206 partials, multipart ETags,
x-amz-checksum-*, If-Match preconditions, hostile keys."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path

import pytest
from boto3.s3.transfer import TransferConfig

from tests.conftest import run_cli

pytestmark = pytest.mark.moto


def _bucket(s3client, name: str) -> str:
    with contextlib.suppress(s3client.exceptions.BucketAlreadyOwnedByYou):
        s3client.create_bucket(Bucket=name)
    return name


def _files(dest: Path) -> dict[str, dict]:  # type: ignore[type-arg]
    m = json.loads((dest / ".modelpvc" / "manifest.json").read_text())
    return {f["path"]: f for f in m["files"]}


def test_multipart_etag_is_recomputed_from_discovered_part_size(s3client, moto_env, tmp_path):
    b = _bucket(s3client, "mpart")
    data = os.urandom(13 * 1024 * 1024 + 123)
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    cfg = TransferConfig(multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024)
    s3client.upload_file(str(src), b, "model/big.bin", Config=cfg)
    s3client.put_object(Bucket=b, Key="model/config.json", Body=b"{}")
    etag = s3client.head_object(Bucket=b, Key="model/big.bin")["ETag"].strip('"')
    assert etag.endswith("-3")
    dest = tmp_path / "pvc"
    r = run_cli(["mirror", "s3://mpart/model/", str(dest), "--part-size", "2"], moto_env)
    assert r.returncode == 0, r.stderr
    assert (dest / "big.bin").read_bytes() == data
    f = _files(dest)
    assert f["big.bin"]["verified"] == "multipart-etag"
    assert f["big.bin"]["digest"]["multipart-etag"] == etag
    assert f["config.json"]["verified"] == "checksum-crc32"  # boto3 stores CRC32 by default


def test_full_object_checksum_is_verified(s3client, moto_env, tmp_path):
    b = _bucket(s3client, "cksum")
    data = os.urandom(3 * 1024 * 1024)
    s3client.put_object(Bucket=b, Key="model/w.safetensors", Body=data, ChecksumAlgorithm="SHA256")
    dest = tmp_path / "pvc"
    r = run_cli(["mirror", "s3://cksum/model/", str(dest), "--part-size", "1"], moto_env)
    assert r.returncode == 0, r.stderr
    f = _files(dest)["w.safetensors"]
    assert f["verified"] == "checksum-sha256"
    import base64
    assert f["digest"]["sha256"] == base64.b64encode(hashlib.sha256(data).digest()).decode()


def test_ranged_gets_with_206_reassemble_exactly(s3client, moto_env, tmp_path):
    b = _bucket(s3client, "ranged")
    data = os.urandom(5 * 1024 * 1024 + 7)
    s3client.put_object(Bucket=b, Key="m/x.bin", Body=data)
    r = run_cli(["mirror", "s3://ranged/m/", str(tmp_path / "pvc"), "--part-size", "1", "--workers", "3"],
                moto_env)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "pvc" / "x.bin").read_bytes() == data


@pytest.mark.parametrize("key", ["m/../escape.txt", "m/a/../../escape.txt", "m//abs.txt"])
def test_keys_escaping_the_destination_are_refused_before_any_write(s3client, moto_env, tmp_path, key):
    b = _bucket(s3client, "evil")
    s3client.put_object(Bucket=b, Key="m/config.json", Body=b"{}")
    s3client.put_object(Bucket=b, Key=key, Body=b"pwned")
    dest = tmp_path / "sub" / "pvc"
    r = run_cli(["mirror", "s3://evil/m/", str(dest)], moto_env)
    s3client.delete_object(Bucket=b, Key=key)
    assert r.returncode == 3, r.stderr
    assert "cannot be written safely" in r.stderr
    assert not list(tmp_path.rglob("escape.txt")) and not list(tmp_path.rglob("abs.txt"))
    assert not dest.exists()


def test_object_replaced_during_copy_fails_the_if_match_precondition(s3client, moto_env, tmp_path):
    """A listing that no longer matches the object: the pinned ETag makes moto answer 412."""
    from modelpvc.core.errors import SourceChanged
    from modelpvc.core.models import ObjectInfo
    from modelpvc.core.settings import Credentials, S3Settings
    from modelpvc.store.sources.base import OneBuffer, parse_source
    from modelpvc.store.sources.s3 import S3Source

    b = _bucket(s3client, "changed")
    s3client.put_object(Bucket=b, Key="m/a.bin", Body=b"x" * 1000)
    src = S3Source(parse_source("s3://changed/m/"), S3Settings(
        endpoint_url=moto_env["AWS_ENDPOINT_URL"],
        credentials=Credentials(moto_env["AWS_ACCESS_KEY_ID"], moto_env["AWS_SECRET_ACCESS_KEY"])))
    [obj] = src.list_objects()
    s3client.put_object(Bucket=b, Key="m/a.bin", Body=b"y" * 1000)
    buf = memoryview(bytearray(4096))
    with pytest.raises(SourceChanged):
        src.read(ObjectInfo(obj.key, obj.rel, obj.size, obj.etag), 0, 500, OneBuffer(buf), lambda o, d: None)


def test_keys_with_spaces_plus_and_unicode_are_signed_and_copied(s3client, moto_env, tmp_path):
    b = _bucket(s3client, "oddkeys")
    names = ["tokenizer (copy).json", "a+b=c&d.json", "ünïcödé.json", "pct%20.json", "sub dir/x~y.json"]
    for i, n in enumerate(names):
        s3client.put_object(Bucket=b, Key=f"m/{n}", Body=f"{i}".encode())
    r = run_cli(["mirror", "s3://oddkeys/m/", str(tmp_path / "pvc")], moto_env)
    assert r.returncode == 0, r.stderr
    for i, n in enumerate(names):
        assert (tmp_path / "pvc" / n).read_bytes() == f"{i}".encode()


def test_a_key_that_is_also_a_directory_is_refused(s3client, moto_env, tmp_path):
    b = _bucket(s3client, "filedir")
    s3client.put_object(Bucket=b, Key="m/a", Body=b"file")
    s3client.put_object(Bucket=b, Key="m/a/b", Body=b"nested")
    r = run_cli(["mirror", "s3://filedir/m/", str(tmp_path / "pvc")], moto_env)
    assert r.returncode == 3
    assert "'m/a' is both a file and a directory of other keys" in r.stderr
    assert not (tmp_path / "pvc").exists()


def test_folder_markers_are_directories_not_files_and_session_tokens_are_sent(s3client, moto_env, tmp_path):
    """The MinIO and AWS consoles create 0-byte keys ending in '/' for folders; temporary credentials carry a
    session token (AWS_SESSION_TOKEN), which must be signed and sent."""
    b = _bucket(s3client, "markers")
    s3client.put_object(Bucket=b, Key="m/", Body=b"")
    s3client.put_object(Bucket=b, Key="m/original/", Body=b"")
    s3client.put_object(Bucket=b, Key="m/original/params.json", Body=b"{}")
    s3client.put_object(Bucket=b, Key="m/empty/", Body=b"")
    s3client.put_object(Bucket=b, Key="m/zero.bin", Body=b"")
    s3client.put_object(Bucket=b, Key="m/config.json", Body=b'{"a": 1}')
    dest = tmp_path / "pvc"
    r = run_cli(["mirror", "s3://markers/m/", str(dest), "--select", "all"],
                {**moto_env, "AWS_SESSION_TOKEN": "FwoGZXIvYXdzEXAMPLETOKEN"})
    assert r.returncode == 0, r.stderr
    assert (dest / "original" / "params.json").read_bytes() == b"{}"
    assert (dest / "zero.bin").read_bytes() == b""
    assert sorted(_files(dest)) == ["config.json", "original/params.json", "zero.bin"]
    assert not (dest / "empty").is_file()


def _crc(algorithm: str, data: bytes) -> bytes:
    from awscrt import checksums

    if algorithm == "crc64nvme":
        return checksums.crc64nvme(data).to_bytes(8, "big")
    return checksums.crc32c(data).to_bytes(4, "big")


def test_crc64nvme_of_a_multipart_upload_is_a_full_object_checksum(s3client, moto_env, tmp_path):
    """AWS's default since 2025: CRC64NVME, full-object even for multipart uploads. moto omits
    x-amz-checksum-type, as some servers do; CRC64NVME has no composite form, so it is still trusted."""
    import base64

    b = _bucket(s3client, "crc64mp")
    data = os.urandom(13 * 1024 * 1024 + 5)
    src = tmp_path / "w.safetensors"
    src.write_bytes(data)
    cfg = TransferConfig(multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024)
    s3client.upload_file(str(src), b, "m/w.safetensors", Config=cfg, ExtraArgs={"ChecksumAlgorithm": "CRC64NVME"})
    dest = tmp_path / "pvc"
    r = run_cli(["mirror", "s3://crc64mp/m/", str(dest), "--part-size", "2"], moto_env)
    assert r.returncode == 0, r.stderr
    assert (dest / "w.safetensors").read_bytes() == data
    f = _files(dest)["w.safetensors"]
    assert f["verified"] == "checksum-crc64nvme"
    assert f["digest"]["crc64nvme"] == base64.b64encode(_crc("crc64nvme", data)).decode()
    deep = run_cli(["verify", str(dest), "--deep", "--plain-files"], moto_env)
    assert deep.returncode == 0, deep.stderr


@pytest.fixture
def moto_proxy(moto):  # type: ignore[no-untyped-def]
    from tests.support.faultproxy import FaultProxy

    p = FaultProxy(int(moto.rsplit(":", 1)[1])).start()
    yield p
    p.stop()


def _composite_upload(s3client, tmp_path, bucket: str) -> tuple[bytes, str]:  # type: ignore[no-untyped-def]
    """A 3-part upload and the composite CRC32C AWS reports for it: crc32c(crc(p1)|crc(p2)|crc(p3))-3."""
    import base64

    from awscrt import checksums

    b = _bucket(s3client, bucket)
    part = 5 * 1024 * 1024
    data = os.urandom(2 * part + 777)
    src = tmp_path / "w.safetensors"
    src.write_bytes(data)
    cfg = TransferConfig(multipart_threshold=part, multipart_chunksize=part)
    s3client.upload_file(str(src), b, "m/w.safetensors", Config=cfg)
    joined = b"".join(_crc("crc32c", data[i:i + part]) for i in range(0, len(data), part))
    return data, base64.b64encode(checksums.crc32c(joined).to_bytes(4, "big")).decode() + "-3"


def test_composite_checksum_is_checked_part_by_part(s3client, moto_env, moto_proxy, tmp_path):
    """What AWS answers for a CRC32C multipart upload (moto does not: it drops the -N), played by the
    proxy: the value is recomputed from the parts' CRCs at the part size the source reports."""
    data, composite = _composite_upload(s3client, tmp_path, "composite")
    moto_proxy.faults.head_headers = {"w.safetensors": {
        "x-amz-checksum-crc32c": composite, "x-amz-checksum-type": "COMPOSITE"}}
    env = {**moto_env, "AWS_ENDPOINT_URL": moto_proxy.endpoint}
    dest = tmp_path / "pvc"
    r = run_cli(["mirror", "s3://composite/m/", str(dest), "--part-size", "2"], env)
    assert r.returncode == 0, r.stderr
    assert (dest / "w.safetensors").read_bytes() == data
    f = _files(dest)["w.safetensors"]
    assert f["verified"] == "composite-crc32c"
    assert f["digest"]["composite-crc32c"] == composite
    deep = run_cli(["verify", str(dest), "--deep", "--plain-files"], env)
    assert deep.returncode == 0, deep.stderr


def test_a_composite_checksum_that_does_not_match_fails_and_keeps_nothing(s3client, moto_env, moto_proxy,
                                                                          tmp_path):
    _data, composite = _composite_upload(s3client, tmp_path, "badcomposite")
    wrong = ("AAAAAA==" if not composite.startswith("AAAAAA") else "BBBBBB==") + "-3"
    moto_proxy.faults.head_headers = {"w.safetensors": {
        "x-amz-checksum-crc32c": wrong, "x-amz-checksum-type": "COMPOSITE"}}
    env = {**moto_env, "AWS_ENDPOINT_URL": moto_proxy.endpoint}
    dest = tmp_path / "pvc"
    r = run_cli(["mirror", "s3://badcomposite/m/", str(dest), "--part-size", "2"], env)
    assert r.returncode == 5, r.stderr
    assert "w.safetensors: content does not match the source (composite-crc32c" in r.stderr
    assert not (dest / "w.safetensors").exists()


def _small_checksummed(s3client, bucket: str, n: int = 3) -> dict[str, bytes]:  # type: ignore[no-untyped-def]
    """Small single-part objects with CRC64NVME, as AWS stores every new object since 2025."""
    _bucket(s3client, bucket)
    out = {}
    for i in range(n):
        data = os.urandom(1000 + i * 4096)
        s3client.put_object(Bucket=bucket, Key=f"m/f{i}.bin", Body=data, ChecksumAlgorithm="CRC64NVME")
        out[f"f{i}.bin"] = data
    return out


def test_a_whole_get_brings_the_stored_checksum_without_a_head(s3client, moto_env, moto_proxy, tmp_path):
    import base64

    files = _small_checksummed(s3client, "viaget")
    env = {**moto_env, "AWS_ENDPOINT_URL": moto_proxy.endpoint}
    dest = tmp_path / "pvc"
    r = run_cli(["mirror", "s3://viaget/m/", str(dest)], env)
    assert r.returncode == 0, r.stderr
    assert moto_proxy.counters.heads == 0  # one request per file: the GET
    got = _files(dest)
    for name, data in files.items():
        assert (dest / name).read_bytes() == data
        assert got[name]["verified"] == "checksum-crc64nvme"
        assert got[name]["digest"]["crc64nvme"] == base64.b64encode(_crc("crc64nvme", data)).decode()


def test_a_wrong_checksum_in_the_get_answer_fails_the_file(s3client, moto_env, moto_proxy, tmp_path):
    _small_checksummed(s3client, "badget", 1)
    moto_proxy.faults.get_headers = {"f0.bin": {"x-amz-checksum-crc64nvme": "AAAAAAAAAAA="}}
    env = {**moto_env, "AWS_ENDPOINT_URL": moto_proxy.endpoint}
    dest = tmp_path / "pvc"
    r = run_cli(["mirror", "s3://badget/m/", str(dest)], env)
    assert r.returncode == 5, r.stderr
    assert "f0.bin: content does not match the source (checksum-crc64nvme" in r.stderr
    assert moto_proxy.counters.gets == 2  # fetched again once, then refused
    assert not (dest / "f0.bin").exists()


def test_a_get_answer_without_the_listed_checksum_falls_back_to_the_etag(s3client, moto_env, moto_proxy,
                                                                         tmp_path):
    """A server that lists ChecksumAlgorithm but ignores x-amz-checksum-mode on GET: its HEAD would say
    no more, so none is made; the single-part ETag (an MD5) is checked, from the page cache."""
    files = _small_checksummed(s3client, "nockget", 2)
    moto_proxy.faults.get_headers = {"/m/": {"x-amz-checksum-crc64nvme": None}}
    env = {**moto_env, "AWS_ENDPOINT_URL": moto_proxy.endpoint}
    dest = tmp_path / "pvc"
    r = run_cli(["mirror", "s3://nockget/m/", str(dest)], env)
    assert r.returncode == 0, r.stderr
    assert moto_proxy.counters.heads == 0
    got = _files(dest)
    for name, data in files.items():
        assert (dest / name).read_bytes() == data
        assert got[name]["verified"] == "md5"
        assert got[name]["digest"]["md5"] == hashlib.md5(data).hexdigest()


def test_adopted_and_ranged_files_ask_for_the_checksum_with_a_head(s3client, moto_env, moto_proxy, tmp_path):
    """No whole GET, no answer: a copy found complete on disk (adopted) and a file fetched in ranges get
    the stored checksum from a HEAD, and are still checksum-verified."""
    files = _small_checksummed(s3client, "adoptck", 2)
    big = os.urandom(3 * 1024 * 1024 + 7)
    s3client.put_object(Bucket="adoptck", Key="m/big.bin", Body=big, ChecksumAlgorithm="CRC64NVME")
    env = {**moto_env, "AWS_ENDPOINT_URL": moto_proxy.endpoint}
    dest = tmp_path / "pvc"
    r = run_cli(["mirror", "s3://adoptck/m/", str(dest), "--part-size", "1"], env)
    assert r.returncode == 0, r.stderr
    assert moto_proxy.counters.heads == 1  # big.bin, fetched in 1 MiB ranges
    assert _files(dest)["big.bin"]["verified"] == "checksum-crc64nvme"
    (dest / ".modelpvc" / "manifest.json").unlink()  # complete files, no record: they are adopted
    moto_proxy.reset()
    r = run_cli(["mirror", "s3://adoptck/m/", str(dest), "--part-size", "1"], env)
    assert r.returncode == 0, r.stderr
    assert moto_proxy.counters.gets == 0 and moto_proxy.counters.heads == 3
    got = _files(dest)
    for name, data in {**files, "big.bin": big}.items():
        assert (dest / name).read_bytes() == data
        assert got[name]["verified"] == "checksum-crc64nvme"


def test_a_read_failing_inside_the_first_buffer_is_retried_and_checksum_verified(s3client, moto_env, moto_proxy,
                                                                                 tmp_path):
    """A CRC is hashed from each buffer the read fills. A read that times out in the middle of the first
    8 MiB buffer (a file written direct, from the ring) delivers nothing: the retry fetches the range again
    and the CRC covers each byte once (a second copy of a piece would fail the check and fetch it twice).
    Hashing 1 MiB slices as they arrived, before the buffer was complete, was tried and needed the retry to
    forget slices never written; it saved no CPU measurably and was not kept (decisions §10)."""
    import base64

    _bucket(s3client, "sliced")
    data = os.urandom(9 * 1024 * 1024 + 11)  # over 8 MiB: written direct, from 8 MiB ring buffers
    s3client.put_object(Bucket="sliced", Key="m/w.bin", Body=data, ChecksumAlgorithm="CRC64NVME")
    # A stall 1.6 MB into the first buffer; the read times out. (A reset would land there only by luck:
    # Linux drops the unread data when the RST arrives.)
    moto_proxy.faults.stall_after = 1_600_000
    moto_proxy.faults.stall_seconds = 3.0
    moto_proxy.faults.stall_count = 1
    env = {**moto_env, "AWS_ENDPOINT_URL": moto_proxy.endpoint}
    dest = tmp_path / "pvc"
    r = run_cli(["mirror", "s3://sliced/m/", str(dest), "--read-timeout", "1", "--part-size", "16"], env)
    assert r.returncode == 0, r.stderr
    assert moto_proxy.counters.faults_applied == ["stall_count"]
    assert moto_proxy.counters.gets == 2  # the stalled one and its retry: no refetch after a failed check
    assert "verification failed" not in r.stderr + r.stdout
    assert (dest / "w.bin").read_bytes() == data
    f = _files(dest)["w.bin"]
    assert f["verified"] == "checksum-crc64nvme"
    assert f["digest"]["crc64nvme"] == base64.b64encode(_crc("crc64nvme", data)).decode()
