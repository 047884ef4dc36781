"""A Hugging Face Hub repository as an import origin.

``huggingface_hub`` does what it is good at: resolving a revision to a commit and listing the files with
their sizes, git blob ids and LFS SHA-256 (``model_info(files_metadata=True)``, one request), and
raising typed errors for gated, private and missing repositories, which are translated here. The bytes
go through ``hub_http``: ranged GETs into our buffers, pinned to the resolved commit so a branch that
moves mid-import cannot mix two revisions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from modelpvc.core.errors import (
    AccessDenied,
    ConfigError,
    SourceGated,
    SourceNotFound,
    SourceUnreachable,
    TransientError,
)
from modelpvc.core.provenance import Published
from modelpvc.store.http.hub_http import HubEndpoint, HubReader
from modelpvc.store.origins.origin import OriginFile

_REPO = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


@dataclass(frozen=True)
class HubRef:
    repo: str  # ORG/NAME (or a legacy NAME)
    revision: str  # branch, tag or commit; "main" by default

    def __str__(self) -> str:
        return f"hf://{self.repo}@{self.revision}"


def parse_hub_uri(uri: str) -> HubRef:
    """``hf://ORG/NAME`` or ``hf://ORG/NAME@REVISION`` (a revision may contain "/", e.g. refs/pr/1)."""
    rest = uri.removeprefix("hf://")
    repo, _, revision = rest.partition("@")
    repo = repo.strip("/")
    if not _REPO.match(repo) or ".." in repo:
        raise ConfigError(f"{uri!r} does not name a Hugging Face model",
                          hint="write it as hf://ORG/NAME or hf://ORG/NAME@REVISION")
    return HubRef(repo, revision or "main")


def public_endpoint(url: str) -> str:
    """The endpoint without any user:password@ part, for records and messages."""
    p = urlsplit(url)
    host = p.hostname or ""
    netloc = host + (f":{p.port}" if p.port else "")
    return urlunsplit((p.scheme, netloc, p.path.rstrip("/"), "", ""))


class HubOrigin:
    def __init__(self, ref: HubRef, endpoint: HubEndpoint) -> None:
        self.ref = ref
        self.endpoint = endpoint
        self.commit = ""
        self.reader: HubReader | None = None
        self.gated: Any = False
        self.origin: dict[str, Any] = {"type": "huggingface", "repo": ref.repo, "revision": ref.revision,
                                       "endpoint": public_endpoint(endpoint.url)}

    def describe(self) -> str:
        at = self.commit[:12] if self.commit else self.ref.revision
        return f"hf://{self.ref.repo}@{at}"

    def files(self, probe: bool = True) -> list[OriginFile]:
        """The revision's files. ``probe``: also check, with a one-byte download, that this token may
        download them (gated and private repositories list their files to anyone)."""
        info = self._model_info()
        self.commit = str(info.sha or "")
        if len(self.commit) != 40:
            raise TransientError(f"{self.ref}: the Hub did not resolve the revision to a commit")
        self.origin["commit"] = self.commit
        self.gated = getattr(info, "gated", False)
        self.reader = HubReader(self.endpoint, self.ref.repo, self.commit)
        out: list[OriginFile] = []
        for s in info.siblings or []:
            if s.size is None:
                raise TransientError(f"{self.ref}: the Hub listed {s.rfilename} without its size")
            sha = s.lfs.sha256 if s.lfs is not None else None
            out.append(OriginFile(s.rfilename, int(s.size), Published(sha256=sha, git_oid=s.blob_id)))
        if not out:
            raise SourceNotFound(f"{self.describe()} has no files")
        first = next((f for f in sorted(out, key=lambda f: -f.size) if f.size > 0), None)
        if first is not None and probe:
            # Ask for one byte now, so a token without access fails before anything is uploaded.
            self.reader.probe(first.rel)
        return sorted(out, key=lambda f: f.rel)

    def _model_info(self) -> Any:
        from huggingface_hub import HfApi
        from huggingface_hub import errors as hf

        # The HTTP client's own errors (httpx's HTTPError, re-exported by huggingface_hub.errors).
        transport: tuple[type[BaseException], ...] = (OSError, getattr(hf, "HTTPError", OSError))
        api = HfApi(endpoint=self.endpoint.url.rstrip("/"), token=self.endpoint.token or False,
                    library_name="modelpvc")
        hint_token = ("set HF_TOKEN to a token that can read it" if not self.endpoint.token
                      else "check that HF_TOKEN may read it")
        try:
            return api.model_info(self.ref.repo, revision=self.ref.revision, files_metadata=True)
        except hf.GatedRepoError as e:
            raise SourceGated(f"{self.ref.repo} is gated and this token may not read it",
                              hint=f"accept its conditions on the Hub, then {hint_token}") from e
        except hf.RevisionNotFoundError as e:
            raise SourceNotFound(f"{self.ref.repo} has no revision {self.ref.revision!r}",
                                 hint="give a branch, a tag or a full commit sha after @") from e
        except hf.RepositoryNotFoundError as e:
            raise SourceNotFound(f"model {self.ref.repo!r} was not found on {public_endpoint(self.endpoint.url)}",
                                 hint=f"check the name; if it is private, {hint_token}") from e
        except hf.HfHubHTTPError as e:
            status = e.response.status_code if e.response is not None else 0
            if status in (401, 403):
                raise AccessDenied(f"the Hub refused to list {self.ref.repo} (HTTP {status})",
                                   hint=hint_token) from e
            raise SourceUnreachable(f"the Hub failed listing {self.ref.repo} (HTTP {status})",
                                    hint="retry later; check HF_ENDPOINT") from e
        except transport as e:  # connection refused, timeouts, TLS
            raise SourceUnreachable(f"cannot reach {public_endpoint(self.endpoint.url)} ({type(e).__name__})",
                                    hint="check HF_ENDPOINT and the network (or a proxy: HTTPS_PROXY)") from e

    def read_into(self, f: OriginFile, start: int, out: memoryview) -> None:
        assert self.reader is not None, "files() first"
        self.reader.read_into(f.rel, start, out, f.size)

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()
