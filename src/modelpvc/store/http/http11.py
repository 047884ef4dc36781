"""A small HTTP/1.1 client: one persistent connection, requests with a bytes body, bodies read with
``readinto`` straight into the caller's buffers. What the S3 and Hub clients need of ``http.client``,
without importing it.

Why not ``http.client``: importing it costs about 45 ms at every start, because it imports the ``email``
package (to parse response heads) and ``ssl`` (for HTTPS, which most S3 endpoints in a cluster do not
use). A no-op re-run has 0.3 s in all, most of it imports (docs/decisions.md §14). Its head parsing also
went through ``email.parser``: 17 % of the GIL time over 2,000 small GETs.

What is kept from ``http.client`` and RFC 9112, and tested side by side with it over the same bytes
(tests/unit/test_http11.py):
- heads: the same line and field-count limits; 1xx interim answers skipped; an obsolete folded line
  (leading space or tab) continues the previous value; of a repeated field the first wins, as
  ``email.message.Message.get`` answered; a line without a colon is skipped;
- bodies (§6.3): none for HEAD, 1xx, 204 and 304; chunked before Content-Length; a negative or
  unparsable Content-Length is no length; without framing the body runs to the end of the connection;
- keep-alive: HTTP/1.1 unless ``Connection: close``, HTTP/1.0 only with keep-alive; a connection whose
  answer was not read to its end is closed, never reused (its leftover bytes would be the next answer);
- requests: ``Host`` and ``Accept-Encoding: identity`` unless given, ``Content-Length`` for a body (and 0
  for PUT and POST without one); a header name or value with CR, LF or NUL is refused (header injection);
  ``TCP_NODELAY``.

Errors: network failures are ``OSError`` (a server that closes a kept-alive connection instead of
answering is ``RemoteDisconnected``, a ``ConnectionResetError``); a malformed answer is ``HTTPError``; a
body cut short is ``IncompleteBody`` (an ``HTTPError``) or a short ``readinto``, as with ``http.client``.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import ssl
    from io import BufferedIOBase as Reader

MAXLINE = 65536  # http.client._MAXLINE
MAXHEADERS = 100  # http.client._MAXHEADERS
_JOIN_BODY = 64 * 1024  # a body up to this size goes out in the same send() as the head
_BAD_IN_HEADER = ("\r", "\n", "\0")


class HTTPError(Exception):
    """An answer that is not HTTP as we can read it (the role of ``http.client.HTTPException``)."""


class IncompleteBody(HTTPError):
    """The connection ended inside a chunked or a whole-body read."""


class RemoteDisconnected(ConnectionResetError):
    """The server closed the connection instead of answering (typically a kept-alive one it dropped)."""


class Headers(dict[str, str]):
    """Field names lowercased; ``get`` takes any case."""

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key.lower(), default)


def read_head(fp: Reader) -> Headers:
    """The header fields up to the blank line that ends them."""
    headers = Headers()
    last = ""
    for _ in range(MAXHEADERS + 1):
        line = fp.readline(MAXLINE + 1)
        if len(line) > MAXLINE:
            raise HTTPError("got a header line longer than 64 KiB")
        if line in (b"\r\n", b"\n", b""):
            return headers
        text = line.decode("iso-8859-1")
        if text[0] in " \t":
            if last:
                headers[last] = f"{headers[last]} {text.strip()}"
            continue
        name, sep, value = text.partition(":")
        if not sep:
            continue
        name = name.strip().lower()
        if name in headers:
            last = ""  # a repeat: the first occurrence stands, without this one's continuation lines
            continue
        last = name
        headers[name] = value.strip()
    raise HTTPError(f"got more than {MAXHEADERS} headers")


class Response:
    """One answer. Read its body with ``readinto`` or ``read``; it is closed once the body is read."""

    status: int
    reason: str
    version: int  # 10 or 11
    headers: Headers
    length: int | None  # body bytes still to come, when the answer framed them by Content-Length
    chunked: bool
    will_close: bool

    def __init__(self, fp: Reader, method: str, on_close: Callable[[bool], None] | None = None) -> None:
        self._fp: Reader | None = fp
        self._method = method
        self._on_close = on_close  # called with True when the connection may carry the next request
        self._chunk_left: int | None = None

    # -- the head ------------------------------------------------------------------------------
    def begin(self) -> None:
        assert self._fp is not None
        while True:
            version, status, reason = self._read_status(self._fp)
            if not 100 <= status < 200:
                break
            read_head(self._fp)  # an interim answer (100 Continue, 103 Early Hints): its fields are not ours
        self.status, self.reason = status, reason
        if version in ("HTTP/1.0", "HTTP/0.9"):
            self.version = 10
        elif version.startswith("HTTP/1."):
            self.version = 11
        else:
            raise HTTPError(f"unsupported protocol version {version!r}")
        self.headers = headers = read_head(self._fp)
        self.chunked = (headers.get("transfer-encoding") or "").lower() == "chunked"
        self.will_close = self._check_close()
        self.length = None
        length = headers.get("content-length")
        if length and not self.chunked:
            try:
                self.length = int(length)
            except ValueError:
                self.length = None
            else:
                if self.length < 0:
                    self.length = None
        if status in (204, 304) or self._method == "HEAD":
            self.length = 0  # no body, whatever Content-Length or Transfer-Encoding say (RFC 9112 §6.3)
            self._done()
            return
        if not self.will_close and not self.chunked and self.length is None:
            self.will_close = True  # no framing: the body runs to the end of the connection
        if self.length == 0 and not self.chunked:
            self._done()

    @staticmethod
    def _read_status(fp: Reader) -> tuple[str, int, str]:
        raw = fp.readline(MAXLINE + 1)
        if len(raw) > MAXLINE:
            raise HTTPError("got a status line longer than 64 KiB")
        if not raw:
            raise RemoteDisconnected("the server closed the connection without answering")
        line = raw.decode("iso-8859-1")
        words = line.split(None, 2)
        version = words[0] if words else ""
        if not version.startswith("HTTP/") or len(words) < 2:
            raise HTTPError(f"not an HTTP status line: {line[:80]!r}")
        try:
            status = int(words[1])
        except ValueError:
            raise HTTPError(f"not an HTTP status line: {line[:80]!r}") from None
        if not 100 <= status <= 999:
            raise HTTPError(f"not an HTTP status line: {line[:80]!r}")
        return version, status, (words[2] if len(words) > 2 else "").strip()

    def _check_close(self) -> bool:
        conn = (self.headers.get("connection") or "").lower()
        if self.version == 11:
            return "close" in conn
        keep = self.headers.get("keep-alive") or "keep-alive" in conn \
            or "keep-alive" in (self.headers.get("proxy-connection") or "").lower()
        return not keep

    def getheader(self, name: str, default: str | None = None) -> str | None:
        value: str | None = self.headers.get(name, default)
        return value

    # -- the body ------------------------------------------------------------------------------
    def isclosed(self) -> bool:
        return self._fp is None

    def close(self) -> None:
        """Stop reading. If the body was not read to its end the connection is closed too."""
        self._finish(reusable=False)

    def _done(self) -> None:
        """The whole body was read: the connection may carry the next request unless the answer said no."""
        self._finish(reusable=not self.will_close)

    def _finish(self, reusable: bool) -> None:
        if self._fp is not None:
            self._fp = None
            if self._on_close is not None:
                self._on_close(reusable)

    def readinto(self, b: Any) -> int:
        """Read up to ``len(b)`` body bytes into ``b``; 0 at the end of the body (or if it was cut short
        without chunked framing: compare with Content-Length, as with ``http.client``)."""
        fp = self._fp
        if fp is None:
            return 0
        view = memoryview(b).cast("B")
        if self.chunked:
            return self._readinto_chunked(fp, view)
        if self.length is not None and len(view) > self.length:
            view = view[: self.length]
        if not view:
            return 0
        n = fp.readinto(view)
        if not n:
            self.close()  # the connection ended early: the caller sees fewer bytes than announced
            return 0
        if self.length is not None:
            self.length -= n
            if not self.length:
                self._done()
        return n

    def read(self, amt: int | None = None) -> bytes:
        """Up to ``amt`` body bytes (all of it when None: then a body cut short is ``IncompleteBody``)."""
        fp = self._fp
        if fp is None:
            return b""
        if self.chunked or self.length is None:
            out = bytearray()
            while amt is None or len(out) < amt:
                piece = bytearray(1 << 16 if amt is None else min(1 << 16, amt - len(out)))
                n = self.readinto(piece)
                if not n:
                    break
                out += piece[:n]
            return bytes(out)
        want = self.length if amt is None else min(amt, self.length)
        data = fp.read(want)
        self.length -= len(data)
        if len(data) < want:
            self.close()
            if amt is None:
                raise IncompleteBody(f"the answer ended {want - len(data)} bytes short of its Content-Length")
        elif not self.length:
            self._done()
        return data

    def _readinto_chunked(self, fp: Reader, view: memoryview) -> int:
        total = 0
        while total < len(view):
            if not self._chunk_left:
                if self._chunk_left == 0:
                    self._expect_crlf(fp)  # the end of the chunk before
                size = self._chunk_size(fp)
                if size == 0:
                    while fp.readline(MAXLINE + 1) not in (b"\r\n", b"\n", b""):
                        pass  # trailer fields: none of them is ours
                    self._done()
                    return total
                self._chunk_left = size
            want = min(self._chunk_left, len(view) - total)
            n = fp.readinto(view[total:total + want])
            if not n:
                self.close()
                raise IncompleteBody(f"the answer ended inside a chunk ({self._chunk_left} bytes missing)")
            total += n
            self._chunk_left -= n
        return total

    @staticmethod
    def _chunk_size(fp: Reader) -> int:
        line = fp.readline(MAXLINE + 1)
        if len(line) > MAXLINE:
            raise HTTPError("got a chunk-size line longer than 64 KiB")
        if not line:
            raise IncompleteBody("the answer ended before its next chunk")
        try:
            return int(line.split(b";", 1)[0], 16)
        except ValueError:
            raise HTTPError(f"not a chunk size: {line[:40]!r}") from None

    @staticmethod
    def _expect_crlf(fp: Reader) -> None:
        if fp.readline(MAXLINE + 1) not in (b"\r\n", b"\n"):
            raise HTTPError("a chunk did not end with CRLF")


def request_head(method: str, target: str, headers: Mapping[str, str], host: str, body_length: int | None) -> bytes:
    """The request line and fields: ``Host`` and ``Accept-Encoding: identity`` unless given, and the
    body's ``Content-Length``; a name or value that would inject a field is refused."""
    given = {k.lower() for k in headers}
    lines = [f"{method} {target} HTTP/1.1"]
    if "host" not in given:
        lines.append(f"Host: {host}")
    if "accept-encoding" not in given:
        lines.append("Accept-Encoding: identity")
    if "content-length" not in given:
        if body_length is not None:
            lines.append(f"Content-Length: {body_length}")
        elif method in ("PUT", "POST", "PATCH"):
            lines.append("Content-Length: 0")
    for name, value in headers.items():
        if any(c in name or c in value for c in _BAD_IN_HEADER) or ":" in name:
            raise ValueError(f"invalid HTTP header {name!r}")
        lines.append(f"{name}: {value}")
    if any(c in target for c in (" ", *_BAD_IN_HEADER)):
        raise ValueError(f"invalid request target {target!r}")
    lines.append("\r\n")
    return "\r\n".join(lines).encode("latin-1")


class Connection:
    """One keep-alive connection to ``host:port`` (TLS when given a context). ``sock`` is None until
    ``connect`` and after ``close``; ``request`` reconnects if needed."""

    def __init__(self, host: str, port: int, timeout: float | None, context: ssl.SSLContext | None = None) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self.context = context
        # Sent unless the caller gives one (S3 signs its own): without the scheme's default port.
        self.host_header = (host if ":" not in host else f"[{host}]") + (
            "" if port == (443 if context is not None else 80) else f":{port}")
        self.sock: socket.socket | None = None
        self._fp: Reader | None = None
        self._response: Response | None = None
        self._method = ""  # of the request last sent

    def connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), self.timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.context is not None:
                sock = self.context.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        self._fp = sock.makefile("rb")

    def close(self) -> None:
        fp, sock = self._fp, self.sock
        self._fp = self.sock = None
        self._response = None
        if fp is not None:
            fp.close()
        if sock is not None:
            sock.close()

    def ready(self) -> socket.socket:
        """The socket the next request goes out on: connected, with no earlier answer left on it (an
        answer not read to its end closes the connection: its rest must not be taken for the next)."""
        if self._response is not None:
            self.close()
        if self.sock is None:
            self.connect()
        assert self.sock is not None
        return self.sock

    def request(self, method: str, target: str, body: bytes | memoryview | None = None,
                headers: Mapping[str, str] | None = None) -> None:
        sock = self.ready()
        head = request_head(method, target, headers or {}, self.host_header, None if body is None else len(body))
        if body is not None and len(body) <= _JOIN_BODY:
            sock.sendall(head + bytes(body))
        else:
            sock.sendall(head)
            if body is not None:
                sock.sendall(body)
        self._method = method

    def getresponse(self) -> Response:
        if self._fp is None:
            raise HTTPError("no request was sent on this connection")
        resp = Response(self._fp, self._method, lambda reusable: self._answered(resp, reusable))
        self._response = resp
        try:
            resp.begin()
        except BaseException:
            self.close()
            raise
        return resp

    def _answered(self, resp: Response, reusable: bool) -> None:
        if self._response is not resp:
            return  # an answer of a connection closed since: nothing of it is open any more
        self._response = None
        if not reusable:
            self.close()
