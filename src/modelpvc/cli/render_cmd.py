"""``modelpvc render``: the Kubernetes YAML for a GitOps repository."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from modelpvc.cli import units
from modelpvc.cli.credentials import add_s3_arguments, s3_settings
from modelpvc.cli.help_format import ParagraphFormatter
from modelpvc.cli.serving_args import add_serving_arguments
from modelpvc.cli.spec_args import (
    add_claim_arguments,
    add_hub_arguments,
    add_model_arguments,
    add_pattern_arguments,
    spec_from_args,
)
from modelpvc.core.errors import ConfigError, IntegrityError, ModelpvcError
from modelpvc.kube import manifests
from modelpvc.kube.spec import DEFAULT_IMAGE, Facts, ModelSpec
from modelpvc.model.sizing import HEADROOM, REVISIONS, claim_size_gi, pvc_size_gi

DESCRIPTION = f"""Write the PVC, the populate Job (runs `modelpvc mirror` from {DEFAULT_IMAGE}), a verify Job
(replaces the runbook's inspector pod) and the InferenceService (storageUri pvc://CLAIM/PATH, vLLM runtime)
as a YAML stream, or one file per object with -o DIR.

Start from your own InferenceService with --isvc-base FILE: every field of it is kept (tolerations, node
selector, resources, replicas, labels, annotations, service account, args); modelpvc sets storageUri and
its label. Without a base the flags build one, labelled opendatahub.io/dashboard=true for OpenShift AI.

Pods satisfy the Pod Security "restricted" profile and OpenShift restricted-v2. runAsUser and fsGroup are
left unset so that OpenShift's SCC admission assigns them from the namespace's ranges (the serving pod and
the Job then agree); pass --fs-group only on clusters that do not (plain Kubernetes).

The Jobs read the endpoint and region from the secret when it is an OpenShift AI data connection
(AWS_S3_ENDPOINT, AWS_DEFAULT_REGION, optional keys) unless --endpoint-url/--region are given.

GitOps (--gitops argocd): the Jobs are Sync hooks (BeforeHookCreation) in the PVC's wave, so a
WaitForFirstConsumer claim binds when the Job's pod lands (a later wave would wait for the Pending claim
forever: argo-cd#12840); they prefer the predictor's node and tolerate its taints (an RWO claim can only be
written there); the PVC is protected from deletion and pruning. Plain mode sets ttlSecondsAfterFinished.
A served directory is never rewritten: when the source changed since it was populated, the populate hook
writes the new revision to revisions/<id>/ beside it, the verify hook checks both, and `modelpvc update
--gitops PATH` points your manifests at it; the PostSync gc hook then removes the revisions that neither
serve nor are the latest. Default kinds under GitOps: pvc,job,verify-job,isvc,gc-job."""

KINDS = ["pvc", "job", "isvc", "verify-job", "import-job", "csc", "sa", "gc-job", "modelsource"]
DEFAULT_KINDS = {"pvc": "pvc,job,isvc", "storage-initializer": "csc,sa,isvc",
                 "pvc argocd": "pvc,job,verify-job,isvc,gc-job", "populator": "modelsource,pvc,isvc"}


def register(sub: Any) -> None:
    p = sub.add_parser("render", help="write the Kubernetes manifests (PVC, Jobs, InferenceService)",
                       description=DESCRIPTION, formatter_class=ParagraphFormatter)
    p.add_argument("--name", help="InferenceService name (default: the --isvc-base's); other objects derive theirs")
    p.add_argument("--namespace", "-n", help="default: the --isvc-base's")
    add_model_arguments(p, source_required=True, secret_required=True, endpoint=False)
    add_pattern_arguments(p)
    p.add_argument("--initializer-buckets", default="", metavar="B1,B2",
                   help="storage-initializer: only these buckets use modelpvc's initializer (default: every s3://)")
    add_claim_arguments(p, "PVC size (e.g. 120Gi), or auto: from --model-bytes, else from the source (plan)")
    p.add_argument("--revisions", type=int, choices=[1, 2], default=REVISIONS,
                   help="--size auto makes room for this many revisions (default 2: `update` then populates "
                        "the new one beside the served one, without downtime)")
    p.add_argument("--model-bytes", type=units.size_bytes,
                   help="model size for --size auto and the Job deadline (e.g. 45GB or 42Gi)")
    p.add_argument("--headroom", type=float, default=HEADROOM,
                   help=f"--size auto multiplies by this (default {HEADROOM})")
    add_hub_arguments(p)
    p.add_argument("--gitops", choices=["none", "argocd"], default="none",
                   help="argocd: the Jobs are Argo CD hooks in sync waves (see above)")
    _populator_arguments(p)
    _output_arguments(p)
    add_serving_arguments(p)
    add_s3_arguments(p)
    p.set_defaults(run=run)


def _populator_arguments(p: argparse.ArgumentParser) -> None:
    pop = p.add_argument_group("volume populator")
    pop.add_argument("--populator", action="store_true",
                     help="the claim is filled by `modelpvc populator` from a ModelSource before it binds: write the "
                          "ModelSource, the PVC naming it in dataSourceRef, and the InferenceService (no Job to apply "
                          "by hand; one Argo CD sync)")
    pop.add_argument("--model-source", metavar="NAME", help="the ModelSource's name (default: --name)")
    pop.add_argument("--install", action="store_true",
                     help="also the populator itself, for the platform admin: its CRD, VolumePopulator registration, "
                          "ServiceAccount, least RBAC and Deployment")
    pop.add_argument("--populator-namespace", default="modelpvc-system", metavar="NS",
                     help="where the populator runs (default modelpvc-system; create it first)")
    pop.add_argument("--populator-watch-namespace", metavar="NS",
                     help="a per-project populator: it fills only this namespace's claims, with a Role there")


def _output_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kinds", help=f"objects to write, from {','.join(KINDS)} (default: pvc,job,isvc; "
                   "pvc,job,verify-job,isvc,gc-job with --gitops argocd; csc,sa,isvc for --pattern "
                   "storage-initializer)")
    p.add_argument("-o", "--output-dir", type=Path, help="one file per object instead of stdout")
    p.add_argument("--validate", action="store_true",
                   help="validate before writing (Kubernetes schema, the bundled KServe CRDs, restricted profile)")
    p.add_argument("--k8s-version", default="1.31", help="Kubernetes schema version for --validate (1.31)")
    p.add_argument("--crd", action="append", type=Path, default=[],
                   help="your cluster's CRD YAML (oc get crd inferenceservices.serving.kserve.io -o yaml): "
                        "validates against it instead of the bundled one")


def render_spec(args: argparse.Namespace) -> ModelSpec:
    """The spec the flags ask for, with render's facts: from the flags and, for --size/--ephemeral auto without
    --model-bytes, the bucket's listing (there is no cluster to ask)."""
    spec = spec_from_args(args)
    if spec.pattern == "pvc" and not args.pvc:
        raise ConfigError("--pvc is needed for the pvc pattern", hint="or use --pattern storage-initializer")
    model_bytes: int | None = args.model_bytes
    if spec.pattern == "storage-initializer":
        ephemeral = args.ephemeral
        if ephemeral == "auto":
            model_bytes = model_bytes or _source_bytes(args, spec.loader)
            ephemeral = f"{pvc_size_gi(model_bytes, args.headroom)}Gi"
            sys.stderr.write(f"--ephemeral auto: {ephemeral} for {model_bytes / 1e9:.1f} GB x {args.headroom}\n")
        _initializer_endpoint_note(args, spec)
        return spec.resolved(Facts(model_bytes=model_bytes, ephemeral=ephemeral)).validate()
    size = None
    if args.size == "auto":
        if model_bytes is None:
            model_bytes = _hub_bytes(args, spec.loader) if args.import_from else _source_bytes(args, spec.loader)
        size = f"{claim_size_gi(model_bytes, args.revisions, args.headroom)}Gi"
        sys.stderr.write(f"--size auto: {size} for {args.revisions} revision(s) of {model_bytes / 1e9:.1f} GB "
                         f"x {args.headroom} headroom"
                         + (" (room for `update` to populate the new one beside the served one)"
                            if args.revisions == 2 else " (updates will stop the server: no room for two)")
                         + "\n")
    # The Jobs run where the server may: its tolerations (an RWO claim can only be written on its node).
    tolerations = tuple(spec.serving.predictor().get("tolerations") or ())
    return spec.resolved(Facts(size=size, model_bytes=model_bytes,
                               placement=replace(spec.placement, tolerations=tolerations))).validate()


def _source_bytes(args: argparse.Namespace, loader: str) -> int:
    from modelpvc.cli.mirror_cmd import make_source
    from modelpvc.model.select import make_selector
    from modelpvc.transfer.planner import LocalState, plan_mirror

    if not args.source.startswith("s3://"):
        raise ConfigError(f"--source {args.source!r} is not an s3:// URI")
    offline = ("render needs no bucket when told the size: pass --model-bytes (e.g. 45GB) or --size (e.g. 120Gi) "
               "to render offline, with no credentials")
    try:
        src = make_source(args.source, s3_settings(args))
        try:
            plan = plan_mirror(str(src.uri), src.list_objects(), LocalState(),
                               select=make_selector("auto", [], [], loader))
        finally:
            src.close()
    except ModelpvcError as e:
        e.hint = f"{e.hint}; or {offline}" if e.hint else offline
        raise
    return plan.selected_bytes


def _initializer_endpoint_note(args: argparse.Namespace, spec: ModelSpec) -> None:
    if args.endpoint_url:
        host = args.endpoint_url.split("://", 1)[-1].rstrip("/")
        https = "0" if args.endpoint_url.startswith("http://") else "1"
        sys.stderr.write(f"KServe reads the endpoint from the secret's annotations: oc annotate secret {spec.secret} "
                         f"-n {spec.namespace} serving.kserve.io/s3-endpoint={host} serving.kserve.io/s3-usehttps="
                         f"{https}" + (f" serving.kserve.io/s3-region={args.region}" if args.region else "") + "\n")


def _hub_bytes(args: argparse.Namespace, loader: str) -> int:
    """--size auto with --import-from: what the import will put in the bucket (the Hub's listing, selected)."""
    from modelpvc.cli.import_cmd import make_origin
    from modelpvc.model.select import make_selector
    from modelpvc.store.origins.hub import HubOrigin

    origin = make_origin(args.import_from, hub_endpoint=args.hub_endpoint)
    assert isinstance(origin, HubOrigin)
    files = origin.files(probe=False)  # the token that may download it may live only in the cluster's Secret
    sel = make_selector("auto", [], [], loader)([f.as_object() for f in files])
    return sum(f.size for f in files if f.rel not in sel.skips)


def run(args: argparse.Namespace) -> int:
    default = DEFAULT_KINDS["populator"] if args.populator else \
        DEFAULT_KINDS.get(f"{args.pattern} {args.gitops}", DEFAULT_KINDS[args.pattern])
    if args.install and not args.populator:
        raise ConfigError("--install writes the volume populator's CRD, RBAC and Deployment", hint="add --populator")
    kinds = [k.strip() for k in (args.kinds or default).split(",") if k.strip()]
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise ConfigError(f"--kinds: unknown {unknown or 'none given'}", hint=f"choose from {','.join(KINDS)}")
    spec = render_spec(args)
    kinds = manifests.expand_kinds(spec, kinds)
    objs = manifests.render(spec, kinds)
    if args.install:
        from modelpvc.kube.populator_install import install_objects

        extra = install_objects(args.populator_namespace, args.image, args.populator_watch_namespace)
        objs = [*extra, *objs]
        kinds = ["populator-install"] * len(extra) + kinds
    if args.validate:
        from modelpvc.kube.validate import load_crd_schemas, validate_objects

        problems = validate_objects(objs, args.k8s_version, load_crd_schemas(args.crd))
        if problems:
            raise IntegrityError("rendered objects do not validate:\n  " + "\n  ".join(problems))
    if args.output_dir:
        args.output_dir.mkdir(parents=True, exist_ok=True)
        for kind, obj in zip(kinds, objs, strict=True):
            wave = (obj["metadata"].get("annotations") or {}).get("argocd.argoproj.io/sync-wave") or \
                manifests.WAVES.get(kind, "0")
            path = args.output_dir / f"{wave}-{obj['kind'].lower() if kind == 'populator-install' else kind}-" \
                                     f"{obj['metadata']['name']}.yaml"
            path.write_text(yaml.safe_dump(obj, sort_keys=False))
            print(path)
    else:
        sys.stdout.write(yaml.safe_dump_all(objs, sort_keys=False))
    if spec.gitops != "argocd" and "job" in kinds and "isvc" in kinds:
        # Argo CD orders these by sync wave; `oc apply -f` all at once starts the server beside the Job.
        sys.stderr.write("note: outside Argo CD apply these in order: the PVC and the populate Job, wait for the Job "
                         "to complete (oc wait --for=condition=complete job/...), then the InferenceService. Applied "
                         "together, the server starts on a half-written claim (CrashLoopBackOff, Multi-Attach). "
                         "`modelpvc populate` then `modelpvc deploy` do this for you.\n")
    return 0
