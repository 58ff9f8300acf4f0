"""Two machines over one repository in a bucket (remote_repo.open_on_backend) on a real S3 server (SeaweedFS).

Each "machine" is its own working folder over the same bucket prefix: only the objects can make
them see each other's restore points, locks and key slots.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

import pytest
from s3_bucket_support import fresh_bucket
from seaweed_support import ACCESS_KEY, BUCKET, SECRET_KEY, FaultProxy, s3_error

from hvtui.backups.points import PointIndex
from hvtui.clock import FixedClock
from hvtui.engine import keys
from hvtui.engine.backends.base import BackendError
from hvtui.engine.backends.s3 import S3Backend, S3Settings
from hvtui.engine.backup import run_backup
from hvtui.engine.copy import copy_points, plan_copy
from hvtui.engine.locks import clear_stale_locks, lock_records
from hvtui.engine.migrate import plan_migration, run_migration
from hvtui.engine.remote_repo import open_on_backend
from hvtui.engine.repair import plan_config_repair
from hvtui.engine.repo_keys import add_key_slot, remove_key_slot
from hvtui.engine.repository import Repository
from hvtui.errors import RepositoryError
from hvtui.hosts.lab.host import LabHost

MiB = 1024 * 1024
PASS = "correct horse battery staple"
GHOST = "bbbbbbbbbbbbbbbb"


pytestmark = pytest.mark.usefixtures("fast_kdf")  # a cheap scrypt for new key slots (conftest)


@pytest.fixture
def bucket(seaweed) -> S3Backend:
    return fresh_bucket(seaweed, "machines")


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


def test_a_key_slot_added_or_removed_on_one_machine_counts_on_the_other(bucket: S3Backend, tmp_path: Path) -> None:
    first = machine(bucket, tmp_path / "a", create=True)
    [original] = [s.slot for s in keys.list_slots(first.root, first.id)]

    added = add_key_slot(first, "the new passphrase")
    assert sorted(o.key for o in bucket.list("keys/")) == sorted([f"keys/{original}.json", f"keys/{added}.json"])
    other = machine(bucket, tmp_path / "b", passphrase="the new passphrase")  # a machine that never saw it
    assert other.id == first.id

    remove_key_slot(other, original)
    assert [o.key for o in bucket.list("keys/")] == [f"keys/{added}.json"]
    with pytest.raises(keys.WrongPassphrase, match="wrong passphrase for repository offsite"):
        machine(bucket, tmp_path / "a")  # the first machine's folder still had the old slot: refetched, gone

    with pytest.raises(RepositoryError, match=f"key slot {added} is the repository's last usable key"):
        remove_key_slot(other, added)
    assert [o.key for o in bucket.list("keys/")] == [f"keys/{added}.json"]
    assert machine(bucket, tmp_path / "c", passphrase="the new passphrase").id == first.id


def test_a_slot_the_bucket_refused_is_not_kept_on_this_machine(seaweed, tmp_path: Path) -> None:
    proxy = FaultProxy(seaweed.endpoint)
    try:
        bucket = S3Backend(
            S3Settings(
                endpoint=proxy.endpoint, bucket=BUCKET, prefix=f"machines-{uuid.uuid4().hex[:8]}", region="us-east-1",
                access_key=ACCESS_KEY, secret_key=SECRET_KEY, max_attempts=1, connect_timeout=2.0, read_timeout=10.0,
            )
        )
        first = machine(bucket, tmp_path / "a", create=True)
        before = sorted(p.name for p in (first.root / "keys").iterdir())
        proxy.fault = lambda method, path: s3_error(403, "QuotaExceeded", "injected") if method == "PUT" and "/keys/" in path else None
        with pytest.raises(BackendError, match="full or the quota is reached"):
            add_key_slot(first, "the new passphrase")
        proxy.fault = lambda _method, _path: None
        assert sorted(p.name for p in (first.root / "keys").iterdir()) == before  # no slot only this machine knows
        assert [o.key for o in bucket.list("keys/")] == [f"keys/{before[0]}"]
        with pytest.raises(keys.WrongPassphrase):
            machine(bucket, tmp_path / "a", passphrase="the new passphrase")
    finally:
        proxy.close()


def test_removing_a_slot_judges_by_the_bucket_not_a_stale_local_copy(bucket: S3Backend, tmp_path: Path) -> None:
    first = machine(bucket, tmp_path / "a", create=True)
    [original] = [s.slot for s in keys.list_slots(first.root, first.id)]
    added = add_key_slot(first, "the new passphrase")
    second = machine(bucket, tmp_path / "b")  # holds both slots locally
    remove_key_slot(first, original)
    # The second machine's copy still lists two slots; the bucket has one: removing it is refused.
    with pytest.raises(RepositoryError, match="last usable key"):
        remove_key_slot(second, added)
    assert [o.key for o in bucket.list("keys/")] == [f"keys/{added}.json"]


def test_migrate_has_nothing_to_do_and_repair_is_refused_on_a_bucket(
    bucket: S3Backend, tmp_path: Path, lab: tuple[LabHost, str]
) -> None:
    host, vm_id = lab
    repo = machine(bucket, tmp_path / "a", create=True)
    point = run_backup(repo, host, vm_id, "full").point_id
    plan = plan_migration(repo)
    assert plan.state == "done" and "already format 2; nothing to do" in plan.describe()
    assert run_migration(repo).to_dict()["switched"] is False
    assert repo.point_ids() == [point]

    with pytest.raises(RepositoryError, match=r"cannot rebuild config.json of a repository on object storage \(s3://"):
        plan_config_repair(repo.root, bucket)

    config = bucket.get("config.json")
    bucket.delete("config.json")  # damaged: the objects are there, config.json is not
    for create in (False, True):  # never taken for an empty bucket, never a second repository over the data
        with pytest.raises(RepositoryError, match=r"is damaged: its config.json is missing, but it holds restore "
                                                  r"points, packs, index files; .* put back the copy from this "
                                                  r"machine's copy .*config.json \(nothing was changed\)"):
            machine(bucket, tmp_path / "a", create=create)
    assert bucket.stat("config.json") is None
    bucket.put("config.json", config)
    assert machine(bucket, tmp_path / "b").point_ids() == [point]


def test_a_point_another_machine_copied_meanwhile_is_present_not_an_error(
    bucket: S3Backend, tmp_path: Path, lab: tuple[LabHost, str]
) -> None:
    host, vm_id = lab
    local = Repository.open(tmp_path / "local", create=True, version=2, chunk_size=64 * 1024)
    point = run_backup(local, host, vm_id, "full").point_id
    first = machine(bucket, tmp_path / "a", create=True)
    second = machine(bucket, tmp_path / "b")
    planned, _present, _skipped = plan_copy(local, second, lambda _p: True)  # planned before the other copy ran
    assert copy_points(local, first, plan_copy(local, first, lambda _p: True)[0]).copied == [point]

    result = copy_points(local, second, planned)
    assert result.present == [point] and result.copied == [] and result.chunks_sent == 0
    assert second.point_ids() == [point]
