"""A repository written by someone else: every field read from it is checked like user input.

Forged manifests here carry a correct digest (the digest is plain SHA-256, so anyone who can
write ``points/`` can make one), so only the field checks stand between them and the engine.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from hvtui.engine.backup import run_backup
from hvtui.engine.chunking import MAX_POINT_CHUNKS
from hvtui.engine.errors import RepositoryDamaged
from hvtui.engine.manifest import FileEntry, Manifest, ManifestError, body_digest
from hvtui.engine.plan import plan_files
from hvtui.engine.repo_config import DEFAULT_VERSION
from hvtui.engine.repository import Repository
from hvtui.engine.restore import restore_to_directory
from hvtui.engine.store import chunk_id
from hvtui.engine.verify import run_verify
from hvtui.errors import RepositoryError
from hvtui.hosts.base import SourceFile

sys.path.insert(0, str(Path(__file__).parent))
from engine_support import DirHost, read_tree  # noqa: E402

KiB = 1024
MiB = 1024 * KiB
CS = 64 * KiB
DISK = "Virtual Hard Disks/web01.vhdx"
POINT = "20261124T120000Z-0000abcd"


@pytest.fixture
def backed_up(tmp_path: Path, request: pytest.FixtureRequest) -> tuple[Repository, DirHost, list[str]]:
    """Two points of one VM; the repository's format is the default unless a test asks for
    another through ``indirect`` parametrization."""
    host = DirHost(tmp_path / "host")
    host.add_vm("vm1", "web01")
    host.create_disk("vm1", DISK, 4 * MiB, seed=3, data_mib=2)
    version = getattr(request, "param", DEFAULT_VERSION)
    repo = Repository.open(tmp_path / "repo", create=True, chunk_size=CS, version=version)
    first = run_backup(repo, host, "vm1", "full").point_id
    host.write("vm1", DISK, 0, os.urandom(3000))
    second = run_backup(repo, host, "vm1", "incremental").point_id
    return repo, host, [first, second]


def forge(repo: Repository, point_id: str, change) -> dict[str, Any]:  # noqa: ANN001
    """Rewrite a point's manifest through ``change(body)`` and give it a matching digest."""
    path = repo.point_path(point_id)
    body = json.loads(path.read_bytes())
    change(body)
    body["digest"] = body_digest(body)
    path.write_text(json.dumps(body))
    return body


def _first_id_index(chunks: list) -> int:
    return next(i for i, item in enumerate(chunks) if isinstance(item, str))


# -- 16.1: a chunk id is 64 lowercase hex digits ---------------------------------------------
def _stored(repo: Repository) -> dict[str, bytes | None]:
    """Every entry holding chunks or saying where they are (a folder: None): format 1's chunk
    files, format 2's packs and index files."""
    return {
        p.relative_to(repo.root).as_posix(): p.read_bytes() if p.is_file() else None
        for sub in ("chunks", "packs", "index")
        for p in sorted((repo.root / sub).rglob("*"))
    }


@pytest.mark.parametrize("backed_up", [1, 2], indirect=True)
@pytest.mark.parametrize("bad_id", [" " * 64, "AB" * 32, "zz" * 32, "0a" * 31 + " \n"])
def test_a_malformed_chunk_id_is_a_damaged_manifest_and_verify_moves_nothing(
    backed_up: tuple[Repository, DirHost, list[str]], tmp_path: Path, bad_id: str
) -> None:
    repo, _host, points = backed_up

    def plant(body: dict) -> None:
        chunks = body["files"][0]["chunks"]
        chunks[_first_id_index(chunks)] = bad_id

    forge(repo, points[1], plant)
    stored_before = _stored(repo)
    assert stored_before

    for _ in range(2):  # a second verify must not do anything either
        report = run_verify(repo)
        assert (repo.root / "chunks").is_dir()
        assert not (repo.root / "chunks.bad").exists()
        assert _stored(repo) == stored_before
        assert [m["point"] for m in report.damaged_manifests] == [points[1]]
        assert "bad chunk list entry" in report.damaged_manifests[0]["problem"]
        assert report.quarantined == [] and report.chunk_problems == []
        assert sorted(report.broken_points) == [points[1]]
    restore_to_directory(repo, points[0], tmp_path / "out")  # the other point is whole
    assert read_tree(tmp_path / "out")


@pytest.mark.parametrize("backed_up", [1], indirect=True)  # format-1 chunk files (a pack is never renamed)
def test_quarantine_only_ever_renames_a_regular_chunk_file(
    backed_up: tuple[Repository, DirHost, list[str]],
) -> None:
    repo, _host, _points = backed_up
    assert repo.store.quarantine(b"") is None
    assert repo.store.quarantine(b"\x01" * 5) is None
    assert repo.store.chunks_dir.is_dir()
    # a directory (or a symlink) under a chunk's name is not a chunk object: left alone
    digest = bytes(range(32))
    repo.store.path(digest).mkdir(parents=True)
    assert repo.store.quarantine(digest, os.stat(repo.store.path(digest)).st_ino) is None
    assert repo.store.path(digest).is_dir()
    other = bytes(range(1, 33))
    repo.store.path(other).parent.mkdir(parents=True, exist_ok=True)
    repo.store.path(other).symlink_to(repo.store.chunks_dir)
    assert repo.store.quarantine(other) is None
    assert repo.store.path(other).is_symlink() and repo.store.chunks_dir.is_dir()


# -- 16.2: sizes are checked before a chunk list is expanded -----------------------------------
def _huge_zero_run(runs: int):  # noqa: ANN202
    def change(body: dict) -> None:
        entry = body["files"][0]
        entry["chunks"] = [runs]
        entry["size"] = runs * body["chunk_size"]

    return change


def test_a_forged_huge_zero_run_is_a_damaged_manifest_and_everything_else_works(
    backed_up: tuple[Repository, DirHost, list[str]], tmp_path: Path
) -> None:
    repo, host, points = backed_up
    forge(repo, points[1], _huge_zero_run(10**12))
    fresh = Repository.open(repo.root, create=False)  # no cached manifests

    good, bad = fresh.load_points()
    assert [m.id for m in good] == [points[0]]
    assert [err.point for err in bad] == [points[1]]
    assert "more than a restore point may hold" in bad[0].reason
    with pytest.raises(RepositoryDamaged, match="more than a restore point may hold"):
        restore_to_directory(fresh, points[1], tmp_path / "bad")
    report = run_verify(fresh)
    assert [m["point"] for m in report.damaged_manifests] == [points[1]]
    # a backup of another VM (which reads the points for a parent) and a restore still work
    host.add_vm("vm2", "db01")
    host.create_disk("vm2", "d.vhdx", 1 * MiB, seed=5, data_mib=1)
    assert run_backup(fresh, host, "vm2", "incremental").mode == "full"
    restore_to_directory(fresh, points[0], tmp_path / "out")


def _manifest_bytes(change) -> bytes:  # noqa: ANN001
    """A one-file manifest (64 KiB chunks) changed by ``change(body)``, with a matching digest."""
    manifest = Manifest(
        id=POINT,
        time=datetime(2026, 11, 24, 12, tzinfo=UTC),
        host="lab-a",
        vm_id="vm-1",
        vm_name="web01",
        mode="full",
        chunk_size=CS,
        files=[FileEntry("disk.vhdx", 3 * CS + 5, 123, "disk-1", "7", [chunk_id(b"a"), None, None, chunk_id(b"b")])],
    )
    body = manifest.to_dict()
    change(body)
    body["digest"] = body_digest(body)
    return json.dumps(body).encode()


def test_a_zero_run_is_counted_against_the_size_before_it_is_expanded() -> None:
    with pytest.raises(ManifestError, match="more than a restore point may hold"):
        Manifest.from_bytes(_manifest_bytes(_huge_zero_run(2 * 10**8)), POINT)

    def mismatch(body: dict) -> None:  # runs that do not add up to the size: refused unexpanded too
        body["files"][0]["chunks"] = [10**15]

    with pytest.raises(ManifestError, match="chunks listed for"):
        Manifest.from_bytes(_manifest_bytes(mismatch), POINT)


def test_a_backup_bigger_than_a_point_may_hold_is_refused_before_reading() -> None:
    def never_opened():  # noqa: ANN202
        raise AssertionError("nothing may be read")

    huge = SourceFile("d.vhdx", (MAX_POINT_CHUNKS + 1) * CS, 0, "disk-1", None, never_opened)
    with pytest.raises(RepositoryError, match="more than a restore point may hold"):
        plan_files([huge], None, CS, reuse=False)


# -- 15.17: field checks after the digest ------------------------------------------------------
def _set(key: str, value: object):  # noqa: ANN202
    def change(body: dict) -> None:
        body[key] = value

    return change


def _chunks(chunks: list):  # noqa: ANN202
    def change(body: dict) -> None:
        body["files"][0]["chunks"] = chunks

    return change


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (_chunks([chunk_id(b"a").hex(), 2]), "3 chunks listed for 196613 bytes, expected 4"),  # one too few
        (_chunks([chunk_id(b"a").hex(), 3, chunk_id(b"b").hex()]), "5 chunks listed"),  # one too many
        (_chunks([chunk_id(b"a").hex(), 0, 2, chunk_id(b"b").hex()]), "bad chunk list entry 0"),
        (_chunks([chunk_id(b"a").hex(), True, 1, chunk_id(b"b").hex()]), "bad chunk list entry"),
        (_chunks("not a list"), "chunk list is not a list"),
        (_set("chunk_size", 0), "chunk_size 0 is not a power of two"),
        (_set("chunk_size", 1), "chunk_size 1 is not a power of two"),
        (_set("chunk_size", 3 * CS), "is not a power of two"),
        (_set("chunk_size", 2**40), "is not a power of two"),
        (_set("chunk_size", "65536"), "is not a power of two"),
        (_set("files", {"a": 1}), "files is not a list"),
        (_set("mode", "weekly"), "unknown mode"),
    ],
)
def test_a_consistent_manifest_with_a_bad_field_is_damaged(change, problem: str) -> None:  # noqa: ANN001
    with pytest.raises(ManifestError, match="manifest is damaged") as info:
        Manifest.from_bytes(_manifest_bytes(change), POINT)
    assert problem in info.value.reason


@pytest.mark.parametrize(
    ("old_chunks", "new_chunks"),
    [(2, 3), (2, 5), (2.5, 3.5), (2.5, 4), (3, 2), (3.5, 2), (0.5, 2)],
)
def test_an_incremental_of_a_file_that_grew_or_shrank_without_a_logged_change_restores_exactly(
    tmp_path: Path, old_chunks: float, new_chunks: float
) -> None:
    host = DirHost(tmp_path / "host")
    host.add_vm("vm1", "web01")
    disk = host.create_disk("vm1", DISK, int(old_chunks * CS), seed=1, data_mib=0)
    disk.write_bytes(os.urandom(int(old_chunks * CS)))
    repo = Repository.open(tmp_path / "repo", create=True, chunk_size=CS)
    run_backup(repo, host, "vm1", "full")
    # The file changes length by whole chunks; the change log records nothing (change id unchanged).
    with open(disk, "r+b") as fh:
        fh.truncate(int(new_chunks * CS))
        if new_chunks > old_chunks:
            fh.seek(int(old_chunks * CS))
            fh.write(os.urandom(int((new_chunks - old_chunks) * CS)))
    result = run_backup(repo, host, "vm1", "incremental")
    assert result.mode == "incremental" and result.files_changed_ranges == 1
    restore_to_directory(repo, result.point_id, tmp_path / "out")
    assert read_tree(tmp_path / "out") == read_tree(host.vm_dir("vm1"))


# -- 16.4: a manifest's lab fields are validated like user input ---------------------------------
def _lab_backup(tmp_path: Path) -> tuple[Any, str, Repository, str]:
    from lab_support import add_vm, make_host

    host = make_host(tmp_path)
    vm_id = add_vm(host, disks=2)
    host.create_checkpoint(vm_id, "patched", "Standard")
    repo = Repository.open(tmp_path / "repo", create=True, chunk_size=CS)
    return host, vm_id, repo, run_backup(repo, host, vm_id, "full").point_id


def _outside(tmp_path: Path, host: Any) -> set[Path]:
    """Every file under tmp_path that is neither the lab's nor the repository's."""
    return {
        p for p in tmp_path.rglob("*") if p.is_file() and not p.is_relative_to(host.root) and "repo" not in p.parts
    }


@pytest.mark.parametrize(
    ("field", "change", "problem"),
    [
        ("stem", lambda c: c["disks"][0].update(stem="../../../ESCAPED"), "unsafe file stem"),
        ("stem", lambda c: c["disks"][1].update(stem="/tmp/ESCAPED"), "unsafe file stem"),
        ("checkpoint name", lambda c: c["checkpoints"][0].update(name="x" * 300), "not 1 to 100 printable"),
        ("checkpoint name", lambda c: c["checkpoints"][0].update(name="a\x1b[2Jb"), "not 1 to 100 printable"),
        ("checkpoint id", lambda c: c["checkpoints"][0].update(id="../x"), "is not a GUID"),
        ("file name", lambda c: c["files"].update({"../x.vhdx": {"parent": None, "size": 1}}), "not a plain file"),
        ("file size", lambda c: next(iter(c["files"].values())).update(size=-1), "must be an integer"),
        ("parent loop", lambda c: [m.update(parent=n) for n, m in c["files"].items()], "loop"),
        ("vm name", lambda c: c.update(name="a/b"), "VM name"),
        ("generation", lambda c: c.update(generation="2; rm"), "generation"),
        ("cpus", lambda c: c.update(cpus=10**9), "cpus"),
    ],
)
def test_a_forged_lab_vm_config_is_refused_before_anything_is_written(
    tmp_path: Path, field: str, change, problem: str  # noqa: ANN001
) -> None:
    from hvtui.engine.restore import restore_to_host
    from hvtui.errors import HostError

    host, vm_id, repo, point = _lab_backup(tmp_path)
    forge(repo, point, lambda body: change(body["vm_config"]))
    before = {vm.id for vm in host.inventory(5).vms}
    with pytest.raises(HostError, match=problem) as info:
        restored = restore_to_host(repo, point, host, "new", new_name="copy")
        host.create_checkpoint(restored.vm_id, "on the copy", "Standard")  # the old code got this far
    assert "not a lab VM configuration" in str(info.value)
    assert {vm.id for vm in host.inventory(5).vms} == before
    assert _outside(tmp_path, host) == set()
    assert not any((host.root / ".staging").iterdir())


def test_a_genuine_lab_vm_config_still_restores_and_takes_checkpoints(tmp_path: Path) -> None:
    from hvtui.engine.restore import restore_to_host

    host, _vm_id, repo, point = _lab_backup(tmp_path)
    restored = restore_to_host(repo, point, host, "new", new_name="copy")
    host.create_checkpoint(restored.vm_id, "on the copy", "Standard")
    assert [cp.name for cp in host.vm(restored.vm_id).checkpoints] == ["patched", "on the copy"]
    assert _outside(tmp_path, host) == set()


def test_one_forged_manifest_does_not_take_down_the_commands(tmp_path: Path) -> None:
    import subprocess

    from hvtui.clock import SystemClock
    from hvtui.hosts.lab.host import LabHost

    lab_dir = tmp_path / "lab"
    host = LabHost.create(lab_dir / "lab-a", "lab-a", SystemClock())
    for name in ("web01", "db01"):
        vm_id = host.add_vm(name, state="Off", disk_sizes=(4 * MiB,), fsync=False)
        host.write_guest_data(vm_id, 0, 0, os.urandom(100_000))
    config = tmp_path / "config.yaml"
    config.write_text(f"hosts:\n  - name: lab-a\n    kind: lab\nrepositories:\n  - name: main\n    path: {tmp_path / 'repo'}\n")

    def hvtui(*args: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "hvtui", "--config", str(config), "--lab-dir", str(lab_dir), *args]
        return subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300)

    assert hvtui("backup", "web01").returncode == 0
    assert hvtui("backup", "web01").returncode == 0
    repo = Repository.open(tmp_path / "repo")
    forged = repo.point_ids()[-1]
    forge(repo, forged, _huge_zero_run(10**12))

    runs = {
        "points": hvtui("points"),
        "verify": hvtui("verify"),
        "backup": hvtui("backup", "db01"),
        "restore": hvtui("restore", "web01", "--point", repo.point_ids()[0], "--to", str(tmp_path / "out")),
        "check": hvtui("check"),
    }
    for name, proc in runs.items():
        assert "unexpected error" not in proc.stderr + proc.stdout, (name, proc.stderr)
        assert "MemoryError" not in proc.stderr + proc.stdout, (name, proc.stderr)
    assert runs["points"].returncode == 0 and forged in runs["points"].stderr
    assert runs["verify"].returncode == 3 and "more than a restore point may hold" in runs["verify"].stdout
    assert runs["backup"].returncode == 0, runs["backup"].stderr
    assert runs["restore"].returncode == 0, runs["restore"].stderr
