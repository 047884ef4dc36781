"""Run a Job of ours and follow it: live progress from its pod's records (podlog.py), its failure as our
error. A pod a real cluster would leave Pending (config error, image, unschedulable, Multi-Attach) fails the
command in seconds with the reason and the fix (podstate.py). The Jobs the workflows run through here: the
probe that lists a source from inside the cluster, and the copy that fills a claim.
"""

from __future__ import annotations

import time
from typing import Any

from modelpvc.core.errors import ClusterError, PodBlocked, SourceError
from modelpvc.core.events import Event, NullSink, ProgressSink
from modelpvc.core.units import human_bytes
from modelpvc.kube import manifests
from modelpvc.kube import objects as o
from modelpvc.kube.checks import check
from modelpvc.kube.claimrecord import record_revision
from modelpvc.kube.cluster import Cluster
from modelpvc.kube.podlog import JobResult, failure, pod_of, read_line, read_pod
from modelpvc.kube.podstate import PENDING_GRACE, Watch
from modelpvc.kube.source import Listing
from modelpvc.kube.spec import ModelSpec

_OUTPUT_FLAGS = ("--progress", "--progress-interval")  # how a Job reports, not what it does


def _args(job: o.Obj) -> list[str]:
    """The work a Job does: its arguments without how it reports or whether it writes beside a served
    revision (a GitOps hook on the same source and directory is the same writer)."""
    out: list[str] = []
    skip = False
    for c in job["spec"]["template"]["spec"].get("containers") or []:
        for a in map(str, c.get("args") or []):
            if skip:
                skip = False
            elif a in _OUTPUT_FLAGS:
                skip = True
            elif not a.startswith(("--progress=", "--progress-interval=", "--revision-root")):
                out.append(a)
    return out


def running_twin(cluster: Cluster, job: o.Obj) -> str | None:
    """A running Job of another name doing exactly what ``job`` would (the same arguments on the same
    claim): an Argo CD hook named after the InferenceService, another user's populate. Follow it rather than
    start a second writer."""
    ns, name = job["metadata"]["namespace"], job["metadata"]["name"]
    claims = o.claim_names(o.template_spec(job))
    for other in cluster.list("Job", ns):
        if other["metadata"]["name"] != name and not (o.is_true(other, "Complete") or o.is_true(other, "Failed")) \
                and _args(other) == _args(job) and o.claim_names(o.template_spec(other)) == claims:
            return str(other["metadata"]["name"])
    return None


def replace_finished(cluster: Cluster, ns: str, name: str, job: o.Obj | None = None) -> bool:
    """A finished Job of the same name is deleted (Jobs are immutable). A running one doing what ``job``
    would do (the same arguments: claim, path and source) is adopted: True, follow it instead of creating
    one. A running one doing something else is not ours to stop."""
    old = cluster.get("Job", name, ns)
    if old is None:
        return False
    if not (o.is_true(old, "Complete") or o.is_true(old, "Failed")):
        if job is not None and _args(old) == _args(job):
            return True
        raise ClusterError(f"Job {name} is still running in {ns}, with other arguments than this command's",
                           hint=f"follow it with: oc logs -f job/{name} -n {ns}; or delete it first "
                                f"(oc delete job/{name} -n {ns}) and re-run")
    cluster.delete("Job", name, ns)
    cluster.poll(f"old Job {name} to go", lambda: cluster.get("Job", name, ns) is None and
                 pod_of(cluster, ns, name) is None, timeout=60, interval=0.2)
    return False


def run_job(cluster: Cluster, job: o.Obj, sink: ProgressSink, timeout: float,
            pending_grace: float = PENDING_GRACE) -> JobResult:
    ns, name = job["metadata"]["namespace"], job["metadata"]["name"]
    twin = running_twin(cluster, job)
    if twin is not None or replace_finished(cluster, ns, name, job):
        name = twin or name
        sink.emit(Event("step", {"message": f"Job {name} is already running (an earlier run started it): following "
                                            "it"}))
    else:
        cluster.create(job)
        sink.emit(Event("step", {"message": f"Job {name} created"}))
    deadline = time.monotonic() + timeout
    result = JobResult(name)
    watch = Watch(cluster, pending_grace)
    followed: set[str] = set()
    seen: dict[str, int] = {}  # log lines read per pod
    while True:
        if time.monotonic() > deadline:
            raise ClusterError(f"Job {name} did not finish within {timeout:.0f}s",
                               hint=f"oc describe job/{name} -n {ns}; or run modelpvc doctor")
        current = cluster.get("Job", name, ns)
        pod = pod_of(cluster, ns, name)
        if pod is None and current is not None:
            refused = admission_refusal(cluster, current)
            if refused is not None:
                cluster.delete("Job", name, ns)  # the Job controller would retry it until the deadline
                raise PodBlocked(f"Job {name}: its pod was refused at admission: {refused}",
                                 hint=_ADMISSION_HINT)
        if pod is not None:
            pname = pod["metadata"]["name"]
            result.pod = pname
            phase = (pod.get("status") or {}).get("phase")
            if phase == "Pending":
                blocked = watch.check(pod)
                if blocked is not None:
                    cluster.delete("Job", name, ns)  # it would wait forever; nothing of it ran
                    raise PodBlocked(f"Job {name}: {blocked.message}", hint=blocked.hint)
            if phase in ("Running", "Succeeded", "Failed") and pname not in followed:
                if pname not in seen:  # a new pod (a retry): its records replace the last one's
                    result.records.clear()
                    result.log.clear()
                count = 0
                for line in cluster.log(pname, ns, follow=True):
                    count += 1
                    if count > seen.get(pname, 0):  # followed again after a cut: its earlier lines were read
                        read_line(line, result, sink)
                seen[pname] = max(seen.get(pname, 0), count)
                latest = cluster.get("Pod", pname, ns) or {}
                if (latest.get("status") or {}).get("phase") != "Running":
                    followed.add(pname)  # finished (or gone): its log is whole; else the stream was cut
        if current is not None and (o.is_true(current, "Complete") or o.is_true(current, "Failed")):
            if pod is not None:
                result.exit_code = o.terminated_exit_code(cluster.get("Pod", pod["metadata"]["name"], ns) or pod)
            if o.is_true(current, "Complete"):
                return result
            raise failure(name, ns, result, o.conditions(current).get("Failed", {}))
        time.sleep(0.2)


_ADMISSION_HINT = ("a ResourceQuota, LimitRange or the namespace's security constraints (OpenShift SCC: uid and "
                   "fsGroup ranges) refused it; drop --fs-group/--run-as-user to let OpenShift assign them, or ask "
                   "the platform admin about the quota")


def admission_refusal(cluster: Cluster, job: o.Obj) -> str | None:
    """The Job controller's FailedCreate event: its pods never exist, so no pod state says why. Events
    outlive their object, so only this Job's (by uid) count."""
    meta = job["metadata"]
    for e in cluster.events(meta["name"], meta["namespace"]):
        if e.get("reason") == "FailedCreate" and (e.get("involvedObject") or {}).get("uid") == meta.get("uid"):
            return str(e.get("message") or "").removeprefix("Error creating: ")
    return None


def run_indexed_job(cluster: Cluster, job: o.Obj, sink: ProgressSink, timeout: float,
                    pending_grace: float = PENDING_GRACE) -> list[JobResult]:
    """Run an Indexed Job; report pods as they finish; one JobResult per completed index."""
    ns, name = job["metadata"]["namespace"], job["metadata"]["name"]
    count = int(job["spec"]["completions"])
    replace_finished(cluster, ns, name)
    cluster.create(job)
    sink.emit(Event("step", {"message": f"Indexed Job {name} created: {count} pods split the files"}))
    deadline = time.monotonic() + timeout
    watch = Watch(cluster, pending_grace)
    done = -1
    while True:
        if time.monotonic() > deadline:
            raise ClusterError(f"Job {name} did not finish within {timeout:.0f}s", hint=f"oc describe job/{name}")
        current = cluster.get("Job", name, ns) or {}
        for pod in cluster.list("Pod", ns, labels={"job-name": name}):
            if (pod.get("status") or {}).get("phase") == "Pending" and (blocked := watch.check(pod)):
                cluster.delete("Job", name, ns)
                raise PodBlocked(f"Job {name}: {blocked.message}", hint=blocked.hint)
        succeeded = int((current.get("status") or {}).get("succeeded") or 0)
        if succeeded != done:
            done = succeeded
            sink.emit(Event("step", {"message": f"{succeeded}/{count} shards done"}))
        failed = o.is_true(current, "Failed")
        if o.is_true(current, "Complete") or failed:
            break
        time.sleep(0.3)
    results = [read_pod(cluster, name, pod) for pod in cluster.list("Pod", ns, labels={"job-name": name})]
    if failed:
        bad = next((r for r in results if r.exit_code not in (0, None)), results[-1] if results else JobResult(name))
        raise failure(name, ns, bad, o.conditions(current).get("Failed", {}))
    return [r for r in results if r.exit_code == 0]


def probe_source(cluster: Cluster, spec: ModelSpec, sink: ProgressSink, pending_grace: float = PENDING_GRACE
                 ) -> Listing:
    """Where the endpoint only resolves inside the cluster: a short Job runs `modelpvc plan --json` there."""
    job = manifests.probe_job(spec)
    try:
        result = run_job(cluster, job, NullSink(), timeout=300, pending_grace=pending_grace)
    except SourceError as e:
        check(sink, False, f"source {spec.source} (probed in the cluster): {e.message}", e.hint)
        raise
    finally:
        cluster.delete("Job", job["metadata"]["name"], spec.namespace)
    plan = result.last("plan")
    if plan is None:
        raise SourceError(f"the in-cluster probe of {spec.source} gave no plan",
                          hint="its log: " + " | ".join(result.log[-3:]) if result.log else None)
    listing = Listing(tuple((str(f["path"]), int(f["size"]), str(f.get("etag", ""))) for f in plan["files"]),
                      "the cluster")
    check(sink, True, f"source {spec.source} holds {listing.files} files, {human_bytes(listing.bytes)} "
                      "(probed from inside the cluster)")
    return listing


def fill_claim(cluster: Cluster, spec: ModelSpec, sink: ProgressSink, timeout: float,
               pending_grace: float = PENDING_GRACE, link_dest: str | None = None) -> tuple[JobResult, dict[str, Any]]:
    """The populate Job (first an Indexed Job's shards with --parallel) on a resolved spec, followed; the
    verified revision recorded on the claim. Returns the Job's result and its summary record."""
    if spec.parallel > 1:
        shards = run_indexed_job(cluster, manifests.parallel_populate_job(spec, link_dest), sink, timeout,
                                 pending_grace)
        copied = sum(int((r.last("summary") or {}).get("bytes_fetched", 0)) for r in shards)
        sink.emit(Event("step", {"message": f"{len(shards)} shards copied {human_bytes(copied)}; a final run "
                                            "adopts them, checks the whole model and writes the manifest"}))
    result = run_job(cluster, manifests.populate_job(spec, followed=True, link_dest=link_dest), sink, timeout,
                     pending_grace)
    summary = result.last("summary") or {}
    record_revision(cluster, spec, summary.get("revision"))
    return result, summary
