"""Exceptions -> one message, one hint, one exit code. The only place that decides exit codes."""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from modelpvc.core.errors import ExitCode, ModelpvcError

EXIT_CODES_HELP = """exit codes:
  0    success (also: nothing to do)
  2    usage or configuration error
  3    source problem: prefix or bucket missing, access denied, endpoint unreachable, unsafe keys
  4    destination problem: not writable, no space, locked by another run
  5    integrity: bytes or model structure do not match
  6    Kubernetes API error
  130  interrupted (SIGINT), 143 terminated (SIGTERM): re-run to resume"""


def error_record(e: BaseException, code: int) -> dict[str, Any]:
    """A failure as data, for programs across a pod boundary: the last JSON line of a failed run. ``code`` is
    the error class's stable code (core.errors), which callers map; they never parse messages. ``error``,
    the class name, is for people and for readers of an older image."""
    if isinstance(e, ModelpvcError):
        return {"event": "error", "code": e.code, "error": type(e).__name__, "exit_code": code,
                "message": e.message, "hint": e.hint}
    interrupted = isinstance(e, KeyboardInterrupt)
    return {"event": "error", "code": "interrupted" if interrupted else "internal",
            "error": "Interrupted" if interrupted else "InternalError", "exit_code": code,
            "message": f"{type(e).__name__}: {e}", "hint": None}


def report(e: BaseException, stream: TextIO | None = None, as_json: bool = False) -> int:
    """Print a failure for humans (and, in JSON mode, one error record) and return its exit code."""
    stream = stream or sys.stderr
    code = _report_text(e, stream)
    if as_json:
        stream.write(json.dumps(error_record(e, code), separators=(",", ":")) + "\n")
        stream.flush()
    return code


def _report_text(e: BaseException, stream: TextIO) -> int:
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
