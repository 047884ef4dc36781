"""Retry with exponential backoff and full jitter, for errors the caller marked transient."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from modelpvc.core.errors import TransientError

T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a transient failure is retried."""

    attempts: int
    base: float  # seconds, the first backoff's bound
    cap: float  # seconds, the largest backoff's bound


def backoff_delay(attempt: int, base: float, cap: float) -> float:
    """Full jitter (AWS architecture blog): uniform in [0, min(cap, base * 2**attempt)]."""
    return random.uniform(0.0, min(cap, base * (2**attempt)))


def call_with_retries(
    fn: Callable[[], T],
    *,
    attempts: int,
    base: float,
    cap: float,
    deadline: float | None = None,
    on_retry: Callable[[int, TransientError], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call ``fn`` until it succeeds, raises a non-transient error, or the budget is spent.

    ``deadline`` (seconds from now) bounds the total time, so an endpoint that never answers fails
    within a documented bound whatever ``attempts`` says.
    """
    start = time.monotonic()
    attempt = 0
    while True:
        try:
            return fn()
        except TransientError as e:
            attempt += 1
            elapsed = time.monotonic() - start
            if attempt >= attempts or (deadline is not None and elapsed >= deadline):
                raise
            delay = backoff_delay(attempt, base, cap)
            if deadline is not None:
                delay = max(0.0, min(delay, deadline - elapsed))
            if on_retry is not None:
                on_retry(attempt, e)
            log.debug("retry %d after %.2fs: %s", attempt, delay, e)
            sleep(delay)
