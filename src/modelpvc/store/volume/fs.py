"""Filesystem helpers under the Destination: error translation, durable atomic writes, fsync, the lock."""

from __future__ import annotations

import errno
import fcntl
import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import cast

from modelpvc.core.errors import DestinationError, DestinationFull, DestinationLocked, DestinationNotWritable
from modelpvc.core.manifest import STATE_DIR


def destination_error(e: OSError, path: Path | str, doing: str) -> DestinationError:
    """Translate an OSError on the destination into our class, with the fix."""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return DestinationFull(
            f"no space left on {path} while {doing}",
            hint="grow the volume (or the PVC) or free space, then re-run to resume",
        )
    if e.errno == errno.EROFS:
        return DestinationNotWritable(
            f"cannot write {path} while {doing}: the file system is mounted read-only",
            hint="mount it read-write: on Kubernetes, readOnly: false on the volume mount and the claim (a "
                 "predictor's /mnt/models is read-only on purpose: populate writes the claim, not the server)",
        )
    if e.errno in (errno.EACCES, errno.EPERM):
        return DestinationNotWritable(
            f"cannot write {path} while {doing}: {e.strerror}",
            hint="the directory must be writable by this user (uid "
            f"{os.getuid()}, gid {os.getgid()}); on Kubernetes set the pod's fsGroup to the volume's group",
        )
    return DestinationError(f"{doing} {path}: {e.strerror or e}")


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def syncfs(path: Path) -> None:
    """Flush the filesystem holding ``path`` (one call instead of an fsync per small file)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fn = _libc_syncfs()
        if fn is None or fn(fd) != 0:
            os.sync()
    finally:
        os.close(fd)


@functools.cache
def _libc_syncfs() -> Callable[[int], int] | None:
    """libc's syncfs, looked up on first use. ``CDLL(None)`` is the process's own symbols, libc among them:
    ``ctypes.util.find_library`` would run ``ldconfig -p`` in a subprocess, at every start."""
    try:
        import ctypes

        fn = ctypes.CDLL(None, use_errno=True).syncfs
        fn.argtypes = [ctypes.c_int]
        return cast(Callable[[int], int], fn)
    except (OSError, AttributeError):
        return None


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a unique temp name beside ``path``, fsync, rename, fsync the directory."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise destination_error(e, path, "writing") from e


def _pid_in(fd: int) -> str:
    """The pid the lock's holder wrote into the lock file."""
    return os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"


class DestinationLock:
    """One writer per destination: an ``flock`` on ``.modelpvc/lock``, released when the process dies."""

    def __init__(self, dest: Path, state: Path | None = None) -> None:
        self.dest = dest
        self.path = (state or dest / STATE_DIR) / "lock"
        self.fd: int | None = None

    def __enter__(self) -> DestinationLock:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise destination_error(e, self.dest, "preparing") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _pid_in(fd)
            os.close(fd)
            raise DestinationLocked(
                f"{self.dest} is being written by another modelpvc run (pid {holder})",
                hint="wait for it to finish; the lock is released when that process exits",
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self.fd = fd
        return self

    def holder(self) -> str | None:
        """The pid of a live run holding the lock, or None; never takes it (a reader may have no write access)."""
        try:
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _pid_in(fd)
        finally:
            os.close(fd)  # also releases the shared lock when it was granted
        return None

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing releases the flock
            self.fd = None
