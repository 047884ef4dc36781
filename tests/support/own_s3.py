"""A bucket root and an rclone server per test, for tests that upload multipart into S3.

rclone serve s3 (1.75.2) keeps one core busy from the first completed multipart upload until it stops (seen:
1.07 CPU-s per second for as long as we watched, after one 12 MB boto3 upload in 5 MiB parts; perf shows
clock_gettime-heavy timer wake-ups; neither --multipart-expiry 0 nor --disable-multipart-streaming stops
it), slowing every later test on a shared server into timeouts (docs/decisions.md §12, "Test isolation").
A test that needs the server again after a multipart upload restarts it: the bucket is on disk. A module
that uploads imports `own_s3root` and `own_rclone`, which override the session's `s3root` and `rclone` by name, so the
fixtures built on them (`env`, the fake cluster) use the test's own server, stopped with the test (≈0.5 s).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from modelpvc.devtools.s3server import RcloneS3
from tests.conftest import new_s3root, serve_rclone


@pytest.fixture(name="s3root")
def own_s3root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return new_s3root(tmp_path_factory, "s3root-own")


@pytest.fixture(name="rclone")
def own_rclone(s3root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RcloneS3]:
    yield from serve_rclone(s3root, tmp_path_factory, "logs-own")


def settle(srv: RcloneS3) -> None:
    """Restart the server after a completed multipart upload, before the test uses it again (see above)."""
    srv.stop()
    srv.start()
