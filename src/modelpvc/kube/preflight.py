"""populate's preflight: every failure mode of the runbook's troubleshooting section, checked first."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace

from modelpvc.core.errors import (
    ConfigError,
    DestinationFull,
    ModelpvcError,
    SourceError,
    SourceUnreachable,
)
from modelpvc.core.events import Event, NullSink, ProgressSink
from modelpvc.core.secretkeys import ENDPOINT_KEYS, EXPECTED, find_pair
from modelpvc.kube import objects as o
from modelpvc.kube.cluster import Cluster
from modelpvc.kube.source import list_selected
from modelpvc.kube.spec import ModelSpec
from modelpvc.model.sizing import parse_size, pvc_size_gi


@dataclass
class Preflight:
    spec: ModelSpec
    source_bytes: int | None = None
    source_files: int | None = None
    node: str | None = None  # pin the Job here (an RWO claim is held on this node)
    notes: list[str] = field(default_factory=list)


def check(sink: ProgressSink, ok: bool, message: str, hint: str | None = None) -> None:
    sink.emit(Event("check", {"ok": ok, "message": message, "hint": hint}))


def run_preflight(cluster: Cluster, spec: ModelSpec, sink: ProgressSink, *, create_pvc: bool = False,
                  source_check: str = "auto", headroom: float = 1.2, bind_timeout: float = 60) -> Preflight:
    """``source_check``: "auto" (from here, else a probe Job in the cluster), "local", "cluster", "skip"."""
    pf = Preflight(spec)
    ns = cluster.get("Namespace", spec.namespace)
    if ns is None:
        check(sink, False, f"namespace {spec.namespace} not found")
        raise ConfigError(f"namespace {spec.namespace!r} does not exist", hint="check --namespace (oc projects)")
    check(sink, True, f"namespace {spec.namespace} exists")

    secret = cluster.get("Secret", spec.secret, spec.namespace)
    if secret is None:
        check(sink, False, f"secret {spec.secret} not found in {spec.namespace}")
        raise ConfigError(f"secret {spec.secret!r} not found in namespace {spec.namespace!r}",
                          hint=f"create it with keys {EXPECTED}")
    values = o.secret_values(secret)
    wanted = spec.secret_keys
    if not (wanted[0] in values and wanted[1] in values):
        pair = find_pair(values)
        if pair is None:
            found = ", ".join(sorted(values)) or "none"
            check(sink, False, f"secret {spec.secret} has keys {found}; expected {EXPECTED}")
            raise ConfigError(f"secret {spec.secret!r} has no usable key pair (found: {found})",
                              hint=f"expected {EXPECTED}, or name yours with --secret-keys ACCESS,SECRET")
        wanted = pair
    spec = replace(spec, secret_keys=wanted)
    endpoint = spec.endpoint_url or next((values[k] for k in ENDPOINT_KEYS if values.get(k)), None)
    if endpoint and "://" not in endpoint:
        endpoint = "https://" + endpoint
    spec = replace(spec, endpoint_url=endpoint)
    check(sink, True, f"secret {spec.secret} has keys {wanted[0]}/{wanted[1]}"
          + (f"; endpoint {endpoint}" if endpoint else ""))
    pf.spec = spec

    if source_check in ("auto", "local") and not _check_source(pf, values, sink) and source_check == "auto":
        source_check = "cluster"
    if source_check == "cluster":
        _probe_source(cluster, pf, sink)

    pvc = cluster.get("PersistentVolumeClaim", spec.pvc, spec.namespace)
    if pvc is None:
        if not create_pvc:
            check(sink, False, f"PVC {spec.pvc} not found")
            raise ConfigError(f"PVC {spec.pvc!r} not found in {spec.namespace!r}",
                              hint="create it, or pass --create-pvc (--size auto sizes it from the source)")
        size = spec.size
        if size == "auto":
            if pf.source_bytes is None:
                raise ConfigError("--size auto needs the source's size", hint="pass --size, e.g. 120Gi")
            size = f"{pvc_size_gi(pf.source_bytes, headroom)}Gi"
        spec = pf.spec = replace(spec, size=size)
        from modelpvc.kube import manifests

        cluster.create(manifests.pvc(spec))
        check(sink, True, f"PVC {spec.pvc} created ({size}, {spec.access_mode})")
        pvc = cluster.get("PersistentVolumeClaim", spec.pvc, spec.namespace) or {}
    phase = (pvc.get("status") or {}).get("phase")
    if phase != "Bound":
        try:
            pvc = cluster.poll(f"PVC {spec.pvc} to bind", lambda: _bound(cluster, spec), timeout=bind_timeout,
                               interval=0.2)
            phase = "Bound"
        except ModelpvcError:
            check(sink, True, f"PVC {spec.pvc} is {phase}: with WaitForFirstConsumer it binds when the Job starts")
    if phase == "Bound":
        cap = ((pvc.get("status") or {}).get("capacity") or {}).get("storage")
        if cap and pf.source_bytes is not None:
            have = parse_size(cap)
            if have < pf.source_bytes:
                check(sink, False, f"PVC {spec.pvc} holds {cap}, the model needs {pf.source_bytes / 1e9:.1f} GB")
                need = f"{pvc_size_gi(pf.source_bytes, headroom)}Gi"
                raise DestinationFull(
                    f"PVC {spec.pvc!r} is too small: {cap} for {pf.source_bytes / 1e9:.1f} GB of selected files",
                    hint=f"grow it: oc patch pvc {spec.pvc} -p "
                         f"'{{\"spec\":{{\"resources\":{{\"requests\":{{\"storage\":\"{need}\"}}}}}}}}'")
            check(sink, True, f"PVC {spec.pvc} is Bound with {cap} (need {pf.source_bytes / 1e9:.2f} GB)")
        else:
            check(sink, True, f"PVC {spec.pvc} is Bound" + (f" with {cap}" if cap else ""))

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
        if len(nodes) == 1:
            pf.node = nodes.pop()
            check(sink, True, f"PVC {spec.pvc} (RWO) is mounted by {names}: the Job runs on {pf.node} too, "
                              "avoiding a Multi-Attach error")
        else:
            check(sink, False, f"PVC {spec.pvc} (RWO) is mounted on several nodes: {names}")
            raise ConfigError("an RWO claim mounted on several nodes cannot be written", hint="see modelpvc doctor")
    else:
        check(sink, True, f"PVC {spec.pvc} is not in use by another pod" if not holders
              else f"PVC {spec.pvc} is ReadWriteMany: shared with {len(holders)} pod(s)")

    fs = o.openshift_fs_group(ns)
    if spec.fs_group is not None:
        check(sink, True, f"fsGroup {spec.fs_group} set on the Job (--fs-group)")
    elif fs is not None:
        check(sink, True, f"OpenShift assigns fsGroup {fs} from the namespace's supplemental groups; "
                          "the Job leaves it unset so it matches the serving pod")
    else:
        check(sink, True, "no OpenShift SCC annotations: the Job runs with the image's user; pass --fs-group "
                          "if the volume needs a group")
    return pf


def _bound(cluster: Cluster, spec: ModelSpec) -> dict[str, object] | None:
    pvc = cluster.get("PersistentVolumeClaim", spec.pvc, spec.namespace)
    return pvc if pvc and (pvc.get("status") or {}).get("phase") == "Bound" else None


def _probe_source(cluster: Cluster, pf: Preflight, sink: ProgressSink) -> None:
    """Where the endpoint only resolves inside the cluster: a short Job runs `modelpvc plan --json` there."""
    from modelpvc.kube import manifests
    from modelpvc.kube.jobs import run_job

    job = manifests.populate_job(pf.spec)
    job["metadata"]["name"] = f"{pf.spec.job_name[:56]}-probe"
    pod = job["spec"]["template"]["spec"]
    pod["volumes"] = [v for v in pod["volumes"] if v["name"] != "model-storage"]  # no claim: no Multi-Attach
    c = pod["containers"][0]
    c["volumeMounts"] = [m for m in c["volumeMounts"] if m["name"] != "model-storage"]
    c["args"] = ["plan", pf.spec.source, "--json"]
    job["spec"]["backoffLimit"] = 0
    job["spec"]["activeDeadlineSeconds"] = 300
    try:
        result = run_job(cluster, job, NullSink(), timeout=300)
    except SourceError as e:
        check(sink, False, f"source {pf.spec.source} (probed in the cluster): {e.message}", e.hint)
        raise
    finally:
        cluster.delete("Job", job["metadata"]["name"], pf.spec.namespace)
    text = "\n".join(result.log)
    try:
        plan = json.loads(text[text.index("{"):])
    except ValueError as e:
        raise SourceError(f"the in-cluster probe of {pf.spec.source} gave no plan") from e
    pf.source_bytes = int(plan["bytes"])
    pf.source_files = len(plan["files"])
    check(sink, True, f"source {pf.spec.source} holds {pf.source_files} files, {pf.source_bytes / 1e9:.2f} GB "
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
    check(sink, True, f"source {spec.source} holds {len(chosen)} files, {pf.source_bytes / 1e9:.2f} GB"
          + (f" ({skipped} duplicates skipped)" if skipped else ""))
    return True
