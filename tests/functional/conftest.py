"""The functional suites run on both S3 servers: MinIO (the seed's store) and ``rclone serve s3``.

These fixtures override the session's rclone-only ones by name for every test in this folder, so a test
written against ``env``, ``make_model`` or ``proxy`` runs once per server ([rclone] and [minio] in its id).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from modelpvc.model.synthetic import SyntheticModel, generate_model
from tests.conftest import Source, server_env
from tests.support.faultproxy import FaultProxy
from tests.support.s3servers import KINDS, S3UnderTest, start

_names = itertools.count()


@pytest.fixture(scope="session", params=KINDS)
def s3(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3UnderTest]:
    srv = start(request.param, tmp_path_factory.mktemp(f"s3-{request.param}"),
                tmp_path_factory.mktemp(f"logs-{request.param}"))
    yield srv
    srv.server.stop()


@pytest.fixture(scope="session")
def _proxy(s3: S3UnderTest) -> Iterator[FaultProxy]:
    p = FaultProxy(s3.server.port).start()
    yield p
    p.stop()


@pytest.fixture
def env(s3: S3UnderTest) -> dict[str, str]:
    return server_env(s3.env())


@pytest.fixture
def make_model(s3: S3UnderTest):  # type: ignore[no-untyped-def]
    """Create a synthetic model under the ``models`` bucket; returns its s3:// URI and local directory.
    After editing ``src.dir``, a test calls ``src.publish()`` to make the server hold the edit."""

    def make(spec: SyntheticModel | None = None) -> Source:
        name = f"m{next(_names)}"
        generate_model(s3.root / "models" / name, spec or SyntheticModel(total_bytes=24 * 1024 * 1024, shards=3))
        s3.publish(f"models/{name}")
        return Source(f"s3://models/{name}/", s3.root / "models" / name, lambda: s3.publish(f"models/{name}"))

    return make
