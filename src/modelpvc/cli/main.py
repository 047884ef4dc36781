"""``modelpvc`` command line: parses argv, builds settings, runs one command, maps errors to exit codes."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from modelpvc import __version__
from modelpvc.cli import demo_cmd, gc_cmd, kube_cmd, mirror_cmd, plan_cmd, render_cmd, verify_cmd
from modelpvc.cli.errors import EXIT_CODES_HELP, report


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="modelpvc",
        description="Get model weights from S3-compatible storage onto a volume, verified, and serve them.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"modelpvc {__version__}")
    p.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                   help="library log level on stderr (default WARNING)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    mirror_cmd.register(sub)
    verify_cmd.register(sub)
    plan_cmd.register(sub)
    render_cmd.register(sub)
    kube_cmd.register(sub)
    gc_cmd.register(sub)
    demo_cmd.register(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="modelpvc: %(levelname)s: %(message)s")
    try:
        code: int = args.run(args)
        return code
    except BaseException as e:
        if isinstance(e, SystemExit):
            raise
        return report(e, as_json=bool(getattr(args, "json_errors", False)))


if __name__ == "__main__":
    sys.exit(main())
