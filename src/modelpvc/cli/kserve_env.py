"""The S3 settings KServe hands a storage-initializer container, in every form it uses.

Sources, read from KServe v0.15+ (kserve/kserve ``pkg/credentials/s3/s3_secret.go``, ``utils.go``,
``pkg/credentials/service_account_credentials.go``) and its Python initializer (``kserve_storage``):

* A service account's S3 secret: ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` from the secret, and from
  its ``serving.kserve.io/s3-*`` annotations (or the inferenceservice-config defaults): ``S3_ENDPOINT`` (bare
  host) and ``AWS_ENDPOINT_URL`` (with ``https://``, or ``http://`` when ``S3_USE_HTTPS`` is "0"),
  ``S3_VERIFY_SSL`` ("0"/"false" turns verification off), ``AWS_DEFAULT_REGION``, ``awsAnonymousCredential``
  ("true": unsigned requests), ``S3_USER_VIRTUAL_BUCKET`` ("true": virtual-hosted addressing),
  ``AWS_CA_BUNDLE`` (a path in the container).
* A storage spec (OpenShift AI's data connections, synced by odh-model-controller into the ``storage-config``
  secret): ``STORAGE_CONFIG`` holds one JSON entry — ``type`` "s3", ``access_key_id``,
  ``secret_access_key``, ``endpoint_url``, ``region``, ``bucket``, and optionally ``ca_bundle``,
  ``verify_ssl``, ``anonymous``, ``certificate`` (PEM text) — and ``STORAGE_OVERRIDE_CONFIG`` overrides keys.
* The cluster-wide CA bundle: ``CA_BUNDLE_CONFIGMAP_NAME`` set, the bundle at
  ``$CA_BUNDLE_VOLUME_MOUNT_POINT/cabundle.crt`` (default /etc/ssl/custom-certs).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from typing import Any

from modelpvc.core.errors import ConfigError
from modelpvc.core.settings import Credentials, S3Settings, positive_seconds

DEFAULT_CA_MOUNT = "/etc/ssl/custom-certs"  # KServe's DefaultCaBundleVolumeMountPath
# The storage initializer gets no flags (KServe passes URI and directory only): --read-timeout as a variable
# of the ClusterStorageContainer's container, for an endpoint slow to answer.
READ_TIMEOUT_ENV = "MODELPVC_READ_TIMEOUT"


def _storage_config(env: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in ("STORAGE_CONFIG", "STORAGE_OVERRIDE_CONFIG"):
        raw = env.get(name) or ""
        if not raw.strip():
            continue
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{name} is not JSON ({e.msg} at {e.pos})",
                              hint="check the entry of the storage-config secret the InferenceService uses") from e
        if not isinstance(data, dict):
            raise ConfigError(f"{name} is not a JSON object")
        out.update(data)
    if out and str(out.get("type", "s3")) != "s3":
        raise ConfigError(f"STORAGE_CONFIG is of type {out.get('type')!r}; modelpvc's initializer reads s3 only")
    return out


def _false(value: str | None) -> bool:
    return value is not None and value.strip().lower() in ("0", "false", "no")


def _true(value: str | None) -> bool:
    return value is not None and value.strip().lower() in ("1", "true", "yes")


def kserve_s3_settings(env: Mapping[str, str] | None = None) -> S3Settings:
    env = os.environ if env is None else env
    cfg = _storage_config(env)

    def pick(key: str, *names: str) -> str | None:
        value = cfg.get(key)
        if value not in (None, ""):
            return str(value)
        return next((env[n] for n in names if env.get(n)), None)

    endpoint = pick("endpoint_url", "AWS_ENDPOINT_URL")
    if not endpoint and env.get("S3_ENDPOINT"):
        scheme = "http" if env.get("S3_USE_HTTPS") == "0" else "https"
        endpoint = f"{scheme}://{env['S3_ENDPOINT']}"
    if endpoint and "://" not in endpoint:
        endpoint = ("http://" if env.get("S3_USE_HTTPS") == "0" else "https://") + endpoint
    anonymous = _true(pick("anonymous", "awsAnonymousCredential"))
    access, secret = pick("access_key_id", "AWS_ACCESS_KEY_ID"), pick("secret_access_key", "AWS_SECRET_ACCESS_KEY")
    creds = None
    if not anonymous and access and secret:
        creds = Credentials(access, secret, env.get("AWS_SESSION_TOKEN") or None)
    ca_bundle = pick("ca_bundle", "AWS_CA_BUNDLE")
    if not ca_bundle and env.get("CA_BUNDLE_CONFIGMAP_NAME"):
        path = os.path.join(env.get("CA_BUNDLE_VOLUME_MOUNT_POINT") or DEFAULT_CA_MOUNT, "cabundle.crt")
        ca_bundle = path if os.path.exists(path) else None
    if ca_bundle and not os.path.exists(ca_bundle):
        raise ConfigError(f"CA bundle {ca_bundle} does not exist in the container",
                          hint="check AWS_CA_BUNDLE / the s3-cabundle annotation and the volume that holds it")
    wait = _seconds(env, READ_TIMEOUT_ENV) or S3Settings.read_timeout
    return S3Settings(
        endpoint_url=endpoint,
        region=pick("region", "AWS_DEFAULT_REGION", "AWS_REGION") or "us-east-1",
        credentials=creds,
        # Neither keys nor anonymous: IRSA / web identity through botocore's chain.
        use_credential_chain=not anonymous and creds is None,
        ca_bundle=ca_bundle,
        ca_data=str(cfg["certificate"]) if cfg.get("certificate") else None,
        insecure=_false(pick("verify_ssl", "S3_VERIFY_SSL")),
        path_style=not _true(env.get("S3_USER_VIRTUAL_BUCKET")),
        read_timeout=wait,
        metadata_deadline=max(S3Settings.metadata_deadline, 2 * wait),  # as --read-timeout does
    )


def _seconds(env: Mapping[str, str], name: str) -> float | None:
    """A positive, finite number of seconds from ``env[name]``; None when it is unset or empty."""
    text = env.get(name)
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not positive_seconds(value):
        raise ConfigError(f"{name}={text!r} is not a positive number of seconds")
    return value
