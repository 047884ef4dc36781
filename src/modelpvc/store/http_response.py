"""``http.client`` responses whose header block is parsed without the ``email`` package.

``http.client`` hands every response head to ``email.parser`` (a feed parser, a policy object, a Message
with per-header sanitising). For a 64 KiB object that is most of the client's Python time per GET:
profiled with ``py-spy --gil`` over 2,000 small objects, ``parse_headers`` held the GIL for 17 % of the
run (decisions §14). An S3 or Hub answer head is a handful of ``Name: value`` lines, so this reads them
into a lowercase dict; everything after the head (Content-Length and chunked bodies, keep-alive,
``readinto``) is ``http.client``'s own code, driven by the same attributes its ``begin`` sets.

Semantics kept from ``http.client`` / RFC 9112: the same line and count limits; 1xx interim answers
skipped; an obsolete folded line (leading space or tab) continues the previous value; of a repeated
field the first wins, as ``email.message.Message.get`` answered; a line without a colon is ignored, as
``email`` does (it records a defect and goes on).
"""

from __future__ import annotations

import http.client
from typing import Any

_MAXLINE = 65536  # http.client._MAXLINE
_MAXHEADERS = 100  # http.client._MAXHEADERS


class Headers(dict[str, str]):
    """Field names lowercased; ``get`` and ``get_all`` take any case (``getheader`` uses ``get_all``)."""

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key.lower(), default)

    def get_all(self, key: str, default: Any = None) -> Any:
        value = super().get(key.lower())
        return default if value is None else [value]


def fields(resp: http.client.HTTPResponse) -> Headers:
    """The response's header fields as ``Headers``, whichever response class read them."""
    if isinstance(resp.headers, Headers):
        return resp.headers
    out = Headers()
    for name, value in resp.getheaders():
        out.setdefault(name.lower(), value)
    return out


def read_head(fp: Any) -> Headers:
    """The header fields up to the blank line that ends them."""
    headers = Headers()
    last = ""
    for _ in range(_MAXHEADERS + 1):
        line = fp.readline(_MAXLINE + 1)
        if len(line) > _MAXLINE:
            raise http.client.LineTooLong("header line")
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
    raise http.client.HTTPException(f"got more than {_MAXHEADERS} headers")


class LeanResponse(http.client.HTTPResponse):
    """``HTTPResponse`` with ``begin`` reading the head through ``read_head``; set as a connection's
    ``response_class``. The body logic is inherited unchanged."""

    def begin(self) -> None:
        if self.headers is not None:
            return
        while True:
            version, status, reason = self._read_status()
            if status != http.client.CONTINUE:
                break
            read_head(self.fp)
        self.code = self.status = status
        self.reason = reason.strip()
        if version in ("HTTP/1.0", "HTTP/0.9"):
            self.version = 10
        elif version.startswith("HTTP/1."):
            self.version = 11
        else:
            raise http.client.UnknownProtocol(version)
        headers = read_head(self.fp)
        self.headers = self.msg = headers
        self.chunked = (headers.get("transfer-encoding") or "").lower() == "chunked"
        self.chunk_left = None
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
        if status in (http.client.NO_CONTENT, http.client.NOT_MODIFIED) or 100 <= status < 200 \
                or self._method == "HEAD":
            self.length = 0
        if not self.will_close and not self.chunked and self.length is None:
            self.will_close = True  # no framing: the body runs to the end of the connection
