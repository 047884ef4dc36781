"""SIGTERM/SIGINT -> a stop flag the executor polls, so it can journal what finished and exit fast."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from modelpvc.core.errors import Interrupted
from modelpvc.core.stop import StopToken


@contextmanager
def stop_on_signals() -> Iterator[StopToken]:
    flag = StopToken()

    def handler(signum: int, _frame: FrameType | None) -> None:
        flag.signum = signum
        already = flag.is_set()
        flag.set()
        if already or not flag.polled:
            raise Interrupted(signum)

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield flag
    finally:
        for s, h in old.items():
            signal.signal(s, h)
