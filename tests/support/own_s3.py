"""A bucket root and an rclone server per test, for tests that upload into S3 and use the server again.

rclone serve s3 (1.75.2) hung in some runs after these uploads: with `--dir-cache-time 0s` it re-armed its
directory-cache cleanup timer forever (a goroutine dump showed 50 million callbacks and a lock convoy),
which the fixture in tests/conftest.py now avoids with 100 ms (docs/decisions.md §12, "Test isolation").
A server per test, restarted with `settle` before a test uses it again, keeps any such state from one
test out of the next. A module that uploads imports `own_s3root` and `own_rclone`, which override the
session's `s3root` and `rclone` by name, so the fixtures built on them (`env`, the fake cluster) use the
test's own server, stopped with the test (≈0.5 s).
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
