"""``modelpvc populator``: fill claims whose ``spec.dataSourceRef`` is a ModelSource, before they bind.

The pattern kubernetes-csi/lib-volume-populator implements (populator-machinery/controller.go, syncPvc):
for a claim of a WaitForFirstConsumer class, wait until the scheduler picked a node for its consumer
(``volume.kubernetes.io/selected-node``); create a *prime* claim with the same class, size and node; fill it
with a pod bound to that node; when the pod succeeded, point the prime's PersistentVolume at the user's claim
(``claimRef``), which the PV controller then binds; remove the prime claim once it is Lost.

Ours differs where the model needs it. The prime claim and the populate Job live in the *claim's* namespace
(as KubeVirt CDI's populators do), not the populator's: the Job mounts the namespace's S3 Secret as files and
resolves its key names itself, so the populator never reads a Secret, and the Job runs under the namespace's
SCC and quota like `populate`'s. Both carry an owner reference to the user's claim: deleting it removes them.
The Job is `populate`'s own (restricted, resumable, verified, manifest). A failure is an event on the claim
with the pod's error record, and the Job is retried with backoff; the attempt count and the time of the next
try are annotations on the prime claim, so the populator keeps no state outside the API.
"""

from __future__ import annotations

import hashlib
import heapq
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from modelpvc.core.errors import ClusterError, ConfigError, ModelpvcError
from modelpvc.core.units import human_bytes
from modelpvc.kube import manifests
from modelpvc.kube import modelsource as ms
from modelpvc.kube import objects as o
from modelpvc.kube import populator_objects as po
from modelpvc.kube.cluster import ALL_NAMESPACES, Cluster
from modelpvc.kube.podlog import failure, pod_of, read_pod
from modelpvc.kube.spec import ModelSpec, Placement

log = logging.getLogger(__name__)

ATTEMPTS = "modelpvc.io/attempts"
RETRY_AT = "modelpvc.io/retry-at"  # epoch seconds


def backoff(attempts: int, base: float, cap: float) -> float:
    return float(min(cap, base * 2 ** max(0, attempts - 1)))


@dataclass
class Populator:
    cluster: Cluster
    image: str
    namespace: str | None = None  # None: every namespace
    backoff_base: float = 10.0
    backoff_cap: float = 600.0
    progress_every: float = 15.0  # seconds between status updates of a running copy
    now: Callable[[], float] = time.time

    # -- one claim ----------------------------------------------------------------------------------------
    def reconcile(self, ns: str, name: str) -> float | None:
        """Move claim ``ns/name`` one step on; the seconds after which to look again, or None (an event on
        one of the objects it waits for will bring it back)."""
        pvc = self.cluster.get("PersistentVolumeClaim", name, ns)
        if pvc is None or not ours(pvc) or pvc["metadata"].get("deletionTimestamp"):
            return None
        prime = self.cluster.get("PersistentVolumeClaim", po.prime_name(pvc), ns)
        job = self.cluster.get("Job", po.job_name(pvc), ns)
        if pvc["spec"].get("volumeName"):  # bound (or being bound) to the populated volume: tidy up
            self._cleanup(pvc, prime, job)
            return None
        source_name = str(pvc["spec"]["dataSourceRef"]["name"])
        obj = self.cluster.get("ModelSource", source_name, ns)
        if obj is None:
            self.event(pvc, "Warning", "DataSourceNotFound", f"ModelSource {source_name} not found in {ns}")
            return None
        try:
            source = ms.parse(obj)
        except ConfigError as e:
            self.event(pvc, "Warning", "InvalidModelSource", e.message + (f" ({e.hint})" if e.hint else ""))
            self.status(obj, "Failed", message=e.message)
            return None
        node = pvc["metadata"].get("annotations", {}).get(po.SELECTED_NODE)
        if self._waits_for_consumer(pvc) and not node:
            self.status(obj, "Pending", message=f"claim {name} waits for its first consumer pod (WaitForFirstConsumer)")
            return None
        if prime is None:
            prime = self._create_prime(pvc, node)
        if job is None:
            return self._start(pvc, prime, obj, source, node)
        if o.is_true(job, "Failed"):
            return self._failed(pvc, prime, obj, job)
        if o.is_true(job, "Complete"):
            return self._rebind(pvc, prime, obj, job)
        self._progress(obj, job)
        return self.progress_every

    def _waits_for_consumer(self, pvc: o.Obj) -> bool:
        sc_name = pvc["spec"].get("storageClassName")
        if not sc_name:
            return False
        sc = self.cluster.get("StorageClass", sc_name)
        return sc is not None and sc.get("volumeBindingMode") == "WaitForFirstConsumer"

    def _create_prime(self, pvc: o.Obj, node: str | None) -> o.Obj:
        prime = self.cluster.create(po.prime_claim(pvc, node))
        log.info("%s/%s: created prime claim %s", pvc["metadata"]["namespace"], pvc["metadata"]["name"],
                 prime["metadata"]["name"])
        return prime

    def _start(self, pvc: o.Obj, prime: o.Obj, obj: o.Obj, source: ms.Source, node: str | None) -> float | None:
        ann = prime["metadata"].get("annotations") or {}
        wait = float(ann.get(RETRY_AT, 0)) - self.now()
        if wait > 0:
            return wait
        job = self.job(pvc, source, node)
        attempt = int(ann.get(ATTEMPTS, 0)) + 1
        where = f" on node {node}" if node else ""
        # Said before the Job exists: a populator killed in between says it again (the event's count), never
        # leaves a Job nobody announced.
        self.event(pvc, "Normal", "Populating", f"populating from {source.uri} with Job {job['metadata']['name']}"
                   f"{where} (attempt {attempt}): oc logs -f job/{job['metadata']['name']} -n "
                   f"{pvc['metadata']['namespace']}")
        self.status(obj, "Populating", message=f"Job {job['metadata']['name']} copies {source.uri}")
        self.cluster.create(job)
        return self.progress_every

    def job(self, pvc: o.Obj, source: ms.Source, node: str | None) -> o.Obj:
        """`populate`'s Job, on the prime claim, reading the S3 Secret as files."""
        meta = pvc["metadata"]
        spec = ModelSpec(name=meta["name"], namespace=meta["namespace"], source=source.uri, pvc=po.prime_name(pvc),
                         secret=source.secret, endpoint_url=source.endpoint, region=source.region,
                         image=self.image, loader=source.loader, mirror_args=source.mirror_args(),
                         placement=Placement(node_name=node), secret_files=True)
        owned = po.owned_meta(pvc, po.job_name(pvc))
        purpose = manifests.Purpose("populate", claim="rw", fetches=True, name=owned["name"], labels=owned["labels"],
                                    owner=owned["ownerReferences"][0])
        # Followed by the populator (its records feed the ModelSource's status); people read the events.
        return manifests.tool_job(spec, purpose, manifests.populate_args(spec, followed=True))

    def _failed(self, pvc: o.Obj, prime: o.Obj, obj: o.Obj, job: o.Obj) -> float:
        ns = pvc["metadata"]["namespace"]
        pod = pod_of(self.cluster, ns, job["metadata"]["name"])
        cond = o.conditions(job).get("Failed", {})
        if pod is not None:
            err: ModelpvcError = failure(job["metadata"]["name"], ns, read_pod(self.cluster, job["metadata"]["name"],
                                                                                pod), cond)
        else:
            err = ClusterError(f"Job {job['metadata']['name']} failed: {cond.get('reason')}: {cond.get('message')}")
        ann = prime["metadata"].get("annotations") or {}
        attempts = int(ann.get(ATTEMPTS, 0)) + 1
        delay = backoff(attempts, self.backoff_base, self.backoff_cap)
        message = err.message + (f"; {err.hint}" if err.hint else "")
        # The status before the event, here and in _rebind: whoever reads it on seeing the event finds it current.
        self.status(obj, "Failed", message=message, attempts=attempts)
        self.event(pvc, "Warning", "PopulateFailed", f"{message}. The claim stays Pending; retrying in "
                   f"{delay:.0f}s (attempt {attempts + 1})")
        self.cluster.patch("PersistentVolumeClaim", prime["metadata"]["name"], {"metadata": {"annotations": {
            ATTEMPTS: str(attempts), RETRY_AT: str(self.now() + delay)}}}, ns)
        self.cluster.delete("Job", job["metadata"]["name"], ns)
        return delay

    def _rebind(self, pvc: o.Obj, prime: o.Obj, obj: o.Obj, job: o.Obj) -> float | None:
        volume = prime["spec"].get("volumeName")
        pv = self.cluster.get("PersistentVolume", volume) if volume else None
        if pv is None:
            return 1.0
        meta = pvc["metadata"]
        ref = pv["spec"].get("claimRef") or {}
        if (ref.get("namespace"), ref.get("name"), ref.get("uid")) == (meta["namespace"], meta["name"], meta["uid"]):
            return None
        pod = pod_of(self.cluster, meta["namespace"], job["metadata"]["name"])
        summary = (read_pod(self.cluster, job["metadata"]["name"], pod).last("summary") or {}) if pod else {}
        self.cluster.patch("PersistentVolume", pv["metadata"]["name"], po.handover(pvc, obj))
        verified = ", ".join(f"{n} by {k}" for k, n in (summary.get("verified") or {}).items()) or "?"
        size = human_bytes(summary.get("bytes", 0))
        self.status(obj, "Succeeded", message=f"claim {meta['name']} populated", files=summary.get("files"),
                    bytesDone=summary.get("bytes"), bytesTotal=summary.get("bytes"), revision=summary.get("revision"),
                    verified=summary.get("verified"))
        self.event(pvc, "Normal", "Populated", f"{summary.get('files', '?')} files ({size}) of {obj['spec']['uri']} "
                   f"copied in {float(summary.get('seconds') or 0):.1f}s and verified ({verified}), revision "
                   f"{summary.get('revision')}; volume {pv['metadata']['name']} handed over to this claim")
        return None

    def _progress(self, obj: o.Obj, job: o.Obj) -> None:
        """The running copy's last progress record, into the ModelSource's status."""
        name = job["metadata"]["name"]
        pod = pod_of(self.cluster, job["metadata"]["namespace"], name)
        if pod is None or (pod.get("status") or {}).get("phase") != "Running":
            return
        try:
            tick = read_pod(self.cluster, name, pod).last("progress")
        except ClusterError:
            return
        if tick:
            done, total = int(tick["bytes_done"]), int(tick["bytes_total"])
            self.status(obj, "Populating", bytesDone=done, bytesTotal=total,
                        message=f"{human_bytes(done)} of {human_bytes(total)} copied")

    def _cleanup(self, pvc: o.Obj, prime: o.Obj | None, job: o.Obj | None) -> None:
        ns = pvc["metadata"]["namespace"]
        if job is not None:
            self.cluster.delete("Job", job["metadata"]["name"], ns)
        if prime is not None:
            self.cluster.delete("PersistentVolumeClaim", prime["metadata"]["name"], ns)
            log.info("%s/%s: bound; removed prime claim %s", ns, pvc["metadata"]["name"], prime["metadata"]["name"])

    # -- what the user sees -------------------------------------------------------------------------------
    def event(self, pvc: o.Obj, kind: str, reason: str, message: str) -> None:
        """An event on the claim, aggregated as the kubelet's recorder does: the same reason and message
        again raise its count."""
        meta = pvc["metadata"]
        digest = hashlib.sha256(f"{meta['uid']}{reason}{message}".encode()).hexdigest()[:16]
        name = f"{meta['name']}.{digest}"
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        existing = self.cluster.get("Event", name, meta["namespace"])
        if existing is not None:
            self.cluster.patch("Event", name, {"count": int(existing.get("count") or 1) + 1, "lastTimestamp": stamp},
                               meta["namespace"])
            return
        self.cluster.create(po.claim_event(pvc, name, kind, reason, message, stamp))
        log.info("%s/%s: %s: %s", meta["namespace"], meta["name"], reason, message)

    def status(self, obj: o.Obj, phase: str, **fields: Any) -> None:
        current = obj.get("status") or {}
        new = {"phase": phase, **{k: v for k, v in fields.items() if v is not None}}
        if all(current.get(k) == v for k, v in new.items()):
            return
        self.cluster.patch("ModelSource", obj["metadata"]["name"], {"status": new}, obj["metadata"]["namespace"],
                           status=True)
        obj["status"] = {**current, **new}


def ours(pvc: o.Obj) -> bool:
    """A claim to fill: its dataSourceRef names a ModelSource (a prime claim has none)."""
    ref = pvc["spec"].get("dataSourceRef") or {}
    return ref.get("apiGroup") == ms.GROUP and ref.get("kind") == ms.KIND and bool(ref.get("name"))


@dataclass(order=True)
class _Due:
    at: float
    key: tuple[str, str] = field(compare=False)


class Loop:
    """Watches claims, our Jobs and ModelSources; reconciles each claim they concern, once at a time."""

    def __init__(self, populator: Populator, resync: float = 300.0) -> None:
        self.p = populator
        self.resync = resync
        self._heap: list[_Due] = []
        self._due: dict[tuple[str, str], float] = {}
        self._cond = threading.Condition()
        self.stop = threading.Event()

    def enqueue(self, ns: str, name: str, after: float = 0.0) -> None:
        at = time.monotonic() + after
        with self._cond:
            if self._due.get((ns, name), float("inf")) <= at:
                return
            self._due[(ns, name)] = at
            heapq.heappush(self._heap, _Due(at, (ns, name)))
            self._cond.notify()

    def _watch(self, kind: str, on: Callable[[o.Obj], None], labels: dict[str, Any] | None = None) -> None:
        while not self.stop.is_set():
            try:
                for _type, obj in self.p.cluster.watch(kind, self.p.namespace or ALL_NAMESPACES, labels=labels):
                    on(obj)
                    if self.stop.is_set():
                        return
            except Exception as e:  # a dropped or expired watch: watch again (the first events re-list)
                log.warning("watch %s ended: %s", kind, e)
            self.stop.wait(1.0)

    def _on_claim(self, pvc: o.Obj) -> None:
        meta = pvc["metadata"]
        if ours(pvc):
            self.enqueue(meta["namespace"], meta["name"])

    def _on_job(self, job: o.Obj) -> None:
        for ref in job["metadata"].get("ownerReferences") or []:
            if ref.get("kind") == "PersistentVolumeClaim":
                self.enqueue(job["metadata"]["namespace"], ref["name"])

    def _on_source(self, obj: o.Obj) -> None:
        ns = obj["metadata"]["namespace"]
        for pvc in self.p.cluster.list("PersistentVolumeClaim", ns):
            if ours(pvc) and pvc["spec"]["dataSourceRef"]["name"] == obj["metadata"]["name"]:
                self.enqueue(ns, pvc["metadata"]["name"])

    def _resync(self) -> None:
        while not self.stop.wait(self.resync):
            try:
                for pvc in self.p.cluster.list("PersistentVolumeClaim", self.p.namespace or ALL_NAMESPACES):
                    self._on_claim(pvc)
            except ClusterError as e:
                log.warning("resync: %s", e)

    def run(self) -> None:
        threads = [threading.Thread(target=self._watch, args=("PersistentVolumeClaim", self._on_claim), daemon=True),
                   threading.Thread(target=self._watch, args=("Job", self._on_job, {po.FOR_CLAIM: None}), daemon=True),
                   threading.Thread(target=self._watch, args=("ModelSource", self._on_source), daemon=True),
                   threading.Thread(target=self._resync, daemon=True)]
        for t in threads:
            t.start()
        while not self.stop.is_set():
            with self._cond:
                while not self._heap or self._heap[0].at > time.monotonic():
                    if self.stop.is_set():
                        return
                    self._cond.wait(min(1.0, self._heap[0].at - time.monotonic()) if self._heap else 1.0)
                due = heapq.heappop(self._heap)
                if self._due.get(due.key) != due.at:
                    continue  # superseded by an earlier entry
                del self._due[due.key]
            try:
                again = self.p.reconcile(*due.key)
            except (ModelpvcError, KeyError, ValueError) as e:
                log.warning("%s/%s: %s", *due.key, e)
                again = self.p.backoff_base
            if again is not None:
                self.enqueue(*due.key, after=again)
