"""``modelpvc demo``: placeholder until the demo module lands."""

from __future__ import annotations

from typing import Any


def register(sub: Any) -> None:
    return None
