"""Repository locks under bad state: damaged records, an unopenable lock file, a read-only
repository, stale records of killed processes (named once), and the kernel layer alone."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import hvtui.engine.lock_records as lock_records_module
from hvtui.clock import FixedClock
from hvtui.config import Retention
from hvtui.engine.backup import run_backup
from hvtui.engine.errors import RepositoryBusy
from hvtui.engine.fsutil import hostname
from hvtui.engine.locks import lock_records
from hvtui.engine.prune import run_prune
from hvtui.engine.repository import Repository
from hvtui.engine.restore import restore_to_directory
from hvtui.engine.verify import run_verify
from hvtui.errors import RepositoryError

sys.path.insert(0, str(Path(__file__).parent))
from engine_support import DirHost, read_tree  # noqa: E402
from test_jobs import DEADLINE  # noqa: E402

MiB = 1024 * 1024
KEEP_ALL = Retention(keep_last=0, keep_hourly=0, keep_daily=0, keep_weekly=0, keep_monthly=0, keep_yearly=0)
GHOST = "aaaaaaaaaaaaaaaa"


def backed_up(tmp_path: Path) -> tuple[Repository, DirHost, str]:
    repo = Repository.open(tmp_path / "repo", create=True)
    host = DirHost(tmp_path / "host")
    host.add_vm("vm-1", "web01")
    host.create_disk("vm-1", "disk.vhdx", 2 * MiB, seed=4, data_mib=1)
    point = run_backup(repo, host, "vm-1", "full", clock=FixedClock()).point_id
    return repo, host, point


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def write_record(repo: Repository, **fields: object) -> Path:
    record = {
        "id": GHOST,
        "kind": "exclusive",
        "operation": "backup",
        "detail": "lab-a/ghost",
        "pid": dead_pid(),
        "hostname": hostname(),
        "boot_id": None,
        "process_start": None,
        "created": time.time() - 7200,
        "refreshed": time.time() - 7200,
    }
    record.update(fields)
    path = repo.root / "locks" / f"{GHOST}.json"
    path.write_text(json.dumps(record))
    return path


def own_records(repo: Repository) -> list[str]:
    return sorted(n for n in os.listdir(repo.root / "locks") if n.endswith(".json"))


# -- damaged records ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "field,value",
    [("pid", "abc"), ("refreshed", "soon"), ("created", None), ("kind", 7), ("pid", True), ("boot_id", 5)],
)
def test_a_lock_record_with_wrong_types_is_a_damaged_stale_record(
    tmp_path: Path, field: str, value: object
) -> None:
    repo, _, point = backed_up(tmp_path)
    damaged = write_record(repo, **{field: value, "pid": os.getpid()} if field != "pid" else {field: value})
    notices: list[str] = []
    with repo.lock("exclusive", "prune").acquire(timeout=1, on_wait=notices.append):
        assert not damaged.exists()
    assert notices == [f"cleared a damaged lock record {GHOST}.json (bad or missing {field})"]
    write_record(repo, **{field: value})
    report = run_verify(repo, None, True)  # every operation, not only the lock itself
    assert report.ok and own_records(repo) == []
    restore_to_directory(repo, point, tmp_path / "out")


def test_a_locker_that_fails_unexpectedly_leaves_no_record_of_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, _, _ = backed_up(tmp_path)
    write_record(repo)

    def broken(path: Path) -> None:
        raise RuntimeError("the disk returned nonsense")

    monkeypatch.setattr(lock_records_module, "read_record", broken)
    with pytest.raises(RuntimeError):
        repo.lock("shared", "verify").acquire(timeout=1)
    assert own_records(repo) == [f"{GHOST}.json"]  # only the ghost: ours is gone


# -- a lock file that cannot be opened, a repository that cannot be written -------------------------
@pytest.fixture
def unwritable() -> Iterator:
    """Make paths unwritable the way the machine allows: chmod, or (as root, whom chmod does
    not stop) the immutable attribute.  Undone afterwards."""
    done: list[tuple[Path, bool]] = []

    def make(*paths: Path) -> None:
        for path in paths:
            if os.geteuid() == 0:
                if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
                    pytest.skip("cannot make a file immutable here")
                done.append((path, True))
            else:
                path.chmod(path.stat().st_mode & 0o555)
                done.append((path, False))

    yield make
    for path, immutable in reversed(done):
        if immutable:
            subprocess.run(["chattr", "-i", str(path)], capture_output=True)
        else:
            path.chmod(path.stat().st_mode | 0o200)


def test_a_lock_file_that_is_a_directory_is_a_clear_error(tmp_path: Path) -> None:
    repo, _, _ = backed_up(tmp_path)
    lock_file = repo.root / "locks" / "repo.lock"
    lock_file.unlink()
    lock_file.mkdir()
    for operation in (lambda: run_verify(repo, None, True), lambda: run_prune(repo, KEEP_ALL, False)):
        with pytest.raises(RepositoryError, match=f"cannot open the repository lock file {lock_file}: Is a directory"):
            operation()
    assert own_records(repo) == []


def test_restoring_from_a_repository_that_cannot_be_written_works(tmp_path: Path, unwritable) -> None:  # noqa: ANN001
    repo, host, point = backed_up(tmp_path)
    folders = [repo.root / sub for sub in ("locks", "tmp", "points", "verified", "chunks")]
    folders += [p for p in (repo.root / "chunks").iterdir()]
    unwritable(repo.root / "locks" / "repo.lock", *folders, repo.root)
    # A change is refused with a message naming the lock file, not a PermissionError.
    with pytest.raises(RepositoryError, match="repo.lock"):
        run_prune(repo, KEEP_ALL, False)
    result = restore_to_directory(repo, point, tmp_path / "out")
    assert result.files == 1
    assert read_tree(tmp_path / "out") == read_tree(host.vm_dir("vm-1"))


# -- stale records are named once ----------------------------------------------------------------------
def test_a_stale_lock_of_a_killed_process_is_named_when_cleared(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    repo, _, _ = backed_up(tmp_path)
    ghost = write_record(repo)
    pid = json.loads(ghost.read_text())["pid"]
    notices: list[str] = []
    with caplog.at_level(logging.WARNING, logger="hvtui.engine.locks"):
        with repo.lock("shared", "verify").acquire(timeout=1, on_wait=notices.append):
            pass
        with repo.lock("shared", "verify").acquire(timeout=1, on_wait=notices.append):
            pass  # the second locker finds nothing to clear
    expected = (
        f"cleared the stale lock of backup lab-a/ghost (pid {pid} on {hostname()}, taken 2 h ago; its process is gone)"
    )
    assert notices == [expected]
    assert [r.getMessage() for r in caplog.records] == [f"repository {repo.root}: {expected}"]


# -- the kernel layer alone --------------------------------------------------------------------------
HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from hvtui.engine.repository import Repository
    lock = Repository.open(Path(sys.argv[1])).lock("exclusive", "prune").acquire(timeout=5)
    print(lock.id, flush=True)
    time.sleep(600)
    """
)


def test_an_exclusive_lock_whose_record_was_deleted_still_keeps_a_shared_one_out(tmp_path: Path) -> None:
    repo, _, _ = backed_up(tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(repo.root)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None
        lock_id = holder.stdout.readline().strip()
        assert lock_id, "the holder did not take its lock"
        (repo.root / "locks" / f"{lock_id}.json").unlink()  # only the flock is left
        assert lock_records(repo.root) == []
        with pytest.raises(RepositoryBusy, match="a process on this machine"):
            repo.lock("shared", "restore").acquire(timeout=0.3)
    finally:
        holder.kill()
        holder.wait(DEADLINE)
    assert holder.returncode == -signal.SIGKILL
    repo.lock("shared", "restore").acquire(timeout=DEADLINE).release()  # the kernel dropped it
