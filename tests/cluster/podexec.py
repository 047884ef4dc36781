"""Start one container's process for the process kubelet, inside the private mount namespace ``unshare``
made for it (and, for serving pods, the pod's network namespace the kubelet entered): bind each volume at
its real ``mountPath`` (read-only where the pod says so), give the pod its own /etc/hosts (the cluster's
service names), then become the pod's user (``runAsUser``, GID 0 as OpenShift's restricted-v2 runs it, the
``fsGroup`` and supplemental groups) and exec.

Run as root by the kubelet: ``[nsenter --net=POD] unshare --mount --propagation private python podexec.py SPEC``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import sys
from pathlib import Path


def _mount(source_fd: int, target: str, readonly: bool, is_dir: bool) -> None:
    t = Path(target)
    if is_dir and not t.is_dir():  # (on a read-only mount, mkdir of what exists fails with EROFS, not EEXIST)
        t.mkdir(parents=True, exist_ok=True)
    elif not is_dir and not t.exists():
        t.parent.mkdir(parents=True, exist_ok=True)
        t.touch(exist_ok=True)
    # From a descriptor opened before any mount, so a volume at /tmp cannot hide the sources under /tmp. The
    # mount(2) call itself: mount(8) would turn /proc/self/fd/N back into a path, and resolve it anew.
    _sys_mount(f"/proc/self/fd/{source_fd}", target, MS_BIND)
    if readonly:
        _sys_mount("none", target, MS_BIND | MS_REMOUNT | MS_RDONLY)


MS_RDONLY, MS_REMOUNT, MS_BIND = 1, 32, 4096
_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def _sys_mount(source: str, target: str, flags: int) -> None:
    if _libc.mount(source.encode(), target.encode(), None, flags, None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), target)


def main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    mounts = sorted(spec["mounts"], key=lambda m: m["target"].count("/"))  # deepest last, on top
    if spec.get("hosts"):
        mounts.append({"source": spec["hosts"], "target": "/etc/hosts", "readonly": True})
    # The interpreter and the code it runs stay where they are, even under a volume's mountPath.
    keep = [p for p in spec["keep"] if any(p == m["target"] or p.startswith(m["target"].rstrip("/") + "/")
                                           for m in mounts)]
    fds = {m["source"]: os.open(m["source"], os.O_PATH) for m in mounts}
    dirs = {m["source"]: Path(m["source"]).is_dir() for m in mounts}
    kept = {p: (os.open(p, os.O_PATH), os.stat(p)) for p in keep}
    for m in mounts:
        _mount(fds[m["source"]], m["target"], m["readonly"], dirs[m["source"]])
    for p, (fd, st) in sorted(kept.items()):  # a parent before what is inside it
        now = os.stat(p) if os.path.exists(p) else None
        if now is None or (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
            _mount(fd, p, True, True)
    for fd in [*fds.values(), *(fd for fd, _st in kept.values())]:
        os.close(fd)
    os.setgroups(spec["groups"])
    os.setgid(spec["gid"])
    if spec["caps"]:
        # Only to reach an interpreter under a directory closed to other users (CI's checkout may be under
        # /root): CAP_DAC_READ_SEARCH reads and traverses, it grants no write. See docs/decisions.md §17.
        argv = ["setpriv", f"--reuid={spec['uid']}", f"--inh-caps={spec['caps']}",
                f"--ambient-caps={spec['caps']}", *spec["argv"]]
    else:
        os.setuid(spec["uid"])
        argv = spec["argv"]
    os.chdir(spec.get("workdir") or "/")
    os.execvpe(argv[0], argv, spec["env"])


if __name__ == "__main__":
    main(sys.argv[1])
