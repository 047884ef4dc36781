"""What the user asks ``render`` (and later ``populate``/``deploy``) for: one frozen, validated record."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from modelpvc import __version__
from modelpvc.core.errors import ConfigError

DEFAULT_IMAGE = f"ghcr.io/modelpvc/modelpvc:{__version__}"
MOUNT = "/mnt/models"
_DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?$")


@dataclass(frozen=True)
class ModelSpec:
    name: str  # the InferenceService's name; other objects derive theirs from it
    namespace: str
    source: str  # s3://bucket/prefix/
    pvc: str
    secret: str
    endpoint_url: str | None = None
    secret_keys: tuple[str, str] = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    path: str = ""  # directory inside the claim; "" = the claim's root
    size: str = "100Gi"
    storage_class: str | None = None
    access_mode: str = "ReadWriteOnce"
    runtime: str = "vllm-runtime"
    gpus: int = 1
    args: tuple[str, ...] = ()
    cpu: str | None = None
    memory: str | None = None
    deployment_mode: str | None = None  # Serverless/RawDeployment (Knative/Standard in KServe >= 0.16)
    image: str = DEFAULT_IMAGE
    fs_group: int | None = None  # None: let OpenShift's SCC admission assign it
    gitops: str = "none"  # "none" or "argocd"
    model_bytes: int | None = None  # sizes activeDeadlineSeconds when known
    mirror_args: tuple[str, ...] = ()
    parallel: int = 1  # populate pods splitting the files (an Indexed Job; needs ReadWriteMany)
    labels: dict[str, str] = field(default_factory=dict)
    loader: str = "vllm"  # which weight copy to select: "vllm-mistral" when the server loads Mistral-native

    @property
    def model_dir(self) -> str:
        return f"{MOUNT}/{self.path}".rstrip("/") if self.path else MOUNT

    @property
    def storage_uri(self) -> str:
        return f"pvc://{self.pvc}/{self.path}".rstrip("/") + "/"

    @property
    def job_name(self) -> str:
        return f"{self.name}-populate"[:63]

    @property
    def verify_job_name(self) -> str:
        return f"{self.name}-verify"[:63]

    def validate(self, *, needs_source: bool = True) -> ModelSpec:
        """Clear errors for bad input, before anything is sent or written. ``deploy`` reads no source."""
        names = [("--name", self.name), ("--namespace", self.namespace), ("--pvc", self.pvc),
                 ("--runtime", self.runtime)]
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
        if self.gpus < 0:
            raise ConfigError("--gpus must be >= 0")
        if self.access_mode not in ("ReadWriteOnce", "ReadWriteMany", "ReadWriteOncePod"):
            raise ConfigError(f"--access-mode {self.access_mode!r} is not a PVC access mode")
        if self.gitops not in ("none", "argocd"):
            raise ConfigError(f"--gitops {self.gitops!r}: choose none or argocd")
        if self.endpoint_url is not None and not re.match(r"^https?://[^/\s]+", self.endpoint_url):
            raise ConfigError(f"--endpoint-url {self.endpoint_url!r} is not an http(s) URL")
        return self
