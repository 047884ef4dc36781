"""Settings as grouped frozen dataclasses. Only ``cli/`` builds them from argv and the environment."""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field

from modelpvc.core.retry import RetryPolicy


def positive_seconds(value: float) -> bool:
    """A usable timeout: finite and above zero (``float`` also parses "nan" and "inf", which sockets refuse
    or wait on forever)."""
    return math.isfinite(value) and value > 0


@dataclass(frozen=True)
class Credentials:
    """An S3 key pair. ``repr`` never shows the secret, so a stray log line cannot leak it."""

    access_key: str = field(repr=False)
    secret_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)
    origin: str = "environment"  # where the keys came from, for messages (never the keys themselves)

    def __repr__(self) -> str:
        return f"Credentials(origin={self.origin!r})"


@dataclass(frozen=True)
class S3Settings:
    """How to reach an S3-compatible endpoint."""

    endpoint_url: str | None = None  # None: AWS's regional endpoint
    region: str = "us-east-1"
    credentials: Credentials | None = None  # None: anonymous (unsigned) requests
    use_credential_chain: bool = False  # ask botocore's chain (profiles, web identity, containers)
    ca_bundle: str | None = None
    ca_data: str | None = field(default=None, repr=False)  # PEM text (OpenShift AI's storage-config "certificate")
    insecure: bool = False  # skip TLS verification; only when the user asks
    path_style: bool = True  # MinIO and Ceph RGW want path-style; AWS accepts it
    connect_timeout: float = 5.0  # seconds; a refused or blackholed endpoint fails fast
    # Seconds without a byte before a request is abandoned and retried. Stalled bodies cost at most
    # this much per attempt.
    read_timeout: float = 10.0
    max_attempts: int = 5  # per request, with exponential backoff and full jitter
    backoff_base: float = 0.2  # seconds; attempt n sleeps up to base * 2**n, capped at backoff_cap
    backoff_cap: float = 5.0
    # An endpoint that never answers must fail within ~30 s (two attempts of read_timeout plus
    # backoff) rather than after max_attempts * read_timeout.
    metadata_deadline: float = 25.0

    @property
    def retry(self) -> RetryPolicy:
        return RetryPolicy(self.max_attempts, self.backoff_base, self.backoff_cap)


class VerifyLevel(enum.Enum):
    """How hard ``mirror`` checks the bytes it wrote."""

    SIZE = "size"  # lengths of every range and file only
    AUTO = "auto"  # the strongest check the source offers cheaply: checksum, else ETag MD5
    FULL = "full"  # AUTO, and fail when the source offers nothing checkable

    def __str__(self) -> str:
        return self.value


MiB = 1024 * 1024


@dataclass(frozen=True)
class TransferSettings:
    """How ``mirror`` moves bytes."""

    workers: int = 4  # concurrent requests (the CLI sizes it from the CPUs this process may use)
    workers_basis: str = ""  # why that many, for the summary: "--workers", "2 CPUs usable (cgroup quota 2)"
    workers_given: bool = False  # the user chose ``workers``: the copy never raises it (transfer.mirror)
    files_in_flight: int = 0  # files open at once; 0: as many as workers, so each can have its own
    part_size: int = 32 * MiB  # ranged-GET size for large objects (rounded to the ETag part size)
    buffer_size: int = 1 * MiB  # per-worker read buffer: memory is workers x buffer, not model size
    verify: VerifyLevel = VerifyLevel.AUTO
    dry_run: bool = False
    delete: bool = False  # remove local files the source no longer has
    delete_excluded: bool = False  # also remove local files the selection leaves out
    check_space: bool = True
    # Bytes the destination may hold whatever its filesystem says, and what sets that bound (an EmptyDir
    # counted against the pod's ephemeral-storage limit): checked against the whole model before a byte.
    space_limit: tuple[int, str] | None = None
    space_hint: str = ""
    journal_interval: float = 1.0  # seconds between making written bytes durable (fdatasync + a journal marker)
    direct_io: bool = True  # large files bypass the page cache on ext4/xfs/btrfs (store/volume/direct_io.py)


@dataclass(frozen=True)
class ImportSettings:
    """How ``import`` moves bytes into a bucket."""

    workers: int = 4  # parts in flight; each holds one part in memory
    workers_basis: str = ""
    part_size: int = 32 * MiB  # upload part (and ranged-GET) size; grown for files over 10,000 parts
    memory: int = 256 * MiB  # bound on part buffers: workers are cut to memory // part_size
    checksum: str | None = "crc64nvme"  # full-object checksum sent with every object; None: none
    dry_run: bool = False
