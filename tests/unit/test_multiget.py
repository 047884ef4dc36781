"""multiget against a real socket server on loopback: what it takes, and everything it hands back.

The server answers each request by its path with scripted bytes (split into small sends where a test
wants a head or body to arrive in pieces), so each answer shape an S3 server or proxy may send is met
over a real connection.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Hashable, Iterator

import pytest

from modelpvc.store.http.http11 import Headers
from modelpvc.store.http.multiget import get_many


def ok(body: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nETag: \"e\"\r\n%s\r\n" % (len(body), extra) + body


class Server:
    """Answers GET /<name> with ``answers[name]`` (bytes, or a callable given the connection)."""

    def __init__(self, answers: dict[str, bytes | Callable[[socket.socket], bool]]) -> None:
        self.answers = answers
        self.lsock = socket.create_server(("127.0.0.1", 0))
        self.lsock.settimeout(0.2)
        self.connections = 0
        self.requests: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    @property
    def address(self) -> tuple[str, int]:
        return "127.0.0.1", self.lsock.getsockname()[1]

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.lsock.accept()
            except OSError:
                continue
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):  # the client may drop a connection it gave up on
            data = b""
            while not self.stop.is_set():
                while b"\r\n\r\n" not in data:
                    piece = conn.recv(65536)
                    if not piece:
                        return
                    data += piece
                head, _, data = data.partition(b"\r\n\r\n")
                name = head.split(b" ")[1].decode().lstrip("/")
                self.requests.append(name)
                answer = self.answers[name]
                if callable(answer):
                    if not answer(conn):
                        return
                else:
                    conn.sendall(answer)

    def close(self) -> None:
        self.stop.set()
        self.lsock.close()


class Recorder:
    def __init__(self, names: list[tuple[str, int]]) -> None:
        self.todo = list(names)
        self.bodies: dict[str, bytearray] = {}
        self.heads: dict[str, Headers] = {}
        self.finished: list[str] = []
        self.refused: dict[str, str] = {}

    def next(self) -> tuple[Hashable, bytes, int] | None:
        if not self.todo:
            return None
        name, length = self.todo.pop(0)
        self.bodies[name] = bytearray()
        return name, f"GET /{name} HTTP/1.1\r\nHost: x\r\n\r\n".encode(), length

    def head(self, token: Hashable, headers: Headers) -> None:
        self.heads[str(token)] = headers

    def data(self, token: Hashable, offset: int, view: memoryview) -> None:
        assert offset == len(self.bodies[str(token)])
        self.bodies[str(token)] += view

    def done(self, token: Hashable) -> None:
        self.finished.append(str(token))

    def failed(self, token: Hashable, error: Exception) -> None:
        self.refused[str(token)] = f"{type(error).__name__}: {error}"


@pytest.fixture
def server() -> Iterator[Callable[[dict[str, bytes | Callable[[socket.socket], bool]]], Server]]:
    made: list[Server] = []

    def make(answers: dict[str, bytes | Callable[[socket.socket], bool]]) -> Server:
        made.append(Server(answers))
        return made[-1]

    yield make
    for s in made:
        s.close()


def run(srv: Server, names: list[tuple[str, int]], connections: int = 3, read_timeout: float = 5.0) -> Recorder:
    rec = Recorder(names)
    get_many(srv.address, rec, connections, 2.0, read_timeout, lambda: False)
    return rec


def test_bodies_arrive_whole_over_kept_alive_connections(server):  # type: ignore[no-untyped-def]
    bodies = {f"o{i}": bytes([i]) * (1000 + 37 * i) for i in range(30)}
    srv = server({n: ok(b) for n, b in bodies.items()})
    rec = run(srv, [(n, len(b)) for n, b in bodies.items()])
    assert sorted(rec.finished) == sorted(bodies) and rec.refused == {}
    assert {n: bytes(b) for n, b in rec.bodies.items()} == bodies
    assert rec.heads["o3"].get("ETag") == '"e"'
    assert srv.connections == 3  # one per connection, kept alive for all 30


def test_a_head_and_body_in_small_pieces(server):  # type: ignore[no-untyped-def]
    body = bytes(range(256)) * 40

    def trickle(conn: socket.socket) -> bool:
        for i in range(0, len(ok(body)), 7):
            conn.sendall(ok(body)[i:i + 7])
        return True

    rec = run(server({"a": trickle}), [("a", len(body))], connections=1)
    assert rec.finished == ["a"] and bytes(rec.bodies["a"]) == body


def test_connection_close_answers_reconnect(server):  # type: ignore[no-untyped-def]
    def once(body: bytes) -> Callable[[socket.socket], bool]:
        def answer(conn: socket.socket) -> bool:
            conn.sendall(ok(body, b"Connection: close\r\n"))
            return False
        return answer

    srv = server({f"c{i}": once(b"x" * i) for i in range(1, 6)})
    rec = run(srv, [(f"c{i}", i) for i in range(1, 6)], connections=1)
    assert rec.finished == [f"c{i}" for i in range(1, 6)] and rec.refused == {}
    assert srv.connections == 5


def test_answers_it_does_not_take_are_handed_back_at_once(server):  # type: ignore[no-untyped-def]
    def hang_up(conn: socket.socket) -> bool:
        return False

    def cut(conn: socket.socket) -> bool:
        conn.sendall(ok(b"y" * 100)[:-40])
        return False

    srv = server({
        "fine": ok(b"abc"),
        "missing": b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nNoSuchKey",
        "chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        "longer": ok(b"abcd"),
        "bare": b"HTTP/1.1 200 OK\nContent-Length: 3\n\nabc",
        "hangup": hang_up,
        "cut": cut,
    })
    t = time.monotonic()
    rec = run(srv, [("fine", 3), ("missing", 9), ("chunked", 3), ("longer", 3), ("bare", 3), ("hangup", 1),
                    ("cut", 100)], connections=7, read_timeout=30)
    assert time.monotonic() - t < 5  # none of them waited for the read timeout
    assert rec.finished == ["fine"]
    assert set(rec.refused) == {"missing", "chunked", "longer", "bare", "hangup", "cut"}
    assert "404" in rec.refused["missing"] and "chunked" in rec.refused["chunked"]
    assert "ConnectionResetError" in rec.refused["cut"]


def test_a_silent_server_is_given_up_after_the_read_timeout(server):  # type: ignore[no-untyped-def]
    def silent(conn: socket.socket) -> bool:
        time.sleep(3)
        return False

    t = time.monotonic()
    rec = run(server({"s": silent}), [("s", 10)], connections=1, read_timeout=0.5)
    assert 0.5 <= time.monotonic() - t < 2.5
    assert "TimeoutError" in rec.refused["s"]


def test_after_a_failure_on_every_connection_no_new_request_is_sent(server):  # type: ignore[no-untyped-def]
    srv = server({f"f{i}": b"HTTP/1.1 503 Slow Down\r\nContent-Length: 0\r\n\r\n" for i in range(20)})
    rec = run(srv, [(f"f{i}", 5) for i in range(20)], connections=4)
    # Each failure before the fourth in a row starts the next request; those in flight still end.
    assert len(srv.requests) == 4 + 3
    assert sorted(rec.refused) == sorted(srv.requests) and rec.finished == []
    assert len(rec.todo) == 20 - 7  # left for the caller's ordinary client
