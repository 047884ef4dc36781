"""What a platform admin installs once for ``modelpvc populator``: the ModelSource CRD, its VolumePopulator
registration, the populator's ServiceAccount, the least RBAC it needs, and its Deployment.

The RBAC, verb by verb, is what kube/populator.py does and nothing more: it never reads a Secret (the Job
mounts it), never touches pods beyond reading the Job's for its log, and writes a PersistentVolume only to
hand it to the claim (``claimRef``).
"""

from __future__ import annotations

from modelpvc.kube import modelsource as ms
from modelpvc.kube.manifests import restricted_container_security

Obj = dict[str, object]
NAME = "modelpvc-populator"
LABELS = {"app.kubernetes.io/name": NAME, "app.kubernetes.io/managed-by": "modelpvc"}

RULES: list[Obj] = [
    # The user's claims (watch, read) and the prime claims (create, annotate the retry state, delete).
    {"apiGroups": [""], "resources": ["persistentvolumeclaims"],
     "verbs": ["get", "list", "watch", "create", "patch", "delete"]},
    # The prime claim's volume, handed to the user's claim.
    {"apiGroups": [""], "resources": ["persistentvolumes"], "verbs": ["get", "patch"]},
    {"apiGroups": ["storage.k8s.io"], "resources": ["storageclasses"], "verbs": ["get"]},
    {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get", "list", "watch", "create", "delete"]},
    # The Job's pod: its log holds the progress, the summary and the error record.
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
    {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["get", "create", "patch"]},
    {"apiGroups": [ms.GROUP], "resources": [ms.PLURAL], "verbs": ["get", "list", "watch"]},
    {"apiGroups": [ms.GROUP], "resources": [f"{ms.PLURAL}/status"], "verbs": ["patch"]},
]


def install_objects(namespace: str, image: str, watch_namespace: str | None = None) -> list[Obj]:
    """Everything, in apply order. ``watch_namespace``: a per-project populator, which fills that namespace's
    claims only (its Role is bound there; PVs and storage classes are cluster-scoped and stay a ClusterRole)."""
    meta = {"name": NAME, "namespace": namespace, "labels": dict(LABELS)}
    subject = [{"kind": "ServiceAccount", "name": NAME, "namespace": namespace}]
    objs: list[Obj] = [ms.crd(), ms.volume_populator(),
                       {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": dict(meta)}]
    if watch_namespace is None:
        objs += [{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                  "metadata": {"name": NAME, "labels": dict(LABELS)}, "rules": RULES},
                 {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                  "metadata": {"name": NAME, "labels": dict(LABELS)}, "subjects": subject,
                  "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": NAME}}]
    else:
        cluster_scoped = [r for r in RULES if r["resources"] in (["persistentvolumes"], ["storageclasses"])]
        namespaced = [r for r in RULES if r not in cluster_scoped]
        objs += [{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                  "metadata": {"name": f"{NAME}-volumes", "labels": dict(LABELS)}, "rules": cluster_scoped},
                 {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                  "metadata": {"name": f"{NAME}-{watch_namespace}", "labels": dict(LABELS)}, "subjects": subject,
                  "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                              "name": f"{NAME}-volumes"}},
                 {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                  "metadata": {"name": NAME, "namespace": watch_namespace, "labels": dict(LABELS)},
                  "rules": namespaced},
                 {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                  "metadata": {"name": NAME, "namespace": watch_namespace, "labels": dict(LABELS)},
                  "subjects": subject,
                  "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": NAME}}]
    # Project admins and editors declare ModelSources, viewers read them: the upstream admin, edit and view
    # roles (OpenShift's project roles) take these rules in by aggregation.
    aggregate = "rbac.authorization.k8s.io/aggregate-to-"
    for role, verbs, to in (("edit", ["get", "list", "watch", "create", "update", "patch", "delete"],
                             ("admin", "edit")), ("view", ["get", "list", "watch"], ("view",))):
        objs.append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                     "metadata": {"name": f"modelpvc-modelsources-{role}",
                                  "labels": {**LABELS, **{aggregate + t: "true" for t in to}}},
                     "rules": [{"apiGroups": [ms.GROUP], "resources": [ms.PLURAL],
                                "verbs": verbs}]})
    args = ["populator", "--image", image, *(["--watch-namespace", watch_namespace] if watch_namespace else [])]
    container: Obj = {
        "name": "populator", "image": image, "args": args,
        "env": [{"name": "HOME", "value": "/tmp"}],  # noqa: S108 (an emptyDir; an arbitrary UID has no home)
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],  # noqa: S108
        # Idle it watches three kinds; busy it reads one Job's log at a time.
        "resources": {"requests": {"cpu": "50m", "memory": "96Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}},
        "securityContext": restricted_container_security(),
    }
    objs.append({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": dict(meta),
        # One controller at a time (no leader election): Recreate, never two during a rollout.
        "spec": {"replicas": 1, "strategy": {"type": "Recreate"}, "selector": {"matchLabels": {
                     "app.kubernetes.io/name": NAME}},
                 "template": {"metadata": {"labels": dict(LABELS)}, "spec": {
                     "serviceAccountName": NAME, "containers": [container],
                     "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
                     "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}]}}}})
    return objs
