"""WinRM backups through the services and jobs: consistency asked and audited, and a backup
killed between backup.begin and backup.end found on the next start (checkpoint journal +
backup.leftovers), shown as hvtui's leftover, and released with backup.end before the next backup.

Real components: the loopback WS-Management server answering from a lab host inside a real Samba
share, the SMB3 data path, the job manager, a child process killed with SIGKILL (kill_support).
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from kill_support import kill_backup_at  # noqa: E402
from lab_support import add_vm, make_host  # noqa: E402
from samba_support import SambaServer  # noqa: E402
from test_jobs import DEADLINE  # noqa: E402
from wsman_backup import LabBackupBackend  # noqa: E402
from wsman_server import PASSWORD_ENV, WSManServer, make_winrm_host  # noqa: E402

from hvtui.audit import AuditLog  # noqa: E402
from hvtui.config import Config, HostConfig, RepositoryConfig, SecretSource, SmbSettings  # noqa: E402
from hvtui.core import Core  # noqa: E402
from hvtui.jobs import JobState  # noqa: E402
from hvtui.paths import Paths  # noqa: E402
from hvtui.wire.backup import parse_leftovers  # noqa: E402

HOST = "hv-test"
SMB_PASSWORD_ENV = "HVTUI_TEST_SMB_PASSWORD"
# The child process finds the parent's servers through these.
PORT_ENV, SMB_PORT_ENV, SMB_UNC_ENV, SMB_USER_ENV = (
    "HVTUI_TEST_WSMAN_PORT", "HVTUI_TEST_SMB_PORT", "HVTUI_TEST_SMB_UNC", "HVTUI_TEST_SMB_USER",
)  # fmt: skip


def make_winrm_core(root: Path, paths: Paths) -> Core:
    """A core whose host ``hv-test`` is the loopback WinRM server, its D:\\ the Samba share
    (both named by the environment: the kill drill's child builds the same)."""
    smb = SmbSettings(
        shares=(("D:\\", os.environ[SMB_UNC_ENV]),),
        port=int(os.environ[SMB_PORT_ENV]),
        username=os.environ[SMB_USER_ENV],
        password=SecretSource(env=SMB_PASSWORD_ENV),
        timeout=5.0,
    )
    host = make_winrm_host(int(os.environ[PORT_ENV]), HOST, long_timeout=30.0, timeout=30.0, smb=smb)
    config = Config(
        source=root / "config.yaml",
        hosts=(HostConfig(name=HOST, kind="winrm", winrm=host.settings),),
        repositories=(RepositoryConfig(name="default", path=root / "repo", default=True),),
    )
    return Core(config, paths, hosts={HOST: host})


class Estate:
    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, samba: SambaServer) -> None:
        self.lab = make_host(samba.folder, "lab-t1")
        self.vm_id = add_vm(self.lab, blocks=8)
        self.backend = LabBackupBackend(self.lab, samba.folder)
        self.server = WSManServer(self.backend).start()
        for var, value in (
            (PASSWORD_ENV, self.server.password), (SMB_PASSWORD_ENV, samba.password), (PORT_ENV, str(self.server.port)),
            (SMB_PORT_ENV, str(samba.port)), (SMB_UNC_ENV, samba.unc()), (SMB_USER_ENV, samba.username),
        ):  # fmt: skip
            monkeypatch.setenv(var, value)
        self.root = tmp_path

    def recovery(self) -> list[str]:
        return [cp.id for cp in self.lab.vm(self.vm_id).checkpoints if cp.type == "Recovery"]


@pytest.fixture
def estate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, samba_server: SambaServer):  # noqa: ANN201
    e = Estate(tmp_path, monkeypatch, samba_server)
    yield e
    e.server.stop()


def backup_audits(paths: Paths) -> list[dict]:
    return [e for e in AuditLog(paths.audit_log).read() if e["action"] == "backup"]


def test_a_fall_back_to_crash_consistency_is_in_the_job_and_the_audit_log(estate: Estate, paths: Paths) -> None:
    estate.backend.faults.consistency_fails = True
    core = make_winrm_core(estate.root, paths)
    try:
        job = core.jobs.submit_backup(HOST, estate.vm_id, mode="full", vm_name="vm1")
        done = core.jobs.wait(job.id, DEADLINE)
        assert done.state is JobState.SUCCEEDED, done.error
        assert any("crash-consistent" in w for w in done.summary["warnings"])
        (entry,) = backup_audits(paths)
        assert entry["result"] == "ok" and any("crash-consistent" in w for w in entry["args"]["host_warnings"])

        demanded = core.jobs.submit_backup(HOST, estate.vm_id, mode="full", vm_name="vm1", consistency="application")
        failed = core.jobs.wait(demanded.id, DEADLINE)
        assert failed.state is JobState.FAILED and "VSS" in str(failed.error)
        assert estate.server.commands_for("backup.begin")[-1].arguments["consistency"] == "application"
        entry = backup_audits(paths)[-1]
        assert entry["result"] == "failed" and entry["args"]["consistency"] == "application"
    finally:
        core.close()
    assert estate.recovery() == []


def test_the_cli_offers_the_consistency_choice() -> None:
    from hvtui.cli import build_parser

    args = build_parser().parse_args(["backup", "vm1", "--consistency", "crash"])
    assert args.consistency == "crash"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["backup", "vm1", "--consistency", "maybe"])


def test_a_backup_killed_between_begin_and_end_is_found_and_released_first(estate: Estate, paths: Paths) -> None:
    marker = estate.root / "stopped"
    job_id = kill_backup_at(
        "backup", module="test_winrm_backup_service", factory="make_winrm_core", root=estate.root, vm_id=estate.vm_id,
        vm_name="vm1", marker=marker, host=HOST, min_done=1,
    )  # fmt: skip
    (left,) = estate.recovery()  # the killed console never called backup.end
    core = make_winrm_core(estate.root, paths)
    try:
        host = core.host(HOST)
        # The host lists it as hvtui's (its label), and the journal proves whose it was.
        leftovers = parse_leftovers(host.call_operation("backup.leftovers", {}, 30.0), HOST)
        # Named after the job, as the contract says ("hvtui backup <job id>").
        assert [(c.checkpoint_id, c.name) for c in leftovers.checkpoints] == [(left, f"hvtui backup {job_id}")]
        vm = next(v for v in host.inventory(30.0).vms if v.id == estate.vm_id)
        checkpoint = vm.checkpoint(left)
        assert checkpoint is not None and core.backups.backup_checkpoint_left(vm, checkpoint) == f"hvtui backup job {job_id}"

        asked = estate.server.ops().count("backup.leftovers")
        job = core.jobs.submit_backup(HOST, estate.vm_id, mode="full", vm_name="vm1")
        done = core.jobs.wait(job.id, DEADLINE)
        assert done.state is JobState.SUCCEEDED, done.error
        assert estate.server.ops().count("backup.leftovers") == asked + 1  # how the backup found it
    finally:
        core.close()
    assert estate.recovery() == []
    ends = estate.backend.faults.end_calls
    assert (ends[0]["checkpoint_id"], ends[0]["outcome"]) == (left, "failed")  # released with backup.end first
    assert ends[-1]["outcome"] == "success"
    (entry,) = [e for e in AuditLog(paths.audit_log).read() if e["action"] == "remove-recovery-checkpoints"]
    assert entry["result"] == "ok" and entry["args"]["checkpoint_id"] == left and entry["args"]["left_by"] == job_id


def test_limit_rate_paces_the_hosts_reads_and_the_jobs_view_shows_it(estate: Estate, paths: Paths) -> None:
    from hvtui.events import Progress
    from hvtui.tui.widgets.job_row import progress_sentence

    core = make_winrm_core(estate.root, paths)
    try:
        host = core.host(HOST)
        taken: list[int] = []
        job = core.jobs.submit_backup(HOST, estate.vm_id, mode="full", vm_name="vm1", limit_rate=500_000_000)
        assert job.params["limit_rate"] == 500_000_000 and job.params["rate_limit"] == 500_000_000
        done = core.jobs.wait(job.id, DEADLINE)
        assert done.state is JobState.SUCCEEDED, done.error
        limiter = host.read_rate_limiter
        assert limiter is not None and limiter.rate == 500_000_000 and host.files().rate_limit == 500_000_000
        real_take = limiter.take
        limiter.take = lambda count: taken.append(count) or real_take(count)  # type: ignore[method-assign]
        again = core.jobs.submit_backup(HOST, estate.vm_id, mode="full", vm_name="vm1")
        assert again.params["rate_limit"] == 500_000_000  # the limit in force, shown for the next job too
        finished = core.jobs.wait(again.id, DEADLINE)
        assert finished.state is JobState.SUCCEEDED, finished.error
        assert sum(taken) >= finished.summary["read_bytes"]  # every byte read over SMB went through the limiter
        running = dataclasses.replace(
            finished, state=JobState.RUNNING, progress=Progress(phase="backup", done=1 << 20, total=8 << 20, rate=3 << 20)
        )
        assert "3.0 MiB/s (limit 476.8 MiB/s)" in progress_sentence(running)
    finally:
        core.close()


def test_limit_rate_on_the_command_line() -> None:
    from hvtui.cli import build_parser

    assert build_parser().parse_args(["backup", "vm1", "--limit-rate", "50MB/s"]).limit_rate == 50_000_000
    assert build_parser().parse_args(["backup", "vm1"]).limit_rate is None
    with pytest.raises(SystemExit):
        build_parser().parse_args(["backup", "vm1", "--limit-rate", "fast"])


def test_limit_rate_on_a_lab_host_says_there_is_nothing_to_limit(tmp_path: Path, paths: Paths) -> None:
    from test_recovery_leftovers import HOST as LAB_HOST
    from test_recovery_leftovers import make_lab_core

    vm_id = add_vm(make_host(tmp_path, LAB_HOST), blocks=2)
    core = make_lab_core(tmp_path, paths)
    try:
        job = core.jobs.submit_backup(LAB_HOST, vm_id, mode="full", vm_name="vm1", limit_rate=1_000_000)
        done = core.jobs.wait(job.id, DEADLINE)
        assert done.state is JobState.FAILED and "reads local files" in str(done.error)
    finally:
        core.close()


def test_backup_end_failing_twice_leaves_a_leftover_finding_the_next_backup_releases(estate: Estate, paths: Paths) -> None:
    estate.backend.faults.missing_file = True  # the backup fails once the checkpoint exists
    estate.backend.faults.end_failures = 2  # and backup.end fails, then fails again
    core = make_winrm_core(estate.root, paths)
    try:
        job = core.jobs.submit_backup(HOST, estate.vm_id, mode="full", vm_name="vm1")
        failed = core.jobs.wait(job.id, DEADLINE)
        assert failed.state is JobState.FAILED
        assert "the next backup of the VM removes it" in str(failed.error)
        (left,) = estate.recovery()
        host = core.host(HOST)
        vm = next(v for v in host.inventory(30.0).vms if v.id == estate.vm_id)
        # A finding naming the job (the console's recovery-checkpoint-left, `hvtui check`).
        assert core.backups.backup_checkpoint_left(vm, vm.checkpoint(left)) == f"hvtui backup job {job.id}"

        estate.backend.faults.missing_file = False
        again = core.jobs.submit_backup(HOST, estate.vm_id, mode="full", vm_name="vm1")
        done = core.jobs.wait(again.id, DEADLINE)
        assert done.state is JobState.SUCCEEDED, done.error
    finally:
        core.close()
    assert estate.recovery() == []
    outcomes = [(c["checkpoint_id"] == left, c["outcome"]) for c in estate.backend.faults.end_calls]
    assert outcomes == [(True, "failed"), (True, "failed"), (True, "failed"), (False, "success")]


def test_deleting_a_leftover_from_the_findings_releases_it_with_backup_end(estate: Estate, paths: Paths) -> None:
    estate.backend.faults.missing_file = True
    estate.backend.faults.end_failures = 2
    core = make_winrm_core(estate.root, paths)
    try:
        job = core.jobs.submit_backup(HOST, estate.vm_id, mode="full", vm_name="vm1")
        assert core.jobs.wait(job.id, DEADLINE).state is JobState.FAILED
        (left,) = estate.recovery()
        # What `d` on the finding runs (after its confirmation), audited as a checkpoint removal.
        core.actions.remove(HOST, estate.vm_id, left)
    finally:
        core.close()
    assert estate.recovery() == []
    last = estate.backend.faults.end_calls[-1]
    assert (last["checkpoint_id"], last["outcome"]) == (left, "failed")
    assert "checkpoint.remove" not in [c.op for c in estate.server.commands]
    (entry,) = [e for e in AuditLog(paths.audit_log).read() if e["action"] == "checkpoint.remove"]
    assert entry["result"] == "ok" and entry["args"]["checkpoint_id"] == left


def test_a_leftover_the_checkpoint_journal_missed_is_proven_by_the_job_journal(estate: Estate, paths: Paths) -> None:
    """Killed after the host took (and named) the checkpoint but before the console recorded
    it: here the checkpoint journal is lost after the kill, which leaves the same state."""
    marker = estate.root / "stopped"
    job_id = kill_backup_at(
        "backup", module="test_winrm_backup_service", factory="make_winrm_core", root=estate.root, vm_id=estate.vm_id,
        vm_name="vm1", marker=marker, host=HOST, min_done=1,
    )  # fmt: skip
    paths.checkpoint_journal.unlink()
    (left,) = estate.recovery()
    core = make_winrm_core(estate.root, paths)
    try:
        vm = next(v for v in core.host(HOST).inventory(30.0).vms if v.id == estate.vm_id)
        assert core.backups.backup_checkpoint_left(vm, vm.checkpoint(left)) == f"hvtui backup job {job_id}"
        job = core.jobs.submit_backup(HOST, estate.vm_id, mode="full", vm_name="vm1")
        done = core.jobs.wait(job.id, DEADLINE)
        assert done.state is JobState.SUCCEEDED, done.error
    finally:
        core.close()
    assert estate.recovery() == []
    assert (estate.backend.faults.end_calls[0]["checkpoint_id"], estate.backend.faults.end_calls[0]["outcome"]) == (left, "failed")


def test_a_checkpoint_named_after_a_live_or_unknown_job_is_not_proven_hvtuis(estate: Estate, paths: Paths) -> None:
    core = make_winrm_core(estate.root, paths)
    try:
        host = core.host(HOST)
        cp = estate.lab.create_checkpoint(estate.vm_id, "hvtui backup 0000deadbeef", "Recovery")  # no such job
        vm = next(v for v in host.inventory(30.0).vms if v.id == estate.vm_id)
        assert core.backups.backup_checkpoint_left(vm, vm.checkpoint(cp.id)) is None
    finally:
        core.close()
