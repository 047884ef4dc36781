"""What model goes where: the flags ``render`` and the cluster commands share, each declared once, and the one
builder of a ``ModelSpec`` from them. The spec is what was asked; what is found afterwards (in the cluster by
the preflight, or for ``render`` in the flags and the bucket) is applied to it as ``Facts``."""

from __future__ import annotations

import argparse
import os
from typing import Any

from modelpvc.cli import units
from modelpvc.cli.serving_args import serving_from_args
from modelpvc.core.errors import ConfigError
from modelpvc.core.secretkeys import EXPECTED
from modelpvc.kube.spec import DEFAULT_IMAGE, IMAGE_ENV, ModelSpec, Placement, Serving
from modelpvc.model.select import loader_from_args

DEFAULT_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")


def add_image_argument(g: Any) -> None:
    """--image for every command that makes a pod: the modelpvc image the cluster pulls, ours by default; a
    disconnected cluster mirrors it and says so once in MODELPVC_IMAGE."""
    g.add_argument("--image", default=os.environ.get(IMAGE_ENV) or DEFAULT_IMAGE,
                   help=f"the modelpvc image the Jobs run (default: ${IMAGE_ENV}, else {DEFAULT_IMAGE}); build it "
                        "from the Containerfile and push it where the cluster pulls from (README: Install in "
                        "your cluster)")


def add_model_arguments(p: argparse.ArgumentParser, *, source_required: bool, secret_required: bool = False,
                        endpoint: bool = True) -> None:
    """The source, its Secret, the claim and the pods' image and fsGroup: every command that acts on a model.
    ``endpoint``: also --endpoint-url/--region (render has them from its S3 flags, which list the bucket)."""
    g = p.add_argument_group("model and storage")
    g.add_argument("--source", required=source_required, default="", metavar="s3://BUCKET/PREFIX/")
    g.add_argument("--secret", required=secret_required, default="", help="Secret with the S3 keys")
    g.add_argument("--secret-keys", metavar="ACCESS,SECRET",
                   help="the key names the Secret has, e.g. accesskey,secretkey (default: the cluster commands use "
                        f"the pair it has, {EXPECTED}; render writes {','.join(DEFAULT_KEYS)})")
    if endpoint:
        g.add_argument("--endpoint-url", help="S3 endpoint the pods use (default: the secret's AWS_S3_ENDPOINT)")
        g.add_argument("--region", help="S3 region (default: the secret's AWS_DEFAULT_REGION, else us-east-1)")
    g.add_argument("--pvc", default="", help="PersistentVolumeClaim")
    g.add_argument("--path", default="", help="directory inside the claim (default: its root)")
    add_image_argument(g)
    g.add_argument("--fs-group", type=int, help="pod fsGroup (leave unset on OpenShift)")


def add_claim_arguments(p: argparse.ArgumentParser, size_help: str) -> None:
    """How a new claim is made, and where its volume should bind."""
    g = p.add_argument_group("a new claim")
    g.add_argument("--size", type=units.quantity, default="auto", help=size_help)
    g.add_argument("--storage-class", help="the PVC's StorageClass (default: the cluster's default class)")
    g.add_argument("--access-mode", default="ReadWriteOnce",
                   choices=["ReadWriteOnce", "ReadWriteMany", "ReadWriteOncePod"],
                   help="the PVC's access mode (ReadWriteMany lets --parallel pods write at once)")
    g.add_argument("--zone", action="append", default=[], metavar="ZONE",
                   help="the serving nodes' zone(s): the populate Job lands there, so a WaitForFirstConsumer volume "
                        "binds where the server can mount it (default: found from --isvc-base/--node-selector, or "
                        "in the cluster from the InferenceService on the claim)")


def add_hub_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("import from the Hugging Face Hub in the cluster")
    g.add_argument("--import-from", metavar="hf://ORG/NAME[@REV]",
                   help="first an import Job streams this Hugging Face model into --source (no volume; for models "
                        "the operator's machine should not download); the populate Job waits for its source.json")
    g.add_argument("--hub-secret", metavar="SECRET",
                   help="Secret with key HF_TOKEN for gated or private repositories (never in the YAML)")
    g.add_argument("--hub-endpoint", metavar="URL", help="HF_ENDPOINT for the import Job (a Hub mirror)")


def add_pattern_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("where the server reads the model")
    g.add_argument("--pattern", choices=["pvc", "storage-initializer"], default="pvc",
                   help="pvc (default): the model on a claim, filled by a Job; storage-initializer: KServe copies "
                        "the s3:// model into an EmptyDir at every pod start with modelpvc as its storage "
                        "initializer (a ClusterStorageContainer, with the keys of --secret; for models under "
                        "~20 GB: `modelpvc plan` says)")
    g.add_argument("--ephemeral", type=units.quantity, default="auto",
                   help="storage-initializer: the predictor's ephemeral-storage request and limit (auto: the "
                        "model x 1.1)")


def spec_from_args(args: argparse.Namespace, default_name: str | None = None) -> ModelSpec:
    """The ModelSpec the flags ask for, not yet validated (``update`` adds what the claim recorded first). Its
    name: --name, else ``default_name`` (populate: the claim's), else the --isvc-base's."""
    text = getattr(args, "secret_keys", None)
    keys = tuple(k.strip() for k in text.split(",")) if text else DEFAULT_KEYS
    if len(keys) != 2 or not all(keys):
        raise ConfigError(f"--secret-keys {text!r}: give two names, ACCESS,SECRET")
    serving = serving_from_args(args) if hasattr(args, "isvc_base") else Serving()
    base_meta = (serving.base or {}).get("metadata") or {}
    name = getattr(args, "name", None) or default_name or base_meta.get("name")
    namespace = args.namespace or base_meta.get("namespace")
    if not name or not namespace:
        raise ConfigError("--name and --namespace are needed (or an --isvc-base that has them)")
    gitops = getattr(args, "gitops", "none")
    pattern = getattr(args, "pattern", "pvc")
    return ModelSpec(
        name=name, namespace=namespace, source=args.source, pvc=args.pvc if pattern == "pvc" else "",
        secret=args.secret, endpoint_url=args.endpoint_url, region=args.region, secret_keys=(keys[0], keys[1]),
        detect_keys=not text, path=args.path.strip("/"), image=args.image, fs_group=args.fs_group,
        serving=serving, loader=loader_from_args(serving.effective_args), gitops=gitops, pattern=pattern,
        placement=Placement(zones=tuple(getattr(args, "zone", ())), follow=name if gitops == "argocd" else None),
        **_optional(args, name))


def _optional(args: argparse.Namespace, name: str) -> dict[str, Any]:
    """The fields only some commands have flags for; the others keep ModelSpec's defaults."""
    out: dict[str, Any] = {field: getattr(args, flag) for field, flag in (
        ("size", "size"), ("storage_class", "storage_class"), ("access_mode", "access_mode"),
        ("parallel", "parallel"), ("import_from", "import_from"), ("hub_secret", "hub_secret"),
        ("hub_endpoint", "hub_endpoint")) if hasattr(args, flag)}
    if getattr(args, "delete_excluded", False):
        out["mirror_args"] = ("--delete-excluded",)
    if getattr(args, "initializer_buckets", ""):
        out["initializer_buckets"] = tuple(b.strip() for b in args.initializer_buckets.split(",") if b.strip())
    if getattr(args, "populator", False) and hasattr(args, "model_source"):
        out["model_source"] = args.model_source or name
    return out
