"""Format 2's point index: listing points reads one small object, not every manifest.

Manifest reads are counted by wrapping ``Manifest.from_bytes`` (every manifest read goes
through it); each listing uses a fresh ``Repository`` object, as another process would.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from hvtui.backups.points import PointIndex
from hvtui.config import Retention
from hvtui.engine.backup import run_backup
from hvtui.engine.manifest import Manifest
from hvtui.engine.pointindex import PointSummary
from hvtui.engine.prune import run_prune
from hvtui.engine.repository import Repository

sys.path.insert(0, str(Path(__file__).parent))
from engine_support import DirHost  # noqa: E402

MiB = 1024 * 1024
CS = 64 * 1024
DISK = "Virtual Hard Disks/web01.vhdx"


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    original = Manifest.from_bytes.__func__  # type: ignore[attr-defined]

    def counting(cls: type[Manifest], data: bytes, name: str) -> Manifest:
        seen.append(name)
        return original(cls, data, name)

    monkeypatch.setattr(Manifest, "from_bytes", classmethod(counting))
    return seen


def backed_up(tmp_path: Path, points: int, version: int = 2) -> tuple[Repository, DirHost, list[str]]:
    host = DirHost(tmp_path / "host")
    for vm in ("vm1", "vm2"):
        host.add_vm(vm, f"web-{vm}")
        host.create_disk(vm, DISK, 2 * MiB, seed=len(vm), data_mib=1)
    repo = Repository.open(tmp_path / "repo", create=True, chunk_size=CS, version=version)
    ids = []
    for n in range(points):
        vm = ("vm1", "vm2")[n % 2]
        host.write(vm, DISK, (n * 7919 * 64) % (2 * MiB - 100), os.urandom(100))
        ids.append(run_backup(repo, host, vm, "incremental").point_id)
    return repo, host, ids


def summaries_from_manifests(repo: Repository) -> list[PointSummary]:
    good, _bad = repo.load_points()
    return sorted((PointSummary.of(m) for m in good), key=lambda s: (s.time, s.committed_ns, s.id))


@pytest.mark.parametrize("points", [5, 60])
def test_listing_reads_no_manifest_whatever_the_number_of_points(tmp_path: Path, reads: list[str], points: int) -> None:
    repo, _host, ids = backed_up(tmp_path, points)
    expected = summaries_from_manifests(Repository.open(repo.root))
    reads.clear()
    listed, bad = Repository.open(repo.root).point_summaries()
    assert reads == [] and bad == []  # the commits kept the index up to date
    assert listed == expected and [s.id for s in listed] == ids
    # The service's listing (what `hvtui points` and the console show) goes the same way.
    infos, damaged = PointIndex().points_of(Repository.open(repo.root, name="main"))
    assert reads == [] and damaged == []
    assert [(i.summary.id, i.summary.vm_name, i.files, i.parent) for i in infos] == [
        (s.id, s.vm_name, s.files, s.parent) for s in expected
    ]


@pytest.mark.parametrize("damage", ["missing", "garbage", "altered"])
def test_a_missing_or_damaged_point_index_is_rebuilt_from_the_manifests(
    tmp_path: Path, reads: list[str], damage: str
) -> None:
    repo, _host, ids = backed_up(tmp_path, 6)
    index = repo.root / "index" / "points.json"
    if damage == "missing":
        index.unlink()
    elif damage == "garbage":
        index.write_bytes(b"\x00 not json")
    else:
        index.write_text(index.read_text().replace("web-vm1", "evil-vm1"))  # digest no longer matches
    reads.clear()
    listed, _ = Repository.open(repo.root).point_summaries()
    assert sorted(reads) == sorted(ids) and [s.id for s in listed] == ids
    assert {s.vm_name for s in listed} == {"web-vm1", "web-vm2"}
    reads.clear()
    assert Repository.open(repo.root).point_summaries()[0] == listed and reads == []  # rewritten


def test_a_stale_index_reads_only_the_manifests_it_lacks_and_drops_removed_points(
    tmp_path: Path, reads: list[str]
) -> None:
    repo, host, ids = backed_up(tmp_path, 4)
    index = repo.root / "index" / "points.json"
    before = index.read_bytes()
    newer = run_backup(repo, host, "vm1", "incremental").point_id  # as another process would, then ...
    index.write_bytes(before)  # ... its index update lost to a concurrent writer
    repo.point_path(ids[0]).unlink()  # and a point removed behind the index's back
    repo.point_path(ids[1]).write_bytes(b"{}")  # and a manifest damaged
    reads.clear()
    listed, bad = Repository.open(repo.root).point_summaries()
    assert sorted(reads) == sorted([newer, ids[1]])
    assert [s.id for s in listed] == [*ids[2:], newer]
    assert [e.point for e in bad] == [ids[1]]  # a damaged manifest is never silently left out
    reads.clear()
    listed_again, bad_again = Repository.open(repo.root).point_summaries()
    assert listed_again == listed and reads == [ids[1]] and [e.point for e in bad_again] == [ids[1]]


def test_prune_keeps_the_point_index_in_step(tmp_path: Path, reads: list[str]) -> None:
    repo, _host, ids = backed_up(tmp_path, 6)
    run_prune(repo, Retention(keep_last=1, keep_daily=0, keep_weekly=0, keep_monthly=0))
    reads.clear()
    listed, _ = Repository.open(repo.root).point_summaries()
    assert reads == [] and [s.id for s in listed] == [ids[-2], ids[-1]]  # the newest of each VM


def test_a_v1_repository_gets_no_point_index(tmp_path: Path) -> None:
    repo, _host, ids = backed_up(tmp_path, 3, version=1)
    assert not (repo.root / "index").exists()
    assert [s.id for s in repo.point_summaries()[0]] == ids
