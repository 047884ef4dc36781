"""populate's preflight: every failure mode of the runbook's troubleshooting section, checked first, and
where the Job must run so that it can mount the claim and the server can mount it afterwards."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any

from modelpvc.core.errors import (
    ClusterError,
    ConfigError,
    DestinationFull,
    SourceError,
    SourceUnreachable,
)
from modelpvc.core.events import Event, NullSink, ProgressSink
from modelpvc.core.secretkeys import EXPECTED, endpoint_in, find_pair
from modelpvc.core.units import human_bytes
from modelpvc.kube import objects as o
from modelpvc.kube.cluster import Cluster, Forbidden
from modelpvc.kube.placement import serving_placement
from modelpvc.kube.source import list_selected
from modelpvc.kube.spec import ModelSpec, Placement
from modelpvc.model.sizing import claim_size_gi, parse_size

IMAGE_GID = 1001  # plain Kubernetes: the fsGroup our Jobs use when the namespace assigns none


@dataclass
class Preflight:
    spec: ModelSpec
    source_bytes: int | None = None
    source_files: int | None = None
    listing: list[tuple[str, int, str]] = field(default_factory=list)  # (path, size, etag) selected
    openshift: bool = False
    notes: list[str] = field(default_factory=list)


def check(sink: ProgressSink, ok: bool, message: str, hint: str | None = None, warn: bool = False) -> None:
    """A preflight line: passed, failed, or passed with a risk the user should act on (``warn``)."""
    sink.emit(Event("check", {"ok": ok, "message": message, "hint": hint, "warn": warn}))


def run_preflight(cluster: Cluster, spec: ModelSpec, sink: ProgressSink, *, create_pvc: bool = False,
                  source_check: str = "auto", bind_timeout: float = 30,
                  pending_grace: float = 120) -> Preflight:
    """``source_check``: "auto" (from here, else a probe Job in the cluster), "local", "cluster", "skip"."""
    pf = Preflight(spec)
    ns = cluster.get("Namespace", spec.namespace)
    if ns is None:
        check(sink, False, f"namespace {spec.namespace} not found")
        raise ConfigError(f"namespace {spec.namespace!r} does not exist", hint="check --namespace (oc projects)")
    pf.openshift = o.openshift_fs_group(ns) is not None
    check(sink, True, f"namespace {spec.namespace} exists" + (" (OpenShift SCC annotations)" if pf.openshift else ""))
    _measure(cluster, pf, sink, source_check, pending_grace)
    pvc, unbound_wffc = _claim(cluster, pf, sink, create_pvc, bind_timeout)
    _placement(cluster, pf, sink, pvc, unbound_wffc)
    _fs_group(pf, sink)
    return pf


def measure_source(cluster: Cluster, spec: ModelSpec, sink: ProgressSink, source_check: str = "auto",
                   pending_grace: float = 120) -> Preflight:
    """The secret's keys, endpoint and region, and what the source holds: listed from here, or from inside
    the cluster when the endpoint only resolves there."""
    pf = Preflight(spec)
    _measure(cluster, pf, sink, source_check, pending_grace)
    return pf


def _measure(cluster: Cluster, pf: Preflight, sink: ProgressSink, source_check: str, pending_grace: float) -> None:
    values = _secret(cluster, pf, sink)
    if source_check in ("auto", "local") and not _check_source(pf, values, sink) and source_check == "auto":
        source_check = "cluster"
    if source_check == "cluster":
        _probe_source(cluster, pf, sink, pending_grace)


def _secret(cluster: Cluster, pf: Preflight, sink: ProgressSink) -> dict[str, str]:
    spec = pf.spec
    secret = cluster.get("Secret", spec.secret, spec.namespace)
    if secret is None:
        check(sink, False, f"secret {spec.secret} not found in {spec.namespace}")
        raise ConfigError(f"secret {spec.secret!r} not found in namespace {spec.namespace!r}",
                          hint=f"create it with keys {EXPECTED}")
    values = o.secret_values(secret)
    wanted = spec.secret_keys
    if not (wanted[0] in values and wanted[1] in values) and not spec.detect_keys:
        absent = ", ".join(k for k in wanted if k not in values)
        have = ", ".join(sorted(values)) or "no keys"
        check(sink, False, f"secret {spec.secret} has no key {absent} (it has: {have})")
        raise ConfigError(f"secret {spec.secret!r} has no key {absent} (it has: {have}); a Job using it would wait "
                          "in CreateContainerConfigError", hint="fix --secret-keys, or drop it: the pair is detected")
    if not (wanted[0] in values and wanted[1] in values):
        pair = find_pair(values)
        if pair is None:
            found = ", ".join(sorted(values)) or "none"
            check(sink, False, f"secret {spec.secret} has keys {found}; expected {EXPECTED}")
            raise ConfigError(f"secret {spec.secret!r} has no usable key pair (found: {found})",
                              hint=f"expected {EXPECTED}, or name yours with --secret-keys ACCESS,SECRET")
        wanted = pair
    ann = (secret.get("metadata") or {}).get("annotations") or {}
    endpoint = spec.endpoint_url or endpoint_in(values)
    if not endpoint and ann.get("serving.kserve.io/s3-endpoint"):
        # A secret set up for KServe's own credential path names the endpoint in annotations (s3_secret.go).
        scheme = "http" if ann.get("serving.kserve.io/s3-usehttps") == "0" else "https"
        endpoint = f"{scheme}://{ann['serving.kserve.io/s3-endpoint']}"
    if endpoint and "://" not in endpoint:
        endpoint = "https://" + endpoint
    region = spec.region or values.get("AWS_DEFAULT_REGION") or ann.get("serving.kserve.io/s3-region") or None
    pf.spec = replace(spec, secret_keys=wanted, endpoint_url=endpoint, region=region)
    check(sink, True, f"secret {spec.secret} has keys {wanted[0]}/{wanted[1]}"
          + (f"; endpoint {endpoint}" if endpoint else "") + (f"; region {region}" if region else ""))
    return values


def _claim(cluster: Cluster, pf: Preflight, sink: ProgressSink, create_pvc: bool,
           bind_timeout: float) -> tuple[o.Obj, bool]:
    """The claim (created if asked), checked for capacity; and whether it waits for its first consumer."""
    spec = pf.spec
    pvc = cluster.get("PersistentVolumeClaim", spec.pvc, spec.namespace)
    checked = False  # the class, looked at once: before creating a claim that names it, else after
    sc = None
    if pvc is None:
        if not create_pvc:
            check(sink, False, f"PVC {spec.pvc} not found")
            raise ConfigError(f"PVC {spec.pvc!r} not found in {spec.namespace!r}",
                              hint="create it, or pass --create-pvc (--size auto sizes it from the source)")
        if spec.storage_class:  # a class that does not exist would leave the new claim Pending forever
            sc, checked = _storage_class(cluster, spec.storage_class, sink), True
        size = spec.size
        if size == "auto":
            if pf.source_bytes is None:
                raise ConfigError("--size auto needs the source's size", hint="pass --size, e.g. 120Gi")
            size = f"{claim_size_gi(pf.source_bytes)}Gi"
        spec = pf.spec = replace(spec, size=size)
        from modelpvc.kube import manifests

        cluster.create(manifests.pvc(spec))
        check(sink, True, f"PVC {spec.pvc} created ({size}, {spec.access_mode})")
        pvc = cluster.get("PersistentVolumeClaim", spec.pvc, spec.namespace) or {}
    if not checked:
        sc = _storage_class(cluster, (pvc.get("spec") or {}).get("storageClassName"), sink)
    phase = (pvc.get("status") or {}).get("phase")
    if sc is not None:
        wffc = sc.get("volumeBindingMode") == "WaitForFirstConsumer"
    else:
        wffc = phase != "Bound" and _waits_for_consumer(cluster, spec)
    if phase != "Bound" and wffc:
        check(sink, True, f"PVC {spec.pvc} is Pending: its class binds it when the first pod using it is "
                          "scheduled (WaitForFirstConsumer), here the populate Job")
    elif phase != "Bound":
        pvc = cluster.poll(f"PVC {spec.pvc} to bind", lambda: _bound(cluster, spec), timeout=bind_timeout,
                           interval=0.2)
        phase = "Bound"
    cap = ((pvc.get("status") or {}).get("capacity") or {}).get("storage") if phase == "Bound" else \
        ((pvc.get("spec") or {}).get("resources") or {}).get("requests", {}).get("storage")
    if cap and pf.source_bytes is not None:
        if parse_size(cap) < pf.source_bytes:
            check(sink, False, f"PVC {spec.pvc} holds {cap}, the model needs {human_bytes(pf.source_bytes)}")
            need = f"{claim_size_gi(pf.source_bytes)}Gi"
            raise DestinationFull(
                f"PVC {spec.pvc!r} is too small: {cap} for {human_bytes(pf.source_bytes)} of selected files",
                hint=f"grow it: oc patch pvc {spec.pvc} -p "
                     f"'{{\"spec\":{{\"resources\":{{\"requests\":{{\"storage\":\"{need}\"}}}}}}}}'")
        check(sink, True, f"PVC {spec.pvc} is {phase} with {cap} (need {human_bytes(pf.source_bytes)})")
    else:
        check(sink, True, f"PVC {spec.pvc} is {phase}" + (f" with {cap}" if cap else ""))
    return pvc, wffc and phase != "Bound"


def _waits_for_consumer(cluster: Cluster, spec: ModelSpec, timeout: float = 5.0) -> bool:
    """Without its class: the PV controller's event on a claim of a WaitForFirstConsumer class (reason
    WaitForFirstConsumer, "waiting for first consumer to be created before binding"), or the claim binds."""
    def seen() -> str | None:
        if any(e.get("reason") == "WaitForFirstConsumer" for e in cluster.events(spec.pvc, spec.namespace)):
            return "wffc"
        pvc = cluster.get("PersistentVolumeClaim", spec.pvc, spec.namespace) or {}
        return "bound" if (pvc.get("status") or {}).get("phase") == "Bound" else None

    try:
        found: str = cluster.poll(f"PVC {spec.pvc} to bind or wait for its consumer", seen, timeout=timeout,
                                  interval=0.2)
        return found == "wffc"
    except ClusterError:
        return False  # Immediate binding still under way: the bind wait below says what holds it


def _storage_class(cluster: Cluster, name: str | None, sink: ProgressSink) -> o.Obj | None:
    """The class a claim uses (the default one when unnamed); a named class that does not exist leaves the
    claim Pending forever, so it fails here. None when the user may not read storage classes."""
    try:
        classes = cluster.list("StorageClass")
    except Forbidden:
        check(sink, True, f"StorageClass {name or '(default)'} not checked: this user may not read storage "
                          "classes (a project admin); the claim's own events tell how it binds")
        return None
    if name is None:
        return next((c for c in classes if ((c.get("metadata") or {}).get("annotations") or {})
                     .get("storageclass.kubernetes.io/is-default-class") == "true"), None)
    found = next((c for c in classes if c["metadata"]["name"] == name), None)
    if found is None:
        names = ", ".join(sorted(c["metadata"]["name"] for c in classes)) or "none"
        check(sink, False, f"StorageClass {name} does not exist")
        raise ConfigError(f"StorageClass {name!r} does not exist (this cluster has: {names})",
                          hint="pass --storage-class with one of them")
    return found


def _placement(cluster: Cluster, pf: Preflight, sink: ProgressSink, pvc: o.Obj, unbound_wffc: bool) -> None:
    spec = pf.spec
    modes = (pvc.get("spec") or {}).get("accessModes") or [spec.access_mode]
    if spec.parallel > 1:
        if "ReadWriteMany" not in modes:
            check(sink, False, f"--parallel {spec.parallel} needs a ReadWriteMany claim; {spec.pvc} is {modes}")
            raise ConfigError(f"PVC {spec.pvc!r} is {', '.join(modes)}: parallel pods on several nodes need "
                              "ReadWriteMany", hint="drop --parallel (one Job copies at the volume's speed)")
        check(sink, True, f"PVC {spec.pvc} is ReadWriteMany: {spec.parallel} pods can write it at once")
    holders = o.pods_using_claim(cluster.list("Pod", spec.namespace), spec.pvc)
    if holders and "ReadWriteMany" not in modes:
        names = ", ".join(f"{h['metadata']['name']} on {h['spec'].get('nodeName')}" for h in holders)
        if "ReadWriteOncePod" in modes:
            check(sink, False, f"PVC {spec.pvc} (ReadWriteOncePod) is in use by {names}")
            raise ConfigError(f"PVC {spec.pvc!r} is ReadWriteOncePod and in use by {names}",
                              hint="stop that pod first (modelpvc update --stop-the-world does it for a server)")
        nodes = {h["spec"].get("nodeName") for h in holders}
        if len(nodes) != 1:
            check(sink, False, f"PVC {spec.pvc} (RWO) is mounted on several nodes: {names}")
            raise ConfigError("an RWO claim mounted on several nodes cannot be written", hint="see modelpvc doctor")
        node = nodes.pop()
        for h in holders:
            if o.is_bare(h):
                pf.notes.append(f"pod {h['metadata']['name']} holds {spec.pvc} and no controller owns it")
                check(sink, True, f"warning: pod {h['metadata']['name']} (no controller owns it: an inspector?) "
                                  f"holds {spec.pvc}; while it lives, a server on another node cannot mount the "
                                  f"claim: delete it after the copy (oc delete pod {h['metadata']['name']})")
        tolerations = tuple({json.dumps(t, sort_keys=True): t for h in holders
                             for t in (h["spec"].get("tolerations") or [])}.values())
        pf.spec = replace(spec, placement=Placement(node=node, tolerations=tolerations))
        check(sink, True, f"PVC {spec.pvc} (RWO) is mounted by {names}: the Job runs on {node} too"
                          + (" and tolerates its taints" if tolerations else "") + ", avoiding a Multi-Attach error")
        return
    check(sink, True, f"PVC {spec.pvc} is not in use by another pod" if not holders
          else f"PVC {spec.pvc} is ReadWriteMany: shared with {len(holders)} pod(s)")
    placement = serving_placement(cluster, spec)
    if not unbound_wffc and placement.tolerations:
        # A zonal volume is mounted only in its zone; where that has only the serving (tainted) nodes, the Job
        # needs their tolerations to run there.
        pf.spec = replace(spec, placement=replace(spec.placement, tolerations=placement.tolerations))
    if unbound_wffc:
        if placement.zones:
            pf.spec = replace(spec, placement=replace(spec.placement, zones=placement.zones,
                                                      tolerations=placement.tolerations or spec.placement.tolerations))
            check(sink, True, f"the volume will bind in zone(s) {', '.join(placement.zones)}, where the serving "
                              "nodes are: the Job runs there")
        elif placement.node_terms or placement.node_selector or placement.prefer_gpu_nodes:
            pf.spec = replace(spec, placement=placement)
            check(sink, True, "nodes not checked: this user may not list them (a project admin); the Job runs where "
                              "the server may run (its node selector, affinity and tolerations"
                              + (", GPU nodes preferred" if placement.prefer_gpu_nodes else "")
                              + "), so the volume binds in a zone the server can mount")
        else:
            pf.notes.append("the volume binds in whatever zone the Job lands")
            check(sink, True, "the volume binds in the zone the Job lands in: pass --zone (or --isvc-base/"
                              "--node-selector) so it binds where the server can mount it", warn=True)


def _fs_group(pf: Preflight, sink: ProgressSink) -> None:
    spec = pf.spec
    if spec.fs_group is not None:
        check(sink, True, f"fsGroup {spec.fs_group} set on the Job (--fs-group)")
    elif pf.openshift:
        check(sink, True, "OpenShift assigns the uid and fsGroup from the namespace (restricted-v2); the Job "
                          "leaves them unset so it matches the serving pod")
    else:
        pf.spec = replace(spec, fs_group=IMAGE_GID)
        check(sink, True, f"no OpenShift SCC annotations: the Job sets fsGroup {IMAGE_GID} so it can write a fresh "
                          "volume (owned by root); --fs-group sets another")


def _bound(cluster: Cluster, spec: ModelSpec) -> dict[str, Any] | None:
    pvc = cluster.get("PersistentVolumeClaim", spec.pvc, spec.namespace)
    return pvc if pvc and (pvc.get("status") or {}).get("phase") == "Bound" else None


def _probe_source(cluster: Cluster, pf: Preflight, sink: ProgressSink, pending_grace: float) -> None:
    """Where the endpoint only resolves inside the cluster: a short Job runs `modelpvc plan --json` there."""
    from modelpvc.kube import manifests
    from modelpvc.kube.jobs import run_job

    job = manifests.probe_job(pf.spec)
    try:
        result = run_job(cluster, job, NullSink(), timeout=300, pending_grace=pending_grace)
    except SourceError as e:
        check(sink, False, f"source {pf.spec.source} (probed in the cluster): {e.message}", e.hint)
        raise
    finally:
        cluster.delete("Job", job["metadata"]["name"], pf.spec.namespace)
    plan = result.last("plan")
    if plan is None:
        raise SourceError(f"the in-cluster probe of {pf.spec.source} gave no plan",
                          hint="its log: " + " | ".join(result.log[-3:]) if result.log else None)
    pf.source_bytes = int(plan["bytes"])
    pf.source_files = len(plan["files"])
    pf.listing = [(str(f["path"]), int(f["size"]), str(f.get("etag", ""))) for f in plan["files"]]
    check(sink, True, f"source {pf.spec.source} holds {pf.source_files} files, {human_bytes(pf.source_bytes)} "
                      "(probed from inside the cluster)")


def _check_source(pf: Preflight, values: dict[str, str], sink: ProgressSink) -> bool:
    """List the source from this machine; False when it is not reachable from here."""
    spec = pf.spec
    try:
        chosen, skipped = list_selected(spec, values, spec.secret_keys)
    except SourceUnreachable:
        check(sink, True, f"source endpoint {pf.spec.endpoint_url} not reachable from here; probing from the cluster")
        return False
    except SourceError as e:
        check(sink, False, f"source {spec.source}: {e.message}", e.hint)
        raise
    pf.source_bytes = sum(x.size for x in chosen)
    pf.source_files = len(chosen)
    pf.listing = [(x.rel, x.size, x.etag) for x in chosen]
    check(sink, True, f"source {spec.source} holds {len(chosen)} files, {human_bytes(pf.source_bytes)}"
          + (f" ({skipped} duplicates skipped)" if skipped else ""))
    return True
