"""Restores on the lab: what an in-place restore replaces and loses is stated before it runs
(service plan, CLI plan with and without --yes, audit entry); a copy or a folder restore is
one flattened disk per drive without checkpoints unless the tree is asked for."""

from __future__ import annotations

import dataclasses
import errno
import io
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import humanize
import pytest

from hvtui.audit import AuditLog
from hvtui.clock import FixedClock, SystemClock
from hvtui.config import Config, HostConfig, RepositoryConfig
from hvtui.core import Core
from hvtui.engine import restore as restore_module
from hvtui.engine.backup import run_backup
from hvtui.engine.repository import Repository
from hvtui.engine.restore import RestoreTargetError, restore_to_directory
from hvtui.errors import RefusedError
from hvtui.hosts.lab import disk as vdisk
from hvtui.hosts.lab.host import LabHost
from hvtui.paths import Paths

MiB = 1 << 20
HOST = "lab-a"


@pytest.fixture
def lab(tmp_path: Path, paths: Paths):  # noqa: ANN201
    clock = FixedClock()
    lab_dir = tmp_path / "lab"
    host = LabHost.create(lab_dir / HOST, HOST, clock)
    vm_id = host.add_vm("sql01", state="Off", disk_sizes=(8 * MiB, 4 * MiB), fsync=False)
    host.write_guest_data(vm_id, 0, 0, b"base data " * 50_000)
    host.write_guest_data(vm_id, 1, MiB, b"log disk " * 20_000)
    config = Config(
        source=tmp_path / "config.yaml",
        hosts=(HostConfig(name=HOST, kind="lab"),),
        repositories=(RepositoryConfig(name="default", path=tmp_path / "repo", default=True),),
    )
    core = Core(config, paths, clock=clock, lab_dir=lab_dir, hosts={HOST: host})
    yield core, host, vm_id, clock
    core.close()


def test_an_in_place_restore_names_the_checkpoints_and_files_it_loses_and_audits_them(lab) -> None:  # noqa: ANN001
    core, host, vm_id, clock = lab
    point = core.backups.backup(HOST, vm_id, "full").point_id
    clock.advance(hours=1)
    later = host.create_checkpoint(vm_id, "after the backup", "Standard")
    host.write_guest_data(vm_id, 0, 2 * MiB, b"new since then " * 30_000)
    avhdx = Path(host.vm(vm_id).disks[0].path)
    assert avhdx.suffix == ".avhdx"

    plan = core.backups.plan_restore(point, in_place=True)
    assert [cp.name for cp in plan.lost_checkpoints] == ["after the backup"]
    deleted = {f.name: f.bytes for f in plan.deleted}
    assert deleted[avhdx.name] == avhdx.stat().st_size > 0
    assert {f.name for f in plan.replaced} >= {"sql01.vhdx"}
    assert plan.lost_bytes == sum(p.stat().st_size for p in host.vm_folder(vm_id).iterdir() if p.is_file())
    text = "\n".join(plan.lines())
    assert "'after the backup'" in text and avhdx.name in text and "deleted" in text

    core.backups.restore(point, in_place=True)
    assert host.vm(vm_id).checkpoints == ()
    assert not avhdx.exists()
    entry = [e for e in AuditLog(core.paths.audit_log).read() if e["action"] == "restore-in-place"][-1]
    assert entry["result"] == "ok"
    assert entry["args"]["lost_checkpoints"] == ["after the backup"] and later.id not in json.dumps(entry["args"]["replaced_files"])
    assert avhdx.name in entry["args"]["deleted_files"]
    assert entry["args"]["replaced_bytes"] == plan.lost_bytes


def test_a_copy_is_flattened_without_checkpoints_unless_the_tree_is_kept(lab, tmp_path: Path) -> None:  # noqa: ANN001
    core, host, vm_id, clock = lab
    clock.advance(days=-23)
    host.create_checkpoint(vm_id, "Production 23 days old", "Production")
    clock.advance(days=23)
    host.write_guest_data(vm_id, 0, 3 * MiB, b"after the checkpoint " * 20_000)
    expected = [host.read_disk(vm_id, 0, 0, 8 * MiB), host.read_disk(vm_id, 1, 0, 4 * MiB)]
    point = core.backups.backup(HOST, vm_id, "full").point_id

    plan = core.backups.plan_restore(point, as_name="sql01-copy")
    assert plan.dropped_checkpoints == ("Production 23 days old",) and plan.restored_checkpoints == ()
    copy = core.backups.restore(point, as_name="sql01-copy")
    vm = host.vm(copy.vm_id)
    assert vm.checkpoints == ()
    assert [len(d.chain) for d in vm.disks] == [1, 1]
    assert sorted(p.name for p in host.vm_folder(copy.vm_id).glob("*hdx")) == ["sql01-copy.vhdx", "sql01-copy_disk1.vhdx"]
    assert [host.read_disk(copy.vm_id, i, 0, size) for i, size in ((0, 8 * MiB), (1, 4 * MiB))] == expected
    host.create_checkpoint(copy.vm_id, "works on the copy", "Standard")  # a usable VM

    tree = core.backups.restore(point, as_name="sql01-tree", keep_checkpoints=True)
    assert [cp.name for cp in host.vm(tree.vm_id).checkpoints] == ["Production 23 days old"]
    assert host.read_disk(tree.vm_id, 0, 0, 8 * MiB) == expected[0]

    flat_dir = tmp_path / "flat"
    core.backups.restore(point, to_dir=flat_dir)
    disks = sorted(p.name for p in flat_dir.iterdir() if p.name.endswith("hdx"))
    assert disks == ["sql01.vhdx", "sql01_disk1.vhdx"]
    assert vdisk.read_header(flat_dir / "sql01.vhdx").parent_name is None
    assert vdisk.read_logical(flat_dir / "sql01.vhdx") == expected[0]
    assert vdisk.read_logical(flat_dir / "sql01_disk1.vhdx") == expected[1]
    config = json.loads(next(flat_dir.glob("*.vmcx")).read_text())
    assert config["checkpoints"] == [] and sorted(config["files"]) == disks
    assert not [p for p in flat_dir.iterdir() if p.name.startswith(".hvtui-restore")]

    tree_dir = tmp_path / "tree"
    core.backups.restore(point, to_dir=tree_dir, keep_checkpoints=True)
    assert len([p for p in tree_dir.iterdir() if p.suffix == ".avhdx"]) == 2
    assert vdisk.read_logical(next(tree_dir.glob("sql01_*.avhdx"))) in expected


# -- the CLI, as a script sees it --------------------------------------------------------------
@pytest.fixture
def estate(tmp_path: Path) -> dict:
    lab_dir = tmp_path / "lab"
    host = LabHost.create(lab_dir / HOST, HOST, SystemClock())
    vm_id = host.add_vm("db01", state="Off", disk_sizes=(8 * MiB,), fsync=False)
    host.write_guest_data(vm_id, 0, 0, os.urandom(400_000))
    config = tmp_path / "config.yaml"
    config.write_text(f"hosts:\n  - name: {HOST}\n    kind: lab\nrepositories:\n  - name: main\n    path: {tmp_path / 'repo'}\n")
    return {"lab_dir": lab_dir, "config": config, "host": host, "vm_id": vm_id}


def hvtui(estate: dict, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "hvtui", "--config", str(estate["config"]), "--lab-dir", str(estate["lab_dir"]), *args]
    return subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300)


def test_the_cli_prints_the_plan_with_and_without_yes_and_can_back_up_first(estate: dict) -> None:
    host, vm_id = estate["host"], estate["vm_id"]
    assert hvtui(estate, "backup", "db01").returncode == 0
    host.create_checkpoint(vm_id, "before patching", "Standard")
    avhdx = Path(host.vm(vm_id).disks[0].path).name

    refused = hvtui(estate, "restore", "db01", "--in-place")  # no terminal, no --yes
    assert refused.returncode == 4
    assert "Checkpoints lost (1)" in refused.stdout and "'before patching'" in refused.stdout
    assert f"deleted:     {avhdx}" in refused.stdout
    doc = json.loads(hvtui(estate, "restore", "db01", "--in-place", "--json").stdout)
    assert [cp["name"] for cp in doc["plan"]["lost_checkpoints"]] == ["before patching"]

    done = hvtui(estate, "restore", "db01", "--in-place", "--yes", "--backup-first")
    assert done.returncode == 0, done.stderr
    assert "Checkpoints lost (1)" in done.stdout and "'before patching'" in done.stdout
    assert "Backed up the current state first" in done.stdout
    assert host.vm(vm_id).checkpoints == ()
    # The state before the restore, checkpoint and all, is a restore point of its own.
    back = hvtui(estate, "restore", "db01", "--as", "db01-before", "--keep-checkpoints", "--yes", "--json")
    assert back.returncode == 0, back.stderr
    restored = host.vm(json.loads(back.stdout)["vm_id"])
    assert [cp.name for cp in restored.checkpoints] == ["before patching"]


# -- a killed restore's staging --------------------------------------------------------------------
@pytest.mark.parametrize("cleaner", ["dismiss", "resume", "next restore"])
def test_a_killed_folder_restore_leaves_staging_that_the_journal_names_and_cleans(
    cleaner: str, tmp_path: Path, paths: Paths
) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from kill_support import kill_restore_at
    from lab_support import add_vm, make_host
    from test_jobs_lab import HOST as JOBS_HOST
    from test_jobs_lab import make_lab_core

    from hvtui.cli import main

    host = make_host(tmp_path, JOBS_HOST)
    vm_id = add_vm(host, blocks=24)
    core = make_lab_core(tmp_path, paths)
    try:
        point = core.backups.backup(JOBS_HOST, vm_id, "full").point_id
    finally:
        core.close()
    target = tmp_path / "restored"
    job_id = kill_restore_at(
        module="test_jobs_lab", factory="make_lab_core", root=tmp_path, point=point, directory=target,
        marker=tmp_path / "stopped", min_on_disk=4 * MiB,
    )  # fmt: skip
    (staged,) = [p for p in target.iterdir() if p.name.startswith(".hvtui-restore-")]
    used = sum(p.stat().st_blocks * 512 for p in staged.rglob("*") if p.is_file())
    assert used >= 4 * MiB

    core = make_lab_core(tmp_path, paths)
    try:
        (interrupted,) = core.jobs.interrupted_jobs()
        assert interrupted.id == job_id and interrupted.params["staging"] == staged.name
        # The job's log (the console's job detail, `hvtui jobs`) says what is left and its size.
        (left,) = [line for line in interrupted.log if "staged in" in line]
        assert left.startswith(f"left {humanize.naturalsize(used, binary=True)} staged in {staged};")
        if cleaner == "dismiss":
            config = tmp_path / "config.yaml"
            config.write_text(
                f"hosts:\n  - name: {JOBS_HOST}\n    kind: lab\nrepositories:\n  - name: default\n"
                f"    path: {tmp_path / 'repo'}\n    default: true\nlab:\n  dir: {tmp_path}\n"
            )
            assert main(["--config", str(config), "jobs", "dismiss", job_id]) == 0
        elif cleaner == "resume":
            resumed = core.jobs.resume(job_id)
            assert core.jobs.wait(resumed.id).state.value == "succeeded"
        else:
            other = core.jobs.submit_restore(point, "directory", directory=tmp_path / "elsewhere")
            assert core.jobs.wait(other.id).state.value == "succeeded"
        assert not staged.exists()
        after = [j for j in core.jobs.history() if j.id == job_id][0]
        assert not [line for line in after.log if "staged in" in line]
    finally:
        core.close()


# -- a full target disk ------------------------------------------------------------------------------
TMPFS_RESTORE = textwrap.dedent(
    """
    import json, os, sys
    from pathlib import Path
    from hvtui.engine.repository import Repository
    from hvtui.engine.restore import restore_to_directory
    from hvtui.errors import HvtuiError

    repo = Repository.open(Path(sys.argv[1]))
    target = Path(sys.argv[2]) / "web01"
    try:
        restore_to_directory(repo, repo.point_ids()[0], target)
        error = None
    except HvtuiError as err:
        error = f"{type(err).__name__}: {err}"
    print(json.dumps({"error": error, "left": sorted(os.listdir(target)) if target.exists() else None}))
    """
)


def _can_mount_tmpfs() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /mnt"], capture_output=True, timeout=30)
    return probe.returncode == 0


@pytest.fixture
def noisy_point(tmp_path: Path) -> tuple[Repository, str]:
    sys.path.insert(0, str(Path(__file__).parent))
    from engine_support import DirHost

    host = DirHost(tmp_path / "host")
    host.add_vm("vm1", "web01")
    (host.vm_dir("vm1") / "noise.bin").write_bytes(os.urandom(6 * MiB))  # incompressible, no holes
    repo = Repository.open(tmp_path / "repo", create=True)
    return repo, run_backup(repo, host, "vm1", "full").point_id


@pytest.mark.skipif(not _can_mount_tmpfs(), reason="no user namespaces to mount a small tmpfs")
def test_a_restore_into_a_too_small_filesystem_is_refused_before_writing(noisy_point, tmp_path: Path) -> None:  # noqa: ANN001
    repo, _point = noisy_point
    small = tmp_path / "small"
    small.mkdir()
    script = tmp_path / "restore.py"
    script.write_text(TMPFS_RESTORE)
    inner = f"mount -t tmpfs -o size=3m tmpfs {small} && exec {sys.executable} {script} {repo.root} {small}"
    proc = subprocess.run(["unshare", "-rm", "sh", "-c", inner], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    outcome = json.loads(proc.stdout.strip().splitlines()[-1])
    assert outcome["error"].startswith("RefusedError: not enough free space")
    assert f"on the filesystem of {small}/web01" in outcome["error"] and "repository" not in outcome["error"]
    assert outcome["left"] == []  # not even a staging folder


def test_a_target_disk_filling_up_mid_restore_is_blamed_on_the_target(
    noisy_point, tmp_path: Path, monkeypatch: pytest.MonkeyPatch  # noqa: ANN001
) -> None:
    repo, point = noisy_point
    real = os.pwrite
    written = {"n": 0}

    def filling(fd: int, data, offset: int) -> int:  # noqa: ANN001
        written["n"] += 1
        if written["n"] > 2:  # the free-space check passed; something else filled the disk since
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data, offset)

    monkeypatch.setattr(restore_module.os, "pwrite", filling)
    target = tmp_path / "out"
    with pytest.raises(RestoreTargetError) as caught:
        restore_to_directory(repo, point, target)
    message = str(caught.value)
    assert message.startswith(f"the restore target's disk is full (the filesystem of {target}")
    assert "repository" not in message
    assert list(target.iterdir()) == []


# -- refusals --------------------------------------------------------------------------------------
def test_restore_refusals_exit_4_and_read_refused_in_jobs_and_audit(estate: dict, tmp_path: Path) -> None:
    assert hvtui(estate, "backup", "db01").returncode == 0
    out = tmp_path / "out"
    assert hvtui(estate, "restore", "db01", "--to", str(out)).returncode == 0
    again = hvtui(estate, "restore", "db01", "--to", str(out))
    assert again.returncode == 4 and "hvtui: refused: refusing to overwrite" in again.stderr
    taken = hvtui(estate, "restore", "db01", "--as", "db01", "--yes", "--json")
    assert taken.returncode == 4, taken.stderr
    assert "refused" in taken.stderr and "a VM named 'db01' already exists" in taken.stderr
    assert json.loads(taken.stdout)["exit_code"] == 4

    jobs = json.loads(hvtui(estate, "jobs", "--json").stdout)
    states = {(j["mode"], j["state"]) for j in jobs if j["kind"] == "restore"}
    assert states == {("directory", "succeeded"), ("directory", "refused"), ("new", "refused")}
    table = hvtui(estate, "jobs").stdout
    assert "refused" in table and "failed" not in table
    entries = json.loads(hvtui(estate, "audit", "--json").stdout)
    (new,) = [e for e in entries if e["action"] == "restore-as-new"]
    assert new["result"] == "refused"


# -- a point taken from a lab built before the lab wrote VHDX -----------------------------------
class OldFormatLabHost(LabHost):
    """Backs up as a pre-VHDX lab did: each disk file as the lab's old format (its magic first)."""

    def open_backup_source(self, vm_id, progress=None, on_checkpoint=None):  # noqa: ANN001, ANN201
        source = super().open_backup_source(vm_id, progress, on_checkpoint)

        def old_format(sf):  # noqa: ANN001, ANN202
            def opener():  # noqa: ANN202
                with sf.open() as fh:
                    return io.BytesIO(vdisk.OLD_FORMAT_MAGIC + fh.read()[len(vdisk.OLD_FORMAT_MAGIC) :])

            return dataclasses.replace(sf, opener=opener, change_id=None, virtual_ranges=False, local_path=None)

        source.files = [old_format(sf) if sf.rel_path.endswith("hdx") else sf for sf in source.files]
        return source


def test_a_point_from_the_pre_vhdx_lab_says_what_it_holds_and_what_to_do(tmp_path: Path, paths: Paths) -> None:
    clock = FixedClock()
    lab_dir = tmp_path / "lab"
    LabHost.create(lab_dir / HOST, HOST, clock)
    host = OldFormatLabHost.open(lab_dir / HOST, HOST, clock)
    vm_id = host.add_vm("sql01", state="Off", disk_sizes=(8 * MiB,), fsync=False)
    host.write_guest_data(vm_id, 0, 0, b"base data " * 50_000)
    host.create_checkpoint(vm_id, "before", "Standard")
    config = Config(
        source=tmp_path / "config.yaml",
        hosts=(HostConfig(name=HOST, kind="lab"),),
        repositories=(RepositoryConfig(name="default", path=tmp_path / "repo", default=True),),
    )
    core = Core(config, paths, clock=clock, lab_dir=lab_dir, hosts={HOST: host})
    try:
        point = core.backups.backup(HOST, vm_id, "full").point_id
        for restore in (
            lambda: core.backups.restore(point, as_name="sql01-copy"),
            lambda: core.backups.restore(point, as_name="sql01-tree", keep_checkpoints=True),
            lambda: core.backups.restore(point, in_place=True),
            lambda: core.backups.restore(point, to_dir=tmp_path / "flat"),  # flattening needs VHDX
        ):
            with pytest.raises(RefusedError) as caught:
                restore()
            text = str(caught.value)
            assert "taken from a lab built before the lab wrote VHDX" in text and "sql01.vhdx" in text
            assert "--to DIR --keep-checkpoints" in text and "back the VM up again" in text
            assert "not a VHDX file" not in text
        assert [vm.name for vm in host.inventory().vms] == ["sql01"]  # nothing registered
        assert host.read_disk(vm_id, 0, 0, 10) == b"base data "  # nor replaced
        # What the message offers works: the files exactly as they were backed up.
        core.backups.restore(point, to_dir=tmp_path / "tree", keep_checkpoints=True)
    finally:
        core.close()
    assert (tmp_path / "tree" / "sql01.vhdx").read_bytes().startswith(vdisk.OLD_FORMAT_MAGIC)
    entries = [e for e in AuditLog(paths.audit_log).read() if e["action"] == "restore-as-new"]
    assert entries and all(e["result"] != "ok" for e in entries)
