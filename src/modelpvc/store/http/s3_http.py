"""Signed HTTP requests to an S3 endpoint over one persistent connection per thread.

Keys from the environment or a secret are signed by ``sigv4``; botocore signs only for its credential
chain. The bytes go through ``http11`` so that a 1 GB/s stream is read straight into our buffers
(``readinto``) with no intermediate copies.
"""

from __future__ import annotations

import hashlib
import socket
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit
from xml.etree import ElementTree

from modelpvc.core.errors import (
    AccessDenied,
    ConfigError,
    ModelpvcError,
    NoAnswer,
    SourceChanged,
    SourceError,
    SourceNotFound,
    SourceUnreachable,
    TransientError,
)
from modelpvc.core.settings import S3Settings
from modelpvc.store.http import http11
from modelpvc.store.http.sigv4 import EMPTY_SHA256, UNSIGNED_PAYLOAD, SigV4Signer

if TYPE_CHECKING:
    import ssl

DENIED_CODES = {"AccessDenied", "SignatureDoesNotMatch", "InvalidAccessKeyId", "InvalidToken",
           "ExpiredToken", "AllAccessDisabled", "InvalidSecurity"}
_MISSING = {"NoSuchBucket", "NoSuchKey", "NotFound"}
TRANSIENT_CODES = {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout",
                    "InternalError", "ServiceUnavailable", "RequestTimeTooSkewed"}


@dataclass
class Response:
    """An open response; read the body with ``readinto`` or ``read_all``, then ``release``."""

    raw: http11.Response
    client: S3Http

    @property
    def status(self) -> int:
        return self.raw.status

    @property
    def headers(self) -> Mapping[str, str]:
        return self.raw.headers

    def read_all(self, limit: int = 64 * 1024 * 1024) -> bytes:
        data = self.raw.read(limit)
        self.release()
        return data

    def release(self) -> None:
        """Done with the answer: a body left unread closes its connection (http11), never reused."""
        self.raw.close()


def error_detail(status: int, body: bytes) -> tuple[str, str]:
    """(the XML error ``Code``, "Code: Message" or "HTTP nnn") of an S3 error answer."""
    code = ""
    message = ""
    try:
        root = ElementTree.fromstring(body) if body else None
        if root is not None:
            code = root.findtext("Code") or ""
            message = root.findtext("Message") or ""
    except ElementTree.ParseError:
        pass
    return code, f"{code}: {message}".strip(": ") or f"HTTP {status}"


def is_transient(status: int, code: str) -> bool:
    return code in TRANSIENT_CODES or status >= 500 or status == 429


def is_denied(status: int, code: str) -> bool:
    return status == 403 or code in DENIED_CODES


def s3_error(status: int, body: bytes, what: str) -> ModelpvcError:
    """Map an S3 error response to our error classes, by status and the XML ``Code``."""
    code, detail = error_detail(status, body)
    if status == 412 or code == "PreconditionFailed":
        return SourceChanged(f"{what} changed on the source while it was being copied ({detail})")
    if is_transient(status, code):
        return TransientError(f"{what}: server busy or failing ({detail})")
    if is_denied(status, code):
        return AccessDenied(
            f"access denied reading {what} ({detail})",
            hint="check the access key and secret (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or the "
            "--credentials-dir files) and that they may read this bucket",
        )
    if status == 404 and not code:
        # Every S3 server names its 404 (NoSuchBucket, NoSuchKey): a bare one is another kind of server.
        return ConfigError(f"{what}: the endpoint answered HTTP 404 without an S3 error: it does not look like an "
                           "S3 server", hint="check the endpoint URL (its host, port and path: MinIO's API port, "
                                             "not its console's)")
    if status == 404 or code in _MISSING:
        return SourceNotFound(f"{what} not found ({detail})")
    if status == 301 or code == "PermanentRedirect":
        return ConfigError(f"{what}: wrong region or endpoint ({detail})", hint="set --region")
    return SourceError(f"{what}: unexpected answer {detail}")


class S3Http:
    """Endpoint addressing, signing and per-thread keep-alive connections."""

    def __init__(self, settings: S3Settings) -> None:
        self.settings = settings
        endpoint = settings.endpoint_url or f"https://s3.{settings.region}.amazonaws.com"
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(
                f"endpoint {endpoint!r} is not an http(s) URL", hint="e.g. --endpoint-url http://minio:9000"
            )
        self.endpoint = endpoint.rstrip("/")
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.netloc = parts.netloc
        self.base_path = parts.path.rstrip("/")
        self._local = threading.local()
        self._ssl: ssl.SSLContext | None = None
        if self.scheme == "https":
            import ssl  # here: ~15 ms at start-up, and most endpoints in a cluster are plain http

            ctx = ssl.create_default_context(cafile=settings.ca_bundle, cadata=settings.ca_data)
            if settings.insecure:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            self._ssl = ctx
        self._signer: Any = None  # botocore's, for refreshing credentials from its chain
        self._static: SigV4Signer | None = None  # ours, for keys from the environment or a secret
        self._setup_signer()

    def _setup_signer(self) -> None:
        s = self.settings
        if s.credentials is None and not s.use_credential_chain:
            return  # anonymous: unsigned requests
        if s.credentials is not None:
            self._static = SigV4Signer(s.credentials.access_key, s.credentials.secret_key, s.region,
                                       s.credentials.session_token)
            return
        # Imported here: botocore costs ~0.1 s to import, and only the credential chain needs it.
        import botocore.auth
        import botocore.exceptions
        import botocore.session

        try:
            chain = botocore.session.get_session().get_credentials()
        except botocore.exceptions.BotoCoreError as e:  # a profile that does not exist, a broken config file
            raise ConfigError(f"AWS credential chain: {e}",
                              hint="check AWS_PROFILE and the shared credentials/config files") from e
        if chain is None:
            raise ConfigError(
                "no S3 credentials found",
                hint="set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, pass --credentials-dir, "
                "or --anonymous for a public bucket",
            )
        self._signer = botocore.auth.S3SigV4Auth(chain, "s3", s.region)

    # -- addressing -----------------------------------------------------------------------------
    def path_for(self, bucket: str, key: str = "") -> tuple[str, str]:
        """(Host header value, request path) for a bucket/key under the addressing style."""
        qkey = quote(key, safe="/~")
        if self.settings.path_style:
            path = f"{self.base_path}/{bucket}" + (f"/{qkey}" if key else "/")
            return self.netloc, path
        return f"{bucket}.{self.netloc}", f"{self.base_path}/{qkey}"

    def address_of(self, host: str) -> tuple[str, int]:
        """Where to connect for a Host value of ``path_for`` (a bucket's own name when virtual-hosted)."""
        return (host.rsplit(":", 1)[0] if host != self.netloc else self.host), self.port

    def signed_get(self, bucket: str, key: str, headers: Mapping[str, str]) -> tuple[tuple[str, int], bytes]:
        """A GET of ``key`` as bytes to send (signed now), and the address to send it to: for clients
        other than ``request``'s (store.http.multiget)."""
        host, path = self.path_for(bucket, key)
        hdrs = self._signed("GET", host, path, "", dict(headers), None)
        return self.address_of(host), http11.request_head("GET", path, hdrs, host, None)

    # -- connections ----------------------------------------------------------------------------
    def _conn(self, host: str) -> http11.Connection:
        conn: http11.Connection | None = getattr(self._local, "conn", None)
        if conn is not None and getattr(self._local, "conn_host", None) == host:
            return conn
        self.drop_connection()
        conn = http11.Connection(*self.address_of(host), self.settings.connect_timeout, self._ssl)
        self._local.conn = conn
        self._local.conn_host = host
        return conn

    def drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
        self._local.conn = None

    # -- requests -------------------------------------------------------------------------------
    def request(
        self,
        method: str,
        bucket: str,
        key: str = "",
        *,
        query: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        what: str = "",
        body: bytes | memoryview | None = None,
        wait: float | None = None,
    ) -> Response:
        """Send one signed request; connection-level failures become TransientError.

        A ``body`` up to 1 MiB (XML requests) is signed by its SHA-256; a larger one (a part) is sent
        UNSIGNED-PAYLOAD and must carry an ``x-amz-checksum-*`` header the server checks. ``wait``: seconds the
        server may take before answering (default read_timeout; CompleteMultipartUpload takes minutes)."""
        host, path = self.path_for(bucket, key)
        qs = "&".join(
            f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted((query or {}).items())
        )
        target = path + (f"?{qs}" if qs else "")
        hdrs = self._signed(method, host, path, qs, dict(headers or {}), body)
        conn = self._conn(host)
        what = what or f"s3://{bucket}/{key}"
        answer_within = wait or self.settings.read_timeout
        sent = False
        try:
            sock = conn.ready()
            if sock.gettimeout() != answer_within:
                # The connect timeout was short; the answer (after a body the server must store) may take longer.
                # (settimeout is an ioctl each time: only when the value changes.)
                sock.settimeout(answer_within)
            conn.request(method, target, body=body, headers=hdrs)
            sent = True
            raw = conn.getresponse()
            after = conn.sock  # None when the answer said Connection: close and had no body
            if after is not None and after.gettimeout() != self.settings.read_timeout:
                # The answer's body may legitimately pause up to read_timeout, whatever the wait for its head.
                after.settimeout(self.settings.read_timeout)
        except (OSError, http11.HTTPError) as e:
            self.drop_connection()
            rejected = certificate_rejection(e)
            if rejected is not None:
                raise SourceUnreachable(
                    f"TLS certificate of {self.endpoint} was not accepted: {rejected}",
                    hint="pass the CA that signed it with --ca-bundle FILE (or --insecure to skip the check)",
                ) from e
            if sent and isinstance(e, socket.timeout | TimeoutError):
                raise NoAnswer(f"{what}: {self.endpoint} took the request but sent no answer within "
                               f"{answer_within:g} s (timed out)") from e
            raise TransientError(f"{what}: connection to {self.endpoint} failed ({describe_network_error(e)})") from e
        return Response(raw, self)

    def _signed(self, method: str, host: str, path: str, qs: str, hdrs: dict[str, str],
                body: bytes | memoryview | None) -> dict[str, str]:
        """The request's headers with its signature and Host."""
        payload = EMPTY_SHA256
        if body is not None:
            payload = hashlib.sha256(body).hexdigest() if len(body) <= 1 << 20 else UNSIGNED_PAYLOAD
        if self._static is not None:
            # Only host and x-amz-* must be signed; leaving Range/If-Match out keeps requests valid through
            # proxies that rewrite them (and signing them protects nothing: the body is not signed).
            amz = {k: v for k, v in hdrs.items() if k.lower().startswith("x-amz-")}
            hdrs.update(self._static.sign(method, host_for_signing(host, self.scheme), path, qs, amz,
                                          payload_hash=payload))
        elif self._signer is not None:
            target = path + (f"?{qs}" if qs else "")
            hdrs = self._sign(method, f"{self.scheme}://{host}{target}", hdrs, body)
        hdrs["Host"] = host_for_signing(host, self.scheme)
        return hdrs

    def _sign(self, method: str, url: str, headers: dict[str, str],
              body: bytes | memoryview | None = None) -> dict[str, str]:
        import botocore.awsrequest

        data = bytes(body) if body is not None and len(body) <= 1 << 20 else None
        req = botocore.awsrequest.AWSRequest(method=method, url=url, headers=headers, data=data)
        if body is not None and data is None:
            # botocore's S3 signer reads this switch from the client config (auth.S3SigV4Auth).
            req.context["client_config"] = SimpleNamespace(s3={"payload_signing_enabled": False})
        self._signer.add_auth(req)
        return {k: v for k, v in req.headers.items() if k.lower() != "host"}

    def close(self) -> None:
        self.drop_connection()


def host_for_signing(netloc: str, scheme: str) -> str:
    """The Host header as clients send it: without the scheme's default port."""
    default = ":443" if scheme == "https" else ":80"
    return netloc[: -len(default)] if netloc.endswith(default) else netloc


def certificate_rejection(e: BaseException) -> str | None:
    """Why a TLS peer's certificate was refused, when ``e`` says that (shared with the Hub client)."""
    ssl = sys.modules.get("ssl")  # loaded if TLS was used at all; a plain-http failure never is one
    if ssl is not None and isinstance(e, ssl.SSLCertVerificationError):
        return str(e.verify_message)
    return None


def describe_network_error(e: BaseException) -> str:
    """A short reason for a socket-level failure, for messages (shared by the S3 and Hub clients)."""
    if isinstance(e, socket.timeout | TimeoutError):
        return "timed out"
    if isinstance(e, ConnectionRefusedError):
        return "connection refused"
    if isinstance(e, ConnectionResetError):
        return "connection reset"
    if isinstance(e, socket.gaierror):
        return f"name not resolved: {e.strerror}"
    ssl = sys.modules.get("ssl")
    if ssl is not None and isinstance(e, ssl.SSLError) and not isinstance(e, ssl.SSLCertVerificationError) and \
            any(r in str(e) for r in ("WRONG_VERSION_NUMBER", "record layer failure", "packet length too long")):
        return "TLS handshake failed: the server does not speak TLS on this port (is it http://?)"
    return type(e).__name__ + (f": {e}" if str(e) else "")
