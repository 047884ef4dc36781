"""``modelpvc storage-initializer URI DIR [URI DIR ...]``: KServe's storage-initializer contract.

KServe's pod mutator runs the storage container of a matching ClusterStorageContainer as the predictor's
init container with the storage URI and its mount path as arguments, in pairs when an InferenceService has
several (``storage_initializer_injector.go``: ``initContainerArgs = append(..., uri, mountPath)``), the
credentials in its environment (``kserve_env``), no usable $HOME and an arbitrary non-root uid. Here each
pair is a ``mirror`` into the EmptyDir: verified, resumable when the pod restarts with the EmptyDir kept
(then a no-op), JSON progress lines in the init container's log, our exit codes.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from modelpvc.cli.cpus import default_workers, describe_cpus, usable_cpus
from modelpvc.cli.errors import EXIT_CODES_HELP, report
from modelpvc.cli.help_format import ParagraphFormatter
from modelpvc.cli.kserve_env import kserve_s3_settings
from modelpvc.cli.mirror_cmd import print_summary, structure_checker
from modelpvc.cli.progress import JsonLines
from modelpvc.cli.signals import stop_on_signals
from modelpvc.core.errors import ConfigError, SourceNotFound
from modelpvc.core.models import ObjectInfo
from modelpvc.core.settings import MiB, S3Settings, TransferSettings
from modelpvc.model.select import make_selector
from modelpvc.store.sources.base import SourceURI
from modelpvc.store.sources.s3 import S3Source
from modelpvc.transfer.mirror import MirrorRequest, mirror

EPHEMERAL_LIMIT_ENV = "MODELPVC_EPHEMERAL_LIMIT"  # bytes; the render sets it from the downward API
PVC_ADVICE = ("models this large belong on a PVC (the runbook's other pattern): `modelpvc plan {uri}` says why "
              "and `modelpvc render --pattern pvc ...` writes it; or raise the predictor's ephemeral-storage request "
              "and limit")


DESCRIPTION = """Fill each DIR from its s3:// URI as KServe's storage initializer does, verified and
resumable: what the init container of an InferenceService with an s3:// storageUri runs once a platform
admin applied modelpvc's ClusterStorageContainer (modelpvc render --pattern storage-initializer --kinds csc).
KServe passes URI and DIR; everything else comes from the environment KServe gives the init container:

  AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN   the keys (from the service account's secret)
  AWS_ENDPOINT_URL, or S3_ENDPOINT with S3_USE_HTTPS=0|1       the endpoint
  AWS_DEFAULT_REGION / AWS_REGION, S3_VERIFY_SSL, AWS_CA_BUNDLE, CA_BUNDLE_CONFIGMAP_NAME
  STORAGE_CONFIG / STORAGE_OVERRIDE_CONFIG                     KServe's storage-spec JSON, when used

and these, set on the ClusterStorageContainer's container:

  MODELPVC_SELECT=auto|all       which files (default auto: the weight set the loader reads)
  MODELPVC_FOR=vllm|vllm-mistral the loader whose weight set auto keeps
  MODELPVC_READ_TIMEOUT=SECONDS  for an endpoint slow to answer
  MODELPVC_EPHEMERAL_LIMIT=BYTES the EmptyDir's bound (the rendered container sets it from the predictor's
                                 ephemeral-storage limit): a model that does not fit fails before a byte

Progress and the final record are JSON lines in the init container's log; exit codes below."""


def register(sub: Any) -> None:
    p = sub.add_parser("storage-initializer", help="run as KServe's storage initializer (URI and mount path pairs)",
                       description=DESCRIPTION, epilog=EXIT_CODES_HELP,
                       formatter_class=ParagraphFormatter)
    p.add_argument("pairs", nargs="+", metavar="URI DIR", help="s3://BUCKET/PATH and the directory to fill")
    p.set_defaults(run=run, json_errors=True)


def split_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise ConfigError(f"{uri!r}: modelpvc's storage initializer handles s3:// URIs only",
                          hint="let the ClusterStorageContainer match s3:// only (render --pattern storage-initializer "
                               "writes it so); other schemes stay with KServe's own initializer")
    bucket, _, key = uri[5:].partition("/")
    if not bucket:
        raise ConfigError(f"{uri!r} has no bucket")
    return bucket, key.strip("/")


def listing(uri: str, s3: S3Settings) -> tuple[S3Source, list[ObjectInfo], bool]:
    """The objects below ``uri`` as a directory; or, like KServe, the one object ``uri`` names exactly
    (then True)."""
    bucket, key = split_uri(uri)
    source = S3Source(SourceURI("s3", bucket, f"{key}/" if key else ""), s3)
    objects = source.list_all()
    if objects or not key:
        if not objects:
            raise SourceNotFound(f"no objects under {uri}")
        return source, objects, False
    parent = key.rsplit("/", 1)[0] + "/" if "/" in key else ""
    single = S3Source(SourceURI("s3", bucket, parent), s3)
    exact = [o for o in single.list_all() if o.key == key]
    source.close()
    if not exact:
        near = single.nearest_prefixes() if parent else []
        raise SourceNotFound(f"no objects under {uri}",
                             hint=("nearest existing prefixes: " + ", ".join(near)) if near else None)
    return single, exact, True


def space_limit(env: dict[str, str] | os._Environ[str]) -> tuple[int, str] | None:
    raw = env.get(EPHEMERAL_LIMIT_ENV, "").strip()
    if not raw:
        return None
    try:
        return int(raw), "the predictor's ephemeral-storage limit, which an EmptyDir counts against"
    except ValueError:
        raise ConfigError(f"{EPHEMERAL_LIMIT_ENV}={raw!r} is not a number of bytes") from None


def run(args: argparse.Namespace) -> int:
    pairs = list(args.pairs)
    if len(pairs) % 2:
        raise ConfigError(f"storage-initializer takes URI DIR pairs; got {len(pairs)} argument(s)",
                          hint="KServe runs it as: storage-initializer s3://BUCKET/PATH /mnt/models")
    s3 = kserve_s3_settings()
    cpus = usable_cpus()
    for uri, dest in zip(pairs[0::2], pairs[1::2], strict=True):
        settings = TransferSettings(
            workers=default_workers(cpus), workers_basis=describe_cpus(cpus), part_size=32 * MiB,
            space_limit=space_limit(os.environ),
            space_hint=PVC_ADVICE.format(uri=uri))
        source, objects, single = listing(uri, s3)
        loader = os.environ.get("MODELPVC_FOR", "vllm")
        select = make_selector(os.environ.get("MODELPVC_SELECT", "auto"), [], [], loader)
        sink = JsonLines(interval=5.0)
        try:
            with stop_on_signals() as stop:
                # One object named exactly is a file (a .gguf, a .joblib), not a model directory to check.
                check = None if single else structure_checker(False, loader)
                result = mirror(MirrorRequest(source, Path(dest), s3, settings, select=select,
                                              structure_check=check, objects=objects),
                                sink=sink, stop=stop)
        finally:
            source.close()
        print_summary(result, Path(dest))
    return 0


def main() -> None:
    """The ``modelpvc-storage-initializer`` console script: exactly KServe's two arguments (or pairs)."""
    from modelpvc.cli.main import main as cli_main

    argv = ["storage-initializer", *sys.argv[1:]]
    try:
        sys.exit(cli_main(argv))
    except KeyboardInterrupt as e:  # before the signal handlers are in place
        sys.exit(report(e, as_json=True))
