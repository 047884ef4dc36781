"""The result of ``verify``: findings plus what was checked, printable for humans and programs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from modelpvc.model.findings import Finding
from modelpvc.model.layout import StructureReport


@dataclass
class VerifyReport:
    directory: str
    structure: StructureReport
    manifest: dict[str, Any] | None = None  # {"revision", "source", "files", "bytes"} when one was found
    findings: list[Finding] = field(default_factory=list)  # manifest, deep and source findings
    deep: bool = False
    files_hashed: int = 0
    bytes_hashed: int = 0
    source: str | None = None
    strict: bool = False  # warnings count as errors

    @property
    def all_findings(self) -> list[Finding]:
        return self.structure.findings + self.findings

    @property
    def failing(self) -> list[Finding]:
        bad = ("error", "warning") if self.strict else ("error",)
        return [f for f in self.all_findings if f.severity in bad]

    @property
    def ok(self) -> bool:
        return not self.failing

    def to_json(self) -> dict[str, Any]:
        return {
            "event": "verify",
            "directory": self.directory,
            "ok": self.ok,
            "layouts": self.structure.layouts,
            "parameters": self.structure.parameters,
            "dtypes": self.structure.dtypes,
            "manifest": self.manifest,
            "deep": self.deep,
            "files_hashed": self.files_hashed,
            "bytes_hashed": self.bytes_hashed,
            "source": self.source,
            "strict": self.strict,
            "findings": [f.to_json() for f in self.all_findings],
        }
