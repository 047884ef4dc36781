"""Ranged reads of Hugging Face Hub files, straight into the caller's buffer.

``GET {endpoint}/{repo}/resolve/{commit}/{path}`` answers small files itself and redirects LFS/Xet files
to a CDN with a signed URL. The token goes to the Hub's own origin only, never to where it redirects (the
signed URL is the credential there, and a bearer token must not leak to another host). Redirect targets
are kept per file for a few minutes so each part costs one request, and resolved again when the CDN
refuses an expired URL.
"""

from __future__ import annotations

import contextlib
import ssl
import threading
import time
from dataclasses import dataclass
from urllib.parse import quote, urljoin, urlsplit

from modelpvc.core.errors import (
    AccessDenied,
    SourceError,
    SourceGated,
    SourceNotFound,
    SourceUnreachable,
    TransientError,
)
from modelpvc.store.http.http11 import Connection, HTTPError, Response
from modelpvc.store.http.s3_http import certificate_rejection, describe_network_error

REDIRECTS = (301, 302, 303, 307, 308)
LOCATION_TTL = 300.0  # seconds a CDN URL is reused; the Hub signs them for longer


@dataclass(frozen=True)
class HubEndpoint:
    url: str  # e.g. https://huggingface.co (HF_ENDPOINT)
    token: str | None = None
    ca_bundle: str | None = None
    connect_timeout: float = 10.0
    read_timeout: float = 30.0

    def __repr__(self) -> str:
        return f"HubEndpoint(url={self.url!r})"  # never the token


class HubReader:
    """Thread-safe: one keep-alive connection per (thread, origin)."""

    def __init__(self, endpoint: HubEndpoint, repo: str, commit: str) -> None:
        self.endpoint = endpoint
        self.repo = repo
        self.commit = commit
        self._origin = _origin(endpoint.url)
        self._local = threading.local()
        self._locations: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()
        self._ssl = ssl.create_default_context(cafile=endpoint.ca_bundle)

    def url(self, path: str) -> str:
        return f"{self.endpoint.url.rstrip('/')}/{self.repo}/resolve/{self.commit}/{quote(path, safe='/')}"

    # -- connections ----------------------------------------------------------------------------
    def _conn(self, origin: tuple[str, str, int]) -> Connection:
        conns: dict[tuple[str, str, int], Connection] = self._local.__dict__.setdefault("c", {})
        conn = conns.get(origin)
        if conn is None:
            scheme, host, port = origin
            t = self.endpoint.connect_timeout
            conn = Connection(host, port, t, self._ssl if scheme == "https" else None)
            conns[origin] = conn
        return conn

    def _drop(self, origin: tuple[str, str, int]) -> None:
        conns = self._local.__dict__.get("c", {})
        conn = conns.pop(origin, None)
        if conn is not None:
            conn.close()

    def close(self) -> None:
        for origin in list(self._local.__dict__.get("c", {})):
            self._drop(origin)

    # -- requests -------------------------------------------------------------------------------
    def _send(self, method: str, url: str, headers: dict[str, str]) -> tuple[Response,
                                                                             tuple[str, str, int]]:
        origin = _origin(url)
        parts = urlsplit(url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        hdrs = dict(headers)
        if origin == self._origin and self.endpoint.token:
            hdrs["Authorization"] = f"Bearer {self.endpoint.token}"
        conn = self._conn(origin)
        try:
            conn.request(method, target, headers=hdrs)
            resp = conn.getresponse()
            if conn.sock is not None:
                conn.sock.settimeout(self.endpoint.read_timeout)
        except (OSError, HTTPError) as e:
            self._drop(origin)
            rejected = certificate_rejection(e)
            if rejected is not None:
                raise SourceUnreachable(f"TLS certificate of {origin[1]} was not accepted: {rejected}",
                                        hint="pass the CA with --hub-ca-bundle (or REQUESTS_CA_BUNDLE)") from e
            raise TransientError(f"{url.split('?')[0]}: connection failed ({describe_network_error(e)})") from e
        return resp, origin

    def open(self, path: str, start: int, end: int, method: str = "GET") -> tuple[Response,
                                                                                   tuple[str, str, int]]:
        """A response positioned at byte ``start`` of ``path`` (status checked), following redirects."""
        headers = {"Range": f"bytes={start}-{end - 1}", "Accept-Encoding": "identity"} if end > start else {}
        cached = self._cached(path)
        url = cached or self.url(path)
        for _ in range(6):
            resp, origin = self._send(method, url, headers)
            if resp.status in REDIRECTS:
                location = resp.getheader("Location")
                self._discard(resp, origin)
                if not location:
                    raise TransientError(f"{url}: redirect without a Location")
                url = urljoin(url, location)
                continue
            if cached and resp.status in (401, 403, 404, 410) and url == cached:
                self._discard(resp, origin)  # the signed URL expired: resolve again through the Hub
                self._forget(path)
                cached = None
                url = self.url(path)
                continue
            if resp.status in (200, 206):
                if url != self.url(path):
                    self._remember(path, url)
                return resp, origin
            body = resp.read(64 * 1024)
            self._drop(origin)
            raise self._error(resp, body, path)
        raise SourceError(f"{self.url(path)}: too many redirects")

    def read_into(self, path: str, start: int, out: memoryview, size: int) -> None:
        """Fill ``out`` with bytes [start, start + len(out)) of a file of ``size`` bytes (one attempt)."""
        end = start + len(out)
        resp, origin = self.open(path, start, end)
        what = f"{self.repo}/{path}"
        if resp.status == 206:
            cr = (resp.getheader("Content-Range") or "").strip()
            if cr != f"bytes {start}-{end - 1}/{size}":
                self._drop(origin)
                raise TransientError(f"{what}: asked for bytes {start}-{end - 1}/{size}, got {cr!r}")
        elif not (start == 0 and end == size):
            self._drop(origin)
            raise SourceError(f"{what}: the server ignored the Range header (HTTP {resp.status})")
        pos = 0
        try:
            while pos < len(out):
                n = resp.readinto(out[pos:])
                if not n:
                    raise TransientError(f"{what}: body ended after {pos} of {len(out)} bytes")
                pos += n
        except (OSError, HTTPError) as e:
            why = describe_network_error(e)
            raise TransientError(f"{what}: transfer broke after {pos} of {len(out)} bytes ({why})") from e
        finally:
            if pos < len(out) or not resp.isclosed():
                self._drop(origin)

    def probe(self, path: str) -> None:
        """Fail now, with the Hub's reason, when this token may not download ``path`` (gated, private).
        ``path`` must not be empty (one byte is read)."""
        resp, origin = self.open(path, 0, 1)
        self._discard(resp, origin)

    def _discard(self, resp: Response, origin: tuple[str, str, int]) -> None:
        """Read a small body so the connection can be reused; drop the connection otherwise."""
        with contextlib.suppress(OSError, HTTPError):
            resp.read(1 << 16)
        if not resp.isclosed():
            self._drop(origin)

    # -- errors ---------------------------------------------------------------------------------
    def _error(self, resp: Response, body: bytes, path: str) -> Exception:
        code = resp.getheader("X-Error-Code") or ""
        message = resp.getheader("X-Error-Message") or body[:200].decode("utf-8", "replace").strip()
        what = f"hf://{self.repo}/{path}@{self.commit[:12]}"
        if code == "GatedRepo":
            return SourceGated(
                f"{self.repo} is a gated model and this token may not download it ({message})",
                hint=f"accept its conditions at {self.endpoint.url.rstrip('/')}/{self.repo} with the account of "
                     "HF_TOKEN (and set HF_TOKEN), then re-run")
        if resp.status == 401 or code == "RepoNotFound":
            return AccessDenied(
                f"{what}: the Hub refused the download (HTTP {resp.status} {code or message})",
                hint="set HF_TOKEN to a token that can read this repository" if not self.endpoint.token
                else "check that HF_TOKEN is valid and may read this repository")
        if resp.status == 403:
            return AccessDenied(f"{what}: forbidden ({message})", hint="check HF_TOKEN's permissions")
        if resp.status == 404 or code == "EntryNotFound":
            return SourceNotFound(f"{what}: not found on the Hub ({message})")
        if resp.status == 416:
            return SourceError(f"{what}: range not satisfiable; the file is shorter than the Hub listed")
        if resp.status >= 500 or resp.status == 429:
            return TransientError(f"{what}: the Hub is busy or failing (HTTP {resp.status})")
        return SourceError(f"{what}: unexpected answer HTTP {resp.status} {message}")

    # -- redirect cache -------------------------------------------------------------------------
    def _cached(self, path: str) -> str | None:
        with self._lock:
            hit = self._locations.get(path)
        return hit[0] if hit and hit[1] > time.monotonic() else None

    def _remember(self, path: str, url: str) -> None:
        with self._lock:
            self._locations[path] = (url, time.monotonic() + LOCATION_TTL)

    def _forget(self, path: str) -> None:
        with self._lock:
            self._locations.pop(path, None)


def _origin(url: str) -> tuple[str, str, int]:
    p = urlsplit(url)
    scheme = p.scheme or "https"
    return scheme, p.hostname or "", p.port or (443 if scheme == "https" else 80)

