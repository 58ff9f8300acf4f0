"""Backup and restore jobs on the real engine and a real repository on disk.

The host is ``engine_support.DirHost``: a second, file-backed implementation of the Host
interface (its "Recovery checkpoint" is a marker file that exists while a backup source is
open).  The kill test runs a real subprocess that starts a backup through the job manager
and is killed with SIGKILL mid-way.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from hvtui.audit import AuditLog
from hvtui.config import Config, HostConfig, RepositoryConfig
from hvtui.core import Core
from hvtui.engine.repository import Repository
from hvtui.errors import ConfigError, ReadOnlyError
from hvtui.jobs import JobState, run_job_blocking
from hvtui.paths import Paths

sys.path.insert(0, str(Path(__file__).parent))
from engine_support import DirHost, read_tree  # noqa: E402
from kill_support import kill_backup_at  # noqa: E402
from test_jobs import DEADLINE, _wait_for  # noqa: E402

MiB = 1024 * 1024
HOST = "dirhost"
VM_ID = "vm-web01"


def make_core(root: Path, paths: Paths, read_only: bool = False, gate: Path | None = None) -> Core:
    """A core over one DirHost under ``root`` and a repository under ``root/repo``."""
    config = Config(
        source=root / "config.yaml",
        hosts=(HostConfig(name=HOST, kind="lab"),),
        repositories=(RepositoryConfig(name="default", path=root / "repo", default=True),),
    )
    return Core(config, paths, read_only=read_only, hosts={HOST: DirHost(root / "host", HOST, gate=gate)})


@pytest.fixture
def estate(tmp_path: Path) -> Path:
    host = DirHost(tmp_path / "host", HOST)
    host.add_vm(VM_ID, "web01")
    host.create_disk(VM_ID, "Virtual Hard Disks/web01.vhdx", 24 * MiB, seed=7, data_mib=12)
    host.create_disk(VM_ID, "Virtual Hard Disks/web01_data.vhdx", 8 * MiB, seed=8, data_mib=4)
    # Small chunks so a backup has many of them to kill it between.
    Repository.open(tmp_path / "repo", name="default", create=True, chunk_size=256 * 1024)
    return tmp_path


@pytest.fixture
def core(estate: Path, paths: Paths):
    core = make_core(estate, paths)
    yield core
    core.close()


def audit_entries(paths: Paths) -> list[dict[str, Any]]:
    return AuditLog(paths.audit_log).read()


def test_backup_job_picks_full_then_incremental_and_audits_once(core: Core, estate: Path, paths: Paths) -> None:
    jobs = core.jobs
    first = jobs.submit_backup(HOST, VM_ID, vm_name="web01")
    assert first.mode == "full" and first.params["auto_mode"] is True
    done = jobs.wait(first.id, DEADLINE)
    assert done.state is JobState.SUCCEEDED, done.error
    assert done.summary is not None and done.summary["mode"] == "full"
    assert done.summary["message"].startswith(f"full point {done.summary['point_id']}")
    assert not DirHost(estate / "host", HOST).marker(VM_ID).exists()  # checkpoint removed

    host = core.host(HOST)
    assert isinstance(host, DirHost)
    host.write(VM_ID, "Virtual Hard Disks/web01.vhdx", 3 * MiB, os.urandom(4096))
    second = jobs.submit_backup(HOST, VM_ID)
    assert second.mode == "incremental" and second.vm_name == "web01"  # name from the previous point
    done2 = jobs.wait(second.id, DEADLINE)
    assert done2.state is JobState.SUCCEEDED, done2.error
    assert done2.summary is not None and done2.summary["mode"] == "incremental"
    assert done2.summary["parent"] == done.summary["point_id"]
    assert done2.summary["read_bytes"] < done.summary["read_bytes"]

    backups = [e for e in audit_entries(paths) if e["action"] == "backup"]
    assert [(e["result"], e["args"]["point"]) for e in backups] == [
        ("ok", done.summary["point_id"]),
        ("ok", done2.summary["point_id"]),
    ]
    assert [p.id for p in core.backups.list_points(HOST, VM_ID)] == [done.summary["point_id"], done2.summary["point_id"]]


def test_explicit_mode_and_bad_requests(core: Core) -> None:
    job = core.jobs.submit_backup(HOST, VM_ID, mode="differential")
    assert job.mode == "differential" and job.params["auto_mode"] is False
    assert core.jobs.wait(job.id, DEADLINE).state is JobState.SUCCEEDED
    with pytest.raises(ConfigError, match="unknown backup mode 'weekly'"):
        core.jobs.submit_backup(HOST, VM_ID, mode="weekly")
    with pytest.raises(ConfigError, match="unknown host 'nohost'"):
        core.jobs.submit_backup("nohost", VM_ID)
    with pytest.raises(ConfigError, match="unknown repository 'offsite'"):
        core.jobs.submit_backup(HOST, VM_ID, repository="offsite")
    with pytest.raises(ConfigError, match="needs the new VM's name"):
        core.jobs.submit_restore("whatever", "new")


def test_restore_jobs_to_a_directory_and_as_a_new_vm(core: Core, estate: Path, tmp_path: Path) -> None:
    backup = core.jobs.wait(core.jobs.submit_backup(HOST, VM_ID, vm_name="web01").id, DEADLINE)
    point = backup.summary["point_id"] if backup.summary else None
    assert point
    host = core.host(HOST)
    assert isinstance(host, DirHost)
    original = read_tree(host.vm_dir(VM_ID))

    to_dir = core.jobs.submit_restore(point, "directory", directory=tmp_path / "out")
    assert (to_dir.host, to_dir.mode, to_dir.vm_name) == ("local", "directory", "web01")
    done = core.jobs.wait(to_dir.id, DEADLINE)
    assert done.state is JobState.SUCCEEDED, done.error
    assert read_tree(tmp_path / "out") == original

    as_new = core.jobs.submit_restore(point, "new", new_name="web01-restored")
    assert (as_new.host, as_new.mode) == (HOST, "new")
    done = core.jobs.wait(as_new.id, DEADLINE)
    assert done.state is JobState.SUCCEEDED, done.error
    assert done.summary is not None
    new_id = done.summary["vm_id"]
    assert host.vm(new_id).name == "web01-restored"
    assert read_tree(host.vm_dir(new_id)) == original


def test_cancel_a_running_backup_removes_the_checkpoint_and_writes_no_point(estate: Path, paths: Paths) -> None:
    gate = estate / "gate"  # the host blocks every file open until this exists
    core = make_core(estate, paths, gate=gate)
    try:
        job = core.jobs.submit_backup(HOST, VM_ID, vm_name="web01")
        marker = DirHost(estate / "host", HOST).marker(VM_ID)
        assert _wait_for(marker.exists), "the backup never took its checkpoint"
        core.jobs.cancel(job.id)
        gate.write_text("open")
        final = core.jobs.wait(job.id, DEADLINE)
        assert final.state is JobState.CANCELLED
        assert not marker.exists()
        assert core.backups.list_points(HOST, VM_ID) == []
        assert core.backups.verify().ok
        assert [e["result"] for e in audit_entries(paths) if e["action"] == "backup"] == ["cancelled"]
    finally:
        core.close()


def test_read_only_refuses_at_submit_and_audits(estate: Path, paths: Paths) -> None:
    core = make_core(estate, paths, read_only=True)
    try:
        with pytest.raises(ReadOnlyError, match="backup refused: hvtui runs read-only"):
            core.jobs.submit_backup(HOST, VM_ID, vm_name="web01")
        assert core.jobs.jobs() == []
        (entry,) = audit_entries(paths)
        assert (entry["action"], entry["result"], entry["vm"]) == ("backup", "refused", "web01")
    finally:
        core.close()


def test_headless_blocking_runs_and_exit_codes(core: Core, paths: Paths) -> None:
    import io

    job = core.jobs.submit_backup(HOST, VM_ID, mode="full")
    phases: list[str] = []
    assert run_job_blocking(core.jobs, job, lambda p: phases.append(p.phase), error_stream=None) == 0
    assert phases and phases[-1] == "done"  # throttled, but the final progress always arrives
    point = core.jobs.job(job.id).summary["point_id"]  # type: ignore[index]

    host = core.host(HOST)
    assert isinstance(host, DirHost)
    host.add_vm(VM_ID, "web01", state="Running")
    errors = io.StringIO()
    refused = core.jobs.submit_restore(point, "in_place")
    assert run_job_blocking(core.jobs, refused, None, error_stream=errors) == 4
    assert errors.getvalue() == "hvtui: refused: VM web01 is Running: turn it off before restoring over it\n"
    assert core.jobs.job(refused.id).error_kind == "refused"

    host.add_vm(VM_ID, "web01", state="Off")
    in_place = core.jobs.submit_restore(point, "in_place")
    assert run_job_blocking(core.jobs, in_place, None, error_stream=None) == 0
    results = [(e["action"], e["result"]) for e in audit_entries(paths) if e["action"].startswith("restore")]
    assert results == [("restore-in-place", "refused"), ("restore-in-place", "ok")]


# -- kill -9 mid-backup, resume -----------------------------------------------------------------------



@pytest.mark.parametrize("phase", ["backup", "commit"])
def test_backup_killed_mid_way_resumes_to_a_correct_point(phase: str, estate: Path, paths: Paths, tmp_path: Path) -> None:
    """Killed with SIGKILL after the checkpoint was taken and before any chunk was read
    ("backup"), or after every chunk was stored but before the point was committed
    ("commit"): the next start lists the job as interrupted; resuming removes the
    leftover checkpoint and makes a correct point, reusing every chunk already stored."""
    marker = tmp_path / "stopped"
    job_id = kill_backup_at(
        phase, module="test_jobs_engine", factory="make_core", root=estate, vm_id=VM_ID, vm_name="web01", marker=marker
    )

    host = DirHost(estate / "host", HOST)
    assert host.marker(VM_ID).exists()  # the killed backup left its Recovery checkpoint
    core = make_core(estate, paths)
    try:
        assert core.backups.list_points(HOST, VM_ID) == []  # no half point
        stored_before = sum(1 for _ in Repository.open(estate / "repo").store.iter_ids())
        assert (stored_before > 0) == (phase == "commit")
        (interrupted,) = core.jobs.interrupted_jobs()
        assert (interrupted.id, interrupted.kind, interrupted.vm_name) == (job_id, "backup", "web01")

        resumed = core.jobs.resume(job_id)
        # before_resume removed the leftover checkpoint, under the VM's backup lock.
        cleanups = [e for e in audit_entries(paths) if e["action"] == "remove-recovery-checkpoints"]
        assert [(e["result"], e["args"]["removed"]) for e in cleanups] == [("ok", 1)]
        done = core.jobs.wait(resumed.id, DEADLINE)
        assert done.state is JobState.SUCCEEDED, done.error
        summary = done.summary
        assert summary is not None and summary["mode"] == "full" and summary["chunks"] > 0
        # Chunks the killed run stored are reused, not written again.
        assert summary["new_chunks"] == summary["chunks"] - stored_before

        assert not host.marker(VM_ID).exists()
        assert core.jobs.interrupted_jobs() == []
        report = core.backups.verify()
        assert report.ok and report.points_checked == 1
        restored = estate / "restored"
        restore = core.jobs.submit_restore(summary["point_id"], "directory", directory=restored)
        assert core.jobs.wait(restore.id, DEADLINE).state is JobState.SUCCEEDED
        assert read_tree(restored) == read_tree(host.vm_dir(VM_ID))
    finally:
        core.close()

    journal = [json.loads(line) for line in paths.job_journal.read_text().splitlines()]
    assert [r["event"] for r in journal if r["job"] == job_id] == ["submitted", "started", "resumed"]
