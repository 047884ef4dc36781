"""The key names real S3 secrets use. One table, shared by the CLI (mounted secrets) and the cluster
commands (Secret objects)."""

from __future__ import annotations

from collections.abc import Iterable

# (access key, secret key), in order of preference.
KEY_PAIRS = (
    ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"),
    ("accesskey", "secretkey"),
    ("accessKey", "secretKey"),
    ("access_key", "secret_key"),
)
ENDPOINT_KEYS = ("AWS_S3_ENDPOINT", "AWS_ENDPOINT_URL")  # OpenShift AI data connections
EXPECTED = " or ".join(f"{a}/{s}" for a, s in KEY_PAIRS[:2])


def find_pair(names: Iterable[str]) -> tuple[str, str] | None:
    have = set(names)
    for a, s in KEY_PAIRS:
        if a in have and s in have:
            return a, s
    return None
