"""Start one container's process for the process kubelet, inside the private mount namespace ``unshare``
made for it (and, for serving pods, the pod's network namespace the kubelet entered): bind each volume at
its real ``mountPath`` (read-only where the pod says so), give the pod its own /etc/hosts (the cluster's
service names), then become the pod's user (``runAsUser``, GID 0 as OpenShift's restricted-v2 runs it, the
``fsGroup`` and supplemental groups) and exec.

Run as root by the kubelet: ``[nsenter --net=POD] unshare --mount --propagation private python podexec.py SPEC``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def _mount(source_fd: int, target: str, readonly: bool, is_dir: bool) -> None:
    t = Path(target)
    if is_dir:
        t.mkdir(parents=True, exist_ok=True)
    else:
        t.parent.mkdir(parents=True, exist_ok=True)
        t.touch(exist_ok=True)
    # From a descriptor opened before any mount: a volume at /tmp must not hide the sources under /tmp.
    src = f"/proc/self/fd/{source_fd}"
    subprocess.run(["mount", "--bind", src, target], check=True, pass_fds=(source_fd,))
    if readonly:
        subprocess.run(["mount", "-o", "remount,bind,ro", target], check=True)


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
    for p, (fd, st) in kept.items():
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
