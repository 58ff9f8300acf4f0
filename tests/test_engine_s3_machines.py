"""Two machines over one repository in a bucket (remote_repo.open_on_backend) on a real S3 server (SeaweedFS).

Each "machine" is its own working folder over the same bucket prefix: only the objects can make
them see each other's restore points and locks.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

import pytest
from seaweed_support import ACCESS_KEY, BUCKET, SECRET_KEY

from hvtui.backups.points import PointIndex
from hvtui.clock import FixedClock
from hvtui.engine import keys
from hvtui.engine.backends.s3 import S3Backend, S3Settings
from hvtui.engine.backup import run_backup
from hvtui.engine.locks import clear_stale_locks, lock_records
from hvtui.engine.remote_repo import open_on_backend
from hvtui.engine.repository import Repository
from hvtui.hosts.lab.host import LabHost

MiB = 1024 * 1024
PASS = "correct horse battery staple"
GHOST = "bbbbbbbbbbbbbbbb"


@pytest.fixture(autouse=True)
def fast_kdf(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keys, "SCRYPT_N", 1 << 12)


@pytest.fixture
def bucket(seaweed) -> S3Backend:
    return S3Backend(
        S3Settings(
            endpoint=seaweed.endpoint, bucket=BUCKET, prefix=f"machines-{uuid.uuid4().hex[:8]}", region="us-east-1",
            access_key=ACCESS_KEY, secret_key=SECRET_KEY, max_attempts=3, connect_timeout=2.0, read_timeout=10.0,
        )
    )


@pytest.fixture
def lab(tmp_path: Path) -> tuple[LabHost, str]:
    host = LabHost.create(tmp_path / "lab" / "lab-a", "lab-a", FixedClock())
    vm_id = host.add_vm("web01", state="Off", disk_sizes=(4 * MiB,), fsync=False)
    host.write_guest_data(vm_id, 0, 0, os.urandom(MiB))
    return host, vm_id


def machine(bucket: S3Backend, folder: Path, create: bool = False, passphrase: str = PASS) -> Repository:
    return open_on_backend(bucket, folder, "offsite", lambda: passphrase, create=create, chunk_size=64 * 1024)


def test_a_point_committed_on_one_machine_shows_in_the_listing_of_the_other(
    bucket: S3Backend, tmp_path: Path, lab: tuple[LabHost, str]
) -> None:
    host, vm_id = lab
    first = machine(bucket, tmp_path / "a", create=True)
    second = machine(bucket, tmp_path / "b")
    first_index, second_index = PointIndex(), PointIndex()
    assert second_index.points_of(second) == ([], [])  # listed (and cached) before the other machine's backup
    assert first_index.points_of(first) == ([], [])

    point = run_backup(first, host, vm_id, "full").point_id
    infos, damaged = second_index.points_of(second)
    assert [i.summary.id for i in infos] == [point] and damaged == []
    assert infos[0].summary.vm_name == "web01"

    second.delete_point(point)  # and a point removed there is gone from the first machine's listing
    assert first_index.points_of(first) == ([], [])


def ghost_record(bucket: S3Backend) -> None:
    """A backup's record from a machine that died two hours ago (its heartbeat expired)."""
    record = {
        "id": GHOST, "kind": "shared", "operation": "backup", "detail": "hv01/web01", "pid": 4242,
        "hostname": "far-away", "boot_id": None, "process_start": None,
        "created": time.time() - 7200, "refreshed": time.time() - 7200, "expires": time.time() - 5400,
    }  # fmt: skip
    bucket.put(f"locks/{GHOST}.json", json.dumps(record).encode())


def test_the_bucket_locks_are_listed_and_a_stale_one_cleared_from_another_machine(
    bucket: S3Backend, tmp_path: Path
) -> None:
    first = machine(bucket, tmp_path / "a", create=True)
    second = machine(bucket, tmp_path / "b")
    with first.lock("shared", "verify").acquire(timeout=5) as held:
        ghost_record(bucket)  # after the acquire, which would have cleared it
        listed = {r.id: r for r in lock_records(second.root, second.lock_store())}
        assert set(listed) == {GHOST, held.id}
        assert listed[held.id].operation == "verify" and listed[GHOST].hostname == "far-away"

        assert clear_stale_locks(second.lock_store()) == [
            "cleared the stale lock of backup hv01/web01 (pid 4242 on far-away, taken 2 h ago; "
            "expired: its heartbeat stopped 2 h ago)"
        ]
        assert [o.key for o in bucket.list("locks/")] == [f"locks/{held.id}.json"]  # the live holder's stays
        assert clear_stale_locks(second.lock_store()) == []
    assert lock_records(second.root, second.lock_store()) == []
