"""A copy's per-chunk work on a small pool of threads, against a real S3 server (SeaweedFS).

Each chunk is read, opened, decompressed and hashed to check it, given the target's id and
sealed under the target's key on one of ``copy.COPY_WORKERS`` threads; the chunks still go
into the target's packs in the manifest's order and the manifest comes last. The overlap is
seen (two chunk reads meet at a barrier, which only two reads at once can pass), never timed.
"""

from __future__ import annotations

import errno
import os
import threading
import time
import uuid
from pathlib import Path

import pytest
from engine_support import running_in
from seaweed_support import ACCESS_KEY, BUCKET, SECRET_KEY

from hvtui.clock import FixedClock
from hvtui.engine import copy as copy_mod
from hvtui.engine.backends.s3 import S3Backend, S3Settings
from hvtui.engine.backup import run_backup
from hvtui.engine.copy import copy_points, plan_copy
from hvtui.engine.remote_repo import open_on_backend
from hvtui.engine.repository import Repository
from hvtui.engine.restore import restore_to_directory
from hvtui.errors import RepositoryError
from hvtui.hosts.lab import disk as vdisk
from hvtui.hosts.lab.host import LabHost

KiB = 1024
MiB = 1024 * KiB
CS = 64 * KiB
PASS = "correct horse battery staple"
DEADLINE = 60.0  # a bound on waiting for a condition on a loaded machine, never a speed


pytestmark = pytest.mark.usefixtures("fast_kdf")  # a cheap scrypt for new key slots (conftest)


@pytest.fixture
def bucket(seaweed) -> S3Backend:
    return S3Backend(
        S3Settings(
            endpoint=seaweed.endpoint, bucket=BUCKET, prefix=f"cw-{uuid.uuid4().hex[:8]}", region="us-east-1",
            access_key=ACCESS_KEY, secret_key=SECRET_KEY, max_attempts=2, connect_timeout=2.0, read_timeout=10.0,
        )
    )


@pytest.fixture
def local(tmp_path: Path) -> tuple[Repository, LabHost, str]:
    """A local format-2 repository with a full and an incremental point of a lab VM."""
    host = LabHost.create(tmp_path / "lab" / "lab-a", "lab-a", FixedClock())
    vm_id = host.add_vm("web01", state="Off", disk_sizes=(8 * MiB,), fsync=False)
    host.write_guest_data(vm_id, 0, 0, os.urandom(4 * MiB))  # 64 chunks, some 16 packs of 256 KiB
    repo = Repository.open(tmp_path / "local", create=True, version=2, chunk_size=CS)
    run_backup(repo, host, vm_id, "full")
    host.write_guest_data(vm_id, 0, 5 * MiB, os.urandom(MiB))
    run_backup(repo, host, vm_id, "incremental")
    return repo, host, vm_id


def open_target(bucket: S3Backend, state: Path) -> Repository:
    repo = open_on_backend(bucket, state, "offsite", lambda: PASS, create=True, chunk_size=CS)
    repo.store.pack_size = 256 * KiB  # type: ignore[union-attr]  # several packs per point
    return repo


def copy_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("hvtui-copy")]


def copy_all(source: Repository, target: Repository) -> copy_mod.CopyResult:
    return copy_points(source, target, plan_copy(source, target, lambda _p: True)[0])


def check_copied_back(target: Repository, local: Repository, host: LabHost, vm_id: str, out: Path) -> None:
    """The bucket's points copied back into a plain folder: the same manifests, the same disk."""
    back = Repository.open(out / "back", create=True, version=2, chunk_size=CS)
    assert len(copy_all(target, back).copied) == 2
    assert [m.to_bytes() for m in back.load_points()[0]] == [m.to_bytes() for m in local.load_points()[0]]
    newest = next(m.id for m in back.load_points()[0] if m.parent is not None)  # the incremental (one clock time)
    restore_to_directory(back, newest, out / "out")
    assert vdisk.read_logical(out / "out" / "web01.vhdx", 0, 8 * MiB) == host.read_disk(vm_id, 0, 0, 8 * MiB)


def test_a_copy_works_on_several_chunks_at_once_and_round_trips_byte_identical(
    local: tuple[Repository, LabHost, str], bucket: S3Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source, host, vm_id = local
    real_read = source.store.read_blob
    meet = threading.Barrier(2, timeout=DEADLINE)
    lock = threading.Lock()
    seen = {"calls": 0, "active": 0, "most": 0}
    readers: set[str] = set()

    def read_blob(digest: bytes) -> tuple[bytes, str]:
        with lock:
            number = seen["calls"]
            seen["calls"] += 1
            seen["active"] += 1
            seen["most"] = max(seen["most"], seen["active"])
            readers.add(threading.current_thread().name)
        try:
            if number < 2:  # the first two chunks wait for each other: only reads at once get past
                meet.wait()
            return real_read(digest)
        finally:
            with lock:
                seen["active"] -= 1

    monkeypatch.setattr(source.store, "read_blob", read_blob)
    target = open_target(bucket, tmp_path / "state")
    result = copy_all(source, target)
    monkeypatch.undo()

    assert len(result.copied) == 2 and result.reids and result.chunks_sent >= 80
    assert seen["most"] >= 2 and len(readers) >= 2 and all(r.startswith("hvtui-copy") for r in readers)
    assert not copy_threads()  # the workers end with the copy
    check_copied_back(target, source, host, vm_id, tmp_path)


def test_a_worker_failure_fails_the_copy_with_no_manifest_and_the_next_copy_works(
    local: tuple[Repository, LabHost, str], bucket: S3Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source, host, vm_id = local
    packs = source.store.packs  # type: ignore[union-attr]
    real_read = packs.read
    reads = {"n": 0}
    lock = threading.Lock()

    def failing_read(pack_id: str, offset: int, length: int) -> bytes:
        with lock:
            reads["n"] += 1
            number = reads["n"]
        if number == 30:  # the source disk fails under one worker, mid-copy
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real_read(pack_id, offset, length)

    monkeypatch.setattr(packs, "read", failing_read)
    target = open_target(bucket, tmp_path / "state")
    with pytest.raises(RepositoryError, match=r"cannot be copied: .*unreadable in pack .*Input/output error"):
        copy_all(source, target)
    monkeypatch.undo()
    assert reads["n"] >= 30
    assert target.point_ids() == [] and not list(bucket.list("points/"))  # manifest last: none written
    assert not copy_threads()  # no worker outlives the failed copy

    result = copy_all(source, target)  # the same process goes on: the failure is not raised again
    assert len(result.copied) == 2
    assert not [t for t in threading.enumerate() if t.name.startswith("hvtui-pack-upload")]
    check_copied_back(target, source, host, vm_id, tmp_path)


def copy_thread_waits_for_a_chunk(thread: threading.Thread) -> bool:
    """The copy's own thread is waiting for the result of the chunk it writes next."""
    return running_in(copy_mod._PointCopier._finish.__code__, [thread.ident or 0])


def test_a_copy_works_at_most_its_window_of_chunks_ahead_whatever_the_point_size(
    local: tuple[Repository, LabHost, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source, host, vm_id = local
    monkeypatch.setattr(copy_mod, "COPY_AHEAD_BYTES", 5 * CS)
    window = copy_mod.copy_ahead(CS)
    assert window == 5
    real_read = source.store.read_blob
    first_held = threading.Event()
    release = threading.Event()
    cond = threading.Condition()
    seen = {"calls": 0, "active": 0}

    def read_blob(digest: bytes) -> tuple[bytes, str]:
        with cond:
            seen["calls"] += 1
            seen["active"] += 1
            number = seen["calls"]
        try:
            if number == 1:  # the chunk the copy writes first is held: nothing can be written
                first_held.set()
                assert release.wait(DEADLINE), "the test never released the first chunk"
            return real_read(digest)
        finally:
            with cond:
                seen["active"] -= 1
                cond.notify_all()

    monkeypatch.setattr(source.store, "read_blob", read_blob)
    target = Repository.open(tmp_path / "target", create=True, version=2, chunk_size=CS, encrypt=True, passphrase=lambda: PASS)
    outcome: list[object] = []
    copier = threading.Thread(target=lambda: outcome.append(copy_all(source, target)), daemon=True)
    copier.start()
    try:
        assert first_held.wait(DEADLINE)
        deadline = time.monotonic() + DEADLINE
        with cond:  # every other chunk read so far is done, and the copy waits for the held one
            while not (seen["active"] == 1 and seen["calls"] >= window and copy_thread_waits_for_a_chunk(copier)):
                assert time.monotonic() < deadline, f"waited {DEADLINE:.0f} s for the copy to wait: {seen}"
                cond.wait(0.05)  # the copy's thread blocking notifies nobody: look again now and then
            assert seen["calls"] == window  # not the point's 80-odd chunks: memory stays bounded
    finally:
        release.set()
    copier.join(DEADLINE)
    assert not copier.is_alive() and outcome and isinstance(outcome[0], copy_mod.CopyResult), outcome
    assert len(outcome[0].copied) == 2 and seen["calls"] > 2 * window
