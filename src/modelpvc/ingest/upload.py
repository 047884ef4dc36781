"""One file's way into the bucket: parts read from the origin into a worker's buffer, hashed, uploaded.

Each byte is read once, into memory, and used three ways before the buffer is reused: its part's
CRC64NVME (sent with the part; the server checks it, and the parts' CRCs combine into the full-object
value sent at completion), the file's SHA-256 (in part order: a worker whose part is ahead waits for its
turn, at most one part per worker), and the upload. The upload is completed only when the SHA-256 matches
what the origin published; otherwise it is aborted and nothing appears under the key.

Resuming: a pending upload's parts are listed; a part whose size fits and whose ETag is the MD5 of the
bytes read again is kept (not sent again), any other is sent again. The SHA-256 needs every byte, so a
resumed file is read again in full; what a resume saves is the upload.
"""

from __future__ import annotations

import base64
import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass

from modelpvc.core import digests
from modelpvc.core.errors import IntegrityError, TransientError
from modelpvc.core.provenance import FileProvenance
from modelpvc.ingest import parts
from modelpvc.ingest.plan import Op, Step
from modelpvc.store.bucket.s3_write import (
    META_SHA256,
    ChecksumRefused,
    S3Writer,
    UploadedPart,
    UploadGone,
)
from modelpvc.store.origins.origin import Origin

Retry = Callable[[Callable[[], object], str], object]


class Abandoned(Exception):
    """Another part of this file failed: stop working on it."""


@dataclass
class Checksums:
    """The run's checksum algorithm; switched off (once, for every file) when the server refuses it."""

    algorithm: str | None
    refused: str = ""  # why, for the summary

    def refuse(self, why: str) -> None:
        with _CHECKSUM_LOCK:
            if self.algorithm is not None:
                self.algorithm = None
                self.refused = why


_CHECKSUM_LOCK = threading.Lock()


def _b64(algorithm: str, value: int) -> str:
    return base64.b64encode(value.to_bytes(8 if algorithm == "crc64nvme" else 4, "big")).decode()


def _crc(algorithm: str, data: memoryview) -> int:
    h = digests.new_hasher(algorithm)
    h.update(data)
    return int.from_bytes(h.digest(), "big")


class FileUpload:
    def __init__(self, op: Op, part_size: int, writer: S3Writer, origin: Origin, checksums: Checksums,
                 retry: Retry) -> None:
        self.op = op
        self.f = op.file
        self.writer = writer
        self.origin = origin
        self.checksums = checksums
        self.retry = retry
        self.part = parts.part_size(self.f.size, part_size)
        self.single = parts.single_put(self.f.size, self.part)
        self.ranges = [(0, 0, self.f.size)] if self.single else parts.ranges(self.f.size, self.part)
        self.algorithm = checksums.algorithm  # fixed per file at its start
        self.upload_id = op.upload_id if op.step is Step.RESUME else None
        self.kept: dict[int, UploadedPart] = {}  # parts of a resumed upload that may be kept
        self.done: dict[int, UploadedPart] = {}
        self.crcs: dict[int, tuple[int, int]] = {}  # part -> (length, crc)
        self.sha = hashlib.sha256()
        pub = self.f.published
        self.git = None if pub.sha256 or not pub.git_oid else hashlib.sha1(
            f"blob {self.f.size}\0".encode(), usedforsecurity=False)
        self.next_hash = self.ranges[0][0]
        self.cond = threading.Condition()
        self.open_lock = threading.Lock()
        self.opened = False
        self.failed: BaseException | None = None
        self.result: FileProvenance | None = None
        self.bytes_kept = 0  # resumed parts not sent again

    # -- opening ---------------------------------------------------------------------------------
    def ensure_open(self) -> None:
        with self.open_lock:
            if self.opened:
                return
            if self.upload_id is not None:
                self._adopt_pending()
            if self.upload_id is None:
                self.upload_id = self._create()
            self.opened = True

    def _adopt_pending(self) -> None:
        assert self.upload_id is not None
        try:
            listed = self.writer.list_parts(self.op.key, self.upload_id, self.algorithm)
        except UploadGone:
            self.upload_id = None
            return
        sizes = {n: e - s for n, s, e in self.ranges}
        self.kept = {p.number: p for p in listed if sizes.get(p.number) == p.size}
        if len(self.kept) != len(listed):
            # Parts of another part size: this upload cannot be completed with ours.
            self.writer.abort(self.op.key, self.upload_id)
            self.upload_id, self.kept = None, {}

    def _headers(self) -> dict[str, str]:
        h: dict[str, str] = {}
        if self.f.published.sha256:
            h[META_SHA256] = self.f.published.sha256
        return h

    def _create(self) -> str:
        headers = self._headers()
        if self.algorithm:
            headers.update({"x-amz-checksum-algorithm": self.algorithm.upper(), "x-amz-checksum-type": "FULL_OBJECT"})
        try:
            return self.writer.create_upload(self.op.key, headers)
        except ChecksumRefused as e:
            self.checksums.refuse(str(e))
            self.algorithm = None
            return self.writer.create_upload(self.op.key, self._headers())

    # -- parts -----------------------------------------------------------------------------------
    def read(self, start: int, view: memoryview) -> None:
        self.retry(lambda: self.origin.read_into(self.f, start, view), f"{self.f.rel} @{start}")

    def hash_in_turn(self, number: int, view: memoryview) -> None:
        with self.cond:
            while self.next_hash != number:
                if self.failed is not None:
                    raise Abandoned()
                self.cond.wait(0.5)
        try:
            self.sha.update(view)
            if self.git is not None:
                self.git.update(view)
        finally:
            with self.cond:
                self.next_hash = number + 1
                self.cond.notify_all()

    def send_part(self, number: int, view: memoryview) -> int:
        """Upload one part (or keep the pending upload's copy); returns the bytes sent."""
        self.ensure_open()
        assert self.upload_id is not None
        crc = _crc(self.algorithm, view) if self.algorithm else None
        kept = self.kept.get(number)
        if kept is not None and kept.etag.lower() == hashlib.md5(view, usedforsecurity=False).hexdigest():
            self._part_done(number, len(view), crc, kept.etag)
            self.bytes_kept += len(view)
            return 0
        headers: dict[str, str] = {}
        if self.algorithm and crc is not None:
            headers[f"x-amz-checksum-{self.algorithm}"] = _b64(self.algorithm, crc)
        upload_id = self.upload_id
        etag = self.retry(lambda: self.writer.upload_part(self.op.key, upload_id, number, view, headers),
                          f"{self.op.key} part {number}")
        self._part_done(number, len(view), crc, str(etag))
        return len(view)

    def _part_done(self, number: int, length: int, crc: int | None, etag: str) -> None:
        with self.cond:
            if crc is not None:
                self.crcs[number] = (length, crc)
            cs = _b64(self.algorithm, crc) if self.algorithm and crc is not None else None
            self.done[number] = UploadedPart(number, etag, length, cs)

    @property
    def complete_parts(self) -> bool:
        with self.cond:
            return len(self.done) == len(self.ranges)

    # -- the end -----------------------------------------------------------------------------------
    def _check_digest(self) -> str:
        sha = self.sha.hexdigest()
        pub = self.f.published
        if pub.sha256 and sha != pub.sha256:
            raise IntegrityError(f"{self.f.rel}: SHA-256 {sha} is not the published {pub.sha256}; nothing was "
                                 f"stored under s3://{self.writer.bucket}/{self.op.key}",
                                 hint="the origin served other bytes than it lists; re-run, and report it if it "
                                      "persists")
        if self.git is not None and self.git.hexdigest() != pub.git_oid:
            raise IntegrityError(f"{self.f.rel}: git blob id {self.git.hexdigest()} is not the listed {pub.git_oid}; "
                                 f"nothing was stored under s3://{self.writer.bucket}/{self.op.key}")
        return sha

    def finish_multipart(self) -> FileProvenance:
        assert self.upload_id is not None
        try:
            sha = self._check_digest()
        except IntegrityError:
            self.writer.abort(self.op.key, self.upload_id)
            raise
        headers: dict[str, str] = {}
        if self.algorithm and len(self.crcs) == len(self.ranges):
            whole = 0
            for n in sorted(self.crcs):
                length, crc = self.crcs[n]
                whole = digests.crc_combine(self.algorithm, whole, crc, length)
            headers = {f"x-amz-checksum-{self.algorithm}": _b64(self.algorithm, whole),
                       "x-amz-checksum-type": "FULL_OBJECT"}
        done = list(self.done.values())
        try:
            self.writer.complete(self.op.key, self.upload_id, done, self.algorithm, headers)
        except UploadGone as e:
            raise TransientError(f"{self.op.key}: the upload vanished before it was completed; re-run") from e
        return self._record(sha)

    def put_single(self, view: memoryview) -> int:
        """A file that fits one part: hashed and checked before it is sent."""
        self.sha.update(view)
        if self.git is not None:
            self.git.update(view)
        sha = self._check_digest()
        headers = self._headers()
        headers[META_SHA256] = sha
        algorithm = self.algorithm
        if algorithm:
            headers[f"x-amz-checksum-{algorithm}"] = _b64(algorithm, _crc(algorithm, view))
            headers["x-amz-sdk-checksum-algorithm"] = algorithm.upper()
        try:
            self.retry(lambda: self.writer.put(self.op.key, view, headers), self.op.key)
        except ChecksumRefused as e:
            self.checksums.refuse(str(e))
            self.algorithm = None
            plain = {k: v for k, v in headers.items() if "checksum" not in k}
            self.retry(lambda: self.writer.put(self.op.key, view, plain), self.op.key)
        self.result = self._record(sha)
        return len(view)

    def _record(self, sha: str) -> FileProvenance:
        head = self.writer.head(self.op.key)
        if head is None:
            raise TransientError(f"s3://{self.writer.bucket}/{self.op.key} is missing right after it was written")
        if head.size != self.f.size:
            raise IntegrityError(f"s3://{self.writer.bucket}/{self.op.key} holds {head.size} bytes after the upload, "
                                 f"not {self.f.size}")
        sums = {k: v for k, v in head.checksums.items() if digests.known(k)}
        return FileProvenance(self.f.rel, self.f.size, sha, head.etag, self.f.published.git_oid, sums,
                              self.f.mtime_ns)

    def fail(self, e: BaseException) -> None:
        with self.cond:
            if self.failed is None:
                self.failed = e
            self.cond.notify_all()
