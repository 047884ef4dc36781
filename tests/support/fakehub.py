"""A small Hugging Face Hub on loopback, reached through ``HF_ENDPOINT``: the test double for ``import``.

It serves what ``modelpvc import`` and ``huggingface_hub`` use, with the Hub's observable behaviour
(huggingface_hub 2.x: ``hf_api.model_info``, ``utils/_http.hf_raise_for_status``,
``file_download.get_hf_file_metadata``):

* ``GET /api/models/{repo}/revision/{rev}?blobs=true``: ``sha`` (the commit) and ``siblings`` with
  ``size``, ``blobId`` (git blob id) and, for LFS files, ``lfs.sha256``. Unknown repositories answer 401
  with ``X-Error-Code: RepoNotFound`` (the Hub hides private repositories that way); unknown revisions
  404 ``RevisionNotFound``. Gated repositories list their files to anyone.
* ``GET|HEAD /{repo}/resolve/{rev}/{path}``: a small (non-LFS) file is redirected (307, relative) to
  ``/api/resolve-cache/...`` on the same host, which serves it; an LFS file is redirected (302) to a CDN
  on another origin with a signed URL, carrying ``X-Linked-Size``, ``X-Linked-Etag`` and
  ``X-Repo-Commit``. A gated repository answers 401/403 with ``X-Error-Code: GatedRepo`` to a token
  that was not granted access. Ranges are honoured (206 + Content-Range), as the Hub and its CDN do.
* The CDN (a second server) records every Authorization header it receives: a bearer token must never
  follow a redirect off the Hub.

Simpler than the Hub, on purpose: one commit per revision name, no Xet protocol (the Hub's Xet bridge
serves plain ranged GETs at the redirect too), no rate limiting, signed URLs that never expire unless a
test says so (``expire_urls_now``).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit


def git_oid(data: bytes) -> str:
    return hashlib.sha1(f"blob {len(data)}\0".encode() + data, usedforsecurity=False).hexdigest()


@dataclass(eq=False)
class FakeRepo:
    repo: str
    files: dict[str, bytes | Path]  # content, or a file holding it (the benchmark's gigabytes)
    revisions: dict[str, str] = field(default_factory=dict)  # name -> commit; "main" added when missing
    lfs: set[str] | None = None  # paths stored in LFS; default: *.safetensors, *.bin, *.gguf and files >= 1 MB
    gated: bool = False
    private: bool = False
    tokens: set[str] = field(default_factory=set)  # tokens that may download (gated/private)
    corrupt: set[str] = field(default_factory=set)  # LFS paths whose served bytes differ from the sha256

    def __post_init__(self) -> None:
        if "main" not in self.revisions:
            self.revisions["main"] = hashlib.sha1(self.repo.encode() + b"main", usedforsecurity=False).hexdigest()
        if self.lfs is None:
            self.lfs = {p for p in self.files
                        if p.endswith((".safetensors", ".bin", ".gguf")) or self.size(p) >= 1_000_000}

    def is_lfs(self, path: str) -> bool:
        return path in (self.lfs or set())

    def size(self, path: str) -> int:
        d = self.files[path]
        return d.stat().st_size if isinstance(d, Path) else len(d)

    def content(self, path: str) -> bytes:
        d = self.files[path]
        return d.read_bytes() if isinstance(d, Path) else d

    @functools.cache  # noqa: B019 - repositories live as long as the hub
    def sha256(self, path: str) -> str:
        d = self.files[path]
        if isinstance(d, Path):
            h = hashlib.sha256()
            with open(d, "rb") as f:
                while chunk := f.read(1 << 22):
                    h.update(chunk)
            return h.hexdigest()
        return hashlib.sha256(d).hexdigest()

    def read(self, path: str, start: int, end: int) -> bytes:
        """The bytes served: a corrupt file has one bit flipped in its middle."""
        d = self.files[path]
        if isinstance(d, Path):
            with open(d, "rb") as f:
                data = os.pread(f.fileno(), end - start, start)
        else:
            data = d[start:end]
        mid = self.size(path) // 2
        if path in self.corrupt and start <= mid < end:
            i = mid - start
            data = data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1:]
        return data


@dataclass
class Counters:
    api: int = 0
    resolves: int = 0
    cdn_gets: int = 0
    cdn_bytes: int = 0
    cdn_authorization: list[str] = field(default_factory=list)  # Authorization headers the CDN saw (must stay [])
    ranges: list[str] = field(default_factory=list)


class FakeHub:
    def __init__(self) -> None:
        self.repos: dict[str, FakeRepo] = {}
        self.counters = Counters()
        self.lock = threading.Lock()
        self.rate: float | None = None  # CDN bytes per second, to make a kill land mid-file
        self.reset_first: int = 0  # CDN: reset this many responses after half their body
        self._expired_before = 0.0  # CDN: URLs signed before this are refused (403), as expired ones are
        self.hub = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self, cdn=False))
        self.cdn = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self, cdn=True))
        for srv in (self.hub, self.cdn):
            srv.daemon_threads = True

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.hub.server_address[1]}"

    @property
    def cdn_origin(self) -> str:
        return f"http://127.0.0.1:{self.cdn.server_address[1]}"

    def add(self, repo: FakeRepo) -> FakeRepo:
        self.repos[repo.repo] = repo
        return repo

    def expire_urls_now(self) -> None:
        self._expired_before = time.time() + 0.001

    def start(self) -> FakeHub:
        for srv in (self.hub, self.cdn):
            threading.Thread(target=srv.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        for srv in (self.hub, self.cdn):
            srv.shutdown()
            srv.server_close()

    # -- lookups ---------------------------------------------------------------------------------
    def find(self, repo: str, rev: str) -> tuple[FakeRepo | None, str | None]:
        r = self.repos.get(repo)
        if r is None:
            return None, None
        commit = r.revisions.get(rev) or (rev if rev in r.revisions.values() else None)
        return r, commit

    def by_sha(self, sha: str) -> tuple[FakeRepo, str] | None:
        for r in self.repos.values():
            for p in r.files:
                if r.is_lfs(p) and r.sha256(p) == sha:
                    return r, p
        return None


def _handler(hub: FakeHub, cdn: bool) -> type[BaseHTTPRequestHandler]:
    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            return None

        def _send(self, status: int, headers: dict[str, str], body: bytes = b"") -> None:
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _error(self, status: int, code: str, message: str) -> None:
            self._send(status, {"X-Error-Code": code, "X-Error-Message": message,
                                "Content-Type": "application/json"}, json.dumps({"error": message}).encode())

        def _token(self) -> str | None:
            auth = self.headers.get("Authorization") or ""
            return auth.removeprefix("Bearer ").strip() or None

        def do_HEAD(self) -> None:
            self.do_GET()

        def do_GET(self) -> None:
            if cdn:
                self._cdn()
                return
            path = urlsplit(self.path).path
            if path.startswith("/api/models/"):
                self._api(path.removeprefix("/api/models/"))
            elif path.startswith("/api/resolve-cache/models/"):
                self._resolve_cache(path.removeprefix("/api/resolve-cache/models/"))
            elif "/resolve/" in path:
                self._resolve(path)
            else:
                self._error(404, "EntryNotFound", "not a Hub path")

        def _api(self, rest: str) -> None:
            with hub.lock:
                hub.counters.api += 1
            if "/tree/" in rest:
                self._tree(*rest.split("/tree/", 1))
                return
            repo, _, rev = rest.partition("/revision/")
            found = self._visible(repo, unquote(rev) or "main")
            if found is None:
                return
            r, commit = found
            siblings = []
            for p in sorted(r.files):
                n = r.size(p)
                s: dict[str, object] = {"rfilename": p, "size": n,
                                        "blobId": git_oid(r.content(p)) if not r.is_lfs(p) else git_oid(
                                            f"version https://git-lfs.github.com/spec/v1\noid sha256:"
                                            f"{r.sha256(p)}\nsize {n}\n".encode())}
                if r.is_lfs(p):
                    s["lfs"] = {"sha256": r.sha256(p), "size": n, "pointerSize": 134}
                siblings.append(s)
            body = {"_id": "0" * 24, "id": r.repo, "modelId": r.repo, "sha": commit, "private": r.private,
                    "gated": "manual" if r.gated else False, "disabled": False, "siblings": siblings,
                    "lastModified": "2026-01-01T00:00:00.000Z"}
            self._send(200, {"Content-Type": "application/json"}, json.dumps(body).encode())

        def _visible(self, repo: str, rev: str) -> tuple[FakeRepo, str] | None:
            """The repository and commit this caller may see, or None after answering as the Hub does."""
            r, commit = hub.find(repo, rev)
            if r is None or (r.private and self._token() not in r.tokens):
                self._error(401, "RepoNotFound", "Repository not found")
                return None
            if commit is None:
                self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
                return None
            return r, commit

        def _tree(self, repo: str, rest: str) -> None:
            """``list_repo_tree`` (what ``hf download`` lists): one page, every file, recursive."""
            rev, _, sub = rest.partition("/")
            found = self._visible(repo, unquote(rev))
            if found is None:
                return
            r, _commit = found
            entries = []
            for p in sorted(r.files):
                if sub and not p.startswith(unquote(sub).rstrip("/") + "/"):
                    continue
                n = r.size(p)
                e: dict[str, object] = {"type": "file", "path": p, "size": n,
                                        "oid": git_oid(r.content(p)) if not r.is_lfs(p) else "0" * 40}
                if r.is_lfs(p):
                    e["lfs"] = {"oid": r.sha256(p), "size": n, "pointerSize": 134}
                entries.append(e)
            self._send(200, {"Content-Type": "application/json"}, json.dumps(entries).encode())

        def _allowed(self, r: FakeRepo) -> bool:
            if not (r.gated or r.private):
                return True
            token = self._token()
            if token in r.tokens:
                return True
            if r.private:
                self._error(401, "RepoNotFound", "Repository not found")
            elif token is None:
                self._error(401, "GatedRepo", f"Access to model {r.repo} is restricted. You must have access to "
                                              "it and be authenticated to access it. Please log in.")
            else:
                self._error(403, "GatedRepo", f"Access to model {r.repo} is restricted and you are not in the "
                                              "authorized list. Visit the model page to ask for access.")
            return False

        def _resolve(self, path: str) -> None:
            with hub.lock:
                hub.counters.resolves += 1
            repo, _, rest = path.lstrip("/").partition("/resolve/")
            rev, _, file = rest.partition("/")
            rev, file = unquote(rev), unquote(file)
            r, commit = hub.find(repo, rev)
            if r is None:
                self._error(401, "RepoNotFound", "Repository not found")
                return
            if commit is None:
                self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
                return
            if not self._allowed(r):
                return
            if file not in r.files:
                self._error(404, "EntryNotFound", f"{file} does not exist")
                return
            common = {"X-Repo-Commit": commit}
            if r.is_lfs(file):
                sig = f"Expires={int(time.time()) + 3600}&Signature=fake&issued={time.time()}"
                self._send(302, {**common, "Location": f"{hub.cdn_origin}/repos/{r.sha256(file)}?{sig}",
                                 "X-Linked-Size": str(r.size(file)), "X-Linked-Etag": f'"{r.sha256(file)}"'})
                return
            self._send(307, {**common, "Location": f"/api/resolve-cache/models/{repo}/{commit}/{quote(file)}",
                             "ETag": f'"{git_oid(r.content(file))}"'})

        def _resolve_cache(self, rest: str) -> None:
            parts = rest.split("/")
            n = 2 if "/".join(parts[:2]) in hub.repos else 1
            repo, commit, file = "/".join(parts[:n]), parts[n], unquote("/".join(parts[n + 1:]))
            r, _ = hub.find(repo, commit)
            if r is None or file not in r.files or not self._allowed(r):
                if r is None or file not in r.files:
                    self._error(404, "EntryNotFound", f"{file} does not exist")
                return
            self._body(r, file, {"ETag": f'"{git_oid(r.content(file))}"', "X-Repo-Commit": commit})

        def _cdn(self) -> None:
            u = urlsplit(self.path)
            with hub.lock:
                hub.counters.cdn_gets += 1
                if self.headers.get("Authorization"):
                    hub.counters.cdn_authorization.append(self.headers["Authorization"])
            issued = float(parse_qs(u.query).get("issued", ["0"])[0])
            if issued < hub._expired_before:
                self._send(403, {"Content-Type": "application/xml"},
                           b"<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>")
                return
            found = hub.by_sha(u.path.removeprefix("/repos/"))
            if found is None:
                self._send(404, {}, b"no such object")
                return
            r, p = found
            self._body(r, p, {"ETag": f'"{r.sha256(p)}"'}, cdn=True)

        def _body(self, r: FakeRepo, path: str, headers: dict[str, str], cdn: bool = False) -> None:
            rng = self.headers.get("Range")
            size = r.size(path)
            start, end = 0, size
            status = 200
            if rng and rng.startswith("bytes="):
                with hub.lock:
                    hub.counters.ranges.append(rng)
                a, _, b = rng.removeprefix("bytes=").partition("-")
                start = int(a)
                end = min(size, int(b) + 1) if b else size
                if start >= size:
                    self._send(416, {"Content-Range": f"bytes */{size}"})
                    return
                status = 206
                headers = {**headers, "Content-Range": f"bytes {start}-{end - 1}/{size}"}
            length = end - start
            self.send_response(status)
            for k, v in {**headers, "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(length))
            self.end_headers()
            if self.command == "HEAD":
                return
            reset = False
            if cdn and length > 1024:
                with hub.lock:
                    if hub.reset_first > 0:
                        hub.reset_first -= 1
                        reset = True
            step = 1024 * 1024
            for i in range(0, length, step):
                if reset and i >= length // 2:
                    self.close_connection = True
                    self.connection.close()
                    return
                chunk = r.read(path, start + i, min(end, start + i + step))
                self.wfile.write(chunk)
                with hub.lock:
                    hub.counters.cdn_bytes += len(chunk) if cdn else 0
                if hub.rate:
                    time.sleep(len(chunk) / hub.rate)

    return H
