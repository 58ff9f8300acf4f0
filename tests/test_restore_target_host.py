"""`hvtui restore --target-host`: a point restored as a new VM on another host than its own,
lab -> WinRM (over the loopback WS-Management server and real Samba) and a point of the host
behind WinRM -> another lab host, through the CLI and the core as a user runs them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from lab_support import add_vm, make_host
from samba_support import SambaServer
from test_winrm_restore import Rig
from winrm_rig_support import disk_files, qemu_check
from wsman_server import PASSWORD_ENV

from hvtui.cli import build_parser
from hvtui.config import Config, HostConfig, RepositoryConfig, SecretSource, WinRMSettings
from hvtui.core import Core
from hvtui.jobs import JobState
from hvtui.jobs.kinds.restore import host_staging_name
from hvtui.journal import JobJournal
from hvtui.paths import Paths

WINRM = "hv-test"


@pytest.fixture
def rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, samba_server: SambaServer):  # noqa: ANN201
    rig = Rig(tmp_path, monkeypatch, samba_server)
    yield rig
    rig.close()


@pytest.fixture
def core(rig: Rig, tmp_path: Path, paths: Paths):  # noqa: ANN201
    other = make_host(tmp_path, "lab-b")
    winrm = WinRMSettings(
        address="127.0.0.1", port=rig.server.port, scheme="http", transport="basic", username="hvtui",
        password=SecretSource(env=PASSWORD_ENV), timeout=5.0, operation_timeout=1.0,
    )  # fmt: skip
    config = Config(
        source=tmp_path / "config.yaml",
        hosts=(
            HostConfig(name="lab-src", kind="lab"),
            HostConfig(name="lab-hv", kind="lab"),
            HostConfig(name="lab-b", kind="lab"),
            HostConfig(name=WINRM, kind="winrm", winrm=winrm),
        ),
        repositories=(RepositoryConfig(name="default", path=tmp_path / "repo", default=True),),
    )
    hosts = {"lab-src": rig.source, "lab-hv": rig.target_lab, "lab-b": other, WINRM: rig.winrm}
    core = Core(config, paths, hosts=hosts)
    core.other_lab = other  # type: ignore[attr-defined]
    yield core
    core.close()


def cli(core: Core, *argv: str) -> int:
    args = build_parser().parse_args(["restore", *argv])
    return args.handler(args, core)


def test_a_lab_point_restored_on_a_winrm_host_through_the_cli(
    rig: Rig, core: Core, paths: Paths, capsys: pytest.CaptureFixture[str]
) -> None:
    vm_id = add_vm(rig.source, "web01", blocks=4, seed=2)
    point = core.backups.backup("lab-src", vm_id, "full").point_id
    expected = rig.expected(point)

    assert cli(core, "web01", "--host", "lab-src", "--as", "web01-dr", "--target-host", WINRM, "--yes") == 0
    out = capsys.readouterr().out
    assert f"new VM web01-dr on {WINRM}" in out and f"to {WINRM}/web01-dr" in out
    restored = next(vm for vm in rig.target_lab.inventory(5).vms if vm.name == "web01-dr")
    got = disk_files(rig.target_lab.vm_folder(restored.id))
    assert {name.replace("web01-dr", "web01"): data for name, data in got.items()} == expected
    for path in rig.target_lab.vm_folder(restored.id).glob("*.vhdx"):
        qemu_check(path)
    entry = [e for e in core.audit.read() if e.get("action") == "restore-as-new"][-1]
    assert entry["host"] == WINRM and entry["result"] == "ok" and entry["args"]["new_name"] == "web01-dr", entry


def test_a_point_of_the_host_behind_winrm_restored_onto_another_lab_host(
    rig: Rig, core: Core, capsys: pytest.CaptureFixture[str]
) -> None:
    vm_id = add_vm(rig.target_lab, "db01", blocks=3, seed=4)
    point = core.backups.backup("lab-hv", vm_id, "full").point_id
    assert cli(core, "db01", "--host", "lab-hv", "--as", "db01-copy", "--target-host", "lab-b", "--yes") == 0
    other = core.other_lab  # type: ignore[attr-defined]
    copy = next(vm for vm in other.inventory(5).vms if vm.name == "db01-copy")
    got = disk_files(other.vm_folder(copy.id))
    assert {name.replace("db01-copy", "db01"): data for name, data in got.items()} == rig.expected(point)
    assert "lab-b/db01-copy" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [["--to", "OUT", "--target-host", "lab-b"], ["--in-place", "--target-host", "lab-b"]],
    ids=["folder", "in-place-elsewhere"],
)
def test_target_host_goes_only_with_a_new_vm(
    rig: Rig, core: Core, tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    vm_id = add_vm(rig.source, "web01", blocks=1)
    core.backups.backup("lab-src", vm_id, "full")
    argv = [str(tmp_path / "out") if a == "OUT" else a for a in argv]
    assert cli(core, "web01", "--host", "lab-src", *argv, "--yes") == 2
    assert "--target-host goes with --as" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    assert [vm.name for vm in core.other_lab.inventory(5).vms] == []  # type: ignore[attr-defined]


def test_the_in_place_plan_on_a_winrm_host_says_only_the_disks_are_replaced(rig: Rig, core: Core) -> None:
    vm_id = add_vm(rig.target_lab, "db01", blocks=2)
    point = core.backups.backup("lab-hv", vm_id, "full").point_id
    core.inventory.refresh()
    on_lab = core.backups.plan_restore(point, in_place=True)
    on_winrm = core.backups.plan_restore(point, in_place=True, host=WINRM)
    assert on_lab.lines()[1].startswith("Replaced: the whole VM folder, ")
    assert on_winrm.lines()[1].startswith("Replaced: the VM's disks (its configuration stays), ")
    # the disks by name, as restore.import replaces them; nothing listed as deleted
    assert [f.name for f in on_winrm.replaced] == ["db01.vhdx"] and on_winrm.deleted == ()


def killed_restore(rig: Rig, core: Core, paths: Paths) -> tuple[str, str, Path]:
    """What a console killed while it wrote a restore over SMB leaves: the job's journal entries
    (a pid that is gone) and its half-written files in its staging folder on the host."""
    vm_id = add_vm(rig.source, "web01", blocks=2)
    point = core.backups.backup("lab-src", vm_id, "full").point_id
    manifest = core.backups.find_point(point)[1]
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    params = {"mode": "new", "point_id": point, "repository": "default", "new_name": "ghost", "host": WINRM}
    journal = JobJournal(paths.job_journal)
    journal.append("submitted", "deadbeef01", at="2026-12-05T10:00:00+00:00", kind="restore", host=WINRM,
                   vm_id=vm_id, vm_name="web01", params=params, pid=dead.pid, proc_start="1")  # fmt: skip
    journal.append("started", "deadbeef01", at="2026-12-05T10:00:01+00:00")
    staged = rig.target_lab.root / "hvtui-restore" / host_staging_name("deadbeef01")
    staged.mkdir(parents=True)
    for entry in manifest.files:
        (staged / entry.path).write_bytes(b"half written")
    return point, "deadbeef01", staged


def test_dismissing_a_killed_restore_to_the_winrm_host_removes_its_staged_files(
    rig: Rig, core: Core, paths: Paths
) -> None:
    _point, job_id, staged = killed_restore(rig, core, paths)
    assert [job.id for job in core.jobs.interrupted_jobs()] == [job_id]
    core.jobs.dismiss_interrupted(job_id)
    assert not staged.exists() and staged.parent.is_dir()  # its files and folder removed, restore_dir kept


def test_a_killed_restore_to_the_winrm_host_is_cleaned_by_the_next_one(rig: Rig, core: Core, paths: Paths) -> None:
    """The next restore job finds the interrupted one in the journal and removes its files over SMB."""
    point, _job_id, staged = killed_restore(rig, core, paths)

    job = core.jobs.submit_restore(point, "new", new_name="web01-2", host=WINRM, repository="default")
    done = core.jobs.wait(job.id, 120)
    assert done.state is JobState.SUCCEEDED, done.error
    assert not staged.exists()  # the dead run's files and then its folder removed over SMB
    # the live run staged under its own job's name, and the host removed that folder after the import
    assert rig.ops.imported[-1]["folder"] == f"D:\\hvtui-restore\\{host_staging_name(job.id)}"
    assert not (rig.target_lab.root / "hvtui-restore" / host_staging_name(job.id)).exists()
