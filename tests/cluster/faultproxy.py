"""A TCP proxy in front of the real kube-apiserver, for faults a real server does not produce on demand:
``cut()`` closes every connection it carries at once, as a load balancer's idle timeout, a network blip or
an API server restart does to a long ``pods/log?follow=true`` stream. TLS passes through untouched (the
client still verifies the apiserver's certificate); new connections are accepted as before."""

from __future__ import annotations

import contextlib
import socket
import threading
from urllib.parse import urlsplit


class FaultProxy:
    def __init__(self, upstream_url: str) -> None:
        parts = urlsplit(upstream_url)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 443)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"https://127.0.0.1:{self._listener.getsockname()[1]}"
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self.cuts = 0

    def start(self) -> FaultProxy:
        threading.Thread(target=self._accept, daemon=True, name="faultproxy").start()
        return self

    def stop(self) -> None:
        self._listener.close()
        self.cut()

    def cut(self) -> int:
        """Close every connection now; returns how many were open."""
        with self._lock:
            conns, self._conns = self._conns, []
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
            c.close()
        self.cuts += 1
        return len(conns) // 2

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                self._conns += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
