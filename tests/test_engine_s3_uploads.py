"""Pack uploads to a real S3 server (SeaweedFS): several at once, a bounded backlog, manifest last.

A backup hands finished packs to ``PackUploads`` (packobjects.py): up to ``UPLOAD_WORKERS``
upload at once while the backup goes on, the packs waiting are local files bounded in bytes
(the backup waits for the store instead of piling them up), and the manifest is written only
after every pack and index it needs is stored. Uploads are held back here by a wrapping
backend, so the overlap and the bound are seen, not guessed from timings.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from engine_support import running_in
from seaweed_support import ACCESS_KEY, BUCKET, SECRET_KEY

from hvtui.clock import FixedClock
from hvtui.engine import packobjects
from hvtui.engine.backends.base import Backend, BackendError, ObjectInfo, Payload
from hvtui.engine.backends.s3 import S3Backend, S3Settings
from hvtui.engine.backup import run_backup
from hvtui.engine.remote_repo import open_on_backend
from hvtui.engine.repository import Repository
from hvtui.engine.restore import restore_to_directory
from hvtui.errors import RepositoryError
from hvtui.hosts.lab import disk as vdisk
from hvtui.hosts.lab.host import LabHost

KiB = 1024
MiB = 1024 * KiB
PACK = 256 * KiB
PASS = "correct horse battery staple"
DEADLINE = 60.0  # a bound on waiting for a condition on a loaded machine, never a speed


pytestmark = pytest.mark.usefixtures("fast_kdf")  # a cheap scrypt for new key slots (conftest)


class Watched(Backend):
    """The real S3 backend, with pack puts counted (and, when ``gate`` is set, held) and LISTs counted."""

    def __init__(self, real: S3Backend) -> None:
        self.real = real
        self.where = real.where
        self.lock = threading.Condition()
        self.in_flight = 0
        self.most_in_flight = 0
        self.pack_puts = 0
        self.gate: threading.Event | None = None
        self.fail_pack_put: int | None = None  # this pack put (1-based) fails as a dead store would
        self.lists: list[str] = []
        self.pack_gets = 0
        self.pack_get_lengths: list[int | None] = []
        self.corrupt_pack_put: int | None = None  # this pack put (1-based) stores a byte flipped

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        self.lists.append(prefix)
        return self.real.list(prefix)

    def get(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        if key.startswith("packs/"):
            with self.lock:
                self.pack_gets += 1
                self.pack_get_lengths.append(length)
        return self.real.get(key, offset, length)

    def put(self, key: str, data: Payload) -> None:
        if not key.startswith("packs/"):
            return self.real.put(key, data)
        with self.lock:
            self.pack_puts += 1
            number = self.pack_puts
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            self.lock.notify_all()
        try:
            if self.gate is not None and not self.gate.wait(DEADLINE):
                raise AssertionError("the test never released the uploads")
            if number == self.fail_pack_put:
                raise BackendError(self.where, f"put {key}: the storage failed (injected)")
            if number == self.corrupt_pack_put:  # the store keeps something else than was sent
                body = bytearray(data.read())  # type: ignore[union-attr]
                body[len(body) // 3] ^= 0x01
                data = bytes(body)
            self.real.put(key, data)
        finally:
            with self.lock:
                self.in_flight -= 1
                self.lock.notify_all()

    def put_if_absent(self, key: str, data: Payload) -> None:
        self.real.put_if_absent(key, data)

    def delete(self, key: str) -> None:
        self.real.delete(key)

    def stat(self, key: str) -> ObjectInfo | None:
        return self.real.stat(key)

    def wait_for(self, condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + DEADLINE
        with self.lock:
            while not condition():
                if not self.lock.wait(max(0.0, deadline - time.monotonic())) and time.monotonic() > deadline:
                    raise AssertionError(f"waited {DEADLINE:.0f} s for {what}")


@pytest.fixture
def store(seaweed) -> Watched:
    return Watched(
        S3Backend(
            S3Settings(
                endpoint=seaweed.endpoint, bucket=BUCKET, prefix=f"up-{uuid.uuid4().hex[:8]}", region="us-east-1",
                access_key=ACCESS_KEY, secret_key=SECRET_KEY, max_attempts=2, connect_timeout=2.0, read_timeout=10.0,
            )
        )
    )


@pytest.fixture
def lab(tmp_path: Path) -> tuple[LabHost, str]:
    host = LabHost.create(tmp_path / "lab" / "lab-a", "lab-a", FixedClock())
    vm_id = host.add_vm("web01", state="Off", disk_sizes=(8 * MiB,), fsync=False)
    host.write_guest_data(vm_id, 0, 0, os.urandom(6 * MiB))  # random: about 24 packs of 256 KiB
    return host, vm_id


def open_repo(store: Watched, state: Path) -> Repository:
    repo = open_on_backend(store, state, "offsite", lambda: PASS, create=True, chunk_size=64 * KiB)
    repo.store.pack_size = PACK  # type: ignore[union-attr]  # many packs per backup
    return repo


def pack_files_waiting(state: Path) -> int:
    return sum(1 for p in (state / "tmp").iterdir() if p.is_file())


def stuck_in_submit() -> bool:
    """Some thread (the backup's publisher) is waiting for room in the upload backlog."""
    return running_in(packobjects.PackUploads.submit.__code__)


def test_packs_upload_several_at_once_within_a_bounded_backlog_and_restore_identically(
    lab: tuple[LabHost, str], store: Watched, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    host, vm_id = lab
    monkeypatch.setattr(packobjects, "UPLOAD_BACKLOG", 4 * PACK)  # three packs of a little over 256 KiB
    repo = open_repo(store, tmp_path / "state")
    store.gate = threading.Event()
    outcome: list[object] = []
    backup = threading.Thread(target=lambda: outcome.append(run_backup(repo, host, vm_id, "full")), daemon=True)
    backup.start()
    try:
        # Every upload worker holds a pack at once: the uploads overlap.
        store.wait_for(lambda: store.in_flight == packobjects.UPLOAD_WORKERS, "three pack uploads in flight at once")
        # With the store stalled the backup stops handing over packs: its publisher waits for room.
        deadline = time.monotonic() + DEADLINE
        while not stuck_in_submit():
            assert time.monotonic() < deadline, "the backlog is not bounded: the backup never waited for the store"
            assert backup.is_alive(), outcome
            time.sleep(0.01)
        uploads = repo.store.packs.uploads  # type: ignore[union-attr]
        assert uploads.waiting == 3 and uploads.waiting_bytes <= 4 * PACK
        # On disk: the 3 waiting, 1 finished and refused for now, up to 2 queued by the
        # pipeline and the one being filled; never the whole disk.
        assert pack_files_waiting(tmp_path / "state") <= 3 + 1 + 2 + 1
        assert store.real.list("points/") is not None and not list(store.real.list("points/"))  # no manifest yet
    finally:
        store.gate.set()
    backup.join(DEADLINE)
    assert not backup.is_alive() and outcome and not isinstance(outcome[0], BaseException)
    assert store.most_in_flight == packobjects.UPLOAD_WORKERS and store.pack_puts >= 20
    assert pack_files_waiting(tmp_path / "state") == 0
    # The upload threads end with the backup (a console opens repositories for years).
    assert not [t for t in threading.enumerate() if t.name.startswith("hvtui-pack-upload")]

    other = open_on_backend(store.real, tmp_path / "machine-b", "offsite", lambda: PASS)
    restore_to_directory(other, other.point_ids()[0], tmp_path / "out")
    assert vdisk.read_logical(tmp_path / "out" / "web01.vhdx", 0, 8 * MiB) == host.read_disk(vm_id, 0, 0, 8 * MiB)


def test_a_failed_pack_upload_fails_the_backup_with_no_manifest_and_the_next_backup_works(
    lab: tuple[LabHost, str], store: Watched, tmp_path: Path
) -> None:
    host, vm_id = lab
    repo = open_repo(store, tmp_path / "state")
    store.fail_pack_put = 5
    with pytest.raises(RepositoryError, match=r"the storage failed \(injected\)"):
        run_backup(repo, host, vm_id, "full")
    assert repo.point_ids() == [] and not [o.key for o in store.real.list("") if "point" in o.key]
    store.wait_for(lambda: store.in_flight == 0, "the uploads still running to end")
    assert pack_files_waiting(tmp_path / "state") == 0  # nothing left behind on this machine

    point = run_backup(repo, host, vm_id, "full").point_id  # the failure is not raised again
    other = open_on_backend(store.real, tmp_path / "machine-b", "offsite", lambda: PASS)
    assert other.point_ids() == [point]
    restore_to_directory(other, point, tmp_path / "out")
    assert vdisk.read_logical(tmp_path / "out" / "web01.vhdx", 0, 8 * MiB) == host.read_disk(vm_id, 0, 0, 8 * MiB)


def test_a_backup_or_a_copy_lists_the_packs_in_the_bucket_once_whatever_their_number(
    lab: tuple[LabHost, str], store: Watched, tmp_path: Path
) -> None:
    # Listing packs/ walks every pack object (a request per 1000 on S3): it is done once, when the
    # lock is taken (to see packs lost or left unindexed); the rest comes from the index.
    from hvtui.engine.copy import copy_points, plan_copy

    host, vm_id = lab
    repo = open_repo(store, tmp_path / "state")
    store.lists.clear()  # creating the repository looked for data in an empty bucket once: not the backup's
    run_backup(repo, host, vm_id, "full")
    assert store.lists.count("packs/") == 1 and store.pack_puts >= 20
    store.lists.clear()
    host.write_guest_data(vm_id, 0, 0, os.urandom(2 * MiB))
    run_backup(repo, host, vm_id, "incremental")
    assert store.lists.count("packs/") == 1

    local = Repository.open(tmp_path / "local", create=True, chunk_size=64 * KiB, version=2)
    for i in range(3):
        host.write_guest_data(vm_id, 0, i * MiB, os.urandom(MiB))
        run_backup(local, host, vm_id, "full" if i == 0 else "incremental")
    target = open_on_backend(store, tmp_path / "copy-state", "offsite2", lambda: PASS, create=True)
    store.lists.clear()
    puts_before, store.pack_gets = store.pack_puts, 0
    copied = copy_points(local, target, plan_copy(local, target, lambda _p: True)[0], read_back=True)
    assert len(copied.copied) == 3 and store.lists.count("packs/") <= 1
    # What arrived is read back a pack at a time (one ranged GET each here), not a GET per chunk.
    sent_packs = store.pack_puts - puts_before
    assert 0 < store.pack_gets <= sent_packs < copied.chunks_sent


def test_a_pack_that_arrives_different_from_what_a_copy_sent_fails_it_before_any_manifest(
    lab: tuple[LabHost, str], store: Watched, tmp_path: Path
) -> None:
    from hvtui.engine.copy import copy_points, plan_copy

    host, vm_id = lab
    local = Repository.open(tmp_path / "local", create=True, chunk_size=64 * KiB, version=2)
    run_backup(local, host, vm_id, "full")
    target = open_repo(store, tmp_path / "state")
    store.corrupt_pack_put = 3
    with pytest.raises(RepositoryError, match="a copied chunk arrived damaged in repository offsite"):
        copy_points(local, target, plan_copy(local, target, lambda _p: True)[0], read_back=True)
    assert target.point_ids() == [] and not list(store.real.list("points/"))


def test_get_many_reads_spans_of_neighbouring_blobs_and_names_a_damaged_one(
    lab: tuple[LabHost, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hvtui.engine import packstore
    from hvtui.engine.store import ChunkDamaged

    host, vm_id = lab
    repo = Repository.open(tmp_path / "local", create=True, chunk_size=64 * KiB, version=2)
    repo.store.pack_size = PACK  # type: ignore[union-attr]
    run_backup(repo, host, vm_id, "full")
    store = repo.store
    digests = store.iter_ids()
    reads: list[int] = []
    real_read = store.packs.read  # type: ignore[union-attr]
    monkeypatch.setattr(store.packs, "read", lambda pid, off, n: reads.append(n) or real_read(pid, off, n))
    monkeypatch.setattr(packstore, "READ_SPAN", 200 * KiB)  # about three chunks per read
    got = dict(store.get_many(list(reversed(digests))))  # type: ignore[union-attr]
    assert got == {d: store.get(d) for d in digests}
    assert max(reads[: len(reads) - len(digests)]) <= 200 * KiB and len(reads) - len(digests) < len(digests) / 2

    pack_id, offset, length = store.location(digests[0])  # type: ignore[misc]
    path = store.pack_path(pack_id)
    raw = bytearray(path.read_bytes())
    raw[offset + length // 2] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(ChunkDamaged):
        dict(store.get_many(digests))  # type: ignore[union-attr]


def test_an_upload_failure_an_earlier_operation_never_saw_does_not_fail_the_next_one(
    lab: tuple[LabHost, str], store: Watched, tmp_path: Path
) -> None:
    # An operation hands a pack over and fails on its own before waiting for it (its error is
    # what the user sees); the upload fails too. That failure was the first operation's.
    host, vm_id = lab
    repo = open_repo(store, tmp_path / "state")
    uploads = repo.store.packs.uploads  # type: ignore[union-attr]
    store.fail_pack_put = 1
    sink = repo.store.sink("earlier-owner", True)  # type: ignore[union-attr]
    sink.add(b"\x01" * 32, 0, 5, b"hello")
    batch = sink.take(force=True)
    assert batch is not None
    sink.publish(batch)  # its upload fails in the background; the operation never waits for it
    store.wait_for(lambda: store.pack_puts == 1 and store.in_flight == 0, "the failed upload to end")
    store.fail_pack_put = None
    point = run_backup(repo, host, vm_id, "full").point_id
    assert repo.point_ids() == [point] and uploads.waiting == 0


def test_a_restore_reads_each_pack_in_spans_and_a_quick_check_reads_only_headers(
    lab: tuple[LabHost, str], store: Watched, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hvtui.engine.store import HEADER
    from hvtui.engine.verify import run_verify

    host, vm_id = lab
    monkeypatch.setattr(packobjects, "READ_AHEAD", 512 * KiB)  # the chunk asked for and about 7 more
    repo = open_repo(store, tmp_path / "state")
    repo.store.pack_size = MiB  # type: ignore[union-attr]  # 16 chunks a pack
    point = run_backup(repo, host, vm_id, "full").point_id
    chunks = len(repo.store.iter_ids())
    other = open_on_backend(store, tmp_path / "machine-b", "offsite", lambda: PASS)
    store.pack_gets, store.pack_get_lengths = 0, []
    restore_to_directory(other, point, tmp_path / "out")
    assert vdisk.read_logical(tmp_path / "out" / "web01.vhdx", 0, 8 * MiB) == host.read_disk(vm_id, 0, 0, 8 * MiB)
    assert store.pack_gets < 0.4 * chunks  # chunks read in order come several to a GET
    assert max(n or 0 for n in store.pack_get_lengths) <= 512 * KiB + 65 * KiB

    assert run_verify(other).ok  # through the spans too

    third = open_on_backend(store, tmp_path / "machine-c", "offsite", lambda: PASS)
    store.pack_get_lengths = []
    assert all(third.store.check_quick(d) is None for d in third.store.iter_ids())  # type: ignore[union-attr]
    assert store.pack_get_lengths and set(store.pack_get_lengths) == {HEADER.size}  # headers only: nothing read ahead
