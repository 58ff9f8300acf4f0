"""The S3 server killed mid-upload (SIGKILL of SeaweedFS while a pack's PUT is under way, from its body's read).

A backup then fails with the backend's clear error and commits no manifest; once the server is
back the repository verifies clean and the next backup succeeds.  A copy local → S3 killed the
same way resumes without sending again what arrived; the copy back S3 → local is byte-identical.
Each test runs its own server (the session's one must not die); the restarted server keeps
its data folder and gets new ports, as a machine reconnecting would see it.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import BinaryIO

import pytest
from seaweed_support import ACCESS_KEY, BUCKET, SECRET_KEY, SeaweedServer, seaweed_server

from hvtui.clock import FixedClock
from hvtui.engine import keys
from hvtui.engine.backends.base import BackendError, Payload
from hvtui.engine.backends.s3 import S3Backend, S3Settings
from hvtui.engine.backup import run_backup
from hvtui.engine.copy import copy_points, plan_copy
from hvtui.engine.fsutil import hostname
from hvtui.engine.remote_repo import open_on_backend
from hvtui.engine.repository import Repository
from hvtui.engine.restore import restore_to_directory
from hvtui.engine.verify import run_verify
from hvtui.hosts.lab import disk as vdisk
from hvtui.hosts.lab.host import LabHost

KiB = 1024
MiB = 1024 * KiB
CS = 64 * KiB
PASS = "correct horse battery staple"


@pytest.fixture(autouse=True)
def fast_kdf(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keys, "SCRYPT_N", 1 << 12)


@pytest.fixture
def lab(tmp_path: Path) -> tuple[LabHost, str]:
    host = LabHost.create(tmp_path / "lab" / "lab-a", "lab-a", FixedClock())
    vm_id = host.add_vm("web01", state="Off", disk_sizes=(8 * MiB,), fsync=False)
    host.write_guest_data(vm_id, 0, 0, os.urandom(4 * MiB))  # 64 chunks: some 16 packs of 256 KiB
    return host, vm_id


def backend_of(server: SeaweedServer) -> S3Backend:
    return S3Backend(
        S3Settings(
            endpoint=server.endpoint, bucket=BUCKET, prefix="faults", region="us-east-1", access_key=ACCESS_KEY,
            secret_key=SECRET_KEY, max_attempts=2, connect_timeout=2.0, read_timeout=10.0,
        )
    )


def open_s3(server: SeaweedServer, folder: Path, create: bool = False) -> Repository:
    repo = open_on_backend(backend_of(server), folder, "offsite", lambda: PASS, create=create, chunk_size=CS)
    repo.store.pack_size = 256 * KiB  # type: ignore[union-attr]  # several packs per point
    return repo


class PackPuts:
    """Counts the pack objects put through a backend; ``kill_at``: SIGKILL the server once that
    many packs have arrived, during the next one's upload (``_KillingReader``)."""

    def __init__(self, backend: S3Backend, server: SeaweedServer, kill_at: int | None = None) -> None:
        self.arrived: list[str] = []
        self.bytes = 0
        self.killed = threading.Event()
        real_put = backend.put

        def put(key: str, data: Payload) -> None:
            if not key.startswith("packs/"):
                return real_put(key, data)
            if kill_at is not None and len(self.arrived) >= kill_at and not self.killed.is_set():
                data = _KillingReader(data, server, self.killed)  # type: ignore[arg-type]
            real_put(key, data)
            self.arrived.append(key)
            self.bytes += backend.stat(key).size  # type: ignore[union-attr]
            return None

        backend.put = put  # type: ignore[method-assign]


class _KillingReader:
    """A pack file whose upload kills the server on the uploader's second read of it: the PUT is
    under way (boto3 read the first block, today the whole 256 KiB part) and never acknowledged."""

    def __init__(self, inner: BinaryIO, server: SeaweedServer, killed: threading.Event) -> None:
        self._inner, self._server, self._killed, self._reads = inner, server, killed, 0

    def read(self, size: int = -1) -> bytes:
        self._reads += 1
        if self._reads == 2 and not self._killed.is_set():
            self._server.kill()
            self._killed.set()
        return self._inner.read(size)

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)


def test_a_server_killed_mid_upload_fails_the_backup_and_the_repository_stays_consistent(
    tmp_path: Path, lab: tuple[LabHost, str]
) -> None:
    host, vm_id = lab
    with seaweed_server(tmp_path / "sw") as server:
        repo = open_s3(server, tmp_path / "machine", create=True)
        puts = PackPuts(repo.backend, server, kill_at=3)  # type: ignore[arg-type]
        # The pack upload's own error, not a later failure to remove the lock record from the dead server.
        with pytest.raises(BackendError, match=r"^s3://hvtui-test/faults: put packs/.*did not answer after 2 attempts"):
            run_backup(repo, host, vm_id, "full")
        assert puts.killed.is_set() and len(puts.arrived) == 3

        server.start()  # back, on other ports: this machine reopens the repository from its working folder
        repo = open_s3(server, tmp_path / "machine")
        assert list(repo.backend.list("points/")) == [] and repo.point_ids() == []  # type: ignore[union-attr]
        assert len(list(repo.backend.list("packs/"))) >= 3  # type: ignore[union-attr]  # what arrived stays
        [left] = list(repo.backend.list("locks/"))  # type: ignore[union-attr]  # the dead server kept the record
        lines: list[str] = []
        with repo.lock("exclusive", "prune").acquire(timeout=5, on_wait=lines.append):  # not blocked by it
            pass
        assert lines == [
            f"cleared the lock of backup lab-a/{vm_id} (pid {os.getpid()} on {hostname()}) that this process could "
            "not remove when the operation ended"
        ], left
        assert run_verify(repo).ok

        point = run_backup(repo, host, vm_id, "full").point_id
        restore_to_directory(repo, point, tmp_path / "out")
        assert vdisk.read_logical(tmp_path / "out" / "web01.vhdx", 0, 8 * MiB) == host.read_disk(vm_id, 0, 0, 8 * MiB)
        report = run_verify(repo)
        assert report.ok and repo.point_ids() == [point]


def test_a_copy_to_s3_killed_mid_upload_resumes_without_resending_and_copies_back_byte_identical(
    tmp_path: Path, lab: tuple[LabHost, str]
) -> None:
    host, vm_id = lab
    local = Repository.open(tmp_path / "local", create=True, version=2, chunk_size=CS)
    point = run_backup(local, host, vm_id, "full").point_id
    original = host.read_disk(vm_id, 0, 0, 8 * MiB)
    with seaweed_server(tmp_path / "sw") as server:
        target = open_s3(server, tmp_path / "machine", create=True)
        first = PackPuts(target.backend, server, kill_at=4)  # type: ignore[arg-type]
        points, _present, _skipped = plan_copy(local, target, lambda _p: True)
        with pytest.raises(BackendError, match=r"^s3://hvtui-test/faults: put packs/.*did not answer after 2 attempts"):
            copy_points(local, target, points)
        assert first.killed.is_set() and len(first.arrived) == 4

        server.start()
        target = open_s3(server, tmp_path / "machine")
        assert target.point_ids() == []  # the manifest comes last: no point without its chunks
        arrived_packs = {key.rsplit("/", 1)[1] for key in first.arrived}
        assert target.store.packs.ids() == arrived_packs  # type: ignore[union-attr]
        target.store.refresh()
        store = target.store
        arrived_chunks = {d for d in store.iter_ids() if store.location(d)[0] in arrived_packs}  # type: ignore[index]
        assert arrived_chunks

        second = PackPuts(target.backend, server)  # type: ignore[arg-type]
        points, _present, _skipped = plan_copy(local, target, lambda _p: True)
        result = copy_points(local, target, points)
        assert result.copied == [point]
        assert result.chunks_present == len(arrived_chunks) and result.chunks_sent > 0  # only the rest was sent
        assert not {key.rsplit("/", 1)[1] for key in second.arrived} & arrived_packs
        target.store.refresh()
        for digest in arrived_chunks:  # what arrived before the kill is what the point reads now
            assert target.store.location(digest)[0] in arrived_packs  # type: ignore[index]
        assert run_verify(target).ok

        back = Repository.open(tmp_path / "back", create=True, version=2, chunk_size=CS)
        points, _present, _skipped = plan_copy(target, back, lambda _p: True)
        assert copy_points(target, back, points).copied == [point]
    restore_to_directory(back, point, tmp_path / "out")
    assert vdisk.read_logical(tmp_path / "out" / "web01.vhdx", 0, 8 * MiB) == original
    assert [m.to_bytes() for m in back.load_points()[0]] == [m.to_bytes() for m in local.load_points()[0]]
