"""S3-compatible source: paginated listing, ranged GETs pinned to the ETag, part-size discovery."""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Mapping
from typing import TypeVar, cast
from xml.etree import ElementTree

from modelpvc.core.digests import CHECKSUM_PREFERENCE
from modelpvc.core.errors import (
    NoAnswer,
    SourceError,
    SourceNotFound,
    SourceUnreachable,
    TransientError,
)
from modelpvc.core.models import ObjectInfo
from modelpvc.core.retry import call_with_retries
from modelpvc.core.settings import S3Settings
from modelpvc.store.http import multiget
from modelpvc.store.http.http11 import Headers, HTTPError
from modelpvc.store.http.s3_http import Response, S3Http, s3_error
from modelpvc.store.http.s3_xml import find as _find
from modelpvc.store.http.s3_xml import findall as _findall
from modelpvc.store.sources.base import Buffers, ChecksumCallback, DataCallback, SourceURI, WholeReads

log = logging.getLogger(__name__)
T = TypeVar("T")


def in_cluster_hint(host: str) -> str | None:
    """A Service's DNS name resolves only inside its cluster: say so to someone on a laptop."""
    if not (host.endswith(".svc") or ".svc.cluster." in host or host.endswith(".svc.cluster.local")):
        return None
    return (f"{host} is a name inside the cluster: from this machine forward it (oc port-forward -n NAMESPACE "
            "svc/NAME 9000:9000, then --endpoint-url http://127.0.0.1:9000), or let populate/update list the "
            "source from inside the cluster")


class S3Source:
    """An ``s3://bucket/prefix/`` on any S3-compatible endpoint."""

    def __init__(self, uri: SourceURI, settings: S3Settings) -> None:
        self.uri = uri
        self.settings = settings
        self.http = S3Http(settings)

    @property
    def endpoint(self) -> str:
        return self.http.endpoint


    def _retrying(self, what: str, fn: Callable[[], T]) -> T:
        s = self.settings
        try:
            return call_with_retries(
                fn, attempts=s.max_attempts, base=s.backoff_base, cap=s.backoff_cap,
                deadline=s.metadata_deadline,
            )
        except TransientError as e:
            hint = ("the endpoint is reachable but slow to answer (a large listing, a busy gateway, or a server "
                    "that computes ETags on first access): raise --read-timeout, e.g. --read-timeout 60 "
                    "(MODELPVC_READ_TIMEOUT=60 in the storage initializer's environment)" if isinstance(e, NoAnswer)
                    else in_cluster_hint(self.http.host) or
                    "check --endpoint-url / AWS_ENDPOINT_URL and that the endpoint is reachable from here")
            raise SourceUnreachable(f"{what}: no usable answer from {self.endpoint} after retries ({e})",
                                    hint=hint) from e

    def _list_page(self, prefix: str, token: str | None, delimiter: str | None) -> ElementTree.Element:
        query = {"list-type": "2", "prefix": prefix, "max-keys": "1000"}
        if token:
            query["continuation-token"] = token
        if delimiter:
            query["delimiter"] = delimiter

        def once() -> ElementTree.Element:
            resp = self.http.request("GET", self.uri.bucket, query=query, what=str(self.uri))
            body = _read_body(resp, str(self.uri))
            if resp.status != 200:
                err = s3_error(resp.status, body, f"bucket {self.uri.bucket!r}")
                if resp.status in (400, 401, 403) and self.settings.credentials is None and \
                        not self.settings.use_credential_chain:
                    # An unsigned request to a server that wants a signature: its code varies by server.
                    err.hint = ("the server refused an unsigned request (--anonymous): this bucket is not public; "
                                "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or --credentials-dir) instead")
                raise err
            try:
                return ElementTree.fromstring(body)
            except ElementTree.ParseError as e:
                raise TransientError(f"listing of {self.uri}: unparsable answer") from e

        return self._retrying(f"listing {self.uri}", once)

    def list_objects(self) -> list[ObjectInfo]:
        objects = self.list_all()
        if not objects:
            near = self.nearest_prefixes()
            hint = ("nearest existing prefixes: " + ", ".join(f"s3://{self.uri.bucket}/{p}" for p in near)
                    if near else f"bucket {self.uri.bucket!r} has no prefix like it")
            raise SourceNotFound(f"no objects under {self.uri}", hint=hint)
        return objects

    def list_all(self) -> list[ObjectInfo]:
        """Every object below the prefix, possibly none; SourceNotFound only for a missing bucket."""
        prefix = self.uri.prefix
        objects: list[ObjectInfo] = []
        token: str | None = None
        try:
            while True:
                root = self._list_page(prefix, token, None)
                for c in _findall(root, "Contents"):
                    key = _find(c, "Key")
                    rel = key[len(prefix):]
                    if not rel or rel.endswith("/"):
                        continue  # directory markers hold no data
                    objects.append(
                        ObjectInfo(
                            key=key,
                            rel=rel,
                            size=int(_find(c, "Size") or 0),
                            etag=_find(c, "ETag").strip('"'),
                            last_modified=_find(c, "LastModified"),
                            checksum_algorithm=_find(c, "ChecksumAlgorithm").lower(),
                        )
                    )
                token = _find(root, "NextContinuationToken") or None
                if _find(root, "IsTruncated") != "true" or not token:
                    break
        except SourceNotFound as e:
            raise SourceNotFound(
                f"bucket {self.uri.bucket!r} does not exist on {self.endpoint}",
                hint="check the bucket name (and AWS_S3_BUCKET in a data-connection secret)",
            ) from e
        return objects

    def nearest_prefixes(self, limit: int = 5) -> list[str]:
        """Siblings of the missing prefix (and the top level), ranked by similarity."""
        want = self.uri.prefix.rstrip("/")
        parent = want.rsplit("/", 1)[0] + "/" if "/" in want else ""
        candidates: list[str] = []
        for base in dict.fromkeys([parent, ""]):
            try:
                root = self._list_page(base, None, "/")
            except SourceError:
                continue
            for cp in _findall(root, "CommonPrefixes"):
                candidates.append(_find(cp, "Prefix"))
        candidates = list(dict.fromkeys(candidates))
        import difflib  # only for this error message; a start-up cost otherwise

        ranked = difflib.get_close_matches(self.uri.prefix, candidates, n=limit, cutoff=0.3)
        return ranked or candidates[:limit]

    def read(
        self, obj: ObjectInfo, start: int, end: int, bufs: Buffers, on_data: DataCallback,
        on_checksum: ChecksumCallback | None = None,
    ) -> None:
        headers = {"If-Match": f'"{obj.etag}"'} if obj.etag else {}
        whole = start == 0 and end == obj.size
        if not whole:
            headers["Range"] = f"bytes={start}-{end - 1}"
        elif on_checksum is not None:
            # The stored checksum comes with the object (S3 API GetObject, ChecksumMode): no HEAD for it.
            # A ranged GET is answered without one, so only a whole read asks.
            headers["x-amz-checksum-mode"] = "ENABLED"
        what = f"s3://{self.uri.bucket}/{obj.key}"
        resp = self.http.request("GET", self.uri.bucket, obj.key, headers=headers, what=what)
        if resp.status not in (200, 206):
            raise s3_error(resp.status, _read_body(resp, what), what)
        if not whole:
            _check_content_range(resp, start, end, obj.size, what)
        elif on_checksum is not None:
            on_checksum(_stored_checksum(resp.headers, obj))
        length = resp.headers.get("content-length")
        if length is not None and int(length) != end - start:
            resp.release()
            raise TransientError(f"{what}: server sent {length} bytes for a {end - start}-byte range")
        pos = start
        raw = resp.raw
        try:
            while pos < end:
                view = bufs.next(end - pos)
                n = raw.readinto(view)
                if not n:
                    raise TransientError(f"{what}: body ended after {pos - start} of {end - start} bytes")
                on_data(pos, view[:n])
                pos += n
        except (OSError, HTTPError) as e:
            self.http.drop_connection()
            raise TransientError(
                f"{what}: transfer broke after {pos - start} of {end - start} bytes ({type(e).__name__})"
            ) from e
        finally:
            if pos < end:
                self.http.drop_connection()

    def read_many(self, reads: WholeReads, connections: int, stop: Callable[[], bool]) -> bool:
        if self.http.scheme != "http":
            return False  # multiget speaks plain HTTP only
        http, bucket = self.http, self.uri.bucket

        class Gets:
            """multiget's tokens are (object, asked for its checksum)."""

            def next(self) -> tuple[Hashable, bytes, int] | None:
                nxt = reads.next()
                if nxt is None:
                    return None
                obj, ask = nxt
                headers = {"If-Match": f'"{obj.etag}"'} if obj.etag else {}
                if ask:
                    headers["x-amz-checksum-mode"] = "ENABLED"
                return nxt, http.signed_get(bucket, obj.key, headers)[1], obj.size

            def head(self, token: Hashable, headers: Headers) -> None:
                obj, ask = cast(tuple[ObjectInfo, bool], token)
                reads.started(obj, _stored_checksum(headers, obj) if ask else None)

            def data(self, token: Hashable, offset: int, view: memoryview) -> None:
                reads.data(cast(tuple[ObjectInfo, bool], token)[0], offset, view)

            def done(self, token: Hashable) -> None:
                reads.done(cast(tuple[ObjectInfo, bool], token)[0])

            def failed(self, token: Hashable, error: Exception) -> None:
                reads.failed(cast(tuple[ObjectInfo, bool], token)[0], error)

        s = self.settings
        address = http.address_of(http.path_for(bucket)[0])
        multiget.get_many(address, Gets(), connections, s.connect_timeout, s.read_timeout, stop)
        return True

    def _head(self, obj: ObjectInfo, query: dict[str, str] | None, headers: dict[str, str]) -> Response:
        what = f"s3://{self.uri.bucket}/{obj.key}"

        def once() -> Response:
            resp = self.http.request("HEAD", self.uri.bucket, obj.key, query=query, headers=headers, what=what)
            resp.read_all()
            if resp.status not in (200, 206):
                raise s3_error(resp.status, b"", what)
            return resp

        return self._retrying(f"HEAD {what}", once)

    def part_size(self, obj: ObjectInfo) -> int | None:
        if obj.multipart_parts is None:
            return None
        resp = self._head(obj, {"partNumber": "1"}, {})
        parts = resp.headers.get("x-amz-mp-parts-count")
        length = resp.headers.get("content-length")
        if parts is None or length is None or int(parts) != obj.multipart_parts:
            return None  # the endpoint ignored partNumber (rclone does); the ETag cannot be recomputed
        return int(length)

    def full_checksum(self, obj: ObjectInfo) -> tuple[str, str] | None:
        """(algorithm, base64 value) of the checksum the source stored, in our order of preference. A
        composite (per-part) value keeps its ``-N`` suffix; the caller checks it part by part."""
        resp = self._head(obj, None, {"x-amz-checksum-mode": "ENABLED"})
        return _stored_checksum(resp.headers, obj)

    def close(self) -> None:
        self.http.close()


def _stored_checksum(headers: Mapping[str, str], obj: ObjectInfo) -> tuple[str, str] | None:
    """The checksum fields of a HEAD or whole GET answer, in our order of preference."""
    ctype = (headers.get("x-amz-checksum-type") or "").upper()
    for algo in CHECKSUM_PREFERENCE:
        value = headers.get(f"x-amz-checksum-{algo}")
        if not value:
            continue
        composite = "-" in value
        if ctype == "COMPOSITE" and not composite:
            # Some servers report a composite value without its part count: not checkable as is.
            continue
        if ctype == "FULL_OBJECT" and composite:
            continue
        if obj.multipart_parts is not None and not composite and ctype != "FULL_OBJECT" \
                and algo != "crc64nvme":
            # A multipart upload's checksum is composite unless the server says otherwise; some
            # servers (moto) omit both the type and the -N, so only an explicit FULL_OBJECT is
            # trusted -- or CRC64NVME, which S3 only ever stores for the full object (AWS S3 user
            # guide, "Checking object integrity": CRC-64/NVME has no composite type).
            continue
        return algo, value
    return None


def _read_body(resp: Response, what: str) -> bytes:
    try:
        return resp.read_all()
    except (OSError, HTTPError) as e:
        resp.client.drop_connection()
        raise TransientError(f"{what}: connection broke while reading the answer") from e


def _check_content_range(resp: Response, start: int, end: int, size: int, what: str) -> None:
    """Accept 206, or 200 carrying a matching Content-Range (rclone's quirk); nothing else."""
    cr = resp.headers.get("content-range")
    expected = f"bytes {start}-{end - 1}/{size}"
    if cr is None:
        resp.release()
        raise SourceError(
            f"{what}: the endpoint ignored the Range header (HTTP {resp.status} without Content-Range)",
            hint="re-run with --part-size 0 to fetch whole objects",
        )
    if cr.strip() != expected:
        resp.release()
        raise TransientError(f"{what}: asked for {expected}, got Content-Range {cr!r}")
