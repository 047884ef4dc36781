"""``modelpvc render``: the Kubernetes YAML for a GitOps repository."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from modelpvc.cli.credentials import add_s3_arguments, s3_settings
from modelpvc.core.errors import ConfigError, IntegrityError
from modelpvc.kube import manifests
from modelpvc.kube.spec import DEFAULT_IMAGE, ModelSpec
from modelpvc.model.sizing import parse_size, pvc_size_gi

DESCRIPTION = f"""Write the PVC, the populate Job (runs `modelpvc mirror` from {DEFAULT_IMAGE}), a verify Job
(replaces the runbook's inspector pod) and the InferenceService (storageUri pvc://CLAIM/PATH, vLLM runtime)
as a YAML stream, or one file per object with -o DIR.

Pods satisfy the Pod Security "restricted" profile and OpenShift restricted-v2. runAsUser and fsGroup are
left unset so that OpenShift's SCC admission assigns them from the namespace's ranges (the serving pod and
the Job then agree); pass --fs-group only on clusters that do not (plain Kubernetes with a volume that
needs a group).

GitOps: sync-wave annotations order PVC (1) -> populate Job (2) -> verify Job (3) -> InferenceService (4).
--gitops argocd makes the Jobs Argo CD Sync hooks with BeforeHookCreation: re-created and waited for on
each sync, which is cheap because a populated volume makes the Job a no-op. Plain mode sets
ttlSecondsAfterFinished instead."""

KINDS = ["pvc", "job", "isvc", "verify-job"]


def register(sub: Any) -> None:
    p = sub.add_parser("render", help="write the Kubernetes manifests (PVC, Jobs, InferenceService)",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--name", required=True, help="InferenceService name (other objects derive theirs)")
    p.add_argument("--namespace", "-n", required=True)
    p.add_argument("--source", required=True, metavar="s3://BUCKET/PREFIX/")
    p.add_argument("--secret", required=True, help="Secret holding the S3 keys")
    p.add_argument("--secret-keys", default="AWS_ACCESS_KEY_ID,AWS_SECRET_ACCESS_KEY", metavar="ACCESS,SECRET",
                   help="the key names the Secret really has, e.g. accesskey,secretkey")
    p.add_argument("--pvc", required=True, help="PersistentVolumeClaim name")
    p.add_argument("--path", default="", help="directory inside the claim (default: its root)")
    p.add_argument("--size", default="auto",
                   help="PVC size (e.g. 120Gi), or auto: from --model-bytes, else from the source (plan)")
    p.add_argument("--model-bytes", help="model size for --size auto and the Job deadline (e.g. 45G)")
    p.add_argument("--headroom", type=float, default=1.2)
    p.add_argument("--storage-class")
    p.add_argument("--access-mode", default="ReadWriteOnce")
    p.add_argument("--runtime", default="vllm-runtime", help="ServingRuntime name (we reference it)")
    p.add_argument("--gpus", type=int, default=1)
    p.add_argument("--arg", action="append", default=[], dest="args", metavar="ARG",
                   help="server argument, repeatable: --arg=--max-model-len=32768")
    p.add_argument("--cpu")
    p.add_argument("--memory")
    p.add_argument("--deployment-mode", help="Serverless or RawDeployment (Knative/Standard in KServe >= 0.16)")
    p.add_argument("--image", default=DEFAULT_IMAGE, help="modelpvc image for the Jobs")
    p.add_argument("--fs-group", type=int, help="pod fsGroup (leave unset on OpenShift)")
    p.add_argument("--gitops", choices=["none", "argocd"], default="none")
    p.add_argument("--kinds", default="pvc,job,isvc", help=f"objects to write, from {','.join(KINDS)}")
    p.add_argument("-o", "--output-dir", type=Path, help="one file per object instead of stdout")
    p.add_argument("--validate", action="store_true", help="validate before writing; fail on any problem")
    p.add_argument("--k8s-version", default="1.31", help="Kubernetes schema version for --validate (1.31)")
    p.add_argument("--crd", action="append", type=Path, default=[],
                   help="CRD YAML for KServe kinds (oc get crd inferenceservices.serving.kserve.io -o yaml)")
    add_s3_arguments(p)
    p.set_defaults(run=run)


def spec_from_args(args: argparse.Namespace) -> ModelSpec:
    keys = tuple(k.strip() for k in args.secret_keys.split(","))
    if len(keys) != 2 or not all(keys):
        raise ConfigError(f"--secret-keys {args.secret_keys!r}: give two names, ACCESS,SECRET")
    model_bytes = parse_size(args.model_bytes) if args.model_bytes else None
    size = args.size
    if size == "auto":
        if model_bytes is None:
            model_bytes = _source_bytes(args)
        size = f"{pvc_size_gi(model_bytes, args.headroom)}Gi"
    return ModelSpec(
        name=args.name, namespace=args.namespace, source=args.source, pvc=args.pvc, secret=args.secret,
        endpoint_url=args.endpoint_url, secret_keys=(keys[0], keys[1]), path=args.path.strip("/"), size=size,
        storage_class=args.storage_class, access_mode=args.access_mode, runtime=args.runtime, gpus=args.gpus,
        args=tuple(args.args), cpu=args.cpu, memory=args.memory, deployment_mode=args.deployment_mode,
        image=args.image, fs_group=args.fs_group, gitops=args.gitops, model_bytes=model_bytes,
    ).validate()


def _source_bytes(args: argparse.Namespace) -> int:
    from modelpvc.cli.mirror_cmd import make_source
    from modelpvc.model.select import make_selector
    from modelpvc.transfer.planner import LocalState, plan_mirror

    if not args.source.startswith("s3://"):
        raise ConfigError(f"--source {args.source!r} is not an s3:// URI")
    src = make_source(args.source, s3_settings(args))
    try:
        plan = plan_mirror(str(src.uri), src.list_objects(), LocalState(), select=make_selector("auto", [], []))
    finally:
        src.close()
    return plan.selected_bytes


def run(args: argparse.Namespace) -> int:
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise ConfigError(f"--kinds: unknown {unknown or 'none given'}", hint=f"choose from {','.join(KINDS)}")
    spec = spec_from_args(args)
    objs = manifests.render(spec, kinds)
    if args.validate:
        from modelpvc.kube.validate import load_crd_schemas, validate_objects

        problems = validate_objects(objs, args.k8s_version, load_crd_schemas(args.crd))
        if problems:
            raise IntegrityError("rendered objects do not validate:\n  " + "\n  ".join(problems))
    if args.output_dir:
        args.output_dir.mkdir(parents=True, exist_ok=True)
        for kind, obj in zip(kinds, objs, strict=True):
            path = args.output_dir / f"{manifests.WAVES[kind]}-{kind}-{obj['metadata']['name']}.yaml"
            path.write_text(yaml.safe_dump(obj, sort_keys=False))
            print(path)
    else:
        sys.stdout.write(yaml.safe_dump_all(objs, sort_keys=False))
    return 0
