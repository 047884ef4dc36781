"""populate's preflight, as steps that read the cluster and return what they found (``Facts``): every failure
mode of the runbook's troubleshooting section, checked first, and where the Job must run so that it can mount
the claim and the server can mount it afterwards. No step runs a Job or creates an object: the workflows
(populate, update) sequence them with the probe and the claim's creation."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from modelpvc.core.errors import (
    ClusterError,
    ConfigError,
    DestinationFull,
    SourceError,
    SourceUnreachable,
)
from modelpvc.core.events import ProgressSink
from modelpvc.core.secretkeys import EXPECTED, endpoint_in, find_pair
from modelpvc.core.units import human_bytes
from modelpvc.kube import objects as o
from modelpvc.kube.checks import check
from modelpvc.kube.cluster import Cluster, Forbidden
from modelpvc.kube.placement import serving_placement
from modelpvc.kube.source import Listing, list_selected
from modelpvc.kube.spec import Facts, ModelSpec, Placement
from modelpvc.model.sizing import claim_size_gi, parse_size

IMAGE_GID = 1001  # plain Kubernetes: the fsGroup our Jobs use when the namespace assigns none


def namespace(cluster: Cluster, spec: ModelSpec, sink: ProgressSink) -> bool:
    """The namespace exists; True when OpenShift's SCC admission assigns its pods' uid and fsGroup."""
    ns = cluster.get("Namespace", spec.namespace)
    if ns is None:
        check(sink, False, f"namespace {spec.namespace} not found")
        raise ConfigError(f"namespace {spec.namespace!r} does not exist", hint="check --namespace (oc projects)")
    openshift = o.openshift_fs_group(ns) is not None
    check(sink, True, f"namespace {spec.namespace} exists" + (" (OpenShift SCC annotations)" if openshift else ""))
    return openshift


def source(cluster: Cluster, spec: ModelSpec, sink: ProgressSink, probe: Callable[[ModelSpec], Listing],
           source_check: str = "auto") -> tuple[ModelSpec, Listing | None]:
    """The spec with its Secret's keys, endpoint and region and the source's size, and the source's listing
    (None: not listed). ``source_check``: "auto" (from here, else ``probe``, a Job in the cluster: the endpoint
    may resolve only there), "local", "cluster", "skip"."""
    values, facts = _secret(cluster, spec, sink)
    spec = spec.resolved(facts)
    listing = None
    if source_check in ("auto", "local"):
        then = "probing from the cluster" if source_check == "auto" else "not checked (--source-check local)"
        listing = _list_here(spec, values, sink, then)
    if listing is None and source_check in ("auto", "cluster"):
        listing = probe(spec)
    return (spec.resolved(Facts(model_bytes=listing.bytes or None)) if listing is not None else spec), listing


def _secret(cluster: Cluster, spec: ModelSpec, sink: ProgressSink) -> tuple[dict[str, str], Facts]:
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
    check(sink, True, f"secret {spec.secret} has keys {wanted[0]}/{wanted[1]}"
          + (f"; endpoint {endpoint}" if endpoint else "") + (f"; region {region}" if region else ""))
    return values, Facts(secret_keys=wanted, endpoint_url=endpoint, region=region)


def claim_class(cluster: Cluster, spec: ModelSpec, sink: ProgressSink, create: bool) -> tuple[bool, o.Obj | None]:
    """(whether the claim exists, its StorageClass): the class it names, or the one a new claim would get.
    A named class that does not exist would leave a new claim Pending forever: it fails here. The class is
    None when this user may not read classes (a project admin) or none is the default."""
    pvc = cluster.get("PersistentVolumeClaim", spec.pvc, spec.namespace)
    if pvc is None and not create:
        check(sink, False, f"PVC {spec.pvc} not found")
        raise ConfigError(f"PVC {spec.pvc!r} not found in {spec.namespace!r}",
                          hint="create it, or pass --create-pvc (--size auto sizes it from the source)")
    name = (pvc.get("spec") or {}).get("storageClassName") if pvc is not None else spec.storage_class
    return pvc is not None, _storage_class(cluster, name, sink)


def new_claim_size(spec: ModelSpec, source_bytes: int | None) -> str:
    """The size a claim is created with: ``--size``, or for auto room for two revisions of the selected bytes."""
    if spec.size != "auto":
        return spec.size
    if source_bytes is None:
        raise ConfigError("--size auto needs the source's size", hint="pass --size, e.g. 120Gi")
    return f"{claim_size_gi(source_bytes)}Gi"


def target(cluster: Cluster, spec: ModelSpec, sink: ProgressSink, source_bytes: int | None, openshift: bool,
           storage_class: o.Obj | None, bind_timeout: float = 30) -> Facts:
    """The claim (bound, big enough), where the Job can mount it, and the fsGroup it writes with."""
    pvc, unbound_wffc = _claim(cluster, spec, sink, source_bytes, storage_class, bind_timeout)
    placement = _placement(cluster, spec, sink, pvc, unbound_wffc)
    return Facts(placement=placement, fs_group=_fs_group(spec, openshift, sink))


def _claim(cluster: Cluster, spec: ModelSpec, sink: ProgressSink, source_bytes: int | None, sc: o.Obj | None,
           bind_timeout: float) -> tuple[o.Obj, bool]:
    """The claim, checked for capacity; and whether it waits for its first consumer."""
    pvc = cluster.get("PersistentVolumeClaim", spec.pvc, spec.namespace) or {}
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
    _capacity(spec, sink, pvc, phase, source_bytes)
    return pvc, wffc and phase != "Bound"


def _capacity(spec: ModelSpec, sink: ProgressSink, pvc: o.Obj, phase: str | None, source_bytes: int | None) -> None:
    cap = ((pvc.get("status") or {}).get("capacity") or {}).get("storage") if phase == "Bound" else \
        ((pvc.get("spec") or {}).get("resources") or {}).get("requests", {}).get("storage")
    if not cap or source_bytes is None:
        check(sink, True, f"PVC {spec.pvc} is {phase}" + (f" with {cap}" if cap else ""))
        return
    if parse_size(cap) < source_bytes:
        check(sink, False, f"PVC {spec.pvc} holds {cap}, the model needs {human_bytes(source_bytes)}")
        need = f"{claim_size_gi(source_bytes)}Gi"
        raise DestinationFull(
            f"PVC {spec.pvc!r} is too small: {cap} for {human_bytes(source_bytes)} of selected files",
            hint=f"grow it: oc patch pvc {spec.pvc} -p "
                 f"'{{\"spec\":{{\"resources\":{{\"requests\":{{\"storage\":\"{need}\"}}}}}}}}'")
    check(sink, True, f"PVC {spec.pvc} is {phase} with {cap} (need {human_bytes(source_bytes)})")


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


def _placement(cluster: Cluster, spec: ModelSpec, sink: ProgressSink, pvc: o.Obj, unbound_wffc: bool
               ) -> Placement | None:
    """Where the Job runs (None: where the spec says)."""
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
                check(sink, True, f"warning: pod {h['metadata']['name']} (no controller owns it: an inspector?) "
                                  f"holds {spec.pvc}; while it lives, a server on another node cannot mount the "
                                  f"claim: delete it after the copy (oc delete pod {h['metadata']['name']})")
        tolerations = tuple({json.dumps(t, sort_keys=True): t for h in holders
                             for t in (h["spec"].get("tolerations") or [])}.values())
        check(sink, True, f"PVC {spec.pvc} (RWO) is mounted by {names}: the Job runs on {node} too"
                          + (" and tolerates its taints" if tolerations else "") + ", avoiding a Multi-Attach error")
        return Placement(node=node, tolerations=tolerations)
    check(sink, True, f"PVC {spec.pvc} is not in use by another pod" if not holders
          else f"PVC {spec.pvc} is ReadWriteMany: shared with {len(holders)} pod(s)")
    serving = serving_placement(cluster, spec)
    if not unbound_wffc:
        # A zonal volume is mounted only in its zone; where that has only the serving (tainted) nodes, the Job
        # needs their tolerations to run there.
        return replace(spec.placement, tolerations=serving.tolerations) if serving.tolerations else None
    return _first_consumer(spec, sink, serving)


def _first_consumer(spec: ModelSpec, sink: ProgressSink, serving: Placement) -> Placement | None:
    """A WaitForFirstConsumer claim binds where the Job lands: make that where the server can run."""
    if serving.zones:
        check(sink, True, f"the volume will bind in zone(s) {', '.join(serving.zones)}, where the serving "
                          "nodes are: the Job runs there")
        return replace(spec.placement, zones=serving.zones,
                       tolerations=serving.tolerations or spec.placement.tolerations)
    if serving.node_terms or serving.node_selector or serving.prefer_gpu_nodes:
        check(sink, True, "nodes not checked: this user may not list them (a project admin); the Job runs where "
                          "the server may run (its node selector, affinity and tolerations"
                          + (", GPU nodes preferred" if serving.prefer_gpu_nodes else "")
                          + "), so the volume binds in a zone the server can mount")
        return serving
    check(sink, True, "the volume binds in the zone the Job lands in: pass --zone (or --isvc-base/"
                      "--node-selector) so it binds where the server can mount it", warn=True)
    return None


def _fs_group(spec: ModelSpec, openshift: bool, sink: ProgressSink) -> int | None:
    if spec.fs_group is not None:
        check(sink, True, f"fsGroup {spec.fs_group} set on the Job (--fs-group)")
        return None
    if openshift:
        check(sink, True, "OpenShift assigns the uid and fsGroup from the namespace (restricted-v2); the Job "
                          "leaves them unset so it matches the serving pod")
        return None
    check(sink, True, f"no OpenShift SCC annotations: the Job sets fsGroup {IMAGE_GID} so it can write a fresh "
                      "volume (owned by root); --fs-group sets another")
    return IMAGE_GID


def _bound(cluster: Cluster, spec: ModelSpec) -> dict[str, Any] | None:
    pvc = cluster.get("PersistentVolumeClaim", spec.pvc, spec.namespace)
    return pvc if pvc and (pvc.get("status") or {}).get("phase") == "Bound" else None


def _list_here(spec: ModelSpec, values: dict[str, str], sink: ProgressSink, then: str) -> Listing | None:
    """List the source from this machine; None when it is not reachable from here."""
    try:
        chosen, skipped = list_selected(spec, values, spec.secret_keys)
    except SourceUnreachable:
        check(sink, True, f"source endpoint {spec.endpoint_url} not reachable from here; {then}")
        return None
    except SourceError as e:
        check(sink, False, f"source {spec.source}: {e.message}", e.hint)
        raise
    listing = Listing(tuple((x.rel, x.size, x.etag) for x in chosen), "here", skipped)
    check(sink, True, f"source {spec.source} holds {listing.files} files, {human_bytes(listing.bytes)}"
          + (f" ({skipped} duplicates skipped)" if skipped else ""))
    return listing
