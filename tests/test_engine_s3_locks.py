"""Repository locks as objects on a real S3 server (SeaweedFS): lock_records.BackendRecords.

A repository whose objects live in a bucket locks with records alone (flock cannot reach an
object store): ``locks/<id>.json`` objects created with put_if_absent, a heartbeat, an expiry.
Two "machines" here are two local folders (each with the repository's config and keys) over
one bucket prefix: only the objects can make them see each other.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import pytest
from s3_bucket_support import fresh_bucket

from hvtui.engine.backends.s3 import S3Backend
from hvtui.engine.errors import RepositoryBusy
from hvtui.engine.lock_records import BackendRecords
from hvtui.engine.locks import RepositoryLock
from hvtui.engine.repository import Repository

sys.path.insert(0, str(Path(__file__).parent))
from test_jobs import _wait_for  # noqa: E402

PASS = "correct horse battery staple"
GHOST = "bbbbbbbbbbbbbbbb"


pytestmark = pytest.mark.usefixtures("fast_kdf")  # a cheap scrypt for new key slots (conftest)


@pytest.fixture
def bucket(seaweed) -> S3Backend:
    return fresh_bucket(seaweed, "locks")


def two_machines(tmp_path: Path, bucket: S3Backend) -> tuple[Repository, Repository]:
    first = Repository.open(tmp_path / "a", create=True, encrypt=True, passphrase=lambda: PASS, backend=bucket)
    shutil.copytree(first.root, tmp_path / "b")
    second = Repository.open(tmp_path / "b", passphrase=lambda: PASS, backend=bucket)
    return first, second


def ghost(bucket: S3Backend, **fields: object) -> None:
    """A record of a backup on another machine (no pid check can tell whether it lives)."""
    record = {
        "id": GHOST, "kind": "exclusive", "operation": "backup", "detail": "hv01/web01", "pid": 4242,
        "hostname": "far-away", "boot_id": None, "process_start": None,
        "created": time.time() - 7200, "refreshed": time.time() - 7200, "expires": time.time() - 5400,
    }  # fmt: skip
    record.update(fields)
    bucket.put(f"locks/{GHOST}.json", json.dumps(record).encode())


def test_an_exclusive_lock_on_one_machine_blocks_the_other_through_the_bucket(tmp_path: Path, bucket: S3Backend) -> None:
    first, second = two_machines(tmp_path, bucket)
    with first.lock("exclusive", "prune").acquire(timeout=2) as held:
        assert [o.key for o in bucket.list("locks/")] == [f"locks/{held.id}.json"]
        assert not list((first.root / "locks").iterdir())  # no local record: the object is the lock
        with pytest.raises(RepositoryBusy, match=r"busy: prune .*\(pid \d+ on "):
            second.lock("shared", "restore", reading=True).acquire(timeout=0.5)
    assert list(bucket.list("locks/")) == []
    with second.lock("shared", "restore").acquire(timeout=2), first.lock("shared", "verify").acquire(timeout=2):
        assert len(list(bucket.list("locks/"))) == 2  # shared holders coexist


def test_an_expired_record_object_is_cleared_and_a_live_one_blocks(tmp_path: Path, bucket: S3Backend) -> None:
    first, _second = two_machines(tmp_path, bucket)
    ghost(bucket, expires=time.time() + 3600)
    with pytest.raises(RepositoryBusy, match=r"backup hv01/web01 \(pid 4242 on far-away"):
        first.lock("shared", "verify").acquire(timeout=0.5)
    ghost(bucket)
    lines: list[str] = []
    first.lock("shared", "verify").acquire(timeout=2, on_wait=lines.append).release()
    assert lines == [
        "cleared the stale lock of backup hv01/web01 (pid 4242 on far-away, taken 2 h ago; "
        "expired: its heartbeat stopped 2 h ago)"
    ]
    assert list(bucket.list("locks/")) == []


def test_a_damaged_record_object_is_stale_and_creation_is_conditional(tmp_path: Path, bucket: S3Backend) -> None:
    records = BackendRecords(bucket)
    bucket.put(f"locks/{GHOST}.json", b"{not json")
    assert records.read(GHOST).problem == "unreadable: not valid JSON"  # type: ignore[union-attr]
    with pytest.raises(FileExistsError):
        records.create(GHOST, {"id": GHOST})
    assert records.delete(GHOST) is True and records.delete(GHOST) is False
    assert records.read(GHOST) is None


def test_the_heartbeat_refreshes_the_record_object_while_held(tmp_path: Path, bucket: S3Backend) -> None:
    root = tmp_path / "repo"
    for sub in ("locks", "tmp"):
        (root / sub).mkdir(parents=True)
    records = BackendRecords(bucket)
    lock = RepositoryLock(root, "exclusive", "backup", "", False, use_flock=False, records=records, heartbeat=0.05, ttl=30)
    with lock.acquire(timeout=2):
        first = records.read(lock.id)
        assert first is not None and first.expires == pytest.approx(first.refreshed + 30)
        _wait_for(lambda: records.read(lock.id).refreshed > first.refreshed)  # type: ignore[union-attr]
        later = records.read(lock.id)
        assert later is not None and later.created == first.created
        assert later.expires == pytest.approx(later.refreshed + 30)
    assert records.ids() == []
