"""The stop token a long run polls: set by a signal handler (cli/signals.py) or by a caller; the run then
journals what finished and raises Interrupted with the signal's number."""

from __future__ import annotations

import threading


class StopToken(threading.Event):
    def __init__(self) -> None:
        super().__init__()
        self.signum = 15  # the signal that set it (SIGTERM when a caller did)
        self.polled = False  # True while a loop polls the token; otherwise a signal raises at once
