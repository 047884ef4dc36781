"""What a pod of ours logged, read one way: its JSON records (progress, summary, error, plan, verify) and its
other lines. A failure crosses the pod boundary as data: the pod's last record is ``{"event": "error",
"code": <stable code>, ...}`` (cli/errors.py), which becomes the same exception class here
(core.errors.from_record); nothing parses a message.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from modelpvc.core.errors import ClusterError, IntegrityError, ModelpvcError, from_record
from modelpvc.core.events import Event, NullSink, ProgressSink
from modelpvc.kube import objects as o
from modelpvc.kube.cluster import Cluster


def pod_of(cluster: Cluster, ns: str, job: str) -> o.Obj | None:
    """The Job's newest pod."""
    pods = cluster.list("Pod", ns, labels={"job-name": job})
    pods.sort(key=lambda p: p["metadata"].get("creationTimestamp", ""))
    return pods[-1] if pods else None


@dataclass
class JobResult:
    name: str
    pod: str | None = None
    exit_code: int | None = None
    records: list[dict[str, Any]] = field(default_factory=list)  # JSON lines from the pod
    log: list[str] = field(default_factory=list)  # everything else

    def last(self, event: str) -> dict[str, Any] | None:
        return next((r for r in reversed(self.records) if r.get("event") == event), None)


def read_pod(cluster: Cluster, job: str, pod: o.Obj) -> JobResult:
    """A finished pod of Job ``job``: its exit code and what its log says (records and lines)."""
    r = JobResult(job, pod["metadata"]["name"], o.terminated_exit_code(pod))
    for line in cluster.log(r.pod or "", pod["metadata"]["namespace"]):
        read_line(line, r, NullSink())
    return r


def read_line(line: str, result: JobResult, sink: ProgressSink) -> None:
    text = line.rstrip("\n")
    if text.startswith("{"):
        try:
            rec = json.loads(text)
        except ValueError:
            rec = None
        if isinstance(rec, dict):
            result.records.append(rec)
            kind = str(rec.pop("event", "log"))
            if kind == "progress":
                # The pod's own rate and ETA: this side only knows when the lines arrived.
                sink.emit(Event("tick", {"bytes_done": rec["bytes_done"], "bytes_total": rec["bytes_total"],
                                         "mb_per_s": rec.get("mb_per_s"), "eta_s": rec.get("eta_s")}))
            elif kind in ("file_done", "retry", "warning", "summary", "verify"):
                sink.emit(Event(kind, rec))
            rec["event"] = kind
            return
    result.log.append(text)
    if text.strip():
        sink.emit(Event("log", {"line": text}))


def failure(name: str, ns: str, result: JobResult, cond: dict[str, Any]) -> ModelpvcError:
    """The Job's failure as the error its pod reported (by type), else as the Job controller's reason."""
    record = result.last("error")
    verdict = result.last("verify")
    where = f"Job {name} failed (pod {result.pod}, exit {result.exit_code})"
    if record is not None:
        return from_record(record, where)
    if verdict is not None:
        problems = [f"{f['path']}: {f['message']}" for f in verdict.get("findings", []) if f.get("severity") == "error"]
        return IntegrityError(f"{where}: " + ("; ".join(problems[:5]) or "verification failed"))
    tail = "\n    ".join(result.log[-5:]) or "(no log)"
    return ClusterError(f"{where}: {cond.get('reason', 'Failed')}: {cond.get('message', '')}",
                        hint=f"last log lines:\n    {tail}")
