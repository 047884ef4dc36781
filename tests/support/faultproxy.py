"""A small fault-injecting HTTP proxy on loopback, between ``mirror`` and the S3 server.

It relays HTTP/1.1 keep-alive traffic (GET/HEAD, no request bodies) and, per its ``Faults``, answers
503 SlowDown, resets or truncates bodies, stalls them, flips bytes without changing the length, adds
latency or caps the rate. It counts requests and body bytes so tests can assert what was fetched.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from dataclasses import dataclass, field


@dataclass
class Faults:
    match: str = ""  # only object GETs whose path contains this are touched ("" = every object GET)
    slowdown_first: int = 0  # answer 503 SlowDown to the first N matching GETs
    reset_after: int | None = None  # send N body bytes then reset the connection ...
    reset_count: int = 0  # ... for this many responses
    truncate_after: int | None = None  # send N body bytes then close cleanly (Content-Length lies)
    truncate_count: int = 0
    stall_after: int | None = None  # send N body bytes then go silent for stall_seconds
    stall_seconds: float = 0.0
    stall_count: int = 0
    corrupt_count: int = 0  # flip one byte in this many matching bodies (-1: all of them)
    latency: float = 0.0  # seconds before each answer
    rate: float | None = None  # bytes per second across all bodies
    blackhole: bool = False  # accept, read, never answer
    ignore_range: bool = False  # answer ranged GETs like a server without Range support: 200, whole body
    # Headers to set on HEAD answers whose path contains the key (value: {header: value, or None to drop}):
    # how a test plays a server moto does not imitate, e.g. AWS's composite "-N" checksums.
    head_headers: dict[str, dict[str, str | None]] = field(default_factory=dict)
    get_headers: dict[str, dict[str, str | None]] = field(default_factory=dict)  # the same, on object GETs


@dataclass
class Counters:
    requests: int = 0
    gets: int = 0
    heads: int = 0
    lists: int = 0
    body_bytes: int = 0  # object bytes relayed for GETs
    faults_applied: list[str] = field(default_factory=list)


class FaultProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.faults = Faults()
        self.counters = Counters()
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None
        self._lock = threading.Lock()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def reset(self, faults: Faults | None = None) -> None:
        with self._lock:
            self.faults = faults or Faults()
            self.counters = Counters()

    def start(self) -> FaultProxy:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            self._server = loop.run_until_complete(asyncio.start_server(self._client, "127.0.0.1", 0))
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            loop.run_forever()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        ready.wait(5)
        return self

    def stop(self) -> None:
        # Stop accepting; the daemon loop thread ends with the test process (stopping the loop under
        # open keep-alive connections only produces "Task was destroyed" noise).
        if self._loop is not None and self._server is not None:
            self._loop.call_soon_threadsafe(self._server.close)

    def _take(self, name: str) -> bool:
        """Consume one use of a counted fault."""
        with self._lock:
            n = getattr(self.faults, name)
            if n == 0:
                return False
            if n > 0:
                setattr(self.faults, name, n - 1)
            self.counters.faults_applied.append(name)
            return True

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                if not await self._one(head, writer):
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    async def _one(self, head: bytes, writer: asyncio.StreamWriter) -> bool:
        """Relay one request; False when the client connection must end."""
        f = self.faults
        line = head.split(b"\r\n", 1)[0].decode()
        method, target = line.split(" ")[:2]
        is_list = "list-type" in target
        is_obj_get = method == "GET" and not is_list and (f.match in target)
        with self._lock:
            self.counters.requests += 1
            self.counters.gets += method == "GET" and not is_list
            self.counters.heads += method == "HEAD"
            self.counters.lists += is_list
        if f.blackhole:
            await asyncio.sleep(3600)
            return False
        if f.latency:
            await asyncio.sleep(f.latency)
        if is_obj_get and self._take("slowdown_first"):
            body = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
                    b"<Message>Please reduce your request rate.</Message></Error>")
            writer.write(b"HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\n"
                         b"Content-Length: %d\r\n\r\n" % len(body) + body)
            await writer.drain()
            return True
        if is_obj_get and f.ignore_range:
            head = b"\r\n".join(h for h in head.split(b"\r\n") if not h.lower().startswith(b"range:"))
        ur, uw = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        try:
            uw.write(head)
            await uw.drain()
            rhead = await ur.readuntil(b"\r\n\r\n")
            length = 0
            chunked = False
            for h in rhead.split(b"\r\n")[1:]:
                if h.lower().startswith(b"content-length:"):
                    length = int(h.split(b":", 1)[1])
                if h.lower().startswith(b"transfer-encoding:") and b"chunked" in h.lower():
                    chunked = True
            if method == "HEAD":
                length = 0
                rhead = _rewrite_head(rhead, target, f.head_headers)
            elif is_obj_get:
                rhead = _rewrite_head(rhead, target, f.get_headers)
            writer.write(rhead)
            if chunked and method != "HEAD":
                await _relay_chunked(ur, writer)
                return True
            sent = 0
            cut = None
            action = ""
            if is_obj_get and length:
                if f.reset_after is not None and self._take("reset_count"):
                    cut, action = f.reset_after, "reset"
                elif f.truncate_after is not None and self._take("truncate_count"):
                    cut, action = f.truncate_after, "truncate"
                elif f.stall_after is not None and self._take("stall_count"):
                    cut, action = f.stall_after, "stall"
            corrupt = is_obj_get and length > 0 and self._take("corrupt_count")
            while sent < length:
                chunk = await ur.read(min(256 * 1024, length - sent))
                if not chunk:
                    return False
                if corrupt and sent == 0:
                    chunk = bytes([chunk[0] ^ 0xFF]) + chunk[1:]
                if cut is not None and sent + len(chunk) >= cut:
                    chunk = chunk[: cut - sent]
                    writer.write(chunk)
                    await writer.drain()
                    self._count(len(chunk), is_obj_get)
                    if action == "stall":
                        await asyncio.sleep(f.stall_seconds)
                        return False
                    if action == "reset":
                        sock = writer.get_extra_info("socket")
                        if sock is not None:
                            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    return False
                writer.write(chunk)
                await writer.drain()
                self._count(len(chunk), is_obj_get)
                sent += len(chunk)
                if f.rate:
                    await asyncio.sleep(len(chunk) / f.rate)
            return True
        finally:
            uw.close()

    def _count(self, n: int, obj: bool) -> None:
        if obj:
            with self._lock:
                self.counters.body_bytes += n


def _rewrite_head(rhead: bytes, target: str, rules: dict[str, dict[str, str | None]]) -> bytes:
    for match, headers in rules.items():
        if match not in target:
            continue
        lines = rhead[:-4].split(b"\r\n")
        names = {k.lower().encode() for k in headers}
        lines = [ln for ln in lines[:1] + [h for h in lines[1:] if h.split(b":", 1)[0].lower() not in names]]
        lines += [f"{k}: {v}".encode() for k, v in headers.items() if v is not None]
        rhead = b"\r\n".join(lines) + b"\r\n\r\n"
    return rhead


async def _relay_chunked(ur: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Pass a chunked body through unchanged (listings come this way)."""
    while True:
        size_line = await ur.readuntil(b"\r\n")
        writer.write(size_line)
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            writer.write(await ur.readuntil(b"\r\n"))
            await writer.drain()
            return
        writer.write(await ur.readexactly(size + 2))
        await writer.drain()
