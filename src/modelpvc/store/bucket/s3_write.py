"""Writing objects to an S3-compatible bucket: single PUTs, multipart uploads (create, parts, complete,
abort), and the listings that make an interrupted upload resumable (ListMultipartUploads, ListParts).

Every answer is mapped to our errors here, from the destination's side: a missing bucket or a refused
write is the destination's problem (exit 4), not the source's.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar
from xml.etree import ElementTree
from xml.sax.saxutils import escape

from modelpvc.core.errors import (
    DestinationDenied,
    DestinationError,
    DestinationMissing,
    ModelpvcError,
    TransientError,
)
from modelpvc.core.retry import call_with_retries
from modelpvc.core.settings import S3Settings
from modelpvc.store.http.s3_http import Response, S3Http, error_detail, is_denied, is_transient
from modelpvc.store.http.s3_xml import find, findall

log = logging.getLogger(__name__)
T = TypeVar("T")
META_SHA256 = "x-amz-meta-modelpvc-sha256"  # the digest an object was verified against when written
# Seconds CompleteMultipartUpload may take: the server assembles the object first ("could take several
# minutes", AWS API reference; rclone copies every part into the final file).
COMPLETE_WAIT = 900.0
# Seconds a part upload may wait for its answer after the body was sent: the server stores (and hashes) the
# part first. A shorter wait made a busy server's slow answer look like a failure, and the retry raced the
# first attempt for the same part number (rclone then lost the part: InvalidPart at completion).
PART_WAIT = 300.0


class UploadGone(TransientError):
    """The multipart upload no longer exists (aborted or expired by a lifecycle rule): start the file over."""

    code = "upload-gone"


class ChecksumRefused(DestinationError):
    """The server refused the x-amz-checksum-* headers (older MinIO/Ceph, Swift): upload without them."""

    code = "checksum-refused"


@dataclass(frozen=True)
class UploadedPart:
    number: int
    etag: str  # without quotes
    size: int
    checksum: str | None = None  # base64, of the upload's checksum algorithm, when the server keeps it


@dataclass(frozen=True)
class PendingUpload:
    key: str
    upload_id: str
    initiated: str


@dataclass(frozen=True)
class ObjectHead:
    size: int
    etag: str
    checksums: dict[str, str]  # algorithm (lower case) -> base64 value, as stored
    checksum_type: str  # "FULL_OBJECT", "COMPOSITE" or "" when the server does not say
    metadata: dict[str, str]  # x-amz-meta-* headers, names lower case


def write_error(status: int, body: bytes, what: str, bucket: str, sent_checksum: bool = False) -> ModelpvcError:
    """The server's refusal as our error. ``sent_checksum``: the request carried x-amz-checksum headers, so a
    501 (a header not implemented) or a 400 that says the request or an argument is invalid is read as a
    server that does not take them (the caller retries once without; a second refusal is the real error)."""
    code, detail = error_detail(status, body)
    if code == "NoSuchUpload":
        return UploadGone(f"{what}: the multipart upload is gone ({detail})")
    if code == "NoSuchBucket":
        return DestinationMissing(f"bucket {bucket!r} does not exist ({detail})",
                                  hint="create it first (mc mb / aws s3 mb) or check the bucket name")
    if sent_checksum and (status == 501 or (status == 400 and code in ("InvalidRequest", "InvalidArgument",
                                                                       "NotImplemented"))):
        return ChecksumRefused(f"{what}: the server does not take this checksum ({detail})")
    if code in ("BadDigest", "InvalidDigest", "XAmzContentChecksumMismatch", "RequestTimeout") \
            or is_transient(status, code):
        # A checksum the server computed differently means bytes changed in flight: send them again.
        return TransientError(f"{what}: {detail}")
    if is_denied(status, code):
        return DestinationDenied(
            f"access denied writing {what} ({detail})",
            hint="the credentials need s3:PutObject, s3:AbortMultipartUpload, s3:ListMultipartUploadParts and "
                 "s3:ListBucketMultipartUploads on this bucket",
        )
    return DestinationError(f"{what}: unexpected answer {detail}")


class S3Writer:
    """One bucket on one endpoint; thread-safe (one keep-alive connection per thread)."""

    def __init__(self, bucket: str, settings: S3Settings) -> None:
        self.bucket = bucket
        self.settings = settings
        self.http = S3Http(settings)

    @property
    def endpoint(self) -> str:
        return self.http.endpoint

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        s = self.settings
        return call_with_retries(fn, attempts=s.max_attempts, base=s.backoff_base, cap=s.backoff_cap)

    def _send(self, method: str, key: str, what: str, *, query: Mapping[str, str] | None = None,
              headers: Mapping[str, str] | None = None, body: bytes | memoryview | None = None,
              ok: tuple[int, ...] = (200,), wait: float | None = None) -> tuple[Response, bytes]:
        resp = self.http.request(method, self.bucket, key, query=query, headers=headers, body=body, what=what,
                                 wait=wait)
        try:
            data = resp.read_all() if method != "HEAD" else b""
        except OSError as e:
            self.http.drop_connection()
            raise TransientError(f"{what}: connection broke while reading the answer") from e
        if resp.status not in ok:
            sent = any(k.lower().startswith(("x-amz-checksum-", "x-amz-sdk-checksum-")) for k in headers or {})
            raise write_error(resp.status, data, what, self.bucket, sent_checksum=sent)
        return resp, data

    def _get(self, key: str, what: str, query: dict[str, str]) -> bytes:
        def once() -> bytes:
            return self._send("GET", key, what, query=query)[1]

        return self._call(f"GET {what}", once)

    def _url(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    # -- objects --------------------------------------------------------------------------------
    def head(self, key: str) -> ObjectHead | None:
        what = self._url(key)

        def once() -> ObjectHead | None:
            resp = self.http.request("HEAD", self.bucket, key, headers={"x-amz-checksum-mode": "ENABLED"},
                                     what=what)
            resp.read_all()
            if resp.status == 404:
                return None
            if resp.status != 200:
                raise write_error(resp.status, b"", what, self.bucket)
            h = resp.headers
            sums = {k.removeprefix("x-amz-checksum-"): v for k, v in h.items()
                    if k.startswith("x-amz-checksum-")
                    and k not in ("x-amz-checksum-type", "x-amz-checksum-mode", "x-amz-checksum-algorithm")}
            meta = {k: v for k, v in h.items() if k.startswith("x-amz-meta-")}
            return ObjectHead(int(h.get("content-length") or 0), (h.get("etag") or "").strip('"'), sums,
                              (h.get("x-amz-checksum-type") or "").upper(), meta)

        return self._call(f"HEAD {what}", once)

    def put(self, key: str, body: bytes | memoryview, headers: Mapping[str, str]) -> str:
        what = self._url(key)
        resp, _ = self._call(f"PUT {what}", lambda: self._send("PUT", key, what, headers=headers, body=body,
                                                               wait=PART_WAIT))
        return (resp.headers.get("etag") or "").strip('"')

    def delete(self, key: str) -> None:
        what = self._url(key)
        self._call(f"DELETE {what}", lambda: self._send("DELETE", key, what, ok=(200, 204, 404)))

    # -- multipart ------------------------------------------------------------------------------
    def create_upload(self, key: str, headers: Mapping[str, str]) -> str:
        what = self._url(key)

        def once() -> str:
            _, data = self._send("POST", key, what, query={"uploads": ""}, headers=headers)
            upload_id = find(_xml(data, what), "UploadId")
            if not upload_id:
                raise TransientError(f"{what}: CreateMultipartUpload answered without an UploadId")
            return upload_id

        return self._call(f"create upload {what}", once)

    def upload_part(self, key: str, upload_id: str, number: int, body: memoryview,
                    headers: Mapping[str, str]) -> str:
        """One attempt (the caller retries: it may have to re-read the bytes); the part's ETag."""
        what = f"{self._url(key)} part {number}"
        resp, _ = self._send("PUT", key, what, query={"partNumber": str(number), "uploadId": upload_id},
                             headers=headers, body=body, wait=PART_WAIT)
        return (resp.headers.get("etag") or "").strip('"')

    def complete(self, key: str, upload_id: str, parts: list[UploadedPart], algorithm: str | None,
                 headers: Mapping[str, str]) -> str:
        what = self._url(key)
        tag = f"Checksum{algorithm.upper()}" if algorithm else ""
        xml = "".join(
            "<Part>" + (f"<{tag}>{p.checksum}</{tag}>" if tag and p.checksum else "")
            + f"<ETag>\"{escape(p.etag)}\"</ETag><PartNumber>{p.number}</PartNumber></Part>"
            for p in sorted(parts, key=lambda p: p.number))
        body = (f'<CompleteMultipartUpload xmlns="http://s3.amazonaws.com/doc/2006-03-01/">{xml}'
                "</CompleteMultipartUpload>").encode()

        attempts = 0

        def once() -> str:
            nonlocal attempts
            attempts += 1
            try:
                _, data = self._send("POST", key, what, query={"uploadId": upload_id}, headers=headers, body=body,
                                     wait=COMPLETE_WAIT)
            except (UploadGone, DestinationError) as e:
                # A retry after an answer we never got: the first attempt may have completed the upload
                # (its parts are gone now). The object, whole, says so.
                done = self.head(key) if attempts > 1 else None
                if done is not None and done.size == sum(p.size for p in parts):
                    return done.etag
                raise e
            root = _xml(data, what)
            # S3 may answer 200 and put the error in the body (documented for CompleteMultipartUpload).
            if _local(root.tag) == "Error":
                raise write_error(500 if find(root, "Code") == "InternalError" else 400, data, what, self.bucket)
            return find(root, "ETag").strip('"')

        return self._call(f"complete upload {what}", once)

    def abort(self, key: str, upload_id: str) -> None:
        what = self._url(key)
        with contextlib.suppress(UploadGone):
            self._call(f"abort {what}", lambda: self._send("DELETE", key, what, query={"uploadId": upload_id},
                                                            ok=(200, 204)))

    def list_parts(self, key: str, upload_id: str, algorithm: str | None) -> list[UploadedPart]:
        what = self._url(key)
        out: list[UploadedPart] = []
        marker = ""
        while True:
            query = {"uploadId": upload_id, "max-parts": "1000"}
            if marker:
                query["part-number-marker"] = marker
            data = self._get(key, what, query)
            root = _xml(data, what)
            for p in findall(root, "Part"):
                checksum = find(p, f"Checksum{algorithm.upper()}") if algorithm else ""
                out.append(UploadedPart(int(find(p, "PartNumber")), find(p, "ETag").strip('"'), int(find(p, "Size")),
                                        checksum or None))
            marker = find(root, "NextPartNumberMarker")
            if find(root, "IsTruncated") != "true" or not marker:
                return out

    def list_uploads(self, prefix: str) -> list[PendingUpload]:
        what = f"s3://{self.bucket}/{prefix}"
        out: list[PendingUpload] = []
        key_marker = upload_marker = ""
        while True:
            query = {"uploads": "", "prefix": prefix}
            if key_marker:
                query["key-marker"] = key_marker
                query["upload-id-marker"] = upload_marker
            try:
                data = self._get("", what, query)
            except UploadGone:
                return out  # rclone's gofakes3 answers NoSuchUpload when a bucket has no uploads at all
            root = _xml(data, what)
            out += [PendingUpload(find(u, "Key"), find(u, "UploadId"), find(u, "Initiated"))
                    for u in findall(root, "Upload")]
            key_marker, upload_marker = find(root, "NextKeyMarker"), find(root, "NextUploadIdMarker")
            if find(root, "IsTruncated") != "true" or not key_marker:
                return out

    def close(self) -> None:
        self.http.close()


def _xml(data: bytes, what: str) -> ElementTree.Element:
    try:
        return ElementTree.fromstring(data)
    except ElementTree.ParseError as e:
        raise TransientError(f"{what}: unparsable answer") from e


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]
