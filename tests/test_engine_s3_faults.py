"""The S3 server killed mid-upload (SIGKILL of SeaweedFS with a pack's PUT body half received).

A backup then fails with the backend's clear error and commits no manifest; once the server is
back the repository verifies clean and the next backup succeeds.  A copy local → S3 killed the
same way resumes without sending again what arrived; the copy back S3 → local is byte-identical.
Each test runs its own server (the session's one must not die); the restarted server keeps
its data folder and gets new ports, as a machine reconnecting would see it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from seaweed_support import ACCESS_KEY, BUCKET, SECRET_KEY, SeaweedServer, seaweed_server

from hvtui.clock import FixedClock
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


pytestmark = pytest.mark.usefixtures("fast_kdf")  # a cheap scrypt for new key slots (conftest)


@pytest.fixture
def lab(tmp_path: Path) -> tuple[LabHost, str]:
    host = LabHost.create(tmp_path / "lab" / "lab-a", "lab-a", FixedClock())
    vm_id = host.add_vm("web01", state="Off", disk_sizes=(8 * MiB,), fsync=False)
    host.write_guest_data(vm_id, 0, 0, os.urandom(4 * MiB))  # 64 chunks: some 16 packs of 256 KiB
    return host, vm_id


def backend_of(endpoint: str) -> S3Backend:
    return S3Backend(
        S3Settings(
            endpoint=endpoint, bucket=BUCKET, prefix="faults", region="us-east-1", access_key=ACCESS_KEY,
            secret_key=SECRET_KEY, max_attempts=2, connect_timeout=2.0, read_timeout=10.0,
        )
    )


def open_s3(endpoint: str, folder: Path, create: bool = False) -> Repository:
    repo = open_on_backend(backend_of(endpoint), folder, "offsite", lambda: PASS, create=create, chunk_size=CS)
    repo.store.pack_size = 256 * KiB  # type: ignore[union-attr]  # several packs per point
    return repo


class PackPuts:
    """Counts the pack objects put through a backend (the ones the server acknowledged)."""

    def __init__(self, backend: S3Backend) -> None:
        self.arrived: list[str] = []
        self.bytes = 0
        real_put = backend.put

        def put(key: str, data: Payload) -> None:
            # The size from what was sent, not a stat of the server: with uploads in parallel, the
            # server may be killed (for another upload) between this put's answer and such a stat.
            size = len(data) if isinstance(data, bytes) else os.fstat(data.fileno()).st_size
            real_put(key, data)
            if key.startswith("packs/"):
                self.arrived.append(key)
                self.bytes += size

        backend.put = put  # type: ignore[method-assign]

class KillingRelay:
    """A TCP relay in front of the server that SIGKILLs it once ``after`` bytes of a pack's PUT
    (counted from its request line) went through: the server dies with a pack body half received."""

    MARKER = b"/packs/"

    def __init__(self, server: SeaweedServer, after: int = 64 * KiB) -> None:
        self.server, self.after = server, after
        # The first pack PUT that starts once this says yes is cut (earlier ones go through whole,
        # even when uploads run in parallel).
        self.ready: Callable[[], bool] = lambda: True
        self.killed = threading.Event()
        self.upstream = server.endpoint.removeprefix("http://").split(":")
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection((self.upstream[0], int(self.upstream[1])), timeout=5)
        except OSError:
            client.close()  # the server is dead: the client sees the connection dropped
            return
        threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()
        self._pipe(client, upstream, True)

    def _pipe(self, source: socket.socket, sink: socket.socket, requests: bool) -> None:
        seen = -1  # bytes since a pack PUT's request line (-1: none seen yet)
        try:
            while data := source.recv(16 * KiB):
                if requests and not self.killed.is_set():
                    if seen < 0 and b"PUT " in data and self.MARKER in data and self.ready():
                        seen = len(data) - data.index(b"PUT ")
                    elif seen >= 0:
                        seen += len(data)
                    if seen >= self.after:
                        sink.sendall(data)
                        self.server.kill()
                        self.killed.set()
                        break
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def close(self) -> None:
        self._listener.close()


def test_a_server_killed_mid_upload_fails_the_backup_and_the_repository_stays_consistent(
    tmp_path: Path, lab: tuple[LabHost, str]
) -> None:
    host, vm_id = lab
    with seaweed_server(tmp_path / "sw") as server:
        relay = KillingRelay(server)
        repo = open_s3(relay.endpoint, tmp_path / "machine", create=True)
        puts = PackPuts(repo.backend)  # type: ignore[arg-type]
        relay.ready = lambda: len(puts.arrived) >= 3
        # The pack upload's own error, not a later failure to remove the lock record from the dead server.
        with pytest.raises(BackendError, match=r"^s3://hvtui-test/faults: put packs/.*did not answer after 2 attempts"):
            run_backup(repo, host, vm_id, "full")
        assert relay.killed.is_set() and len(puts.arrived) >= 3
        relay.close()

        server.start()  # back, on other ports: this machine reopens the repository from its working folder
        repo = open_s3(server.endpoint, tmp_path / "machine")
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
        relay = KillingRelay(server)
        target = open_s3(relay.endpoint, tmp_path / "machine", create=True)
        first = PackPuts(target.backend)  # type: ignore[arg-type]
        relay.ready = lambda: len(first.arrived) >= 4
        points, _present, _skipped = plan_copy(local, target, lambda _p: True)
        with pytest.raises(BackendError, match=r"^s3://hvtui-test/faults: put packs/.*did not answer after 2 attempts"):
            copy_points(local, target, points)
        assert relay.killed.is_set() and len(first.arrived) >= 4
        relay.close()

        server.start()
        target = open_s3(server.endpoint, tmp_path / "machine")
        assert target.point_ids() == []  # the manifest comes last: no point without its chunks
        arrived_packs = target.store.packs.ids()  # type: ignore[union-attr]  # what the server kept
        assert {key.rsplit("/", 1)[1] for key in first.arrived} <= arrived_packs
        target.store.refresh()
        store = target.store
        arrived_chunks = {d for d in store.iter_ids() if store.location(d)[0] in arrived_packs}  # type: ignore[index]
        assert arrived_chunks

        second = PackPuts(target.backend)  # type: ignore[arg-type]
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
