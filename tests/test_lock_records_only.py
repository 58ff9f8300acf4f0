"""Lock records that hold a repository without flock (object storage, a share flock does not
reach): an owner, a heartbeat thread and an expiry; an expired record is cleared with one line
naming who held it; a live heartbeat is never stolen; record-only lockers exclude each other."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from hvtui.engine.errors import RepositoryBusy
from hvtui.engine.locks import RepositoryLock, lock_records

sys.path.insert(0, str(Path(__file__).parent))
from test_jobs import DEADLINE, _wait_for  # noqa: E402

GHOST = "bbbbbbbbbbbbbbbb"


def repo_dir(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    for sub in ("locks", "tmp"):
        (root / sub).mkdir(parents=True)
    return root


def ghost(root: Path, **fields: object) -> Path:
    """A record of a backup on another machine (flock and pids cannot tell whether it lives)."""
    record = {
        "id": GHOST, "kind": "exclusive", "operation": "backup", "detail": "hv01/web01", "pid": 4242,
        "hostname": "far-away", "boot_id": None, "process_start": None,
        "created": time.time() - 7200, "refreshed": time.time() - 7200, "expires": time.time() - 5400,
    }  # fmt: skip
    record.update(fields)
    path = root / "locks" / f"{GHOST}.json"
    path.write_text(json.dumps(record))
    return path


def locker(root: Path, kind: str = "shared", operation: str = "verify", **options: float) -> RepositoryLock:
    return RepositoryLock(root, kind, operation, "", False, use_flock=False, **options)


def test_an_expired_record_is_cleared_with_one_line_naming_who_held_it(tmp_path: Path) -> None:
    root = repo_dir(tmp_path)
    ghost(root)
    lines: list[str] = []
    lock = locker(root).acquire(timeout=2, on_wait=lines.append)
    lock.release()
    assert lines == [
        "cleared the stale lock of backup hv01/web01 (pid 4242 on far-away, taken 2 h ago; "
        "expired: its heartbeat stopped 2 h ago)"
    ]
    assert lock.cleared == lines and lock_records(root) == []


def test_a_record_that_has_not_expired_blocks_however_old_its_heartbeat(tmp_path: Path) -> None:
    root = repo_dir(tmp_path)
    ghost(root, expires=time.time() + 3600)  # its holder asked for a long time to live
    with pytest.raises(RepositoryBusy, match=r"backup hv01/web01 \(pid 4242 on far-away"):
        locker(root).acquire(timeout=0.5)
    assert [r.id for r in lock_records(root)] == [GHOST]
    # A record of an older hvtui (no expiry) expires 30 minutes after its heartbeat, as before.
    ghost(root, expires=None, refreshed=time.time() - 600)
    with pytest.raises(RepositoryBusy):
        locker(root).acquire(timeout=0.5)
    ghost(root, expires=None, refreshed=time.time() - 2400)
    lines: list[str] = []
    locker(root).acquire(timeout=2, on_wait=lines.append).release()
    assert len(lines) == 1 and "expired: its heartbeat stopped 40 min ago" in lines[0]


def test_the_heartbeat_thread_refreshes_the_record_and_its_expiry_while_held(tmp_path: Path) -> None:
    root = repo_dir(tmp_path)
    with locker(root, heartbeat=0.05, ttl=30).acquire(timeout=2) as lock:
        (first,) = lock_records(root)
        assert first.id == lock.id and first.expires == pytest.approx(first.refreshed + 30)
        _wait_for(lambda: lock_records(root)[0].refreshed > first.refreshed)
        (later,) = lock_records(root)
        assert later.refreshed > first.refreshed and later.expires == pytest.approx(later.refreshed + 30)
        assert later.created == first.created
    assert lock_records(root) == []


HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import hvtui.engine.lock_records as records
    import hvtui.engine.locks as locks

    # Another machine: its pid means nothing here, only its heartbeat and expiry do.
    locks.hostname = records.hostname = lambda: "other-machine"
    lock = locks.RepositoryLock(Path(sys.argv[1]), "exclusive", "prune", "", use_flock=False, heartbeat=0.2, ttl=4.0)
    lock.acquire(timeout=10)
    print(lock.id, flush=True)
    time.sleep(600)
    """
)


def test_a_live_heartbeat_is_not_stolen_and_a_dead_one_expires(tmp_path: Path) -> None:
    root = repo_dir(tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(root)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None
        lock_id = holder.stdout.readline().strip()
        assert lock_id, "the holder did not take its lock"
        first = next(r for r in lock_records(root) if r.id == lock_id)
        # Waiting longer than the record's time to live: the heartbeat keeps it valid.
        with pytest.raises(RepositoryBusy, match=r"prune \(pid \d+ on other-machine"):
            locker(root).acquire(timeout=6)
        later = next(r for r in lock_records(root) if r.id == lock_id)
        assert later.refreshed > first.refreshed + 4  # refreshed past its first expiry
    finally:
        holder.kill()
        holder.wait(DEADLINE)
    assert holder.returncode == -signal.SIGKILL
    lines: list[str] = []
    locker(root).acquire(timeout=DEADLINE, on_wait=lines.append).release()  # once the dead record expired
    cleared = [line for line in lines if line.startswith("cleared")]
    assert len(cleared) == 1 and f"prune (pid {holder.pid} on other-machine" in cleared[0] and "expired" in cleared[0]
    assert lock_records(root) == []


def test_record_only_lockers_exclude_each_other(tmp_path: Path) -> None:
    root = repo_dir(tmp_path)
    inside = 0
    most = 0
    guard = threading.Lock()
    errors: list[BaseException] = []

    def work() -> None:
        nonlocal inside, most
        try:
            for _ in range(5):
                with locker(root, "exclusive", "prune").acquire(timeout=DEADLINE):
                    with guard:
                        inside += 1
                        most = max(most, inside)
                    time.sleep(0.01)
                    with guard:
                        inside -= 1
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and most == 1 and lock_records(root) == []
