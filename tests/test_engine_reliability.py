"""Reliability with real processes and files: kill -9, damage, disk full, concurrency.

No timing assertions: kills are triggered by what the backup process reports (its phases),
waits are on what other processes report.
"""

from __future__ import annotations

import errno
import functools
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import hvtui.engine.packfile as packfile_module
import hvtui.engine.pointobjects as pointobjects
import hvtui.engine.store as store_module
from hvtui.audit import AuditLog
from hvtui.backups.ledger import CheckpointJournal
from hvtui.backups.leftovers import LeftoverCheckpoints
from hvtui.clock import FixedClock
from hvtui.config import Retention
from hvtui.engine.backup import run_backup
from hvtui.engine.errors import RepositoryDamaged
from hvtui.engine.locks import lock_records
from hvtui.engine.prune import run_prune
from hvtui.engine.repo_config import DEFAULT_VERSION
from hvtui.engine.repository import Repository
from hvtui.engine.restore import restore_to_directory
from hvtui.engine.verify import run_verify
from hvtui.errors import RepositoryError
from hvtui.hosts.lab import disk as vdisk
from hvtui.hosts.lab.host import LabHost

sys.path.insert(0, str(Path(__file__).parent))
from engine_support import DirHost, OneHost, read_tree  # noqa: E402

KiB = 1024
MiB = 1024 * KiB
CS = 64 * KiB
TESTS = Path(__file__).parent
DISK = "Virtual Hard Disks/web01.vhdx"

# A backup of a lab VM in its own process, printing every progress event as a JSON line.
LAB_BACKUP = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import hvtui.engine.backup as backup
    import hvtui.engine.pipeline as pipeline
    from hvtui.backups.ledger import CheckpointJournal
    from hvtui.clock import SystemClock
    from hvtui.engine.repository import Repository
    from hvtui.hosts.lab.host import LabHost

    lab_root, repo_path, vm_id, journal_path = sys.argv[1:5]
    pipeline.BATCH_BYTES = 256 * 1024  # publish chunks often, so a kill finds some stored
    host = LabHost.open(Path(lab_root), "lab-a", SystemClock())
    repo = Repository.open(Path(repo_path), create=True, chunk_size=64 * 1024)

    def progress(event):
        print(json.dumps({"phase": event.phase, "stored": event.bytes_stored}), flush=True)

    journal = CheckpointJournal(Path(journal_path))  # what hvtui's backups record, as Backups does

    def taken(checkpoint_id, name):
        journal.taken("lab-a", vm_id, checkpoint_id, name, None, "")

    result = backup.run_backup(repo, host, vm_id, "full", progress=progress, progress_interval=0, on_checkpoint=taken)
    print(json.dumps({"phase": "result", "point": result.point_id}), flush=True)
    """
)


def lab_vm(tmp_path: Path) -> tuple[LabHost, str]:
    clock = FixedClock()
    host = LabHost.create(tmp_path / "lab" / "lab-a", "lab-a", clock)
    vm_id = host.add_vm("web01", state="Off", disk_sizes=(40 * MiB,), fsync=False)
    rng = random.Random(5)
    for i in range(24):
        half = 512 * KiB
        host.write_guest_data(vm_id, 0, i * 1536 * KiB, b"text %d " % i * (half // 8) + rng.randbytes(half))
    return host, vm_id


def kill_backup_at(lab_root: Path, repo: Path, vm_id: str, phase: str, nth: int) -> tuple[bool, list[str]]:
    """Run the backup process and SIGKILL it at the ``nth`` event of ``phase``."""
    proc = subprocess.Popen(
        [sys.executable, "-c", LAB_BACKUP, str(lab_root), str(repo), vm_id, str(repo.parent / "checkpoints.jsonl")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen: list[str] = []
    killed = False
    assert proc.stdout is not None
    for line in proc.stdout:
        event = json.loads(line)
        seen.append(event["phase"])
        stored_ok = phase != "backup" or event["stored"] > 0
        if event["phase"] == phase and stored_ok and seen.count(phase) >= nth:
            proc.send_signal(signal.SIGKILL)
            killed = True
            break
    proc.wait(timeout=120)
    if not killed:
        assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
    return killed, seen


@pytest.mark.slow
def test_kill_9_at_random_points_then_resume(tmp_path: Path) -> None:
    host, vm_id = lab_vm(tmp_path)
    rng = random.Random(20261124)
    kill_points = [("checkpoint", 1), ("backup", 1), ("backup", rng.randint(2, 4)), ("commit", 1), ("cleanup", 2)]
    reused_somewhere = False
    for run, (phase, nth) in enumerate(kill_points):
        repo_path = tmp_path / f"repo-{run}"
        killed, seen = kill_backup_at(host.root, repo_path, vm_id, phase, nth)
        repo = Repository.open(repo_path, create=True, chunk_size=CS)
        # Whatever the moment, the repository holds only complete points.
        report = run_verify(repo)
        assert report.ok, (phase, report.lines())
        committed = repo.point_ids()
        assert len(committed) <= 1
        if phase == "cleanup" and killed:
            assert len(committed) == 1  # killed after the commit: the point is good
        present = set(repo.store.iter_ids())

        # hvtui's own leftover checkpoint (its journal names it) is removed before the backup.
        journal = CheckpointJournal(tmp_path / "checkpoints.jsonl")
        leftovers = LeftoverCheckpoints(journal, OneHost(host), AuditLog(tmp_path / "audit.jsonl"))
        result = run_backup(repo, host, vm_id, "full", clear_leftovers=functools.partial(leftovers.clear, host.name, vm_id, "web01"))
        referenced = repo.load_point(result.point_id).chunk_ids()
        # Every chunk already stored was reused, none written twice.
        assert result.new_chunks == len(referenced - present), phase
        reused_somewhere |= bool(present & referenced) and result.new_chunks < len(referenced)
        assert [cp for cp in host.vm(vm_id).checkpoints if cp.type == "Recovery"] == []
        assert lock_records(repo.root) == []  # the dead process's lock record was cleared
        assert os.listdir(repo.tmp_dir) == []  # and its temporary files
        out = tmp_path / f"out-{run}"
        restore_to_directory(repo, result.point_id, out)
        restored_disk = out / "web01.vhdx"
        assert vdisk.read_logical(restored_disk, 0, 40 * MiB) == host.read_disk(vm_id, 0, 0, 40 * MiB)
        assert run_verify(repo).ok
    assert reused_somewhere


# -- damage ----------------------------------------------------------------------------------
@pytest.fixture
def backed_up(tmp_path: Path, request: pytest.FixtureRequest) -> tuple[Repository, DirHost, list[str]]:
    """Two points of one VM; the repository's format is the default unless a test asks for
    another through ``indirect`` parametrization."""
    host = DirHost(tmp_path / "host")
    host.add_vm("vm1", "web01")
    host.create_disk("vm1", DISK, 8 * MiB, seed=3, data_mib=3)
    version = getattr(request, "param", DEFAULT_VERSION)
    repo = Repository.open(tmp_path / "repo", create=True, chunk_size=CS, version=version)
    first = run_backup(repo, host, "vm1", "full").point_id
    host.write("vm1", DISK, 0, os.urandom(3000))
    second = run_backup(repo, host, "vm1", "incremental").point_id
    return repo, host, [first, second]


def _shared_chunk(repo: Repository, points: list[str]) -> bytes:
    shared = repo.load_point(points[0]).chunk_ids() & repo.load_point(points[1]).chunk_ids()
    return sorted(shared)[0]


# Format 1: a chunk file flipped, truncated or deleted; format 2 (the default): a blob flipped inside
# its pack (a truncated or deleted pack loses every blob after the cut: test_engine_packs).
@pytest.mark.parametrize(
    ("backed_up", "damage"), [(1, "flip"), (1, "truncate"), (1, "delete"), (2, "flip")], indirect=["backed_up"]
)
def test_damaged_chunks_are_named_with_the_points_they_break(
    backed_up: tuple[Repository, DirHost, list[str]], tmp_path: Path, damage: str
) -> None:
    repo, _host, points = backed_up
    digest = _shared_chunk(repo, points)
    if repo.version == 2:  # a byte of the blob inside its pack
        pack_id, offset, length = repo.store.location(digest)  # type: ignore[union-attr, misc]
        path = repo.store.pack_path(pack_id)  # type: ignore[union-attr]
        blob = bytearray(path.read_bytes())
        blob[offset + length // 2] ^= 0x40
        path.write_bytes(bytes(blob))
    else:
        path = repo.store.path(digest)  # type: ignore[union-attr]
        blob = bytearray(path.read_bytes())
        if damage == "flip":
            blob[len(blob) // 2] ^= 0x40
            path.write_bytes(bytes(blob))
        elif damage == "truncate":
            path.write_bytes(bytes(blob[: len(blob) - 100]))
        else:
            path.unlink()

    assert run_verify(repo, quick=True).ok is (damage == "flip")  # quick: presence and lengths only
    report = run_verify(repo)
    assert not report.ok
    assert [p.chunk for p in report.chunk_problems] == [digest.hex()]
    assert report.chunk_problems[0].points == sorted(points)
    expected = {"flip": "corrupt", "truncate": "truncated", "delete": "missing"}[damage]
    assert expected in report.chunk_problems[0].problem
    assert sorted(report.broken_points) == sorted(points)
    # A damaged object is quarantined (renamed .bad, or out of the index; kept); a missing one has nothing to move.
    assert report.quarantined == ([] if damage == "delete" else [digest.hex()])
    if repo.version == 1:
        assert repo.store.quarantine_path(digest).exists() is (damage != "delete")  # type: ignore[union-attr]
    else:  # out of the index; the pack kept whole as evidence
        assert repo.store.quarantined(digest) == path and path.read_bytes() == bytes(blob) and not repo.store.has(digest)

    out = tmp_path / "out"
    with pytest.raises(RepositoryDamaged, match=digest.hex()[:16]) as info:
        restore_to_directory(repo, points[1], out)
    assert "restore refused" in str(info.value)
    assert ("quarantined by verify" in str(info.value)) is (damage != "delete")
    assert list(out.iterdir()) == []  # nothing half-written left behind
    # the record of the failed verification shows in the point list
    assert repo.verification(points[0])["ok"] is False


def test_a_garbage_manifest_is_named_and_refused(
    backed_up: tuple[Repository, DirHost, list[str]], tmp_path: Path
) -> None:
    repo, _host, points = backed_up
    repo.point_path(points[1]).write_bytes(b'{"format": "hvtui-point", "version": 1, "id": "x"')
    report = run_verify(repo)
    assert [m["point"] for m in report.damaged_manifests] == [points[1]]
    assert "not valid JSON" in report.damaged_manifests[0]["problem"]
    assert report.chunk_problems == []
    with pytest.raises(RepositoryDamaged, match=f"restore point {points[1]}: manifest is damaged"):
        restore_to_directory(repo, points[1], tmp_path / "out")
    restore_to_directory(repo, points[0], tmp_path / "ok")  # the other point is fine
    # prune never removes chunks while a manifest cannot be read
    result = run_prune(repo, Retention(keep_last=1, keep_daily=0, keep_weekly=0, keep_monthly=0))
    assert result.gc_skipped and points[1] in result.gc_skipped
    assert result.chunks_removed == 0


# -- disk full -------------------------------------------------------------------------------
@pytest.mark.parametrize("where", ["chunk", "pack", "manifest"])
def test_disk_full_fails_cleanly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    host = DirHost(tmp_path / "host")
    host.add_vm("vm1", "web01")
    host.create_disk("vm1", DISK, 8 * MiB, seed=4, data_mib=4)
    # "chunk": a format-1 chunk file's write fails (store.write_all); "pack": a format-2 pack's (packfile.write_all)
    repo = Repository.open(tmp_path / "repo", create=True, chunk_size=CS, version={"chunk": 1, "pack": 2}.get(where, DEFAULT_VERSION))
    writes = {"n": 0}
    if where in ("chunk", "pack"):
        module = store_module if where == "chunk" else packfile_module
        real = module.write_all

        def filling(fd: int, data) -> None:  # noqa: ANN001
            writes["n"] += 1
            if writes["n"] > 20:
                raise OSError(errno.ENOSPC, "No space left on device")
            real(fd, data)

        monkeypatch.setattr(module, "write_all", filling)
    else:

        def full(*_a, **_k) -> None:  # noqa: ANN002, ANN003
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(pointobjects, "atomic_write", full)  # where a manifest is written
    with pytest.raises(RepositoryError, match="disk is full"):
        run_backup(repo, host, "vm1", "full")
    assert repo.point_ids() == []
    assert os.listdir(repo.tmp_dir) == []
    assert not host.marker("vm1").exists()
    monkeypatch.undo()
    assert run_verify(repo).ok
    run_backup(repo, host, "vm1", "full")
    assert len(repo.point_ids()) == 1


TMPFS_BACKUP = textwrap.dedent(
    """
    import json, os, sys
    from pathlib import Path
    sys.path.insert(0, sys.argv[3])
    from engine_support import DirHost
    from hvtui.engine.backup import run_backup
    from hvtui.engine.repository import Repository
    from hvtui.engine.verify import run_verify
    from hvtui.errors import RepositoryError

    host = DirHost(Path(sys.argv[1]))
    repo = Repository.open(Path(sys.argv[2]), create=True, chunk_size=64 * 1024)
    try:
        run_backup(repo, host, "vm1", "full")
        error = None
    except RepositoryError as err:
        error = str(err)
    print(json.dumps({
        "error": error,
        "points": repo.point_ids(),
        "tmp": os.listdir(repo.tmp_dir),
        "checkpoint": host.marker("vm1").exists(),
        "verify_ok": run_verify(repo).ok,
    }))
    """
)


def _can_mount_tmpfs() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /mnt"], capture_output=True, timeout=30
    )
    return probe.returncode == 0


@pytest.mark.skipif(
    not _can_mount_tmpfs(), reason="no user namespaces to mount a small tmpfs (the injected test covers it)"
)
def test_a_really_full_filesystem_fails_cleanly(tmp_path: Path) -> None:
    host = DirHost(tmp_path / "host")
    host.add_vm("vm1", "web01")
    (host.vm_dir("vm1") / "noise.bin").write_bytes(os.urandom(6 * MiB))  # incompressible
    repo = tmp_path / "repo"
    repo.mkdir()
    script = tmp_path / "fill.py"
    script.write_text(TMPFS_BACKUP)
    inner = f"mount -t tmpfs -o size=3m tmpfs {repo} && exec {sys.executable} {script} {host.root} {repo} {TESTS}"
    proc = subprocess.run(["unshare", "-rm", "sh", "-c", inner], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    outcome = json.loads(proc.stdout.strip().splitlines()[-1])
    assert outcome["error"] and "disk is full" in outcome["error"]
    assert outcome == {"error": outcome["error"], "points": [], "tmp": [], "checkpoint": False, "verify_ok": True}


# -- concurrency -----------------------------------------------------------------------------
PRUNE = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from hvtui.config import Retention
    from hvtui.engine.prune import run_prune
    from hvtui.engine.repository import Repository

    def progress(event):
        print(json.dumps({"phase": event.phase, "message": event.message}), flush=True)

    repo = Repository.open(Path(sys.argv[1]))
    result = run_prune(repo, Retention(), progress=progress, lock_timeout=300)
    print(json.dumps({"phase": "result", "waited_for": result.waited_for, "removed": result.points_removed}), flush=True)
    """
)


def _read_until(proc: subprocess.Popen, predicate) -> list[dict]:  # noqa: ANN001
    events = []
    assert proc.stdout is not None
    for line in proc.stdout:
        event = json.loads(line)
        events.append(event)
        if predicate(event):
            return events
    raise AssertionError(
        f"process ended before the expected event: {events} {proc.stderr.read() if proc.stderr else ''}"
    )


@pytest.mark.slow
def test_two_backups_at_once_and_prune_waits_for_them(tmp_path: Path) -> None:
    host = DirHost(tmp_path / "host")
    for vm in ("vm1", "vm2"):
        host.add_vm(vm, f"web-{vm}")
        host.create_disk(vm, DISK, 8 * MiB, seed=hash(vm) % 1000, data_mib=3)
    repo_path = tmp_path / "repo"
    Repository.open(repo_path, create=True, chunk_size=CS)
    gate = tmp_path / "gate"
    support = str(TESTS / "engine_support.py")
    backups = [
        subprocess.Popen(
            [sys.executable, support, "backup", str(host.root), str(repo_path), vm, "full", str(gate)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for vm in ("vm1", "vm2")
    ]
    try:
        for proc in backups:  # both hold the shared lock and wait at the gate
            _read_until(proc, lambda e: e.get("phase") == "backup")
        prune = subprocess.Popen(
            [sys.executable, "-c", PRUNE, str(repo_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        waiting = _read_until(prune, lambda e: e.get("phase") == "lock")
        assert "backup dirhost/vm" in waiting[-1]["message"]
        gate.write_text("go")
        results = [_read_until(proc, lambda e: "result" in e)[-1]["result"] for proc in backups]
        pruned = _read_until(prune, lambda e: e.get("phase") == "result")[-1]
    finally:
        gate.write_text("go")
        for proc in [*backups]:
            proc.wait(timeout=120)
    prune.wait(timeout=120)
    assert all(proc.returncode == 0 for proc in [*backups, prune])
    assert pruned["removed"] == 0 and pruned["waited_for"]
    repo = Repository.open(repo_path)
    assert sorted(repo.point_ids()) == sorted(r["point_id"] for r in results)
    assert {r["vm_id"] for r in results} == {"vm1", "vm2"}
    assert run_verify(repo).ok
    for r in results:
        out = tmp_path / f"out-{r['vm_id']}"
        restore_to_directory(repo, r["point_id"], out)
        assert read_tree(out) == read_tree(host.vm_dir(r["vm_id"]))
