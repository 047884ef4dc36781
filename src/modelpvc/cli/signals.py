"""SIGTERM/SIGINT -> a stop flag the executor polls, so it can journal what finished and exit fast."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from modelpvc.core.errors import Interrupted


class StopFlag(threading.Event):
    def __init__(self) -> None:
        super().__init__()
        self.signum = 0
        self.polled = False  # True while a loop polls the flag; otherwise a signal raises at once


@contextmanager
def stop_on_signals() -> Iterator[StopFlag]:
    flag = StopFlag()

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
