"""Creating a repository: a creator killed with SIGKILL at the worst moment, two creators at
once, and a folder that holds restore points but lost its config.json (damaged, not empty)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hvtui.clock import FixedClock
from hvtui.engine.backup import run_backup
from hvtui.engine.layout import RepositoryNeedsRepair
from hvtui.engine.repository import Repository
from hvtui.errors import RepositoryError

sys.path.insert(0, str(Path(__file__).parent))
from engine_support import DirHost  # noqa: E402
from test_jobs import DEADLINE, _wait_for  # noqa: E402

MiB = 1024 * 1024

# A child that creates a repository and stops (forever, or until a release file appears) at
# a chosen moment of the real creation path; the parent kills it there or lets it go on.
CHILD = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    root, moment, marker, release = sys.argv[1:5]

    def pause():
        Path(marker).write_text(moment)
        while not (release and os.path.exists(release)):
            time.sleep(0.01)

    if moment == "config-written":  # config.json's bytes are on disk under tmp/, not yet in place
        real_fsync = os.fsync
        def fsync(fd):
            real_fsync(fd)
            if "/tmp/.config." in os.readlink(f"/proc/self/fd/{fd}"):
                pause()
        os.fsync = fsync
    elif moment == "skeleton":  # some of the folders exist, nothing else
        real_mkdir = os.mkdir
        def mkdir(path, mode=0o777, *, dir_fd=None):
            real_mkdir(path, mode, dir_fd=dir_fd)
            if str(path).endswith("/locks"):
                pause()
        os.mkdir = mkdir
    elif moment == "locking":  # announce the wait for the creation lock, then take it
        import fcntl
        real_flock = fcntl.flock
        def flock(fd, op):
            Path(marker).write_text(moment)
            return real_flock(fd, op)
        fcntl.flock = flock

    from hvtui.engine.repository import Repository
    print(Repository.open(Path(root), create=True).id, flush=True)
    """
)


def start_creator(root: Path, moment: str, marker: Path, release: Path | None = None) -> subprocess.Popen:
    args = [sys.executable, "-c", CHILD, str(root), moment, str(marker), str(release or "")]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("moment", ["skeleton", "config-written"])
def test_a_creator_killed_halfway_leaves_a_repository_the_next_backup_finishes(tmp_path: Path, moment: str) -> None:
    root = tmp_path / "repo"
    marker = tmp_path / "paused"
    child = start_creator(root, moment, marker)
    try:
        assert _wait_for(lambda: marker.exists() or child.poll() is not None), "the creator never started"
        assert marker.exists(), child.communicate()[1]
    finally:
        child.kill()
        child.wait(DEADLINE)
    assert child.returncode == -signal.SIGKILL
    assert not (root / "config.json").exists()
    if moment == "config-written":  # exactly what the issue saw: folders and a config temporary
        assert [n for n in os.listdir(root / "tmp") if n.startswith(".config.") and n.endswith(".tmp")]

    with pytest.raises(RepositoryError, match="creation was interrupted; the next backup completes it"):
        Repository.open(root)
    repo = Repository.open(root, create=True)
    assert Repository.open(root).id == repo.id
    assert os.listdir(root / "tmp") == []  # the killed creator's temporary went with it

    host = DirHost(tmp_path / "host")
    host.add_vm("vm-1", "web01")
    host.create_disk("vm-1", "disk.vhdx", MiB, seed=1, data_mib=1)
    result = run_backup(repo, host, "vm-1", "full", clock=FixedClock())
    assert [m.id for m in repo.load_points()[0]] == [result.point_id]


def test_two_first_backups_at_once_create_one_repository(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    first_marker, second_marker, release = tmp_path / "first", tmp_path / "second", tmp_path / "go"
    first = start_creator(root, "skeleton", first_marker, release)
    second = None
    try:
        assert _wait_for(lambda: first_marker.exists() or first.poll() is not None)
        assert first_marker.exists(), first.communicate()[1]
        # The first creator is stopped halfway; the second starts now and must wait for it,
        # not refuse the half-made folder.
        second = start_creator(root, "locking", second_marker)
        assert _wait_for(lambda: second_marker.exists() or second.poll() is not None)
        release.write_text("go")
        out_first, err_first = first.communicate(timeout=DEADLINE)
        out_second, err_second = second.communicate(timeout=DEADLINE)
    finally:
        for child in (first, second):
            if child is not None and child.poll() is None:
                child.kill()
                child.wait(DEADLINE)
    assert first.returncode == 0, err_first
    assert second.returncode == 0, err_second
    assert out_first.strip() == out_second.strip() == Repository.open(root).id


def test_a_folder_with_other_files_is_still_refused(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    for sub in ("chunks", "points", "tmp"):
        (root / sub).mkdir(parents=True)
    (root / "tmp" / "notes.txt").write_text("not hvtui's")
    with pytest.raises(RepositoryError, match="not empty and is not an hvtui repository"):
        Repository.open(root, create=True)
    assert (root / "tmp" / "notes.txt").read_text() == "not hvtui's"


# -- a repository whose config.json is gone ---------------------------------------------------
def make_repository_with_points(tmp_path: Path, count: int = 2) -> tuple[Repository, list[str]]:
    repo = Repository.open(tmp_path / "repo", create=True)
    host = DirHost(tmp_path / "host")
    host.add_vm("vm-1", "web01")
    host.create_disk("vm-1", "disk.vhdx", MiB, seed=1, data_mib=1)
    ids = []
    for _ in range(count):
        host.write("vm-1", "disk.vhdx", 0, os.urandom(1000))
        ids.append(run_backup(repo, host, "vm-1", "incremental", clock=FixedClock()).point_id)
    return repo, ids


@pytest.mark.parametrize("damage", ["missing", "garbage", "no-marker"])
def test_a_repository_without_a_usable_config_is_damaged_not_empty(tmp_path: Path, damage: str) -> None:
    repo, _ = make_repository_with_points(tmp_path)
    config = repo.root / "config.json"
    if damage == "missing":
        config.unlink()
    elif damage == "garbage":
        config.write_bytes(b"\x00\x17 not json")
    else:
        config.write_text(json.dumps({"hello": 1}))
    with pytest.raises(RepositoryNeedsRepair, match=r"2 restore point manifest\(s\).*hvtui repair-repository"):
        Repository.open(repo.root)
    with pytest.raises(RepositoryNeedsRepair):  # nor is a backup allowed to "create" over it
        Repository.open(repo.root, create=True)
