"""A finding: one thing wrong (or worth saying) about one file of a model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Finding:
    path: str
    code: str  # stable, for programs: "truncated", "missing-shard", "total-size", ...
    message: str
    severity: str = "error"  # "error" fails verification; "warning" does not

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "code": self.code, "message": self.message, "severity": self.severity}
