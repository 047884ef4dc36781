"""The InferenceService flags ``render`` and ``deploy`` share, and the user's own InferenceService YAML
(``--isvc-base``) they can start from."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from modelpvc.cli import units
from modelpvc.core.errors import ConfigError
from modelpvc.kube.spec import Serving


def add_serving_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("serving (the InferenceService)")
    g.add_argument("--isvc-base", type=Path, metavar="FILE",
                   help="your own InferenceService YAML: every field is kept; modelpvc sets only storageUri and "
                        "its label (the flags below, when given, override the base)")
    g.add_argument("--runtime",
                   help="ServingRuntime name (default vllm-cuda-runtime, OpenShift AI's vLLM NVIDIA runtime, "
                        "without a base)")
    g.add_argument("--gpus", type=int,
                   help="nvidia.com/gpu requests and limits (default 1 without a base); the predictor then "
                        "tolerates the nvidia.com/gpu:NoSchedule taint unless --toleration names that key")
    g.add_argument("--arg", action="append", default=None, dest="args", metavar="ARG",
                   help="server argument, repeatable: --arg=--tensor-parallel-size=4")
    g.add_argument("--cpu", help="cpu request, e.g. 16")
    g.add_argument("--memory", type=units.quantity, help="memory request and limit, e.g. 80Gi or 80GB")
    g.add_argument("--min-replicas", type=int)
    g.add_argument("--max-replicas", type=int)
    g.add_argument("--toleration", action="append", default=[], metavar="KEY[=VALUE]:EFFECT",
                   help="e.g. nvidia.com/gpu:NoSchedule (operator Exists when no value), repeatable")
    g.add_argument("--node-selector", action="append", default=[], metavar="KEY=VALUE",
                   help="e.g. node.kubernetes.io/instance-type=g6.12xlarge, repeatable")
    g.add_argument("--label", action="append", default=[], metavar="KEY=VALUE", help="extra label, repeatable")
    g.add_argument("--annotation", action="append", default=[], metavar="KEY=VALUE",
                   help="extra annotation, repeatable")
    g.add_argument("--deployment-mode",
                   help="Serverless or RawDeployment (Knative/Standard in KServe >= 0.16); fixed at creation")


def _pairs(items: list[str], flag: str) -> dict[str, str]:
    out = {}
    for item in items:
        k, sep, v = item.partition("=")
        if not sep or not k:
            raise ConfigError(f"{flag} {item!r}: write it as KEY=VALUE")
        out[k] = v
    return out


def parse_toleration(text: str) -> dict[str, Any]:
    """"nvidia.com/gpu:NoSchedule" -> Exists; "dedicated=gpu:NoSchedule" -> Equal; no effect: all effects."""
    head, _sep, effect = text.rpartition(":") if ":" in text else (text, "", "")
    key, eq, value = head.partition("=")
    if not key:
        raise ConfigError(f"--toleration {text!r}: write it as KEY[=VALUE]:EFFECT, e.g. nvidia.com/gpu:NoSchedule")
    if effect and effect not in ("NoSchedule", "PreferNoSchedule", "NoExecute"):
        raise ConfigError(f"--toleration {text!r}: the effect must be NoSchedule, PreferNoSchedule or NoExecute")
    t: dict[str, Any] = {"key": key, "operator": "Equal" if eq else "Exists"}
    if eq:
        t["value"] = value
    if effect:
        t["effect"] = effect
    return t


def load_base(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"--isvc-base {path}: {e}") from e
    isvcs = [d for d in docs if isinstance(d, dict) and d.get("kind") == "InferenceService"]
    if len(isvcs) != 1:
        raise ConfigError(f"--isvc-base {path}: expected one InferenceService, found {len(isvcs)}")
    return isvcs[0]


def serving_from_args(args: argparse.Namespace) -> Serving:
    serving = Serving(
        runtime=args.runtime, gpus=args.gpus, args=tuple(args.args) if args.args is not None else None,
        cpu=args.cpu, memory=args.memory, min_replicas=args.min_replicas, max_replicas=args.max_replicas,
        tolerations=tuple(parse_toleration(t) for t in args.toleration),
        node_selector=_pairs(args.node_selector, "--node-selector"), labels=_pairs(args.label, "--label"),
        annotations=_pairs(args.annotation, "--annotation"), deployment_mode=args.deployment_mode,
        base=load_base(args.isvc_base))
    gpus = serving.gpus or 0
    if gpus > 1 and not any(a.startswith("--tensor-parallel-size") for a in serving.effective_args):
        # vLLM shards a model over the GPUs only when told to: the others would sit idle, reserved.
        sys.stderr.write(f"warning: --gpus {gpus} without --arg=--tensor-parallel-size={gpus}: vLLM would serve on "
                         f"one GPU and keep {gpus - 1} reserved and idle\n")
    return serving
