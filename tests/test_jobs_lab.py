"""Backup jobs on the lab, killed with SIGKILL mid-way and resumed on the next start.

Real everything: a lab host with real disk files and a real Recovery checkpoint, the real
engine and repository, the job manager in a real subprocess that is killed.  After the
kill the journal lists the job as interrupted; resuming it removes the leftover
checkpoint, makes a correct restore point (restored as a new VM, its disk reads the same
as the original's) and reuses the chunks the killed run stored.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from kill_support import kill_backup_at  # noqa: E402
from lab_support import add_vm, make_host  # noqa: E402
from test_jobs import DEADLINE  # noqa: E402

from hvtui.audit import AuditLog  # noqa: E402
from hvtui.config import Config, HostConfig, RepositoryConfig  # noqa: E402
from hvtui.core import Core  # noqa: E402
from hvtui.engine.repository import Repository  # noqa: E402
from hvtui.hosts.lab.disk import logical_digest  # noqa: E402
from hvtui.hosts.lab.host import LabHost  # noqa: E402
from hvtui.jobs import JobState  # noqa: E402
from hvtui.paths import Paths  # noqa: E402

HOST = "lab-t1"


def make_lab_core(root: Path, paths: Paths) -> Core:
    config = Config(
        source=root / "config.yaml",
        hosts=(HostConfig(name=HOST, kind="lab"),),
        repositories=(RepositoryConfig(name="default", path=root / "repo", default=True),),
    )
    return Core(config, paths, lab_dir=root)




@pytest.mark.parametrize("phase", ["backup", "commit"])
def test_lab_backup_killed_mid_way_resumes_to_a_correct_point(phase: str, tmp_path: Path, paths: Paths) -> None:
    host = make_host(tmp_path, HOST)
    vm_id = add_vm(host, blocks=12)
    original = logical_digest(host.disk_path(vm_id))
    marker = tmp_path / "stopped"
    job_id = kill_backup_at(
        phase, module="test_jobs_lab", factory="make_lab_core", root=tmp_path, vm_id=vm_id, vm_name="vm1", marker=marker
    )

    lab = LabHost.open(tmp_path / HOST, HOST, host.clock)
    assert [c.type for c in lab.vm(vm_id).checkpoints] == ["Recovery"]  # left by the killed backup

    core = make_lab_core(tmp_path, paths)
    try:
        assert core.backups.list_points(HOST, vm_id) == []  # no half point
        stored_before = sum(1 for _ in Repository.open(tmp_path / "repo").store.iter_ids())
        assert (stored_before > 0) == (phase == "commit")
        (interrupted,) = core.jobs.interrupted_jobs()
        assert (interrupted.id, interrupted.kind, interrupted.vm_name, interrupted.mode) == (job_id, "backup", "vm1", "full")

        resumed = core.jobs.resume(job_id)
        cleanups = [e for e in AuditLog(paths.audit_log).read() if e["action"] == "remove-recovery-checkpoints"]
        assert [(e["result"], e["args"]["removed"]) for e in cleanups] == [("ok", 1)]
        done = core.jobs.wait(resumed.id, DEADLINE)
        assert done.state is JobState.SUCCEEDED, done.error
        summary = done.summary
        assert summary is not None and summary["chunks"] > 0
        assert summary["new_chunks"] == summary["chunks"] - stored_before  # stored chunks reused

        assert lab.vm(vm_id).checkpoints == ()  # no checkpoint left behind
        assert core.jobs.interrupted_jobs() == []
        assert core.backups.verify().ok

        restore = core.jobs.submit_restore(summary["point_id"], "new", new_name="vm1-restored")
        restored = core.jobs.wait(restore.id, DEADLINE)
        assert restored.state is JobState.SUCCEEDED, restored.error
        assert restored.summary is not None
        new_id = restored.summary["vm_id"]
        assert lab.vm(new_id).name == "vm1-restored"
        assert logical_digest(lab.disk_path(new_id)) == original == logical_digest(lab.disk_path(vm_id))
    finally:
        core.close()

    journal = [json.loads(line) for line in paths.job_journal.read_text().splitlines()]
    assert [r["event"] for r in journal if r["job"] == job_id] == ["submitted", "started", "resumed"]
    assert [r["state"] for r in journal if r["event"] == "finished"] == ["succeeded", "succeeded"]


def test_cli_lists_and_resumes_a_killed_backup(tmp_path: Path, paths: Paths, capsys: pytest.CaptureFixture[str]) -> None:
    """`hvtui jobs` shows the killed backup as interrupted; `hvtui jobs resume ID` finishes
    it in the shell, with the same journal and audit entries as the console would write."""
    from hvtui.cli import main

    host = make_host(tmp_path, HOST)
    vm_id = add_vm(host, blocks=6)
    config = tmp_path / "config.yaml"
    config.write_text(
        f"hosts:\n  - name: {HOST}\n    kind: lab\n"
        f"repositories:\n  - name: default\n    path: {tmp_path / 'repo'}\n    default: true\n"
        f"lab:\n  dir: {tmp_path}\n"
    )
    marker = tmp_path / "stopped"
    job_id = kill_backup_at(
        "commit", module="test_jobs_lab", factory="make_lab_core", root=tmp_path, vm_id=vm_id, vm_name="vm1", marker=marker
    )

    assert main(["--config", str(config), "jobs"]) == 0
    out = capsys.readouterr().out
    assert f"{job_id}  INTERRUPTED  backup  full  {HOST}  vm1" in out
    assert "1 job was interrupted" in out

    assert main(["--config", str(config), "jobs", "resume", job_id]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith(f"backup (full) of vm1 on {HOST}: done (")
    assert f"resuming {job_id}" in captured.err  # the progress line's title, on stderr
    lab = LabHost.open(tmp_path / HOST, HOST, host.clock)
    assert lab.vm(vm_id).checkpoints == ()

    assert main(["--config", str(config), "jobs", "--json"]) == 0
    jobs = {job["id"]: job for job in json.loads(capsys.readouterr().out)}
    assert jobs[job_id]["state"] == "interrupted" and jobs[job_id]["resumed_by"]
    resumed = jobs[jobs[job_id]["resumed_by"]]
    assert resumed["state"] == "succeeded" and resumed["resumed_from"] == job_id
    actions = [(e["action"], e["result"]) for e in AuditLog(paths.audit_log).read()]
    assert actions == [("remove-recovery-checkpoints", "ok"), ("backup", "ok")]


def test_backup_killed_after_its_commit_shows_the_committed_point(tmp_path: Path, paths: Paths, capsys: pytest.CaptureFixture[str]) -> None:
    """SIGKILL after the manifest was committed and before the clean-up: the job is still
    interrupted (its checkpoint is left), but the journal recorded the point, and the replay
    shows it while the repository holds it — in `hvtui jobs`, its JSON and the console's
    detail — and says so once it is gone."""
    from hvtui.cli import main
    from hvtui.tui.widgets.job_row import job_detail

    host = make_host(tmp_path, HOST)
    vm_id = add_vm(host, blocks=6)
    config = tmp_path / "config.yaml"
    config.write_text(
        f"hosts:\n  - name: {HOST}\n    kind: lab\n"
        f"repositories:\n  - name: default\n    path: {tmp_path / 'repo'}\n    default: true\n"
        f"lab:\n  dir: {tmp_path}\n"
    )
    job_id = kill_backup_at(
        "committed", module="test_jobs_lab", factory="make_lab_core", root=tmp_path, vm_id=vm_id, vm_name="vm1",
        marker=tmp_path / "stopped", forward=True,
    )  # fmt: skip
    lab = LabHost.open(tmp_path / HOST, HOST, host.clock)
    assert [c.type for c in lab.vm(vm_id).checkpoints] == ["Recovery"]  # the clean-up never ran

    core = make_lab_core(tmp_path, paths)
    try:
        (point,) = core.backups.list_points(HOST, vm_id)
        (interrupted,) = core.jobs.interrupted_jobs()
        assert interrupted.id == job_id and interrupted.state is JobState.INTERRUPTED
        assert interrupted.summary is not None
        assert (interrupted.summary["point_id"], interrupted.summary["repository"]) == (point.id, "default")
        message = f"full restore point {point.id} is complete"
        assert str(interrupted.summary["message"]).startswith(message)
        assert any(message in line for line in interrupted.log)
        assert message in job_detail(interrupted)  # the console's detail of the interrupted job

        assert main(["--config", str(config), "jobs"]) == 0
        row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith(job_id))
        assert "INTERRUPTED" in row and message in row
        assert main(["--config", str(config), "jobs", "--json"]) == 0
        listed = {job["id"]: job for job in json.loads(capsys.readouterr().out)}[job_id]
        assert listed["state"] == "interrupted" and listed["summary"]["point_id"] == point.id

        # Gone from the repository since (pruned, deleted): the replay says so.
        Repository.open(tmp_path / "repo").delete_point(point.id)
        (gone,) = core.jobs.interrupted_jobs()
        assert gone.summary is not None and "point_id" not in gone.summary
        assert gone.summary["missing_point_id"] == point.id
        assert str(gone.summary["message"]).endswith("but repository default no longer holds it")

        resumed = core.jobs.wait(core.jobs.resume(job_id).id, DEADLINE)
        assert resumed.state is JobState.SUCCEEDED, resumed.error
        assert lab.vm(vm_id).checkpoints == ()
    finally:
        core.close()
    journal = [json.loads(line) for line in paths.job_journal.read_text().splitlines()]
    events = [r for r in journal if r["job"] == job_id]
    assert [r["event"] for r in events] == ["submitted", "started", "committed", "resumed"]
    assert events[2]["result"] == point.id

