"""The key names real S3 secrets use. One table, shared by the CLI (mounted secrets) and the cluster
commands (Secret objects)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

# (access key, secret key), in order of preference.
KEY_PAIRS = (
    ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"),
    ("accesskey", "secretkey"),
    ("accessKey", "secretKey"),
    ("access_key", "secret_key"),
)
ENDPOINT_KEYS = ("AWS_S3_ENDPOINT", "AWS_ENDPOINT_URL")  # OpenShift AI data connections
# The environment: AWS's own variables first (the service-specific one wins), then a data connection's.
ENV_ENDPOINT_KEYS = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_S3_ENDPOINT")
EXPECTED = " or ".join(f"{a}/{s}" for a, s in KEY_PAIRS[:2])


def find_pair(names: Iterable[str]) -> tuple[str, str] | None:
    have = set(names)
    for a, s in KEY_PAIRS:
        if a in have and s in have:
            return a, s
    return None


def endpoint_in(values: Mapping[str, str], keys: Iterable[str] = ENDPOINT_KEYS) -> str | None:
    """The S3 endpoint a Secret (or, with ENV_ENDPOINT_KEYS, an environment) names: the one home of the rule."""
    return next((values[k] for k in keys if values.get(k)), None)
