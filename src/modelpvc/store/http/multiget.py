"""Whole GETs of many small objects: a few keep-alive connections, all served by one thread.

Why: with a thread per request, 2,000 objects of 64 KiB cost the client more CPU than the server
(each answer wakes a thread that must first take the GIL back from another: ~7 context switches per
object); one thread waiting on all its connections at once (``selectors``) costs about a third less
(docs/decisions.md §19). The bodies still go to the caller as they arrive.

Only the happy path is handled here: an answer that is not ``200`` with exactly the expected
``Content-Length``, a connection that fails or stays silent, is handed back to the caller (``failed``),
whose ordinary client then retries it and explains what went wrong. After as many failures in a row as
there are connections, no new request is started. Plain HTTP only (a TLS socket that would block
mid-record is another state machine; ``https`` endpoints keep the threaded path).
"""

from __future__ import annotations

import io
import selectors
import socket
import time
from collections.abc import Callable, Hashable
from typing import Protocol

from modelpvc.store.http.http11 import MAXLINE, Headers, HTTPError, Response

_BUFFER = 256 * 1024  # per connection: the head and the body's first bytes arrive in one recv


class Gets(Protocol):
    """The caller's side: the requests to send, and what became of each."""

    def next(self) -> tuple[Hashable, bytes, int] | None:
        """(token, the request's bytes, the body's length) for the next object; None when there is none."""
        ...

    def head(self, token: Hashable, headers: Headers) -> None:
        """The answer's fields, before its body."""
        ...

    def data(self, token: Hashable, offset: int, view: memoryview) -> None:
        """Body bytes at ``offset``; the view is only valid during the call."""
        ...

    def done(self, token: Hashable) -> None: ...

    def failed(self, token: Hashable, error: Exception) -> None:
        """Not fetched here (the bytes given so far are void): fetch it some other way."""
        ...


class Refused(HTTPError):
    """An answer this path does not take (not 200, another length, chunked): the caller's client will."""


class _Conn:
    def __init__(self) -> None:
        self.sock: socket.socket | None = None
        self.buf = bytearray(_BUFFER)
        self.view = memoryview(self.buf)
        self.token: Hashable | None = None
        self.length = 0
        self.pos = -1  # body bytes received; -1 while the head is still coming
        self.filled = 0  # head bytes in buf
        self.close_after = False
        self.since = 0.0  # last bytes received (or the request sent)


def get_many(address: tuple[str, int], gets: Gets, connections: int, connect_timeout: float,
             read_timeout: float, stop: Callable[[], bool]) -> None:
    """Run every GET ``gets`` hands out, ``connections`` at a time. Returns when none is left (or at
    ``stop``, leaving those in flight as they are). Errors raised by ``gets`` itself propagate."""
    run = _Run(address, gets, max(1, connections), connect_timeout)
    try:
        for c in run.conns:
            run.start(c)
        while any(c.token is not None for c in run.conns) and not stop():
            for key, _ in run.sel.select(timeout=0.2):
                run.receive(key.data)
            now = time.monotonic()
            for c in run.conns:
                if c.token is not None and now - c.since > read_timeout:
                    run.fail(c, TimeoutError(f"no answer within {read_timeout:g} s"))
                    run.start(c)
    finally:
        for c in run.conns:
            run.drop(c)
        run.sel.close()


class _Run:
    def __init__(self, address: tuple[str, int], gets: Gets, connections: int, connect_timeout: float) -> None:
        self.address = address
        self.gets = gets
        self.connect_timeout = connect_timeout
        self.sel = selectors.DefaultSelector()
        self.conns = [_Conn() for _ in range(connections)]
        self.failures = 0  # in a row

    def start(self, c: _Conn) -> None:
        """Send ``c`` the next request, if there is one and the last ones did not all fail."""
        if self.failures >= len(self.conns):
            return
        nxt = self.gets.next()
        if nxt is None:
            return
        c.token, request, c.length = nxt
        c.pos, c.filled, c.close_after = -1, 0, False
        try:
            if c.sock is None:
                sock = socket.create_connection(self.address, self.connect_timeout)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.setblocking(False)
                self.sel.register(sock, selectors.EVENT_READ, c)
                c.sock = sock
            # An idle connection's send buffer is empty: a request of a few hundred bytes goes at once.
            if c.sock.send(request) != len(request):
                raise OSError("the request did not fit the connection's send buffer")
        except OSError as e:
            self.fail(c, e)
            return
        c.since = time.monotonic()

    def receive(self, c: _Conn) -> None:
        try:
            finished = _receive(c, self.gets)
        except (OSError, HTTPError) as e:
            self.fail(c, e)
            self.start(c)
            return
        if finished:
            self.failures = 0
            token, c.token = c.token, None
            if c.close_after:
                self.drop(c)
            self.gets.done(token)
            self.start(c)

    def fail(self, c: _Conn, error: Exception) -> None:
        self.failures += 1
        self.drop(c)
        token, c.token = c.token, None
        self.gets.failed(token, error)

    def drop(self, c: _Conn) -> None:
        if c.sock is not None:
            self.sel.unregister(c.sock)
            c.sock.close()
            c.sock = None


def _receive(c: _Conn, gets: Gets) -> bool:
    """Take what arrived on ``c``; True when its answer is complete."""
    assert c.sock is not None
    if c.pos < 0:
        n = c.sock.recv_into(c.view[c.filled:])
        if not n:
            raise ConnectionResetError("the server closed the connection")
        c.filled += n
        c.since = time.monotonic()
        end = c.buf.find(b"\r\n\r\n", 0, c.filled)
        if end < 0:
            if c.filled >= min(MAXLINE, _BUFFER) or c.buf.find(b"\n\n", 0, c.filled) >= 0:
                raise Refused("an answer head this path does not read (too long, or bare line feeds)")
            return False
        c.close_after = _check_head(c, bytes(c.buf[:end + 4]), gets)
        c.pos = 0
        body = c.filled - end - 4
        if body > c.length:
            raise Refused("more bytes than the answer's Content-Length")
        if body:
            gets.data(c.token, 0, c.view[end + 4:c.filled])
            c.pos = body
        return c.pos == c.length
    n = c.sock.recv_into(c.view[:min(_BUFFER, c.length - c.pos)])
    if not n:
        raise ConnectionResetError(f"the server closed the connection {c.length - c.pos} bytes short")
    c.since = time.monotonic()
    gets.data(c.token, c.pos, c.view[:n])
    c.pos += n
    return c.pos == c.length


def _check_head(c: _Conn, head: bytes, gets: Gets) -> bool:
    """Parse and accept the head (as ``http11`` reads it); True when the connection ends with it."""
    resp = Response(io.BufferedReader(io.BytesIO(head)), "GET")
    resp.begin()
    if resp.status != 200 or resp.chunked or resp.length != c.length:
        raise Refused(f"answered {resp.status} {resp.reason}, {resp.length} bytes"
                      f"{' chunked' if resp.chunked else ''}")
    gets.head(c.token, resp.headers)
    return resp.will_close
