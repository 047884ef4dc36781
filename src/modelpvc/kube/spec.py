"""What the user asks ``render``, ``populate``, ``deploy`` and ``update`` for: one frozen, validated record;
and the facts found for it in the cluster (``Facts``), the one way a spec changes once it is built."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields, replace
from typing import Any

from modelpvc import __version__
from modelpvc.core.errors import ConfigError
from modelpvc.model.select import loader_from_args

DEFAULT_IMAGE = f"ghcr.io/modelpvc/modelpvc:{__version__}"
IMAGE_ENV = "MODELPVC_IMAGE"  # every command that makes a pod reads it, so a mirrored image is set once
IMAGE_FIX = ("build the modelpvc image from the Containerfile and push it to a registry this cluster pulls from "
             f"(README: Install in your cluster), then pass --image or set {IMAGE_ENV}")
MOUNT = "/mnt/models"
_DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?$")


@dataclass(frozen=True)
class Serving:
    """What the InferenceService serves with. ``None`` means "not given": without ``base`` the defaults
    apply; with ``base`` (the user's own InferenceService YAML) the base's value is kept."""

    runtime: str | None = None
    gpus: int | None = None
    args: tuple[str, ...] | None = None
    cpu: str | None = None
    memory: str | None = None
    min_replicas: int | None = None
    max_replicas: int | None = None
    tolerations: tuple[dict[str, Any], ...] = ()
    node_selector: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    deployment_mode: str | None = None  # Serverless/RawDeployment (Knative/Standard in KServe >= 0.16)
    base: dict[str, Any] | None = None

    def predictor(self) -> dict[str, Any]:
        """The predictor as it will be (base, with the flags given applied): for placement decisions."""
        pred: dict[str, Any] = dict(((self.base or {}).get("spec") or {}).get("predictor") or {})
        if self.tolerations:
            pred["tolerations"] = [dict(t) for t in self.tolerations]
        if self.node_selector:
            pred["nodeSelector"] = dict(self.node_selector)
        return pred

    @property
    def effective_args(self) -> tuple[str, ...]:
        if self.args is not None:
            return self.args
        model = ((self.base or {}).get("spec") or {}).get("predictor", {}).get("model") or {}
        return tuple(str(a) for a in model.get("args") or ())


def _loopback(url: str) -> bool:
    import ipaddress
    from urllib.parse import urlsplit

    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Placement:
    """Where our Jobs may run, decided from the cluster (populate) or from the serving spec (render)."""

    node: str | None = None  # pinned: the node that holds a ReadWriteOnce claim
    # Bound to a node without the scheduler, as a volume populator binds its pod to the node the scheduler
    # chose for the claim's consumer (its taints were the consumer's to tolerate).
    node_name: str | None = None
    tolerations: tuple[dict[str, Any], ...] = ()  # what that node (or the serving nodes) needs tolerated
    zones: tuple[str, ...] = ()  # a WaitForFirstConsumer claim binds where the Job lands: the server's zones
    follow: str | None = None  # GitOps: prefer the node of this InferenceService's predictor pods
    # When nodes cannot be read (a project admin): run where the server may run, by its own rules.
    node_selector: tuple[tuple[str, str], ...] = ()
    node_terms: tuple[dict[str, Any], ...] = ()  # the predictor's required nodeSelectorTerms
    prefer_gpu_nodes: bool = False  # the predictor asks for GPUs: prefer nodes the GPU operator labelled


@dataclass(frozen=True)
class Facts:
    """What was found where the spec runs (its Secret, its claim, the nodes, the source's listing). None: not
    found, what was asked stands. Preflight steps return these; ``ModelSpec.resolved`` applies them."""

    source: str | None = None  # recorded on the served claim, or its ModelSource
    secret: str | None = None
    secret_keys: tuple[str, str] | None = None
    endpoint_url: str | None = None
    region: str | None = None
    size: str | None = None  # the size a claim is created with (--size auto, from the source)
    model_bytes: int | None = None  # the source's selected bytes: sizes deadlines
    placement: Placement | None = None
    fs_group: int | None = None
    ephemeral: str | None = None  # the storage initializer's EmptyDir, sized from the source


@dataclass(frozen=True)
class ModelSpec:
    name: str  # the InferenceService's name; other objects derive theirs from it
    namespace: str
    source: str  # s3://bucket/prefix/
    pvc: str
    secret: str
    endpoint_url: str | None = None
    secret_keys: tuple[str, str] = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    detect_keys: bool = True  # the key names were not given (--secret-keys): use the pair the Secret has
    path: str = ""  # directory inside the claim; "" = the claim's root
    size: str = "100Gi"
    storage_class: str | None = None
    access_mode: str = "ReadWriteOnce"
    serving: Serving = field(default_factory=Serving)
    placement: Placement = field(default_factory=Placement)
    region: str | None = None  # None: the secret's AWS_DEFAULT_REGION when it has one
    image: str = DEFAULT_IMAGE
    fs_group: int | None = None  # None: let OpenShift's SCC admission assign it
    gitops: str = "none"  # "none" or "argocd"
    model_bytes: int | None = None  # sizes activeDeadlineSeconds when known
    mirror_args: tuple[str, ...] = ()
    parallel: int = 1  # populate pods splitting the files (an Indexed Job; needs ReadWriteMany)
    labels: dict[str, str] = field(default_factory=dict)
    loader: str = "vllm"  # which weight copy to select: "vllm-mistral" when the server loads Mistral-native
    import_from: str | None = None  # hf://ORG/NAME[@REV]: an import Job fills the source prefix first
    hub_secret: str | None = None  # Secret whose HF_TOKEN key authorises gated/private repositories
    hub_endpoint: str | None = None  # HF_ENDPOINT for the import Job (a Hub mirror); None: the Hub
    # "pvc": the model on a claim (storageUri pvc://); "storage-initializer": KServe downloads s3:// into an
    # EmptyDir at every pod start, through modelpvc registered as a ClusterStorageContainer.
    pattern: str = "pvc"
    ephemeral: str | None = None  # the predictor's ephemeral-storage request/limit (storage-initializer)
    initializer_buckets: tuple[str, ...] = ()  # only these buckets use modelpvc's initializer; () = all s3://
    # The Secret mounted as files (--credentials-dir) rather than its two keys as env: the key names are
    # resolved in the pod, by whoever cannot read the Secret (the volume populator).
    secret_files: bool = False
    model_source: str | None = None  # the claim is filled by the volume populator from this ModelSource

    def resolved(self, *found: Facts) -> ModelSpec:
        """This spec with what was found applied, later facts over earlier ones."""
        changes = {f.name: getattr(fact, f.name) for fact in found for f in fields(fact)
                   if getattr(fact, f.name) is not None}
        return replace(self, **changes) if changes else self

    def at_path(self, path: str) -> ModelSpec:
        """The same model in another directory of its claim (a revision beside the served one)."""
        return replace(self, path=path.strip("/"))

    def on_claim(self, claim: dict[str, Any], name: str) -> ModelSpec:
        """The same model at the root of a new claim ``name`` made like ``claim`` (class, size, access mode),
        filled by the volume populator from a ModelSource of the same name."""
        body = claim["spec"]
        return replace(self, pvc=name, path="", model_source=name, size=str(body["resources"]["requests"]["storage"]),
                       storage_class=body.get("storageClassName"),
                       access_mode=(body.get("accessModes") or ["ReadWriteOnce"])[0])

    @property
    def model_dir(self) -> str:
        return f"{MOUNT}/{self.path}".rstrip("/") if self.path else MOUNT

    @property
    def storage_uri(self) -> str:
        if self.pattern == "storage-initializer":
            return self.source
        return f"pvc://{self.pvc}/{self.path}".rstrip("/") + "/"

    @property
    def service_account(self) -> str:
        return f"{self.name}-s3"[:63]

    @property
    def job_name(self) -> str:
        return f"{self.name}-populate"[:63]

    @property
    def import_job_name(self) -> str:
        return f"{self.name}-import"[:63]

    @property
    def verify_job_name(self) -> str:
        return f"{self.name}-verify"[:63]

    @property
    def gc_job_name(self) -> str:
        return f"{self.name}-gc"[:63]

    def validate(self, *, needs_source: bool = True) -> ModelSpec:
        """Clear errors for bad input, before anything is sent or written. ``deploy`` reads no source."""
        names = [("--name", self.name), ("--namespace", self.namespace)]
        if self.pattern == "pvc":
            names.append(("--pvc", self.pvc))
        elif self.pattern != "storage-initializer":
            raise ConfigError(f"--pattern {self.pattern!r}: choose pvc or storage-initializer")
        if self.serving.runtime is not None:
            names.append(("--runtime", self.serving.runtime))
        if needs_source:
            names.append(("--secret", self.secret))
        for what, value in names:
            if not value or len(value) > 63 or not _DNS1123.match(value):
                raise ConfigError(f"{what} {value!r} is not a valid Kubernetes name",
                                  hint="lower-case letters, digits and '-', at most 63 characters")
        if needs_source and (not self.source.startswith("s3://") or len(self.source) <= 5):
            raise ConfigError(f"--source {self.source!r} is not an s3:// URI", hint="s3://BUCKET/PREFIX/")
        if self.size != "auto" and not _QUANTITY.match(self.size):
            raise ConfigError(f"--size {self.size!r} is not a Kubernetes quantity", hint="e.g. 120Gi")
        if self.path and (self.path.startswith("/") or ".." in self.path.split("/")):
            raise ConfigError(f"--path {self.path!r} must be a relative directory inside the claim")
        if not 1 <= self.parallel <= 64:
            raise ConfigError(f"--parallel {self.parallel} is out of range (1..64)")
        if self.serving.gpus is not None and self.serving.gpus < 0:
            raise ConfigError("--gpus must be >= 0")
        if self.access_mode not in ("ReadWriteOnce", "ReadWriteMany", "ReadWriteOncePod"):
            raise ConfigError(f"--access-mode {self.access_mode!r} is not a PVC access mode")
        if self.gitops not in ("none", "argocd"):
            raise ConfigError(f"--gitops {self.gitops!r}: choose none or argocd")
        if self.endpoint_url is not None and not re.match(r"^https?://[^/\s]+", self.endpoint_url):
            raise ConfigError(f"--endpoint-url {self.endpoint_url!r} is not an http(s) URL")
        if self.endpoint_url is not None and _loopback(self.endpoint_url):
            # It would be written into the Job, whose pod's loopback is its own.
            raise ConfigError(f"--endpoint-url {self.endpoint_url} is this machine's loopback address: the cluster's "
                              "pods cannot reach it",
                              hint="give the pods' endpoint (--endpoint-url http://minio.model-storage.svc:9000, or "
                                   "none: the secret's AWS_S3_ENDPOINT); to list a port-forwarded bucket from here, "
                                   "set AWS_ENDPOINT_URL=http://127.0.0.1:PORT instead (read here, never written)")
        if self.import_from is not None and not re.match(r"^hf://[\w.-]+(/[\w.-]+)?(@\S+)?$", self.import_from):
            raise ConfigError(f"--import-from {self.import_from!r} is not hf://ORG/NAME[@REVISION]",
                              hint="in the cluster only Hugging Face origins can be imported; import a local "
                                   "directory from your machine with `modelpvc import DIR s3://...`")
        if self.hub_secret is not None and not _DNS1123.match(self.hub_secret):
            raise ConfigError(f"--hub-secret {self.hub_secret!r} is not a valid Kubernetes name")
        return self


def spec_from_isvc(isvc: dict[str, Any], asked: ModelSpec) -> ModelSpec:
    """What an InferenceService serves: its claim and directory, its predictor, the weights its server's
    arguments select; the rest as ``asked``."""
    model = isvc["spec"]["predictor"]["model"]
    uri = str(model.get("storageUri", ""))
    if not uri.startswith("pvc://"):
        raise ConfigError(f"InferenceService {isvc['metadata']['name']} serves {uri or 'no storageUri'}, not a "
                          "pvc:// claim", hint="update refreshes PVC-backed models; see render --pattern "
                                               "storage-initializer for s3:// ones")
    claim, _, path = uri.removeprefix("pvc://").partition("/")
    args = tuple(str(a) for a in model.get("args") or ())
    return replace(asked, pvc=claim, path=path.strip("/"), serving=Serving(base=isvc),
                   loader=loader_from_args(args))
