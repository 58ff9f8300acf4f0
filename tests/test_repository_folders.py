"""The repository's own folders: a folder that is a symbolic link is refused, and only files
named by hvtui's own rules are ever deleted (real repository, real verify and prune)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from hvtui.clock import FixedClock
from hvtui.config import Retention
from hvtui.engine.backup import run_backup
from hvtui.engine.prune import run_prune
from hvtui.engine.repository import Repository
from hvtui.engine.verify import run_verify
from hvtui.errors import RepositoryError

sys.path.insert(0, str(Path(__file__).parent))
from engine_support import DirHost  # noqa: E402

MiB = 1024 * 1024
KEEP_ALL = Retention(keep_last=0, keep_hourly=0, keep_daily=0, keep_weekly=0, keep_monthly=0, keep_yearly=0)
DEAD_OWNER = "0123456789abcdef"


def backed_up_repository(tmp_path: Path) -> Repository:
    repo = Repository.open(tmp_path / "repo", create=True)
    host = DirHost(tmp_path / "host")
    host.add_vm("vm-1", "web01")
    host.create_disk("vm-1", "disk.vhdx", MiB, seed=3, data_mib=1)
    run_backup(repo, host, "vm-1", "full", clock=FixedClock())
    return repo


def old_file(path: Path, text: str = "someone else's") -> Path:
    path.write_text(text)
    stamp = time.time() - 7 * 24 * 3600
    os.utime(path, (stamp, stamp))
    return path


def files_of(folder: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in folder.iterdir()}


@pytest.mark.parametrize("folder", ["tmp", "locks"])
def test_a_repository_folder_that_is_a_symlink_is_refused_and_nothing_behind_it_is_deleted(
    tmp_path: Path, folder: str
) -> None:
    repo = backed_up_repository(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # Files that look like hvtui's own leftovers: what a clean-up through the link would delete.
    old_file(elsewhere / "notes.txt")
    old_file(elsewhere / f"{'ab' * 32}.{DEAD_OWNER}.1234abcd.tmp")
    old_file(elsewhere / f"{DEAD_OWNER}.json", "{}")
    old_file(elsewhere / "settings.json", "{}")
    before = files_of(elsewhere)
    (repo.root / folder).rename(tmp_path / "moved")
    (repo.root / folder).symlink_to(elsewhere)

    with pytest.raises(RepositoryError, match=f"{folder} is a symbolic link .*will not follow"):
        Repository.open(repo.root)
    for operation in (
        lambda: run_verify(repo, None, True),  # the object opened before the folder was swapped
        lambda: run_prune(repo, KEEP_ALL, False),
    ):
        with pytest.raises(RepositoryError, match="symbolic link"):
            operation()
    assert files_of(elsewhere) == before


def test_only_files_named_by_hvtuis_own_rules_are_deleted(tmp_path: Path) -> None:
    repo = backed_up_repository(tmp_path)
    foreign = [
        old_file(repo.tmp_dir / "notes.txt"),
        old_file(repo.tmp_dir / "backup-plan.json"),
        old_file(repo.root / "locks" / "readme.json", "{}"),
        old_file(repo.root / "locks" / "settings.json", '{"pid": 1}'),
    ]
    leftovers = [
        old_file(repo.tmp_dir / f"{'cd' * 32}.{DEAD_OWNER}.1234abcd.tmp"),  # a dead writer's chunk
        old_file(repo.tmp_dir / ".20261124T120000Z-0000abcd.json.123.456.tmp"),  # an old manifest temporary
    ]
    run_verify(repo, None, True)
    assert all(p.exists() for p in foreign)
    assert not any(p.exists() for p in leftovers)
    leftovers.append(old_file(repo.tmp_dir / f"{'ef' * 32}.{DEAD_OWNER}.5678abcd.tmp"))
    run_prune(repo, KEEP_ALL, False)
    assert all(p.exists() for p in foreign)
    assert not any(p.exists() for p in leftovers)
