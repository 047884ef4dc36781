"""What ``modelpvc mirror`` imports before it can answer: a no-op re-run has 0.3 s in all, and most of
what it spends is imports (docs/decisions.md §14). These modules cost tens of milliseconds and a no-op
needs none of them; each is imported where it is used."""

from __future__ import annotations

import json
import subprocess
import sys

NOT_AT_START = {
    "http.client": "35-50 ms with email; store/http11 is our connection",
    "email": "imported by http.client",
    "ssl": "only for an https endpoint",
    "difflib": "only for the missing-prefix message",
    "botocore": "only for the AWS credential chain",
    "awscrt": "only where ISA-L is missing",
    "modelpvc.transfer.executor": "only when there is something to fetch",
    "modelpvc.model.safetensors": "only for the structural check and plan",
    "modelpvc.cli.plan_cmd": "plan's header reading and sizing",
}


def test_the_mirror_command_starts_without_what_a_no_op_does_not_use() -> None:
    code = ("import json, sys\nimport modelpvc.cli.main, modelpvc.cli.mirror_cmd, modelpvc.transfer.mirror\n"
            "print(json.dumps(sorted(sys.modules)))")
    loaded = set(json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                           check=True).stdout))
    assert "modelpvc.store.http.http11" in loaded  # the probe imports what the command imports
    found = {m: why for m, why in NOT_AT_START.items() if m in loaded}
    assert not found, f"imported at start-up: {found}"
