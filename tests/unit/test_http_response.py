"""LeanResponse reads a response head the way ``http.client``'s own HTTPResponse does.

Each raw answer below is parsed twice, by the standard class and by ours, over the same bytes; status,
framing (length, chunked, will_close), the fields and the body must agree. The answers are shaped after
what S3 servers and the Hugging Face CDN send (AWS S3 REST API reference: HEAD/GET response headers).
"""

from __future__ import annotations

import http.client
import io

import pytest

from modelpvc.store.http_response import LeanResponse, fields


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


def _parse(cls: type[http.client.HTTPResponse], raw: bytes, method: str) -> http.client.HTTPResponse:
    resp = cls(_Sock(raw), method=method)  # type: ignore[arg-type]
    resp.begin()
    return resp


@pytest.mark.parametrize("name", list(CASES))
def test_same_answer_as_http_client(name: str) -> None:
    raw = CASES[name]
    method = "HEAD" if name == "head" else "GET"
    std, lean = _parse(http.client.HTTPResponse, raw, method), _parse(LeanResponse, raw, method)
    assert (lean.status, lean.reason, lean.version) == (std.status, std.reason, std.version)
    assert (lean.length, lean.chunked, lean.will_close) == (std.length, std.chunked, std.will_close)
    names = {k.lower() for k, _ in std.getheaders()}
    assert set(fields(lean)) == names
    for n in names:
        # email's Message.get answers the first occurrence; so must we, in any case of the name
        assert fields(lean).get(n.upper()) == std.headers.get(n), n
        assert lean.getheader(n) == std.headers.get(n)
    assert lean.read() == std.read()


def test_folded_value_is_joined_with_a_space() -> None:
    # RFC 9112 5.2: a recipient replaces each obs-fold with a space (email kept the CRLFs in the value)
    raw = b"HTTP/1.1 200 OK\r\nX-Long: first\r\n  second\r\n\tthird\r\nContent-Length: 2\r\n\r\nok"
    lean = _parse(LeanResponse, raw, "GET")
    assert fields(lean)["x-long"] == "first second third"
    assert (lean.length, lean.read()) == (2, b"ok")


def test_a_line_without_colon_is_skipped() -> None:
    # email took such a line for the start of the body and lost the fields after it (Content-Length here,
    # so the body ran to the end of the connection); the fields after it still count
    raw = b"HTTP/1.1 200 OK\r\nbogus line\r\nContent-Length: 3\r\n\r\nabcGARBAGE"
    lean = _parse(LeanResponse, raw, "GET")
    assert (lean.length, lean.will_close, lean.read()) == (3, False, b"abc")


def test_limits_as_http_client() -> None:
    long_line = b"HTTP/1.1 200 OK\r\nX: " + b"a" * 70000 + b"\r\n\r\n"
    with pytest.raises(http.client.LineTooLong):
        _parse(LeanResponse, long_line, "GET")
    many = b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(101)) + b"\r\n"
    with pytest.raises(http.client.HTTPException, match="more than 100 headers"):
        _parse(LeanResponse, many, "GET")
    with pytest.raises(http.client.RemoteDisconnected):
        _parse(LeanResponse, b"", "GET")


def test_fields_of_a_standard_response() -> None:
    std = _parse(http.client.HTTPResponse, CASES["repeated"], "GET")
    assert fields(std) == {"x-amz-meta-a": "one", "content-length": "0"}
