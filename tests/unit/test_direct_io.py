"""Direct writes: which filesystems get them, and that every odd write still lands where it belongs."""

from __future__ import annotations

import ctypes
import hashlib
import os
from pathlib import Path

import pytest

from modelpvc.core.digests import Expectation
from modelpvc.core.models import ObjectInfo
from modelpvc.store.volume import direct_io
from modelpvc.store.volume.destination import Destination
from modelpvc.transfer.filejob import FileJob

# The shape of /proc/self/mountinfo (proc(5)): fields, " - ", fs type, source, options. A PVC's mount on a
# node, an NFS (RWX) volume, a path with a space (escaped \040) and a mount over a mount.
MOUNTINFO = """\
22 1 253:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
30 22 0:27 / /dev/shm rw,nosuid,nodev shared:2 - tmpfs tmpfs rw
41 22 259:3 / /var/lib/kubelet/pods/abc/volumes/kubernetes.io~csi/pvc-1/mount rw shared:9 - xfs /dev/nvme1n1 rw
42 22 0:51 / /mnt/models rw,relatime shared:10 - nfs4 10.0.0.5:/export rw
43 22 0:52 / /mnt/my\\040models rw shared:11 - btrfs /dev/sdb rw
44 41 0:60 / /var/lib/kubelet/pods/abc/volumes/kubernetes.io~csi/pvc-1/mount/cache rw - fuse.s3fs s3fs rw
"""


def test_the_deepest_mount_decides(tmp_path: Path) -> None:
    info = tmp_path / "mountinfo"
    info.write_text(MOUNTINFO)
    pvc = "/var/lib/kubelet/pods/abc/volumes/kubernetes.io~csi/pvc-1/mount"
    assert direct_io.filesystem_type(Path(pvc + "/llama"), info) == "xfs"
    assert direct_io.filesystem_type(Path(pvc + "/cache/x"), info) == "fuse.s3fs"
    assert direct_io.filesystem_type(Path("/mnt/models/llama"), info) == "nfs4"
    assert direct_io.filesystem_type(Path("/mnt/modelsx"), info) == "ext4"  # a prefix is not a parent
    assert direct_io.filesystem_type(Path("/mnt/my models/a"), info) == "btrfs"
    assert direct_io.filesystem_type(Path("/dev/shm/x"), info) == "tmpfs"
    assert direct_io.filesystem_type(Path("/x"), tmp_path / "missing") is None


def _job(root: Path, size: int) -> FileJob:
    obj = ObjectInfo(key="m/w.bin", rel="w.bin", size=size, etag="x")
    job = FileJob(Destination(root), obj, Expectation(kind="size"), 1 << 20, direct=True)
    job.open()
    return job


def _mapping_of(buf: memoryview) -> dict[str, str]:
    """The /proc/self/smaps fields (proc(5)) of the mapping that holds ``buf``."""
    address = ctypes.addressof(ctypes.c_char.from_buffer(buf))
    fields: dict[str, str] = {}
    inside = False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()[0]
        if "-" in head and ":" not in head:
            low, high = (int(x, 16) for x in head.split("-"))
            inside = low <= address < high
            if inside:
                fields["perms"] = line.split()[1]
        elif inside:
            fields[head.rstrip(":")] = line.partition(":")[2].strip()
    return fields


def test_worker_buffers_are_private_memory_that_takes_huge_pages() -> None:
    # Shared anonymous memory (mmap's default) is shmem, which gets no transparent huge pages: every
    # byte copied in from a socket, pinned for a direct write and read by MD5 then costs 4 KiB entries.
    buf = direct_io.aligned_buffer(4 << 20)
    buf[:] = b"\1" * len(buf)
    mapping = _mapping_of(buf)
    assert mapping["perms"] == "rw-p"  # private, not shared
    thp = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    assert mapping["THPeligible"] == ("0" if "[never]" in thp else "1")
    assert "hg" in mapping["VmFlags"].split() or "[always]" in thp  # madvised where THP is opt-in


def test_aligned_unaligned_and_misplaced_buffers_all_land(tmp_path: Path) -> None:
    size = 9 * (1 << 20) + 12345  # above the small-file bound; an odd tail
    data = os.urandom(size)
    job = _job(tmp_path, size)
    direct = job.dfd is not None  # ext4/xfs/btrfs take O_DIRECT; some tmpfs do not
    assert direct or not direct_io.direct_io_suits(str(tmp_path))
    buf = direct_io.aligned_buffer(1 << 20)
    for off in range(0, 4 << 20, 1 << 20):  # aligned offset, length and address: the direct path
        buf[:] = data[off:off + (1 << 20)]
        job.write(off, off, buf)
    wrote_direct = job.wrote_direct
    # An unaligned offset and length go through the page cache on the same file.
    job.write(4 << 20, 4 << 20, memoryview(data[4 << 20:(4 << 20) + 777]))
    job.write(4 << 20, (4 << 20) + 777, memoryview(data[(4 << 20) + 777:5 << 20]))
    # An aligned offset and length from a buffer at an odd address: the kernel refuses O_DIRECT (EINVAL)
    # and the file continues buffered.
    odd = bytearray(b"\0" + data[5 << 20:8 << 20])
    job.write(5 << 20, 5 << 20, memoryview(odd)[1:])
    assert job.dfd is None  # stopped using it (closed with the file: another worker might be writing)
    job.write(8 << 20, 8 << 20, memoryview(data[8 << 20:]))
    final = job.publish()
    assert final.size == size
    assert hashlib.sha256((tmp_path / "w.bin").read_bytes()).digest() == hashlib.sha256(data).digest()
    assert wrote_direct == direct  # where the filesystem takes O_DIRECT, the aligned writes used it
    assert job.dfd is None and job.fd is None


def test_small_files_and_unsuitable_filesystems_stay_buffered(tmp_path: Path) -> None:
    small = _job(tmp_path, 1 << 20)
    assert small.dfd is None  # small files: one syncfs covers them, a direct write would only add latency
    small.discard()
    shm = Path("/dev/shm")
    if shm.is_dir() and direct_io.filesystem_type(shm) == "tmpfs":
        assert not direct_io.direct_io_suits(str(shm))
    assert not direct_io.direct_io_suits("/proc")


def test_write_behind_writes_in_order_reports_what_landed_and_hands_errors_to_the_worker(tmp_path: Path) -> None:
    """The ring of store.direct_io.WriteBehind with a real file: bytes land where submitted, ``safe`` never
    claims a byte still in flight, a writer's error reaches the worker once, and an abandoned range's error
    does not leak into the next."""
    import threading

    path = tmp_path / "f.bin"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    gate = threading.Event()
    seen: list[int] = []

    def write(data: memoryview, offset: int) -> None:
        gate.wait(5)
        if offset == 3 << 16:
            raise OSError(28, "No space left on device")
        os.pwrite(fd, data, offset)
        seen.append(offset)

    wb = direct_io.WriteBehind(chunk=1 << 16)
    try:
        chunks = [os.urandom(1 << 16) for _ in range(3)]
        for i, c in enumerate(chunks):
            view = wb.next(1 << 20)
            assert len(view) == 1 << 16  # at most the ring's buffer
            view[:] = c
            wb.submit(write, view, i << 16)
        assert wb.safe(3 << 16) == 0  # the writer is held: nothing has landed
        gate.set()
        wb.drain()
        assert wb.safe(3 << 16) == 3 << 16 and seen == [0, 1 << 16, 2 << 16]
        assert os.pread(fd, 3 << 16, 0) == b"".join(chunks)
        # A failing write: the worker hears of it at its next buffer (or drain), and only once.
        view = wb.next(1 << 16)
        wb.submit(write, view, 3 << 16)
        with pytest.raises(OSError, match="No space"):
            wb.drain()
        wb.drain()
        view = wb.next(1 << 16)
        wb.submit(write, view, 3 << 16)
        wb.drain(raise_error=False)  # the range is abandoned: its error is not the next range's
        view = wb.next(1 << 16)
        view[:] = chunks[0]
        wb.submit(write, view, 4 << 16)
        wb.drain()
        assert os.pread(fd, 1 << 16, 4 << 16) == chunks[0]
    finally:
        wb.close()
        os.close(fd)


def test_a_range_completes_only_after_its_writes_landed_and_never_after_a_failed_one(tmp_path: Path) -> None:
    """``then`` is how a worker moves on without draining: the callback runs once the bytes before it are
    on the file, and after a failed write it gets the error, also when the worker has already heard of it
    (a range whose bytes did not land must never be journalled as written)."""
    import threading

    path = tmp_path / "f.bin"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    gate = threading.Event()
    fail_at = {5 << 16}
    outcomes: list[tuple[str, bytes | None, BaseException | None]] = []

    def write(data: memoryview, offset: int) -> None:
        gate.wait(5)
        if offset in fail_at:
            raise OSError(28, "No space left on device")
        os.pwrite(fd, data, offset)

    def after(name: str, upto: int) -> direct_io.AfterCall:
        def call(error: BaseException | None) -> None:
            outcomes.append((name, os.pread(fd, upto, 0) if error is None else None, error))
        return call

    wb = direct_io.WriteBehind(chunk=1 << 16)
    try:
        chunks = [os.urandom(1 << 16) for _ in range(8)]

        def put(i: int) -> None:
            view = wb.next(1 << 16)
            view[:] = chunks[i]
            wb.submit(write, view, i << 16)

        put(0)
        put(1)
        wb.then(after("first range", 2 << 16))
        assert outcomes == []  # the writer is held: the range has not landed
        gate.set()
        put(2)  # the worker goes on with its next range meanwhile
        wb.then(after("second range", 3 << 16))
        wb.drain()
        assert outcomes == [("first range", b"".join(chunks[:2]), None),
                            ("second range", b"".join(chunks[:3]), None)]
        outcomes.clear()
        put(5)  # fails
        wb.then(after("failed range", 6 << 16))
        with pytest.raises(OSError, match="No space"):
            wb.drain()  # the worker hears of it ...
        put(6)
        wb.then(after("range after the failure", 7 << 16))
        wb.drain()
        assert [(n, e is not None) for n, _, e in outcomes] == [("failed range", True),
                                                                ("range after the failure", True)]
        assert os.pread(fd, 1 << 16, 6 << 16) != chunks[6]  # ... and nothing after the failure was written
        outcomes.clear()
        wb.drain(raise_error=False)  # abandoned: what follows is a new start
        put(6)
        wb.then(after("new start", 7 << 16))
        wb.drain()
        assert outcomes[0][0] == "new start" and outcomes[0][2] is None
        assert os.pread(fd, 1 << 16, 6 << 16) == chunks[6]
    finally:
        wb.close()
        os.close(fd)


def test_ring_memory_stays_bounded_on_many_cpus() -> None:
    assert direct_io.chunk_for(4) == direct_io.CHUNK
    assert direct_io.chunk_for(64) == 1 << 20  # 64 workers x 3 buffers x 1 MiB
    for workers in (1, 4, 8, 16):
        assert workers * (direct_io.WRITERS + 2) * direct_io.chunk_for(workers) <= direct_io.RINGS_MEMORY


class _TwoBuffers:
    """A lender (direct_io.Lender) of two buffers; the order it gets them back in."""

    def __init__(self) -> None:
        import threading

        self.free = [direct_io.aligned_buffer(1 << 16) for _ in range(2)]
        self.mine = {id(b.obj) for b in self.free}
        self.back: list[memoryview] = []
        self.lock = threading.Lock()

    def lend(self) -> memoryview | None:
        with self.lock:
            return self.free.pop() if self.free else None

    def given_back(self, buf: memoryview) -> None:
        with self.lock:
            self.back.append(buf)
            self.free.append(buf)


def test_a_lenders_buffers_are_filled_first_and_each_goes_back_to_it_once_written(tmp_path: Path) -> None:
    """What transfer.md5_pool lends to a worker's ring: received into, written from, then given back (never
    to the ring); when it has none, the ring's own; a lent buffer left over from a range goes back too."""
    import threading

    path = tmp_path / "f.bin"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    gate = threading.Event()
    order: list[str] = []
    lender = _TwoBuffers()

    def write(data: memoryview, offset: int) -> None:
        gate.wait(5)
        os.pwrite(fd, data, offset)
        order.append(f"wrote {offset >> 16}")

    wb = direct_io.WriteBehind(chunk=1 << 16)
    try:
        chunks = [os.urandom(1 << 16) for _ in range(6)]
        wb.lender = lender
        views = []
        for i in range(3):
            view = wb.next(1 << 16)
            view[:] = chunks[i]
            views.append(view)
            wb.submit(write, view, i << 16)
        assert [id(v.obj) in lender.mine for v in views] == [True, True, False]  # lent, lent, the ring's
        assert lender.back == []  # held by the writer until written
        gate.set()
        wb.drain()
        assert os.pread(fd, 3 << 16, 0) == b"".join(chunks[:3])
        assert [id(b.obj) for b in lender.back] == [id(v.obj) for v in views[:2]]  # each once, after its write
        view = wb.next(1 << 16)  # filled and not submitted (written elsewhere): stays the ring's current
        assert id(view.obj) in lender.mine
        wb.lender = None  # the next range's file borrows nothing: the lent buffer goes back, unwritten
        view = wb.next(1 << 16)
        assert id(view.obj) not in lender.mine and len(lender.back) == 3
        view[:] = chunks[3]
        wb.submit(write, view, 3 << 16)
        wb.lender = lender
        view = wb.next(1 << 16)  # lent again; closing the ring gives it back
    finally:
        wb.close()
        os.close(fd)
    assert len(lender.back) == 4 and len(lender.free) == 2
    assert path.read_bytes()[:4 << 16] == b"".join(chunks[:4])


def test_a_ring_that_needs_one_buffer_at_a_time_fills_the_same_one(tmp_path: Path) -> None:
    """Its free buffers are taken last in, first out: a worker whose ranges mostly go into a lender's buffers
    (or that waits for each write) touches the pages of one ring buffer, not of all three."""
    path = tmp_path / "f.bin"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    wb = direct_io.WriteBehind(chunk=1 << 16)
    used = set()
    try:
        chunks = [os.urandom(1 << 16) for _ in range(4)]
        for i, c in enumerate(chunks):
            view = wb.next(1 << 16)
            used.add(id(view.obj))
            view[:] = c
            wb.submit(lambda data, offset: os.pwrite(fd, data, offset) and None, view, i << 16)
            wb.drain()
    finally:
        wb.close()
        os.close(fd)
    assert len(used) == 1 and path.read_bytes() == b"".join(chunks)
