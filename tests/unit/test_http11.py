"""Our HTTP/1.1 client reads answers the way ``http.client`` does, and talks to a real socket.

Each raw answer below is parsed twice, by ``http.client.HTTPResponse`` and by ours, over the same bytes;
status, framing (length, chunked, will_close), the fields and the body must agree. The answers are shaped
after what S3 servers and the Hugging Face CDN send (AWS S3 REST API reference: HEAD/GET response
headers). The connection tests run a small server on loopback that records what arrived and on which
TCP connection.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import socket
import threading
from collections.abc import Iterator

import pytest

from modelpvc.store.http.http11 import Connection, HTTPError, IncompleteBody, RemoteDisconnected, Response


class _Sock:
    def __init__(self, raw: bytes) -> None:
        self.raw = raw

    def makefile(self, mode: str) -> io.BufferedReader:
        return io.BufferedReader(io.BytesIO(self.raw))  # type: ignore[arg-type]


S3_GET = (b"HTTP/1.1 200 OK\r\nAccept-Ranges: bytes\r\nContent-Length: 11\r\nContent-Type: application/octet-stream\r\n"
          b'ETag: "3debda2511d9ae14240e4abd7b3a3ed6"\r\nLast-Modified: Sat, 28 Nov 2026 10:00:00 GMT\r\n'
          b"x-amz-checksum-crc64nvme: AAAAAAAAAAA=\r\nx-amz-checksum-type: FULL_OBJECT\r\n"
          b"x-amz-request-id: 1\r\nDate: Sat, 28 Nov 2026 10:00:00 GMT\r\n\r\nhello world")

CASES = {
    "s3 get": S3_GET,
    "chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    "head": b"HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\nx-amz-mp-parts-count: 3\r\n\r\n",
    "interim 100": b"HTTP/1.1 100 Continue\r\nX-Junk: 1\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    "http/1.0 closes": b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
    "http/1.0 keep-alive": b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 2\r\n\r\nok",
    "no framing": b"HTTP/1.1 200 OK\r\nServer: x\r\n\r\nuntil the end",
    "connection close": b"HTTP/1.1 503 Slow Down\r\nConnection: close\r\nContent-Length: 4\r\n\r\nbusy",
    "repeated": b"HTTP/1.1 200 OK\r\nX-Amz-Meta-A: one\r\nx-amz-meta-a: two\r\nContent-Length: 0\r\n\r\n",
    "no content": b"HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n",
    "bare LF": b"HTTP/1.1 206 Partial Content\nContent-Range: bytes 0-1/10\nContent-Length: 2\n\nab",
    "negative length": b"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\nbody",
    "odd length": b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\nbody",
    "redirect": b"HTTP/1.1 302 Found\r\nLocation: https://cdn.example/x?sig=1\r\nContent-Length: 0\r\n\r\n",
}


CASES["chunk extension and trailer"] = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                      b"5;name=v\r\nhello\r\n0\r\nX-Trailer: 1\r\n\r\n")
CASES["head, chunked"] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nETag: \"x\"\r\n\r\n"
CASES["chunked beats length"] = (b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\n\r\n"
                                 b"2\r\nok\r\n0\r\n\r\n")


def _std(raw: bytes, method: str) -> http.client.HTTPResponse:
    resp = http.client.HTTPResponse(_Sock(raw), method=method)  # type: ignore[arg-type]
    resp.begin()
    return resp


def _ours(raw: bytes, method: str = "GET") -> Response:
    resp = Response(io.BufferedReader(io.BytesIO(raw)), method)  # type: ignore[arg-type]
    resp.begin()
    return resp


def _drain(resp: Response, piece: int) -> bytes:
    out = b""
    buf = bytearray(piece)
    while n := resp.readinto(buf):
        out += buf[:n]
    return out


@pytest.mark.parametrize("name", list(CASES))
def test_same_answer_as_http_client(name: str) -> None:
    raw = CASES[name]
    method = "HEAD" if name.startswith("head") else "GET"
    std, ours = _std(raw, method), _ours(raw, method)
    assert (ours.status, ours.reason, ours.version) == (std.status, std.reason, std.version)
    assert (ours.chunked, ours.will_close) == (std.chunked, std.will_close)
    if not std.chunked:
        assert ours.length == std.length
    names = {k.lower() for k, _ in std.getheaders()}
    assert set(ours.headers) == names
    for n in names:
        # email's Message.get answers the first occurrence; so must we, in any case of the name
        assert ours.headers.get(n.upper()) == std.headers.get(n), n
        assert ours.getheader(n) == std.headers.get(n)
    body = std.read()
    assert ours.read() == body
    assert ours.isclosed()
    for piece in (1, 3, 4096):
        again = _ours(raw, method)
        assert _drain(again, piece) == body, piece
        assert again.isclosed()


def test_folded_value_is_joined_with_a_space() -> None:
    # RFC 9112 5.2: a recipient replaces each obs-fold with a space (email kept the CRLFs in the value)
    raw = b"HTTP/1.1 200 OK\r\nX-Long: first\r\n  second\r\n\tthird\r\nContent-Length: 2\r\n\r\nok"
    ours = _ours(raw)
    assert ours.headers["x-long"] == "first second third"
    assert (ours.length, ours.read()) == (2, b"ok")


def test_a_line_without_colon_is_skipped() -> None:
    # email took such a line for the start of the body and lost the fields after it (Content-Length here,
    # so the body ran to the end of the connection); the fields after it still count
    raw = b"HTTP/1.1 200 OK\r\nbogus line\r\nContent-Length: 3\r\n\r\nabcGARBAGE"
    ours = _ours(raw)
    assert (ours.length, ours.will_close, ours.read()) == (3, False, b"abc")


def test_limits_as_http_client() -> None:
    long_line = b"HTTP/1.1 200 OK\r\nX: " + b"a" * 70000 + b"\r\n\r\n"
    with pytest.raises(HTTPError, match="longer than 64 KiB"):
        _ours(long_line)
    many = b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(101)) + b"\r\n"
    with pytest.raises(HTTPError, match="more than 100 headers"):
        _ours(many)
    with pytest.raises(RemoteDisconnected):
        _ours(b"")
    assert issubclass(RemoteDisconnected, OSError)  # callers retry it as a network failure
    for bad in (b"ICY 200 OK\r\n\r\n", b"HTTP/1.1 abc OK\r\n\r\n", b"HTTP/1.1 42 Short\r\n\r\n", b"HTTP/1.1\r\n\r\n"):
        with pytest.raises(HTTPError, match="not an HTTP status line"):
            _ours(bad)
        with pytest.raises(http.client.HTTPException):
            _std(bad, "GET")


def test_a_body_cut_short() -> None:
    cut = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabcd"
    ours = _ours(cut)
    buf = bytearray(10)
    assert ours.readinto(buf) == 4  # what arrived, then the end: the caller compares with the length
    assert ours.readinto(buf) == 0
    with pytest.raises(IncompleteBody, match="6 bytes short"):
        _ours(cut).read()
    with pytest.raises(http.client.IncompleteRead):
        _std(cut, "GET").read()
    chunk_cut = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\nabc"
    with pytest.raises(IncompleteBody):
        _ours(chunk_cut).read()
    with pytest.raises(http.client.IncompleteRead):
        _std(chunk_cut, "GET").read()
    with pytest.raises(HTTPError, match="not a chunk size"):
        _ours(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").read()


# -- over a socket ------------------------------------------------------------------------------------

class _Server:
    """Answers each request from a script; records (connection number, request head, body)."""

    def __init__(self, answers: list[bytes], close_after: int | None = None) -> None:
        self.answers = answers
        self.close_after = close_after  # answers per connection before the server closes it
        self.seen: list[tuple[int, bytes, bytes]] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn_no = 0
        while self.answers:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn_no += 1
            with conn, conn.makefile("rb") as fp, contextlib.suppress(OSError):  # a client that hung up
                served = 0
                while self.answers and (self.close_after is None or served < self.close_after):
                    head = b""
                    while (line := fp.readline()) not in (b"\r\n", b""):
                        head += line
                    if not head:
                        break
                    length = next((int(x.split(b":")[1]) for x in head.split(b"\r\n")
                                   if x.lower().startswith(b"content-length:")), 0)
                    self.seen.append((conn_no, head, fp.read(length)))
                    conn.sendall(self.answers.pop(0))
                    served += 1

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def server() -> Iterator[type[_Server]]:
    made: list[_Server] = []

    def make(answers: list[bytes], close_after: int | None = None) -> _Server:
        made.append(_Server(answers, close_after))
        return made[-1]

    yield make  # type: ignore[misc]
    for s in made:
        s.close()


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def test_keep_alive_reuses_the_connection_and_sends_what_http_client_sends(server) -> None:  # type: ignore[no-untyped-def]
    srv = server([OK, OK])
    conn = Connection("127.0.0.1", srv.port, 5)
    conn.request("GET", "/b/k?x=1", headers={"Range": "bytes=0-1"})
    assert conn.getresponse().read() == b"ok"
    conn.request("PUT", "/b/k", body=b"data")
    assert conn.getresponse().read() == b"ok"
    conn.close()
    (c1, head1, _), (c2, head2, body2) = srv.seen
    assert c1 == c2 == 1
    assert head1.startswith(b"GET /b/k?x=1 HTTP/1.1\r\n")
    assert f"Host: 127.0.0.1:{srv.port}".encode() in head1
    assert b"Accept-Encoding: identity" in head1 and b"Range: bytes=0-1" in head1
    assert b"Content-Length" not in head1
    assert b"Content-Length: 4" in head2 and body2 == b"data"


def test_an_answer_not_read_to_its_end_is_never_followed_on_its_connection(server) -> None:  # type: ignore[no-untyped-def]
    long = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 100000
    srv = server([long, OK])
    conn = Connection("127.0.0.1", srv.port, 5)
    conn.request("GET", "/a")
    resp = conn.getresponse()
    assert resp.read(10) == b"x" * 10
    old = conn.sock
    fresh = conn.ready()  # where callers set the next request's timeout: already the new connection
    assert fresh is not old and conn.ready() is fresh
    conn.request("GET", "/b")  # the rest of /a must not be read as this answer
    assert conn.getresponse().read() == b"ok"
    assert [c for c, _, _ in srv.seen] == [1, 2]
    resp.close()  # late: must not close the new connection
    assert conn.sock is not None
    conn.close()


def test_connection_close_and_a_dropped_keep_alive(server) -> None:  # type: ignore[no-untyped-def]
    closing = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"
    srv = server([closing, OK, OK], close_after=1)
    conn = Connection("127.0.0.1", srv.port, 5)
    conn.request("GET", "/a")
    assert conn.getresponse().read() == b"ok"
    assert conn.sock is None  # the server said close: the next request opens a new connection
    conn.request("GET", "/b")
    assert conn.getresponse().read() == b"ok"
    # the server now drops this kept-alive connection without answering the next request
    conn.request("GET", "/c")
    with pytest.raises(OSError):
        conn.getresponse()
    conn.close()
    conn.request("GET", "/c")
    assert conn.getresponse().read() == b"ok"
    assert [c for c, _, _ in srv.seen] == [1, 2, 3]


def test_header_injection_is_refused(server) -> None:  # type: ignore[no-untyped-def]
    srv = server([OK])
    conn = Connection("127.0.0.1", srv.port, 5)
    for headers in ({"If-Match": '"abc"\r\nX-Evil: 1'}, {"X\nY": "1"}, {"X:Y": "1"}, {"X": "a\0b"}):
        with pytest.raises(ValueError, match="invalid HTTP header"):
            conn.request("GET", "/a", headers=headers)
    with pytest.raises(ValueError, match="invalid request target"):
        conn.request("GET", "/a b")
    conn.close()
