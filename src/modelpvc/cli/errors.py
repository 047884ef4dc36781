"""Exceptions -> one message, one hint, one exit code. The only place that decides exit codes."""

from __future__ import annotations

import sys
from typing import TextIO

from modelpvc.core.errors import ExitCode, ModelpvcError

EXIT_CODES_HELP = """exit codes:
  0    success (also: nothing to do)
  2    usage or configuration error
  3    source problem: prefix or bucket missing, access denied, endpoint unreachable, unsafe keys
  4    destination problem: not writable, no space, locked by another run
  5    integrity: bytes or model structure do not match
  6    Kubernetes API error
  130  interrupted (SIGINT), 143 terminated (SIGTERM): re-run to resume"""


def report(e: BaseException, stream: TextIO | None = None) -> int:
    """Print a failure for humans and return its exit code."""
    stream = stream or sys.stderr
    if isinstance(e, ModelpvcError):
        stream.write(f"modelpvc: error: {e.message}\n")
        if e.hint:
            stream.write(f"  hint: {e.hint}\n")
        return int(e.exit_code)
    if isinstance(e, KeyboardInterrupt):
        stream.write("modelpvc: interrupted\n")
        return ExitCode.INTERRUPTED_INT
    stream.write(f"modelpvc: internal error: {type(e).__name__}: {e}\n"
                 "  hint: please report this with the command you ran\n")
    return 1
