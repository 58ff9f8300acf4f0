"""A format-2 repository whose pack and index files are objects on a real S3 server (SeaweedFS).

The first step of issue 21 §1: ``PackStore`` reads and writes packs through a storage seam
(packobjects.py); here packs and index files live in a bucket (``BackendPacks`` over ``S3Backend``) while
the rest of the repository (config, keys, point index, manifests) is still a local folder.  Backup,
restore, verify and prune run unchanged on top and must give the same results as on disk.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import threading
from pathlib import Path

import pytest
from s3_bucket_support import fresh_bucket

from hvtui.clock import FixedClock
from hvtui.config import Retention
from hvtui.engine.backends.s3 import S3Backend
from hvtui.engine.backup import run_backup
from hvtui.engine.errors import RepositoryDamaged
from hvtui.engine.packobjects import pack_key
from hvtui.engine.prune import run_prune
from hvtui.engine.repository import Repository
from hvtui.engine.restore import restore_to_directory
from hvtui.engine.verify import run_verify
from hvtui.errors import RepositoryError
from hvtui.hosts.lab import disk as vdisk
from hvtui.hosts.lab.host import LabHost

sys.path.insert(0, str(Path(__file__).parent))

KiB = 1024
MiB = 1024 * KiB
CS = 64 * KiB
PASS = "correct horse battery staple"
MARKER = b"HVTUI-GUEST-MARKER-s3-91c2"


pytestmark = pytest.mark.usefixtures("fast_kdf")  # a cheap scrypt for new key slots (conftest)


@pytest.fixture
def bucket(seaweed) -> S3Backend:
    """A fresh prefix of the test bucket: one repository's objects."""
    return fresh_bucket(seaweed, "repo")


@pytest.fixture
def lab(tmp_path: Path) -> tuple[LabHost, str]:
    host = LabHost.create(tmp_path / "lab" / "lab-a", "lab-a", FixedClock())
    vm_id = host.add_vm("web01", state="Off", disk_sizes=(8 * MiB,), fsync=False)
    for i in range(6):  # the guest writes a marker beside random data (stored raw, so readable if plain)
        host.write_guest_data(vm_id, 0, i * MiB, MARKER * 100 + os.urandom(200 * KiB))
    return host, vm_id


def open_s3(root: Path, bucket: S3Backend, create: bool = True) -> Repository:
    repo = Repository.open(
        root, create=create, chunk_size=CS, encrypt=True, passphrase=lambda: PASS, backend=bucket
    )
    repo.store.pack_size = 256 * KiB  # type: ignore[union-attr]  # several packs per backup
    return repo


def disk_bytes(host: LabHost, vm_id: str) -> bytes:
    return host.read_disk(vm_id, 0, 0, 8 * MiB)


def restored_disk(repo: Repository, point: str, out: Path) -> bytes:
    restore_to_directory(repo, point, out)
    return vdisk.read_logical(out / "web01.vhdx", 0, 8 * MiB)


def pack_objects(bucket: S3Backend) -> dict[str, int]:
    return {o.key: o.size for o in bucket.list("packs/")}


def index_objects(bucket: S3Backend) -> list[str]:
    return [o.key for o in bucket.list("index/") if o.key != "index/points.json"]


def test_full_and_incremental_round_trip_with_packs_on_s3_and_nothing_plain_in_the_bucket(
    lab: tuple[LabHost, str], bucket: S3Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    host, vm_id = lab
    repo = open_s3(tmp_path / "repo", bucket)
    full = run_backup(repo, host, vm_id, "full").point_id
    first_disk = disk_bytes(host, vm_id)
    after_full = pack_objects(bucket)
    assert len(after_full) > 1
    assert not [p for p in (repo.root / "packs").rglob("*") if p.is_file()]  # no pack left on the local disk
    assert not [p for p in (repo.root / "tmp").rglob("*") if p.is_file()]  # nor its temporary file
    assert not list((repo.root / "index").iterdir())  # index files and the point index are objects
    assert bucket.stat("index/points.json") is not None
    assert len(index_objects(bucket)) == 1
    assert not list((repo.root / "points").iterdir())  # the manifest is an object too
    assert [o.key for o in bucket.list("points/")] == [f"points/{full}.json"]
    host.write_guest_data(vm_id, 0, 3 * MiB, MARKER + os.urandom(300 * KiB))
    incremental = run_backup(repo, host, vm_id, "incremental").point_id
    after_incremental = pack_objects(bucket)
    assert set(after_full) < set(after_incremental)  # only new packs: the old ones are reused
    for info in bucket.list(""):  # packs, index files, the point index, manifests: all sealed
        content = bucket.get(info.key)
        assert MARKER not in content and b"web01" not in content and b"lab-a" not in content, info.key

    # A fresh process (no index cache in memory) reads the chunks back with ranged GETs.
    fresh = open_s3(repo.root, bucket, create=False)
    summaries, damaged = fresh.point_summaries()
    assert [s.id for s in summaries] == [full, incremental] and not damaged
    assert fresh.load_point(incremental).parent == full
    lister = open_s3(repo.root, bucket, create=False)

    def no_manifest_read(point_id: str) -> None:
        raise AssertionError(f"manifest {point_id} read: the point index object was not used")

    monkeypatch.setattr(lister, "_load_for_listing", no_manifest_read)
    assert [s.id for s in lister.point_summaries()[0]] == [full, incremental]
    assert restored_disk(fresh, full, tmp_path / "out-full") == first_disk
    assert restored_disk(fresh, incremental, tmp_path / "out-inc") == disk_bytes(host, vm_id)
    report = run_verify(fresh)  # full read: every blob fetched, opened, re-hashed
    assert report.ok and report.chunks_read == report.chunks_checked > 0
    assert not report.pack_problems


def test_packs_without_an_index_are_found_by_their_trailers_in_the_bucket(
    lab: tuple[LabHost, str], bucket: S3Backend, tmp_path: Path
) -> None:
    host, vm_id = lab
    repo = open_s3(tmp_path / "repo", bucket)
    point = run_backup(repo, host, vm_id, "full").point_id
    for key in index_objects(bucket):
        bucket.delete(key)
    fresh = Repository.open(
        repo.root, passphrase=lambda: PASS, backend=bucket
    )
    fresh.store.index.cache_dir = tmp_path / "no-cache"  # type: ignore[union-attr]  # another machine
    state = fresh.store.index.refresh()  # type: ignore[union-attr]
    assert set(state.unindexed) == {k.rsplit("/", 1)[1] for k in pack_objects(bucket)}
    assert restored_disk(fresh, point, tmp_path / "out") == disk_bytes(host, vm_id)


def test_a_tampered_pack_object_is_named_by_verify_and_refused_by_restore(
    lab: tuple[LabHost, str], bucket: S3Backend, tmp_path: Path
) -> None:
    host, vm_id = lab
    repo = open_s3(tmp_path / "repo", bucket)
    point = run_backup(repo, host, vm_id, "full").point_id
    digest = min(repo.load_point(point).chunk_ids())
    pack_id, offset, length = repo.store.location(digest)  # type: ignore[union-attr,misc]
    data = bytearray(bucket.get(pack_key(pack_id)))
    data[offset + length // 2] ^= 0x01
    bucket.put(pack_key(pack_id), bytes(data))
    fresh = open_s3(repo.root, bucket, create=False)
    with pytest.raises(RepositoryDamaged, match=rf"{digest.hex()[:16]}.*does not authenticate.*pack {pack_id[:16]}"):
        restore_to_directory(fresh, point, tmp_path / "out")
    report = run_verify(fresh, repair=False)
    assert [p.chunk for p in report.chunk_problems] == [digest.hex()]

    # Repaired: the blob leaves the index, its pack object stays as evidence, prune counts it.
    report = run_verify(fresh)
    assert report.quarantined == [digest.hex()]
    result = run_prune(open_s3(repo.root, bucket, create=False), Retention(keep_last=5))
    assert (result.quarantined_packs, result.quarantined_bytes) == (1, len(data))
    assert bucket.stat(pack_key(pack_id)) is not None


def test_a_lost_pack_object_is_reported_missing(lab: tuple[LabHost, str], bucket: S3Backend, tmp_path: Path) -> None:
    host, vm_id = lab
    repo = open_s3(tmp_path / "repo", bucket)
    point = run_backup(repo, host, vm_id, "full").point_id
    digest = min(repo.load_point(point).chunk_ids())
    pack_id = repo.store.location(digest)[0]  # type: ignore[union-attr,index]
    bucket.delete(pack_key(pack_id))
    report = run_verify(open_s3(repo.root, bucket, create=False), repair=False)
    assert not report.ok
    assert digest.hex() in {p.chunk for p in report.chunk_problems}


def test_prune_repacks_and_deletes_pack_objects_and_the_kept_point_restores(
    lab: tuple[LabHost, str], bucket: S3Backend, tmp_path: Path
) -> None:
    host, vm_id = lab
    repo = open_s3(tmp_path / "repo", bucket)
    run_backup(repo, host, vm_id, "full")
    for i in range(6):  # most of the data changes: the first point's packs become mostly dead
        host.write_guest_data(vm_id, 0, i * MiB, os.urandom(200 * KiB))
    kept = run_backup(repo, host, vm_id, "incremental").point_id
    expected = disk_bytes(host, vm_id)
    before = pack_objects(bucket)
    result = run_prune(repo, Retention(keep_last=1, keep_daily=0, keep_weekly=0, keep_monthly=0))
    assert result.points_removed == 1 and result.chunks_removed > 0
    after = pack_objects(bucket)
    gone = set(before) - set(after)
    assert gone and set(after) - set(before), "dead packs deleted and a partly live one rewritten"
    assert result.bytes_freed == sum(before[k] for k in gone)
    assert len(index_objects(bucket)) == 1  # prune's index supersedes and replaces the older ones
    assert [o.key for o in bucket.list("points/")] == [f"points/{kept}.json"]
    fresh = open_s3(repo.root, bucket, create=False)
    report = run_verify(fresh)
    assert report.ok and report.chunks_read == report.chunks_checked > 0
    assert restored_disk(fresh, kept, tmp_path / "out") == expected


def test_two_writers_racing_for_one_manifest_one_wins_the_other_is_a_clear_error(
    lab: tuple[LabHost, str], bucket: S3Backend, tmp_path: Path
) -> None:
    host, vm_id = lab
    repo = open_s3(tmp_path / "repo", bucket)
    point = run_backup(repo, host, vm_id, "full").point_id
    manifest = repo.load_point(point)
    original = bucket.get(f"points/{point}.json")
    with pytest.raises(RepositoryError, match=rf"restore point {point} already exists .*another backup wrote it first"):
        open_s3(repo.root, bucket, create=False).commit_point(dataclasses.replace(manifest, stats={"writer": 2}))
    assert bucket.get(f"points/{point}.json") == original  # the first writer's point is untouched

    racing = dataclasses.replace(manifest, id=point[:-8] + "0badc0de")
    writers = [open_s3(repo.root, bucket, create=False) for _ in range(4)]
    outcomes: list[str] = []

    def commit(writer: Repository) -> None:
        try:
            writer.commit_point(racing)
            outcomes.append("won")
        except RepositoryError as err:
            outcomes.append(str(err))

    threads = [threading.Thread(target=commit, args=(w,)) for w in writers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("won") == 1, outcomes
    assert all("already exists" in o for o in outcomes if o != "won")
    assert open_s3(repo.root, bucket, create=False).load_point(racing.id).chunk_ids() == manifest.chunk_ids()
