"""The two S3 servers the functional suites run on, behind one small interface.

A test keeps a local tree (top-level folders are buckets) that says what the bucket should hold, edits it,
and calls ``publish`` to make the server hold the same objects. For ``rclone serve s3`` the local tree *is*
the served directory, so publishing only waits until the server lists the tree. For MinIO (the seed's store)
the tree is uploaded with boto3 as an ordinary client would (its default checksums, multipart above 8 MiB)
and objects that left the tree are deleted.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelpvc.devtools.s3server import MinioS3, RcloneS3

KINDS = ("rclone", "minio")


@dataclass
class S3UnderTest:
    kind: str
    server: RcloneS3 | MinioS3
    root: Path
    _uploaded: dict[str, str] = field(default_factory=dict)

    @property
    def endpoint(self) -> str:
        return self.server.endpoint

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def access_key(self) -> str:
        return self.server.access_key

    @property
    def secret_key(self) -> str:
        return self.server.secret_key

    def env(self) -> dict[str, str]:
        return self.server.env()

    @property
    def stores_checksums(self) -> bool:
        """MinIO keeps the x-amz-checksum-* an uploader sends; rclone serve s3 keeps none."""
        return self.kind == "minio"

    def verified_as(self, size: int) -> str:
        """The check mirror makes of an object of ``size`` bytes that ``publish`` uploaded: its ETag's MD5 on
        rclone; on MinIO the composite CRC32 boto3 sends with a multipart upload (above 8 MiB), else the MD5
        (the listing names no checksum, and a HEAD per small file would cost more than the MD5 it saves)."""
        return "composite-crc32" if self.kind == "minio" and size > 8 * 1024 * 1024 else "md5"

    def client(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=self.access_key,
                            aws_secret_access_key=self.secret_key, region_name="us-east-1")

    def bucket(self, name: str) -> None:
        """Create the bucket (a top-level folder of rclone's tree)."""
        (self.root / name).mkdir(exist_ok=True)
        if self.kind == "minio":
            s3 = self.client()
            with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
                s3.create_bucket(Bucket=name)

    def publish(self, rel: str | Path) -> None:
        """Make the server's objects under ``bucket/prefix`` (``rel``) equal the local tree's files there."""
        bucket, _, prefix = Path(rel).as_posix().partition("/")
        local = self.root / bucket / prefix
        want: dict[str, Path] = {}
        if local.is_dir():
            want = {p.relative_to(self.root / bucket).as_posix(): p for p in local.rglob("*") if p.is_file()}
        elif local.is_file():
            want = {prefix: local}
        if self.kind == "rclone":
            self._until_listed(bucket, prefix, set(want))
            return
        self.bucket(bucket)
        s3 = self.client()
        for key, path in sorted(want.items()):
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            if self._uploaded.get(f"{bucket}/{key}") != digest:
                s3.upload_file(str(path), bucket, key)
                self._uploaded[f"{bucket}/{key}"] = digest
        for key in self._keys(s3, bucket, prefix):
            if key not in want:
                s3.delete_object(Bucket=bucket, Key=key)
                self._uploaded.pop(f"{bucket}/{key}", None)

    def _until_listed(self, bucket: str, prefix: str, want: set[str], timeout: float = 10.0) -> None:
        """Wait until the server lists exactly ``want`` under ``prefix``'s folder. rclone serves the tree a
        test writes through a directory cache (100 ms here): under load a listing has been seen to miss a
        folder made just before it (a CI run)."""
        s3 = self.client()
        deadline = time.monotonic() + timeout
        while (listed := set(self._keys(s3, bucket, prefix))) != want:
            if time.monotonic() > deadline:
                raise AssertionError(f"the server did not list {bucket}/{prefix} as the tree within {timeout}s: "
                                     f"missing {sorted(want - listed)[:5]}, extra {sorted(listed - want)[:5]}")
            time.sleep(0.1)

    def objects(self, bucket: str, prefix: str) -> dict[str, bytes]:
        """What the server holds under ``prefix``, read through S3: key (less the prefix) → bytes."""
        s3 = self.client()
        return {k[len(prefix):]: s3.get_object(Bucket=bucket, Key=k)["Body"].read()
                for k in self._keys(s3, bucket, prefix)}

    @staticmethod
    def _keys(s3: Any, bucket: str, prefix: str) -> Iterator[str]:
        """Keys in ``prefix``'s folder (``m1`` lists neither ``m10/`` nor ``m11/``)."""
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for o in page.get("Contents", []):
                if _within(o["Key"], prefix):
                    yield o["Key"]

    def settle(self) -> None:
        """rclone only: restart after a multipart upload before the test uses it again (docs/decisions.md §12)."""
        if self.kind == "rclone":
            self.server.stop()
            self.server.start()


def _within(key: str, prefix: str) -> bool:
    """``key`` is ``prefix`` itself or lies in its folder."""
    folder = prefix.rstrip("/")
    return not folder or key == folder or key.startswith(folder + "/")


def start(kind: str, base: Path, log_dir: Path) -> S3UnderTest:
    """Start a server of ``kind`` with a fresh local tree (and a ``models`` bucket) under ``base``."""
    root = base / "tree"
    (root / "models").mkdir(parents=True)
    srv: RcloneS3 | MinioS3
    if kind == "rclone":
        # A short directory cache: tests edit the source between runs (each CLI run starts later than
        # 100 ms). Not 0s: rclone 1.75.2 then re-arms its cleanup timer forever and stops answering
        # (docs/decisions.md §12).
        srv = RcloneS3(root, log_path=log_dir / "rclone.log", extra=["--dir-cache-time", "100ms"]).start()
        return S3UnderTest(kind, srv, root)
    srv = MinioS3(base / "minio-data", log_path=log_dir / "minio.log").start()
    s3 = S3UnderTest(kind, srv, root)
    s3.client().create_bucket(Bucket="models")
    return s3
