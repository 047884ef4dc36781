"""``populate``, ``deploy``, ``update``, ``doctor``: the runbook's manual steps as commands that check, act,
wait and explain."""

from __future__ import annotations

import argparse
import json
import signal
from pathlib import Path
from typing import Any

from modelpvc.cli import units
from modelpvc.cli.errors import EXIT_CODES_HELP
from modelpvc.cli.help_format import ParagraphFormatter
from modelpvc.cli.kube_display import KubeDisplay
from modelpvc.cli.progress import count
from modelpvc.cli.serving_args import add_serving_arguments
from modelpvc.cli.spec_args import (
    add_claim_arguments,
    add_hub_arguments,
    add_model_arguments,
    add_pattern_arguments,
    spec_from_args,
)
from modelpvc.core.errors import ConfigError, Interrupted
from modelpvc.kube.cluster import Cluster
from modelpvc.kube.spec import Facts, ModelSpec


def _cluster_args(p: argparse.ArgumentParser, waits: bool = True) -> None:
    """The connection flags; the timeouts only for commands that wait (doctor reads state and returns)."""
    g = p.add_argument_group("cluster")
    g.add_argument("--kubeconfig", type=Path, help="default: $KUBECONFIG, ~/.kube/config, or in-cluster")
    g.add_argument("--context", help="kubeconfig context (default: its current context)")
    g.add_argument("-n", "--namespace", required=True, help="the project (namespace) to work in")
    if not waits:
        return
    g.add_argument("--timeout", type=float, default=6 * 3600, help="seconds to wait (default 6 h)")
    g.add_argument("--pending-timeout", type=float, default=120, metavar="S",
                   help="seconds a pod may stay unschedulable or unable to attach its volume before the command "
                        "fails with the reason (default 120; config errors and image pulls fail at once)")


def _command(sub: Any, name: str, summary: str, description: str, source_required: bool) -> argparse.ArgumentParser:
    """A cluster command that acts on a model: the cluster and model/storage flags they all take."""
    p: argparse.ArgumentParser = sub.add_parser(name, help=summary, description=description, epilog=EXIT_CODES_HELP,
                                                formatter_class=ParagraphFormatter)
    _cluster_args(p)
    add_model_arguments(p, source_required=source_required)
    return p


def register(sub: Any) -> None:
    _register_populate(sub)
    _register_deploy(sub)
    _register_update(sub)
    _register_doctor(sub)


def _register_populate(sub: Any) -> None:
    p = _command(sub, "populate", "fill a PVC from S3 with a Job: preflight, live progress, verified", (
        "Preflight (namespace, secret and its key names, source and its size, storage class, PVC bound and big "
        "enough, pods holding an RWO claim, fsGroup), then create the populate Job where it can mount the claim "
        "(on the node of a pod that holds it, tolerating that node's taints; for a WaitForFirstConsumer claim, "
        "in the serving nodes' zone), follow its progress live, wait, and report the verification. A Job that "
        "cannot start fails in seconds with the reason. Re-running on a populated claim finishes quickly with "
        "nothing copied."), source_required=True)
    p.add_argument("--name", default="", help="name for the Job (default: the PVC's)")
    p.add_argument("--create-pvc", action="store_true", help="create the PVC when missing")
    add_claim_arguments(p, "size for --create-pvc: a quantity (120Gi, 130GB) or auto (as render sizes it: room for "
                           "two revisions of the source's selected bytes, x 1.1)")
    p.add_argument("--source-check", choices=["auto", "local", "cluster", "skip"], default="auto",
                   help="auto: list the source from here, else with a probe Job in the cluster (default)")
    p.add_argument("--no-wait", action="store_true", help="create the Job and return")
    p.add_argument("--delete-excluded", action="store_true",
                   help="remove files on the claim the selection leaves out: a claim the runbook's mc mirror "
                        "filled keeps its duplicate consolidated.safetensors otherwise")
    add_hub_arguments(p)
    p.add_argument("--parallel", type=int, default=1, metavar="N",
                   help="N pods split the files (an Indexed Job; ReadWriteMany claims, very large models)")
    add_serving_arguments(p)
    p.set_defaults(run=run_populate)


def _register_deploy(sub: Any) -> None:
    p = _command(sub, "deploy", "create the InferenceService on a verified claim; wait until it serves it", (
        "Refuses a claim that does not verify (the revision populate recorded on the PVC, else a verify Job "
        "with the claim read-only), applies the InferenceService with server-side apply (from --isvc-base or "
        "the flags) and waits until the predictor pods that mount the claim are Ready. If they cannot start "
        "(unschedulable, Multi-Attach, crash-looping on an incomplete model) it says why in seconds."),
        source_required=False)
    add_serving_arguments(p)
    p.add_argument("--name", help="InferenceService name (default: the --isvc-base's)")
    p.add_argument("--skip-verify", action="store_true", help="deploy without checking the claim (not advised)")
    add_pattern_arguments(p)
    p.set_defaults(run=run_deploy)


def _register_update(sub: Any) -> None:
    p = _command(sub, "update", "refresh the served weights; zero-downtime where the cluster allows", (
        "Zero-downtime: populate revisions/<id>/ beside the served revision (unchanged files hard-linked), "
        "switch only storageUri (server-side apply: every other field stays as its owner set it), wait until "
        "the new revision's pods are Ready, remove the old revision. It needs room on the claim and room for a "
        "second predictor pod (KServe rolls out surge-first); without, it says why and changes nothing, unless "
        "--stop-the-world: delete the InferenceService, populate, recreate it exactly as it was, wait. An "
        "InferenceService Argo CD manages is changed in Git, not here (--gitops PATH writes it)."),
        source_required=False)
    p.add_argument("--name", required=True, help="InferenceService name")
    p.add_argument("--stop-the-world", action="store_true",
                   help="accept downtime when a zero-downtime update is impossible (or always, when given)")
    p.add_argument("--gitops", type=Path, metavar="PATH", dest="gitops_file",
                   help="your Git checkout's manifest of the InferenceService, or a directory of manifests (what "
                        "render -o wrote): point its storageUri and modelpvc's hooks for it at the new revision "
                        "(for an Argo CD-managed InferenceService) instead of changing the cluster")
    p.add_argument("--populator", action="store_true",
                   help="declare the new revision as a new ModelSource and claim, filled by `modelpvc populator`; "
                        "switch storageUri at once (the new pod waits for its claim while the old one serves)")
    p.add_argument("--revision", metavar="NAME",
                   help="with --populator: the new ModelSource's and claim's suffix (default: the time, UTC)")
    p.set_defaults(run=run_update)


def _register_doctor(sub: Any) -> None:
    p = sub.add_parser("doctor", help="diagnose the runbook's failure modes and say what to do",
                       formatter_class=ParagraphFormatter,
                       description="Exit 0 when nothing is wrong, 1 when it found problems.")
    _cluster_args(p, waits=False)
    p.add_argument("--isvc", help="InferenceService to look at")
    p.add_argument("--pvc", help="claim to look at")
    p.add_argument("--source-bytes", type=units.size_bytes,
                   help="model size (48GB, 45Gi or bytes), to check the claim's capacity")
    p.add_argument("--json", action="store_true", help="the findings as JSON (code, title, evidence, fix)")
    p.set_defaults(run=run_doctor)


def _cluster(args: argparse.Namespace) -> Cluster:
    return Cluster(args.kubeconfig, args.context, args.namespace)


def run_populate(args: argparse.Namespace) -> int:
    from modelpvc.kube.populate import PopulateOptions, populate

    spec = spec_from_args(args, default_name=args.pvc).validate()
    display = KubeDisplay(summaries=False)
    print(f"populate {spec.storage_uri} in {spec.namespace} from {spec.source}")
    try:
        result = populate(_cluster(args), spec, display, PopulateOptions(
            create_pvc=args.create_pvc, source_check=args.source_check, timeout=args.timeout, wait=not args.no_wait,
            pending_grace=args.pending_timeout))
    except KeyboardInterrupt:
        follow = f"oc logs -f job/{spec.name}-populate -n {spec.namespace}"
        raise Interrupted(signal.SIGINT, message=(
            "interrupted here; the populate Job keeps running in the cluster. Re-run this populate to follow it "
            f"again (it attaches to the running Job), or: {follow}")) from None
    finally:
        display.close()
    if args.no_wait:
        return 0
    s = result.summary
    verdict = "up to date, nothing copied" if s.get("noop") else f"{count(s.get('fetched_files', 0), 'file')} copied"
    checks = ", ".join(f"{n} by {k}" for k, n in (s.get("verified") or {}).items())
    print(f"done: {verdict}; {count(s.get('files'), 'file')} verified ({checks}), revision {s.get('revision')}")
    return 0


def run_deploy(args: argparse.Namespace) -> int:
    from modelpvc.kube.deploy import deploy

    spec = spec_from_args(args)
    display = KubeDisplay()
    if spec.pattern == "storage-initializer":
        spec = _initializer_spec(args, spec, display)
    else:
        spec = spec.validate(needs_source=False)
    isvc = deploy(_cluster(args), spec, display, timeout=min(args.timeout, 3600), skip_verify=args.skip_verify,
                  pending_grace=args.pending_timeout)
    print(f"{spec.name} is Ready: {(isvc.get('status') or {}).get('url')}")
    return 0


def _initializer_spec(args: argparse.Namespace, spec: ModelSpec, display: KubeDisplay) -> ModelSpec:
    """The ephemeral storage sized from the source as the cluster's Secret lets it be listed."""
    from modelpvc.kube.populate import resolve_source
    from modelpvc.model.sizing import pvc_size_gi

    spec = spec.validate()
    if args.ephemeral != "auto":
        return spec.resolved(Facts(ephemeral=args.ephemeral))
    spec, listing = resolve_source(_cluster(args), spec, display, pending_grace=args.pending_timeout)
    if listing is None or not listing.bytes:
        raise ConfigError("cannot size the ephemeral storage: the source's size is unknown",
                          hint="pass --ephemeral, e.g. 20Gi")
    return spec.resolved(Facts(ephemeral=f"{pvc_size_gi(listing.bytes)}Gi"))


def run_update(args: argparse.Namespace) -> int:
    from modelpvc.kube.update import UpdateOptions, UpdateResult, update

    asked = spec_from_args(args)
    display = KubeDisplay()
    if args.populator:
        from modelpvc.kube.populator_update import update_by_populator

        new = update_by_populator(_cluster(args), asked, display, args.revision, args.timeout, args.pending_timeout)
        result = UpdateResult("populator", "a new claim, filled by the volume populator", new.pvc, new.storage_uri)
    else:
        result = update(_cluster(args), asked, display, UpdateOptions(
            stop_the_world=args.stop_the_world, timeout=args.timeout, pending_grace=args.pending_timeout,
            gitops_file=args.gitops_file))
    print(f"update took the {result.strategy} path ({result.why}); serving {result.storage_uri} "
          f"revision {result.revision}")
    return 0


def run_doctor(args: argparse.Namespace) -> int:
    from modelpvc.kube.doctor import diagnose

    found = diagnose(_cluster(args), args.namespace, isvc=args.isvc, pvc=args.pvc, source_bytes=args.source_bytes)
    if args.json:
        print(json.dumps({"namespace": args.namespace, "diagnoses": [d.to_json() for d in found]}, indent=1))
    elif not found:
        print(f"doctor: nothing wrong found in {args.namespace}")
    else:
        for d in found:
            print(f"✗ {d.title}\n    evidence: {d.evidence}\n    fix: {d.fix}")
    return 1 if found else 0
