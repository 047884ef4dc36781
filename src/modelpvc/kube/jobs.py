"""Run a Job of ours and follow it: live progress from its pod's JSON lines, its exit code as our error."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from modelpvc.core.errors import (
    ClusterError,
    DestinationError,
    ExitCode,
    IntegrityError,
    ModelpvcError,
    SourceError,
)
from modelpvc.core.events import Event, NullSink, ProgressSink
from modelpvc.kube import objects as o
from modelpvc.kube.cluster import Cluster

ERRORS: dict[int, type[ModelpvcError]] = {ExitCode.SOURCE: SourceError, ExitCode.DESTINATION: DestinationError,
                                          ExitCode.INTEGRITY: IntegrityError}


@dataclass
class JobResult:
    name: str
    pod: str | None = None
    exit_code: int | None = None
    records: list[dict[str, Any]] = field(default_factory=list)  # JSON lines from the pod
    log: list[str] = field(default_factory=list)  # everything else

    def last(self, event: str) -> dict[str, Any] | None:
        return next((r for r in reversed(self.records) if r.get("event") == event), None)


def _pod_of(cluster: Cluster, ns: str, job: str) -> o.Obj | None:
    pods = cluster.list("Pod", ns, labels={"job-name": job})
    pods.sort(key=lambda p: p["metadata"].get("creationTimestamp", ""))
    return pods[-1] if pods else None


def _replace_finished(cluster: Cluster, ns: str, name: str) -> None:
    """A finished Job of the same name is deleted (Jobs are immutable); a running one is not ours to stop."""
    old = cluster.get("Job", name, ns)
    if old is None:
        return
    if not (o.is_true(old, "Complete") or o.is_true(old, "Failed")):
        raise ClusterError(f"Job {name} is still running in {ns}",
                           hint=f"follow it with: oc logs -f job/{name} -n {ns}; or delete it first")
    cluster.delete("Job", name, ns)
    cluster.poll(f"old Job {name} to go", lambda: cluster.get("Job", name, ns) is None and
                 _pod_of(cluster, ns, name) is None, timeout=60, interval=0.2)


def run_job(cluster: Cluster, job: o.Obj, sink: ProgressSink, timeout: float) -> JobResult:
    ns, name = job["metadata"]["namespace"], job["metadata"]["name"]
    _replace_finished(cluster, ns, name)
    cluster.create(job)
    sink.emit(Event("step", {"message": f"Job {name} created"}))
    deadline = time.monotonic() + timeout
    result = JobResult(name)
    warned: set[str] = set()
    followed: set[str] = set()
    while True:
        if time.monotonic() > deadline:
            raise ClusterError(f"Job {name} did not finish within {timeout:.0f}s",
                               hint=f"oc describe job/{name} -n {ns}; or run modelpvc doctor")
        current = cluster.get("Job", name, ns)
        pod = _pod_of(cluster, ns, name)
        if pod is not None:
            pname = pod["metadata"]["name"]
            result.pod = pname
            phase = (pod.get("status") or {}).get("phase")
            for ev in cluster.events(pname, ns):
                msg = f"{ev.get('reason')}: {ev.get('message')}"
                if ev.get("type") == "Warning" and msg not in warned:
                    warned.add(msg)
                    sink.emit(Event("warning", {"path": f"pod/{pname}", "message": msg}))
            if phase in ("Running", "Succeeded", "Failed") and pname not in followed:
                followed.add(pname)
                result.records.clear()
                result.log.clear()
                for line in cluster.log(pname, ns, follow=True):
                    _line(line, result, sink)
        if current is not None and (o.is_true(current, "Complete") or o.is_true(current, "Failed")):
            if pod is not None:
                result.exit_code = o.terminated_exit_code(cluster.get("Pod", pod["metadata"]["name"], ns) or pod)
            if o.is_true(current, "Complete"):
                return result
            raise _failure(name, ns, result, o.conditions(current).get("Failed", {}))
        time.sleep(0.2)


def run_indexed_job(cluster: Cluster, job: o.Obj, sink: ProgressSink, timeout: float) -> list[JobResult]:
    """Run an Indexed Job; report pods as they finish; one JobResult per completed index."""
    ns, name = job["metadata"]["namespace"], job["metadata"]["name"]
    count = int(job["spec"]["completions"])
    _replace_finished(cluster, ns, name)
    cluster.create(job)
    sink.emit(Event("step", {"message": f"Indexed Job {name} created: {count} pods split the files"}))
    deadline = time.monotonic() + timeout
    done = -1
    while True:
        if time.monotonic() > deadline:
            raise ClusterError(f"Job {name} did not finish within {timeout:.0f}s", hint=f"oc describe job/{name}")
        current = cluster.get("Job", name, ns) or {}
        succeeded = int((current.get("status") or {}).get("succeeded") or 0)
        if succeeded != done:
            done = succeeded
            sink.emit(Event("step", {"message": f"{succeeded}/{count} shards done"}))
        failed = o.is_true(current, "Failed")
        if o.is_true(current, "Complete") or failed:
            break
        time.sleep(0.3)
    results = []
    for pod in cluster.list("Pod", ns, labels={"job-name": name}):
        r = JobResult(name, pod["metadata"]["name"], o.terminated_exit_code(pod))
        for line in cluster.log(r.pod or "", ns):
            _line(line, r, NullSink())
        results.append(r)
    if failed:
        bad = next((r for r in results if r.exit_code not in (0, None)), results[-1] if results else JobResult(name))
        raise _failure(name, ns, bad, o.conditions(current).get("Failed", {}))
    return [r for r in results if r.exit_code == 0]


def _line(line: str, result: JobResult, sink: ProgressSink) -> None:
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
                sink.emit(Event("tick", {"bytes_done": rec["bytes_done"], "bytes_total": rec["bytes_total"],
                                         "seconds": 0.0, "mb_per_s": rec.get("mb_per_s"),
                                         "eta_s": rec.get("eta_s")}))
            elif kind in ("file_done", "retry", "warning", "summary", "verify"):
                sink.emit(Event(kind, rec))
            rec["event"] = kind
            return
    result.log.append(text)
    if text.strip():
        sink.emit(Event("log", {"line": text}))


def _failure(name: str, ns: str, result: JobResult, cond: dict[str, Any]) -> ModelpvcError:
    errors = [line for line in result.log if line.startswith("modelpvc: error:")]
    hints = [line.strip() for line in result.log if line.strip().startswith("hint:")]
    detail = errors[-1].removeprefix("modelpvc: error: ") if errors else (cond.get("message") or "failed")
    verdict = result.last("verify")
    if verdict is not None:
        problems = [f"{f['path']}: {f['message']}" for f in verdict.get("findings", []) if f.get("severity") == "error"]
        detail = "; ".join(problems[:5]) or detail
    cls = ERRORS.get(result.exit_code or -1, ClusterError)
    tail = "\n    ".join(result.log[-5:])
    hint = hints[-1].removeprefix("hint: ") if hints else f"last log lines:\n    {tail}"
    return cls(f"Job {name} failed (pod {result.pod}, exit {result.exit_code}): {detail}", hint=hint)
