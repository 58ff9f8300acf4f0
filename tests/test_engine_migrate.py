"""`repo migrate`: a format-1 repository becomes format 2 in place, every point readable throughout,
resumable after SIGKILL at each step (copy, switch, cleanup)."""

from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path

import pytest

from hvtui.engine import migrate
from hvtui.engine.backup import run_backup
from hvtui.engine.compression import Compressor
from hvtui.engine.migrate import plan_migration, run_migration
from hvtui.engine.packstore import PackStore
from hvtui.engine.repository import Repository
from hvtui.engine.restore import restore_to_directory
from hvtui.engine.verify import run_verify
from hvtui.errors import RepositoryError

sys.path.insert(0, str(Path(__file__).parent))
from engine_support import DirHost, read_tree  # noqa: E402
from kill_support import TESTS_DIR, kill_child_at_marker  # noqa: E402

KiB = 1024
MiB = 1024 * KiB
CS = 64 * KiB
DISK = "Virtual Hard Disks/web01.vhdx"
SMALL_PACKS = 256 * KiB  # many packs from a few MiB (the configured size stays 16 MiB)


@pytest.fixture
def v1(tmp_path: Path) -> tuple[Repository, dict[str, dict[str, bytes]], DirHost]:
    """A format-1 repository with a full, an incremental (zstd) and a differential point of
    one VM, and what each point restores to."""
    host = DirHost(tmp_path / "host")
    host.add_vm("vm1", "web01")
    host.create_disk("vm1", DISK, 8 * MiB, seed=3, data_mib=3)
    repo = Repository.open(tmp_path / "repo", create=True, chunk_size=CS, version=1)
    expected: dict[str, dict[str, bytes]] = {}
    point = run_backup(repo, host, "vm1", "full").point_id
    expected[point] = read_tree(host.vm_dir("vm1"))
    host.write("vm1", DISK, MiB, b"incremental text " * 20_000)
    zstd = Repository.open(repo.root, compressor=Compressor("zstd"))
    point = run_backup(zstd, host, "vm1", "incremental").point_id
    expected[point] = read_tree(host.vm_dir("vm1"))
    host.write("vm1", DISK, 5 * MiB, os.urandom(300 * KiB))
    point = run_backup(repo, host, "vm1", "differential").point_id
    expected[point] = read_tree(host.vm_dir("vm1"))
    return repo, expected, host


def small_packs(monkeypatch: pytest.MonkeyPatch) -> None:
    real = migrate._pack_store

    def store(repo: Repository, pack_size: int) -> PackStore:
        made = real(repo, pack_size)
        made.pack_size = SMALL_PACKS
        return made

    monkeypatch.setattr(migrate, "_pack_store", store)


def check_every_point(root: Path, expected: dict[str, dict[str, bytes]], out: Path) -> None:
    repo = Repository.open(root)  # what another process opening it now sees
    for n, (point, tree) in enumerate(sorted(expected.items())):
        restore_to_directory(repo, point, out / f"{n}")
        assert read_tree(out / f"{n}") == tree, point
    report = run_verify(repo, record=False)
    assert report.ok, [p.describe() for p in report.chunk_problems]


def chunk_files(root: Path) -> list[Path]:
    return [p for p in (root / "chunks").rglob("*") if p.is_file()]


def test_migrate_converts_a_v1_repository_and_every_point_stays_readable_at_every_step(
    v1: tuple[Repository, dict[str, dict[str, bytes]], DirHost], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, expected, host = v1
    small_packs(monkeypatch)
    plan = plan_migration(repo, 16 * MiB)
    assert (plan.state, plan.points, plan.chunk_files) == ("copy", 3, len(chunk_files(repo.root)))
    assert "from format 1 to format 2" in plan.describe() and "3 restore points stay readable" in plan.describe()
    assert plan.problem() is None
    phases: list[str] = []
    checked: dict[str, int] = {}

    def on_progress(event) -> None:  # noqa: ANN001
        if event.phase.startswith("migrate-") and event.phase not in phases:
            phases.append(event.phase)
        # Another reader while the migration holds its shared lock (copy, cleanup): every point
        # reads (three times in each phase, part-way through).
        if event.phase in ("migrate-copy", "migrate-cleanup") and event.done and checked.get(event.phase, 0) < 3:
            checked[event.phase] = checked.get(event.phase, 0) + 1
            check_every_point(repo.root, expected, tmp_path / f"during-{event.phase}-{event.done}")

    result = run_migration(repo, 16 * MiB, progress=on_progress, progress_interval=0)
    assert phases == ["migrate-copy", "migrate-switch", "migrate-cleanup"] and checked == {"migrate-copy": 3, "migrate-cleanup": 3}
    assert result.switched and result.packs_written > 3 and not result.damaged
    assert result.chunk_files_deleted == result.chunks_copied == plan.chunk_files
    config = json.loads((repo.root / "config.json").read_text())
    assert (config["version"], config["pack_size"], config["id"]) == (2, 16 * MiB, repo.id)
    assert chunk_files(repo.root) == []
    assert (repo.root / "index" / "points.json").is_file()
    check_every_point(repo.root, expected, tmp_path / "after")
    # the cached format-1 object notices the switch instead of reading deleted chunk files
    with pytest.raises(RepositoryError, match="converted to format 2"):
        restore_to_directory(repo, sorted(expected)[0], tmp_path / "stale")
    # the migrated repository takes backups; nothing is left to do
    migrated = Repository.open(repo.root)
    host.write("vm1", DISK, 0, os.urandom(5000))
    assert run_backup(migrated, host, "vm1", "incremental").new_chunks == 1
    assert plan_migration(Repository.open(repo.root)).state == "done"


def test_a_backup_during_the_copy_is_carried_over_by_the_switch(
    v1: tuple[Repository, dict[str, dict[str, bytes]], DirHost], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, expected, host = v1
    small_packs(monkeypatch)
    late: list[str] = []

    def on_progress(event) -> None:  # noqa: ANN001
        if event.phase == "migrate-copy" and event.done and not late:
            # A backup (shared lock, like the copy) writes new format-1 chunk files meanwhile.
            host.write("vm1", DISK, 3 * MiB, os.urandom(200 * KiB))
            late.append(run_backup(Repository.open(repo.root), host, "vm1", "incremental").point_id)
            expected[late[0]] = read_tree(host.vm_dir("vm1"))

    result = run_migration(repo, 16 * MiB, progress=on_progress, progress_interval=0)
    assert late and result.switched and chunk_files(repo.root) == []
    check_every_point(repo.root, expected, tmp_path / "after")  # the late point's new chunks were packed too


def test_a_chunk_file_damaged_before_the_migration_is_not_copied_and_is_named(
    v1: tuple[Repository, dict[str, dict[str, bytes]], DirHost], tmp_path: Path
) -> None:
    repo, expected, _host = v1
    victim = sorted(chunk_files(repo.root))[0]
    victim.write_bytes(victim.read_bytes()[:-10] + b"0123456789")
    result = run_migration(repo, 16 * MiB)
    assert result.damaged == [victim.name]
    assert victim.with_name(victim.name + ".bad").is_file()  # kept as evidence, as a verify does
    report = run_verify(Repository.open(repo.root), record=False)
    assert not report.ok and {p.chunk for p in report.chunk_problems} == {victim.name}


def test_migrate_refuses_when_the_copy_would_not_fit(
    v1: tuple[Repository, dict[str, dict[str, bytes]], DirHost], monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, _expected, _host = v1
    plan = plan_migration(repo)
    plan.free_bytes = plan.chunk_bytes  # no room for the copy plus the margin
    assert "not enough free space" in (plan.problem() or "")


CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    from hvtui.engine import migrate
    from hvtui.engine.repository import Repository

    real = migrate._pack_store
    migrate.INDEX_EVERY = {index_every}

    def small(repo, pack_size):
        store = real(repo, pack_size)
        store.pack_size = {small!r}
        return store

    migrate._pack_store = small

    def on_progress(event):
        if event.phase == {phase!r} and event.done >= {min_done} and {text!r} in (event.message or ""):
            Path({marker!r}).write_text(event.phase)
            while True:
                time.sleep(1)

    print("started", flush=True)
    migrate.run_migration(Repository.open(Path({root!r})), {pack_size}, progress=on_progress, progress_interval=0)
    """
)


@pytest.mark.parametrize(
    ("phase", "min_done", "text", "index_every"),
    [
        ("migrate-copy", 600 * KiB, "", 32),  # some packs published, no index file yet
        ("migrate-copy", 1300 * KiB, "", 2),  # later in the copy, index files for some of the packs
        ("migrate-switch", 0, "switching", 32),  # everything copied and indexed, config.json not replaced
        ("migrate-cleanup", 100 * KiB, "", 32),  # switched, some chunk files deleted
    ],
)
def test_a_migration_killed_at_any_step_leaves_every_point_readable_and_resumes(
    v1: tuple[Repository, dict[str, dict[str, bytes]], DirHost],
    tmp_path: Path,
    phase: str,
    min_done: int,
    text: str,
    index_every: int,
) -> None:
    repo, expected, _host = v1
    marker = tmp_path / "marker"
    script = CHILD.format(
        tests=str(TESTS_DIR), small=SMALL_PACKS, phase=phase, min_done=min_done, text=text, marker=str(marker),
        root=str(repo.root), pack_size=16 * MiB, index_every=index_every,
    )  # fmt: skip
    kill_child_at_marker(script, marker, "start its migration", f"reach {phase} in its migration")

    version = json.loads((repo.root / "config.json").read_text())["version"]
    assert version == (2 if phase == "migrate-cleanup" else 1)
    check_every_point(repo.root, expected, tmp_path / "killed")
    if phase == "migrate-copy":
        assert list((repo.root / "packs").rglob("*")), "the kill came before any pack was published"
        assert bool(list((repo.root / "index").iterdir())) == (index_every == 2)

    result = run_migration(Repository.open(repo.root), 16 * MiB)  # run again: resumes
    assert result.switched == (phase != "migrate-cleanup")
    if phase == "migrate-copy":
        assert result.chunks_copied < plan_total(repo.root)  # the published packs were reused
    assert json.loads((repo.root / "config.json").read_text())["version"] == 2
    assert chunk_files(repo.root) == [] and not list((repo.root / "tmp").iterdir())
    check_every_point(repo.root, expected, tmp_path / "resumed")


def plan_total(root: Path) -> int:
    """How many chunks the repository's points reference in all."""
    repo = Repository.open(root)
    return len(set().union(*(p.chunk_ids() for p in repo.load_points()[0])))
