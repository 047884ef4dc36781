"""``modelpvc populator``: the volume populator for ModelSource claims, a long-running controller."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any

from modelpvc.cli.help_format import ParagraphFormatter
from modelpvc.cli.spec_args import add_image_argument

DESCRIPTION = """Fill every PersistentVolumeClaim whose spec.dataSourceRef names a ModelSource (modelpvc.io/v1alpha1)
before it binds: the claim is born complete and verified, and the InferenceService that mounts it simply waits
for it. For a WaitForFirstConsumer class it waits until the scheduler picks the consumer's node, creates a prime
claim of the same class and size there, runs `populate`'s Job on it (restricted, resumable, verified), then hands
the volume to the claim. A failure is an event on the claim, and the copy is retried with backoff.

Run it in the cluster (`modelpvc render --populator --install` writes its CRD, RBAC and Deployment), or from a
shell with a kubeconfig allowed what that RBAC allows. It keeps no state of its own: restarted, it carries on
where the API says it was."""


def register(sub: Any) -> None:
    p = sub.add_parser("populator", help="run the volume populator for ModelSource claims (a controller)",
                       description=DESCRIPTION, formatter_class=ParagraphFormatter)
    p.add_argument("--kubeconfig", type=Path, help="default: $KUBECONFIG, ~/.kube/config, or in-cluster")
    p.add_argument("--context", help="kubeconfig context (default: its current context)")
    p.add_argument("--watch-namespace", metavar="NS",
                   help="fill claims of this namespace only (a per-project populator); default: every namespace")
    add_image_argument(p)
    p.add_argument("--backoff", type=float, default=10.0, metavar="S",
                   help="seconds before the first retry of a failed copy; doubled each time, at most 10 min")
    p.add_argument("--resync", type=float, default=300.0, metavar="S",
                   help="seconds between full re-lists, beside the watches (default 300)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from modelpvc.kube.cluster import Cluster
    from modelpvc.kube.populator import Loop, Populator

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout, force=True)
    for noisy in ("httpx", "httpx2", "httpcore"):  # a line per request: the watches alone would fill the log
        logging.getLogger(noisy).setLevel(logging.WARNING)
    cluster = Cluster(args.kubeconfig, args.context, args.watch_namespace)
    loop = Loop(Populator(cluster, args.image, namespace=args.watch_namespace, backoff_base=args.backoff),
                resync=args.resync)

    def stop(_sig: int, _frame: FrameType | None) -> None:
        loop.stop.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"modelpvc populator: filling ModelSource claims in "
          f"{args.watch_namespace or 'every namespace'}; Jobs run {args.image}", flush=True)
    loop.run()
    return 0
