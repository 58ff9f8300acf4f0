"""A whole repository in a bucket (remote_repo.open_on_backend) on a real S3 server (SeaweedFS).

Created on one machine, opened on another that has nothing but the bucket and the
passphrase: config.json and the key slots are objects too, encryption is mandatory.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from s3_bucket_support import fresh_bucket

from hvtui.clock import FixedClock
from hvtui.engine import keys
from hvtui.engine.backends.s3 import S3Backend
from hvtui.engine.backup import run_backup
from hvtui.engine.remote_repo import open_on_backend
from hvtui.engine.restore import restore_to_directory
from hvtui.engine.verify import run_verify
from hvtui.errors import RepositoryError
from hvtui.hosts.lab import disk as vdisk
from hvtui.hosts.lab.host import LabHost

MiB = 1024 * 1024
PASS = "correct horse battery staple"


pytestmark = pytest.mark.usefixtures("fast_kdf")  # a cheap scrypt for new key slots (conftest)


@pytest.fixture
def bucket(seaweed) -> S3Backend:
    return fresh_bucket(seaweed, "whole")


def test_created_on_one_machine_restored_on_another_from_the_bucket_alone(bucket: S3Backend, tmp_path: Path) -> None:
    host = LabHost.create(tmp_path / "lab" / "lab-a", "lab-a", FixedClock())
    vm_id = host.add_vm("web01", state="Off", disk_sizes=(8 * MiB,), fsync=False)
    host.write_guest_data(vm_id, 0, 0, os.urandom(2 * MiB))
    repo = open_on_backend(bucket, tmp_path / "machine-a", "offsite", lambda: PASS, create=True, chunk_size=64 * 1024)
    point = run_backup(repo, host, vm_id, "full").point_id
    keys_in_bucket = [o.key for o in bucket.list("keys/")]
    assert bucket.stat("config.json") is not None and len(keys_in_bucket) == 1

    other = open_on_backend(bucket, tmp_path / "machine-b", "offsite", lambda: PASS)
    assert other.id == repo.id and other.point_ids() == [point]
    restore_to_directory(other, point, tmp_path / "out")
    assert vdisk.read_logical(tmp_path / "out" / "web01.vhdx", 0, 8 * MiB) == host.read_disk(vm_id, 0, 0, 8 * MiB)
    assert run_verify(other).ok

    with pytest.raises(keys.WrongPassphrase, match="wrong passphrase for repository offsite"):
        open_on_backend(bucket, tmp_path / "machine-c", "offsite", lambda: "not it")


def test_encryption_is_mandatory_and_a_missing_repository_is_named(bucket: S3Backend, tmp_path: Path) -> None:
    with pytest.raises(RepositoryError, match="on object storage, where encryption is mandatory"):
        open_on_backend(bucket, tmp_path / "state", "offsite", None, create=True)
    with pytest.raises(RepositoryError, match=r"no backup repository at s3://"):
        open_on_backend(bucket, tmp_path / "state", "offsite", lambda: PASS)
    assert list(bucket.list("")) == []


def test_a_second_creator_is_refused_and_the_first_repository_stands(
    bucket: S3Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = open_on_backend(bucket, tmp_path / "a", "offsite", lambda: PASS, create=True)
    config, slots = bucket.get("config.json"), [o.key for o in bucket.list("keys/")]
    real_stat = bucket.stat  # another machine looked just before the first one published its config
    monkeypatch.setattr(bucket, "stat", lambda key: None if key == "config.json" else real_stat(key))
    with pytest.raises(RepositoryError, match="another process created a repository at .* at the same moment"):
        open_on_backend(bucket, tmp_path / "b", "offsite", lambda: "other", create=True)
    monkeypatch.undo()
    assert bucket.get("config.json") == config
    assert [o.key for o in bucket.list("keys/")] == slots  # the loser's key slot was taken back
    assert open_on_backend(bucket, tmp_path / "c", "offsite", lambda: PASS).id == first.id
