"""S3 settings from flags and the environment: the only place that reads AWS_* variables."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from modelpvc.core.errors import ConfigError
from modelpvc.core.secretkeys import ENV_ENDPOINT_KEYS, endpoint_in, find_pair
from modelpvc.core.settings import Credentials, S3Settings, positive_seconds

CHAIN_VARS = ("AWS_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
              "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_SHARED_CREDENTIALS_FILE")


def add_s3_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("S3 endpoint and credentials")
    g.add_argument("--endpoint-url", metavar="URL",
                   help="S3 endpoint, e.g. http://minio.model-storage.svc:9000 "
                        "(default: $AWS_ENDPOINT_URL, else $AWS_S3_ENDPOINT, else AWS)")
    g.add_argument("--region", help="signing region (default: $AWS_REGION, $AWS_DEFAULT_REGION, us-east-1)")
    g.add_argument("--credentials-dir", metavar="DIR", type=Path,
                   help="a mounted secret: files AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or accesskey/secretkey "
                        "(and optionally AWS_S3_ENDPOINT, AWS_DEFAULT_REGION)")
    g.add_argument("--anonymous", action="store_true", help="send unsigned requests (public buckets)")
    g.add_argument("--ca-bundle", metavar="FILE", help="PEM file of CAs to trust for https endpoints")
    g.add_argument("--insecure", action="store_true", help="do not verify TLS certificates (only if you must)")
    g.add_argument("--virtual-hosted", action="store_true",
                   help="bucket.host addressing instead of path-style (path-style suits MinIO/Ceph and AWS)")
    g.add_argument("--connect-timeout", type=float, default=5.0, metavar="S", help="seconds (default 5)")
    g.add_argument("--read-timeout", type=float, default=10.0, metavar="S",
                   help="seconds without a byte before a request is retried (default 10)")
    g.add_argument("--retries", type=int, default=4, metavar="N",
                   help="retries per request on 5xx, throttling, resets, timeouts (default 4)")


def _read_dir(d: Path) -> dict[str, str]:
    if not d.is_dir():
        raise ConfigError(f"--credentials-dir {d} is not a directory")
    out = {}
    for f in d.iterdir():
        if f.is_file() and not f.name.startswith("."):
            try:
                out[f.name] = f.read_text().strip()
            except (OSError, UnicodeDecodeError):
                continue
    return out


def find_keys(values: Mapping[str, str]) -> tuple[str, str, str] | None:
    """(access, secret, the names used) from a mapping of secret keys, or None."""
    pair = find_pair(k for k, v in values.items() if v)
    if pair is None:
        return None
    return values[pair[0]], values[pair[1]], f"{pair[0]}/{pair[1]}"


def _profile_region() -> str | None:
    """The region the AWS profile's config file sets (``region = ...``), read through botocore."""
    import botocore.exceptions
    import botocore.session

    try:
        value = botocore.session.get_session().get_config_variable("region")
    except botocore.exceptions.BotoCoreError as e:
        raise ConfigError(f"AWS_PROFILE: {e}", hint="check AWS_PROFILE and the shared credentials/config files") from e
    return str(value) if value else None


def s3_settings(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> S3Settings:
    env = os.environ if env is None else env
    secret: dict[str, str] = _read_dir(args.credentials_dir) if args.credentials_dir else {}
    endpoint = args.endpoint_url or endpoint_in(env, ENV_ENDPOINT_KEYS) or endpoint_in(secret)
    if endpoint and "://" not in endpoint:
        if args.endpoint_url:
            raise ConfigError(f"--endpoint-url {endpoint}: say the scheme",
                              hint=f"http://{endpoint} for a plain-HTTP server (MinIO's default), "
                                   f"https://{endpoint} for TLS")
        # Data connections sometimes hold a bare host:port; KServe reads those as https unless told otherwise.
        sys.stderr.write(f"note: endpoint {endpoint} has no scheme: using https://{endpoint} (write http:// in the "
                         "variable or secret for a plain-HTTP server)\n")
        endpoint = "https://" + endpoint
    region = (args.region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
              or secret.get("AWS_DEFAULT_REGION") or (_profile_region() if env.get("AWS_PROFILE") else None)
              or "us-east-1")
    creds: Credentials | None = None
    chain = False
    if not args.anonymous:
        if secret:
            found = find_keys(secret)
            if found is None:
                names = ", ".join(sorted(secret)) or "none"
                raise ConfigError(
                    f"--credentials-dir {args.credentials_dir} has no usable key pair (found: {names})",
                    hint="expected files AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY or accesskey + secretkey",
                )
            creds = Credentials(found[0], found[1], secret.get("AWS_SESSION_TOKEN"),
                                origin=f"{args.credentials_dir} ({found[2]})")
        elif env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
            creds = Credentials(env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"],
                                env.get("AWS_SESSION_TOKEN"), origin="environment")
        elif bool(env.get("AWS_ACCESS_KEY_ID")) != bool(env.get("AWS_SECRET_ACCESS_KEY")):
            have, missing = (("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY") if env.get("AWS_ACCESS_KEY_ID")
                             else ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID"))
            raise ConfigError(f"{have} is set but {missing} is not", hint=f"set {missing} too (keys come in pairs)")
        elif any(env.get(v) for v in CHAIN_VARS):
            chain = True
        else:
            raise ConfigError(
                "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or pass --credentials-dir",
                hint="for a public bucket pass --anonymous",
            )
    timeouts = {"--connect-timeout": args.connect_timeout, "--read-timeout": args.read_timeout}
    bad = [f"{name} {value}" for name, value in timeouts.items() if not positive_seconds(value)]
    if args.retries < 0:
        bad.append(f"--retries {args.retries}")
    if bad:
        raise ConfigError(f"--retries must be >= 0 and timeouts finite numbers > 0 (got {', '.join(bad)})",
                          hint="timeouts are seconds, e.g. --read-timeout 60 for a slow gateway; --retries 0 for none")
    return S3Settings(
        endpoint_url=endpoint, region=region, credentials=creds, use_credential_chain=chain,
        # AWS_CA_BUNDLE: the AWS SDKs' and CLI's variable for a private CA (OpenShift service CA, MinIO's).
        ca_bundle=args.ca_bundle or env.get("AWS_CA_BUNDLE") or None, insecure=args.insecure,
        path_style=not args.virtual_hosted,
        connect_timeout=args.connect_timeout, read_timeout=args.read_timeout,
        max_attempts=args.retries + 1,
        # Two stalled attempts at most: an endpoint that never answers fails in ~2 x read timeout.
        metadata_deadline=2 * args.read_timeout,
    )
