"""Repository format pieces: chunk objects, manifests, safe paths, retention, locks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hvtui.config import Retention
from hvtui.engine.chunking import HoleMap, chunks_touching
from hvtui.engine.errors import RepositoryBusy
from hvtui.engine.fsutil import hostname
from hvtui.engine.locks import lock_records
from hvtui.engine.manifest import FileEntry, Manifest, ManifestError, UnsafePathError, check_rel_path
from hvtui.engine.prune import select_retention
from hvtui.engine.repository import Repository
from hvtui.engine.restore import resolve_inside
from hvtui.engine.store import CODEC_LZ4, CODEC_RAW, HEADER, ChunkDamaged, chunk_id, compress_chunk
from hvtui.errors import RepositoryError

sys.path.insert(0, str(Path(__file__).parent))
from engine_support import flip_last_byte_of_chunk, store_chunk_again  # noqa: E402

KiB = 1024


def make_manifest(
    point_id: str = "20261124T120000Z-0000abcd", path: str = "disk.vhdx", when: datetime | None = None
) -> Manifest:
    chunks = [chunk_id(b"a" * 10), None, None, chunk_id(b"b")]
    return Manifest(
        id=point_id,
        time=when or datetime(2026, 11, 24, 12, tzinfo=UTC),
        host="lab-a",
        vm_id="vm-1",
        vm_name="web01",
        mode="full",
        chunk_size=64 * KiB,
        files=[FileEntry(path, 3 * 64 * KiB + 5, 123, "disk-1", "7", chunks)],
    )


# -- chunk objects ------------------------------------------------------------------------
def test_compressible_chunks_are_lz4_and_random_chunks_stay_raw(tmp_path: Path) -> None:
    repo = Repository.open(tmp_path / "r", create=True, chunk_size=64 * KiB, version=1)  # reads the chunk file
    text = b"hello hypervisor " * 4000
    noise = os.urandom(64 * KiB)
    for data, expected in ((text, CODEC_LZ4), (noise, CODEC_RAW)):
        codec, packed = compress_chunk(data)
        assert codec == expected
        digest = chunk_id(data)
        repo.store.put(digest, codec, len(data), packed if packed is not None else data, "0123456789abcdef")
        blob = repo.store.path(digest).read_bytes()
        assert HEADER.unpack_from(blob)[1] == expected
        assert repo.store.get(digest) == data
    assert len(repo.store.path(chunk_id(text)).read_bytes()) < len(text) // 4


def test_the_compressibility_sample_does_not_miss_mostly_compressible_chunks() -> None:
    mostly_text = os.urandom(16 * KiB) + b"hypervisor log line " * 50_000
    assert compress_chunk(mostly_text[: 1024 * KiB])[0] == CODEC_LZ4
    assert compress_chunk(os.urandom(1024 * KiB)) == (CODEC_RAW, None)


def test_a_chunk_whose_content_does_not_match_its_name_is_damaged(tmp_path: Path) -> None:
    repo = Repository.open(tmp_path / "r", create=True, chunk_size=64 * KiB, version=1)  # damages the chunk file
    data = os.urandom(1000)
    digest = chunk_id(data)
    repo.store.put(digest, CODEC_RAW, len(data), data, "0123456789abcdef")
    path = repo.store.path(digest)
    blob = bytearray(path.read_bytes())
    blob[-1] ^= 0x01
    path.write_bytes(bytes(blob))
    with pytest.raises(ChunkDamaged, match="does not match its hash"):
        repo.store.get(digest)
    path.write_bytes(bytes(blob[:-10]))
    with pytest.raises(ChunkDamaged, match="truncated"):
        repo.store.get(digest)


def test_format_2_packs_keep_the_codec_per_blob_and_name_a_blob_whose_content_does_not_match(tmp_path: Path) -> None:
    """The two tests above on the default format: each blob in a pack is the same chunk object."""
    repo = Repository.open(tmp_path / "r", create=True, chunk_size=64 * KiB)
    assert repo.version == 2
    text = b"hello hypervisor " * 4000
    noise = os.urandom(64 * KiB)
    for data, expected in ((text, CODEC_LZ4), (noise, CODEC_RAW)):
        digest = chunk_id(data)
        store_chunk_again(repo, digest, data)  # compress_chunk picks the codec, as a backup does
        blob, _pack = repo.store.read_blob(digest)  # type: ignore[union-attr]
        assert HEADER.unpack_from(blob)[1] == expected
        assert repo.store.get(digest) == data
    assert repo.store.stored_size(chunk_id(text)) < len(text) // 4
    flip_last_byte_of_chunk(repo, chunk_id(noise))
    with pytest.raises(ChunkDamaged, match="does not match its hash"):
        Repository.open(repo.root).store.get(chunk_id(noise))


# -- manifests ------------------------------------------------------------------------------
def test_manifest_round_trip_keeps_zero_runs_compact() -> None:
    manifest = make_manifest()
    data = manifest.to_bytes()
    body = json.loads(data)
    assert body["files"][0]["chunks"][1] == 2  # the two zero chunks are one run
    back = Manifest.from_bytes(data, manifest.id)
    assert back.files[0].chunks == manifest.files[0].chunks
    assert back.time == manifest.time and back.vm_name == "web01"


@pytest.mark.parametrize(
    "tamper",
    [
        lambda b: b.replace(b'"web01"', b'"web02"'),  # any change breaks the digest
        lambda b: b[: len(b) // 2],  # truncated
        lambda b: b"\x00garbage\xff" * 10,
        lambda b: b"[1, 2, 3]",
    ],
)
def test_a_damaged_manifest_is_refused_with_its_name(tamper) -> None:  # noqa: ANN001
    manifest = make_manifest()
    with pytest.raises(ManifestError, match=manifest.id) as info:
        Manifest.from_bytes(tamper(manifest.to_bytes()), manifest.id)
    assert "damaged" in str(info.value)


def test_a_manifest_from_a_newer_hvtui_is_refused_as_such() -> None:
    body = json.loads(make_manifest().to_bytes())
    body["version"] = 99
    with pytest.raises(ManifestError, match="newer"):
        Manifest.from_bytes(json.dumps(body).encode(), "p")


@pytest.mark.parametrize(
    "path",
    [
        "../evil",
        "a/../../evil",
        "/etc/passwd",
        "C:/Windows/x",
        "c:evil",
        "a\\..\\..\\evil",
        "",
        "a//b",
        "./a",
        "a/.",
        "a\nb",
    ],
)
def test_unsafe_paths_are_refused(path: str) -> None:
    with pytest.raises(UnsafePathError, match="refused unsafe file path"):
        check_rel_path(path)
    # ... also when they come in through a manifest with a valid checksum
    data = make_manifest(path=path).to_bytes()
    with pytest.raises(ManifestError, match="unsafe file path"):
        Manifest.from_bytes(data, "p")


def test_safe_paths_pass() -> None:
    assert check_rel_path("Virtual Hard Disks/web01.vhdx") == "Virtual Hard Disks/web01.vhdx"
    assert check_rel_path("a..b/c") == "a..b/c"


def test_a_symlink_inside_the_target_cannot_lead_outside(tmp_path: Path) -> None:
    target = tmp_path / "target"
    outside = tmp_path / "outside"
    target.mkdir()
    outside.mkdir()
    (target / "sub").symlink_to(outside)
    with pytest.raises(UnsafePathError, match="outside the restore target"):
        resolve_inside(target, "sub/file.vhdx")
    assert resolve_inside(target, "ok/file.vhdx") == target / "ok" / "file.vhdx"


# -- chunking --------------------------------------------------------------------------------
def test_changed_ranges_map_to_the_chunks_they_touch() -> None:
    cs = 64 * KiB
    size = 10 * cs + 100
    assert chunks_touching([(0, 1)], size, cs) == {0}
    assert chunks_touching([(cs - 1, 2)], size, cs) == {0, 1}
    assert chunks_touching([(3 * cs, cs)], size, cs) == {3}
    assert chunks_touching([(10 * cs + 50, 1000)], size, cs) == {10}  # clipped at the end
    assert chunks_touching([(size + 5, 10), (5, 0)], size, cs) == set()


def test_hole_map() -> None:
    holes = HoleMap([(100, 200), (1000, 1500)])
    assert holes.is_hole(0, 100) and holes.is_hole(200, 800) and holes.is_hole(1500, 10)
    assert not holes.is_hole(0, 101) and not holes.is_hole(150, 10) and not holes.is_hole(900, 101)
    assert not HoleMap(None).is_hole(0, 10)


# -- retention (PBS semantics) ----------------------------------------------------------------
def point_at(when: datetime, n: int) -> Manifest:
    return make_manifest(point_id=f"{when:%Y%m%dT%H%M%SZ}-{n:08x}", when=when)


def test_retention_keep_last_then_daily_considers_only_undecided_points() -> None:
    base = datetime(2026, 11, 24, 22, 0, tzinfo=UTC)
    # Two points per day for five days, newest first: day 0 at 22:00 and 10:00, ...
    points = [point_at(base - timedelta(days=d, hours=h), 2 * d + (h > 0)) for d in range(5) for h in (0, 12)]
    decisions = select_retention(points, Retention(keep_last=3, keep_daily=2, keep_weekly=0, keep_monthly=0))
    kept = [d.point for d in decisions if d.keep]
    ids = [p.id for p in points]  # newest first
    # keep_last takes the three newest (day 0 both, day 1 22:00); day 1 10:00 is not reconsidered
    # by keep_daily because day 1 already has a kept point; keep_daily then keeps day 2 and day 3.
    assert kept == [ids[0], ids[1], ids[2], ids[4], ids[6]]
    reasons = {d.point: d.reason for d in decisions}
    assert reasons[ids[4]].startswith("keep_daily")
    assert not any(d.keep for d in decisions if d.point in (ids[3], ids[5], ids[7], ids[8], ids[9]))


def test_retention_weekly_and_monthly_buckets() -> None:
    base = datetime(2026, 11, 29, 12, tzinfo=UTC)  # a Sunday
    points = [point_at(base - timedelta(days=7 * w), w) for w in range(10)]  # one per week, 10 weeks
    decisions = select_retention(points, Retention(keep_last=0, keep_daily=0, keep_weekly=2, keep_monthly=2))
    kept = {d.point for d in decisions if d.keep}
    ids = [p.id for p in points]
    # weekly: the two newest weeks; monthly: newest point of the next two months not yet covered
    # (November is covered by the weekly ones, so October's newest and September's newest).
    october = [p.id for p in points if p.time.month == 10]
    september = [p.id for p in points if p.time.month == 9]
    assert kept == {ids[0], ids[1], october[0], september[0]}


def test_retention_with_every_rule_zero_keeps_everything() -> None:
    points = [point_at(datetime(2026, 1, 1, tzinfo=UTC) + timedelta(hours=i), i) for i in range(4)]
    zero = Retention(keep_last=0, keep_hourly=0, keep_daily=0, keep_weekly=0, keep_monthly=0, keep_yearly=0)
    assert all(d.keep for d in select_retention(points, zero))


# -- repository and locks --------------------------------------------------------------------
def test_repository_refuses_foreign_and_newer_directories(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "file.txt").write_text("mine")
    with pytest.raises(RepositoryError, match="not empty and is not an hvtui repository"):
        Repository.open(foreign, create=True)
    repo = Repository.open(tmp_path / "r", create=True)
    config = json.loads((repo.root / "config.json").read_text())
    config["version"] = 7
    (repo.root / "config.json").write_text(json.dumps(config))
    with pytest.raises(RepositoryError, match="format version 7"):
        Repository.open(repo.root)
    with pytest.raises(RepositoryError, match="no backup repository"):
        Repository.open(tmp_path / "missing")


def test_exclusive_lock_waits_for_shared_and_times_out_with_the_holder_named(tmp_path: Path) -> None:
    repo = Repository.open(tmp_path / "r", create=True)
    backup_a = repo.lock("shared", "backup", "lab-a/vm-1").acquire(timeout=1)
    backup_b = repo.lock("shared", "backup", "lab-a/vm-2").acquire(timeout=1)  # shared locks coexist
    waits: list[str] = []
    with pytest.raises(RepositoryBusy, match="backup lab-a/vm-1"):
        repo.lock("exclusive", "prune").acquire(timeout=0.3, on_wait=waits.append)
    assert waits and "waiting for the repository lock" in waits[0]
    backup_a.release()
    backup_b.release()
    prune = repo.lock("exclusive", "prune").acquire(timeout=1)
    with pytest.raises(RepositoryBusy):
        repo.lock("shared", "backup", "x").acquire(timeout=0.2)
    prune.release()
    assert lock_records(repo.root) == []


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _write_record(repo: Repository, lock_id: str, kind: str, pid: int, host: str, refreshed: float) -> Path:
    path = repo.root / "locks" / f"{lock_id}.json"
    path.write_text(
        json.dumps(
            {
                "id": lock_id,
                "kind": kind,
                "operation": "backup",
                "detail": "ghost",
                "pid": pid,
                "hostname": host,
                "boot_id": None,
                "process_start": None,
                "created": refreshed,
                "refreshed": refreshed,
            }
        )
    )
    return path


def test_a_stale_lock_of_a_dead_process_is_cleared_with_its_temp_files(tmp_path: Path) -> None:
    repo = Repository.open(tmp_path / "r", create=True)
    stale = _write_record(repo, "aaaaaaaaaaaaaaaa", "exclusive", _dead_pid(), hostname(), time.time())
    leftover = repo.tmp_dir / f"{'ab' * 32}.aaaaaaaaaaaaaaaa.1234abcd.tmp"
    leftover.write_bytes(b"half a chunk")
    lock = repo.lock("exclusive", "prune").acquire(timeout=1)
    assert not stale.exists() and not leftover.exists()
    lock.release()


def test_a_live_lock_of_another_machine_blocks_until_it_goes_stale(tmp_path: Path) -> None:
    repo = Repository.open(tmp_path / "r", create=True)
    fresh = _write_record(repo, "bbbbbbbbbbbbbbbb", "shared", 1, "some-other-host", time.time())
    with pytest.raises(RepositoryBusy, match="some-other-host"):
        repo.lock("exclusive", "prune").acquire(timeout=0.3)
    assert fresh.exists()
    _write_record(repo, "bbbbbbbbbbbbbbbb", "shared", 1, "some-other-host", time.time() - 3600)
    repo.lock("exclusive", "prune").acquire(timeout=1).release()
    assert not fresh.exists()
