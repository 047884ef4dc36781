"""KServe's agent sidecar (``kserve/agent``, injected for ``logger``/``batcher``) as the process kubelet runs
it: it listens on 9081 and answers its readiness probe ``/`` once the serving container answers the probe
KServe copied into ``SERVING_READINESS_PROBE`` (pkg/agent, cmd/agent). Request logging is left out: nothing
of ours depends on it."""

from __future__ import annotations

import json
import os
import signal
import sys
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def _serving_ready() -> bool:
    probe = json.loads(os.environ.get("SERVING_READINESS_PROBE") or "{}")
    get = probe.get("httpGet") or {}
    port = get.get("port") or probe.get("tcpSocket", {}).get("port")
    if not port:
        return True
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{get.get('path', '/')}", timeout=1) as r:
            return bool(r.status < 400)
    except OSError:
        return False


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if _serving_ready() else 503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *a: object) -> None:
        return None


def main() -> int:
    server = ThreadingHTTPServer(("127.0.0.1", 9081), Handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print("agent stand-in listening on 9081", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
