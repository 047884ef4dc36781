"""One root exception; subclasses say what the caller should do, and carry the exit code class.

Third-party errors are translated into these at the adapters (``raise ... from e``); nothing in the
code base matches on message text.
"""

from __future__ import annotations


class ExitCode:
    """Process exit codes, documented in ``--help`` and the README."""

    OK = 0
    USAGE = 2
    SOURCE = 3
    DESTINATION = 4
    INTEGRITY = 5
    CLUSTER = 6
    INTERRUPTED_INT = 130
    INTERRUPTED_TERM = 143


class ModelpvcError(Exception):
    """Root of every error this package raises on purpose.

    ``hint`` tells the user what to do next; it is printed under the message.
    """

    code = "error"

    exit_code = 1

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        # The code is the record's wire format across a pod boundary: each class chooses its own, once.
        if "code" not in cls.__dict__:
            raise TypeError(f"{cls.__name__} must declare its own stable error code")

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class ConfigError(ModelpvcError):
    """Bad arguments or configuration: fix the command line or the environment."""

    code = "usage"

    exit_code = ExitCode.USAGE


class SourceError(ModelpvcError):
    """The source cannot be read as asked: wrong prefix, denied, unreachable, unsafe keys."""

    code = "source"

    exit_code = ExitCode.SOURCE


class SourceNotFound(SourceError):
    """The bucket or prefix does not exist or holds no objects."""

    code = "source-missing"


class ModelsBelow(SourceNotFound):
    """No model at the root of the prefix, but model directories below it: a prefix one level too high."""

    code = "source-too-high"

    def __init__(self, message: str, dirs: list[str] | None = None, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.dirs = dirs or []  # none when it came back from another process's record


class AccessDenied(SourceError):
    """The credentials were refused (wrong key, wrong secret, missing permission)."""

    code = "access-denied"


class SourceUnreachable(SourceError):
    """The endpoint did not answer within the retry budget (refused, timed out, TLS failure)."""

    code = "source-unreachable"


class SourceGated(AccessDenied):
    """A gated or private model repository this token may not read (accept its terms, or use a token)."""

    code = "source-gated"


class UnsafeKey(SourceError):
    """An object key would land outside the destination; nothing is written for it."""

    code = "unsafe-key"


class TransientError(ModelpvcError):
    """A failure that is worth retrying (5xx, throttling, reset, short body, timeout)."""

    code = "transient"

    exit_code = ExitCode.SOURCE


class NoAnswer(TransientError):
    """The endpoint took the request but sent no answer within the read timeout (not a network failure:
    a server busy with a large listing or computing an ETag answers late)."""

    code = "no-answer"


class SourceChanged(TransientError):
    """The object changed while it was being copied (ETag precondition failed)."""

    code = "source-changed"


class DestinationError(ModelpvcError):
    """The destination cannot take the copy: not writable, no space, locked by another run."""

    code = "destination"

    exit_code = ExitCode.DESTINATION


class DestinationFull(DestinationError):
    """Not enough free space for what must be fetched."""

    code = "destination-full"


class DestinationNotWritable(DestinationError):
    """The destination refuses writes (permissions, read-only): on Kubernetes, usually the pod's fsGroup."""

    code = "destination-not-writable"


class DestinationLocked(DestinationError):
    """Another run holds the destination's lock."""

    code = "destination-locked"


class DestinationMissing(DestinationError):
    """The destination bucket does not exist."""

    code = "destination-missing"


class DestinationDenied(DestinationError):
    """The credentials may not write to the destination bucket."""

    code = "destination-denied"


class IntegrityError(ModelpvcError):
    """Bytes did not match what the source promised, or a model is not whole."""

    code = "integrity"

    exit_code = ExitCode.INTEGRITY


class Interrupted(ModelpvcError):
    """Stopped by a signal; the destination is left in a resumable state."""

    code = "interrupted"

    def __init__(self, signum: int, message: str = "interrupted; re-run the same command to resume where it "
                                                   "stopped") -> None:
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum


class ClusterError(ModelpvcError):
    """The Kubernetes API refused or failed a request, or the cluster cannot run what was asked."""

    code = "cluster"

    exit_code = ExitCode.CLUSTER


class FieldConflict(ClusterError):
    """Server-side apply: another field manager owns a field we would change."""

    code = "field-conflict"


class PodBlocked(ClusterError):
    """A pod of ours cannot start and will not by waiting (config error, image, unschedulable, attach)."""

    code = "pod-blocked"


def error_types() -> dict[str, type[ModelpvcError]]:
    """Every error class by its stable code: how an error record that crossed a pod boundary becomes an
    error again (the record's ``code``; nothing parses its message)."""
    out: dict[str, type[ModelpvcError]] = {}
    todo: list[type[ModelpvcError]] = [ModelpvcError]
    while todo:
        cls = todo.pop()
        out[cls.code] = cls
        todo += cls.__subclasses__()
    return out


def from_record(record: dict[str, object], prefix: str) -> ModelpvcError:
    """An error record from another process (``{"event": "error", "code": <code>, ...}``) as our error. A
    record of an older image has only ``error``, the class name."""
    types = error_types()
    cls = types.get(str(record.get("code")))
    if cls is None:
        cls = {t.__name__: t for t in types.values()}.get(str(record.get("error")), ClusterError)
    message = f"{prefix}: {record.get('message')}"
    hint = record.get("hint")
    if issubclass(cls, Interrupted):
        return ClusterError(message, hint="it was stopped (evicted or deleted); re-run to resume where it stopped")
    return cls(message, hint=str(hint) if hint else None)
