"""Restore to a WinRM host: the loopback WS-Management server answers restore.prepare and
restore.import from a lab host whose folders live inside a real Samba share (its drive ``D:``);
the files travel over SMB3 (the host's ``smb:`` block, encryption required), never over WinRM.

Lab -> WinRM as a new VM (byte-identical, qemu-img-valid), a point of the wrapped host restored
in place over its Off VM and onto another lab host, and the faults: no space, the share gone
mid-write (smbd killed; and, deterministically, a folder-backed RemoteFiles that loses its
share after N bytes), an incompatible configuration, a running VM, hostile names.
"""

from __future__ import annotations

import random
import re
import sys
from pathlib import Path

import pytest

from hvtui.engine.backup import run_backup
from hvtui.engine.restore import restore_to_host
from hvtui.errors import HostError, HostRefused, ReadOnlyError
from hvtui.events import Progress
from hvtui.hosts import smb
from hvtui.hosts.winrm.operations import full_script

sys.path.insert(0, str(Path(__file__).parent))
from lab_support import add_vm, make_host, scribble, state_digests  # noqa: E402
from remote_files_support import FolderRemoteFiles  # noqa: E402
from samba_support import SambaServer  # noqa: E402
from winrm_rig_support import MiB, WinRMRig, disk_files, qemu_check, share_settings  # noqa: E402
from wsman_restore import LabRestoreOps, failure  # noqa: E402
from wsman_server import LabBackend, WSManServer, make_winrm_host  # noqa: E402

HOSTILE = "it's $(Remove-VM -Name x) `$x` ‘z’ “w” ; b"


class Rig(WinRMRig):
    """A source lab host, and a lab host inside the Samba share behind the loopback WinRM server.

    ``samba`` None: the WinRM host's files go through a ``FolderRemoteFiles`` on the same folder
    (for drills that need a share to vanish after an exact number of bytes)."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, samba: SambaServer | None) -> None:
        self.source = make_host(tmp_path, "lab-src")
        self.target_lab = make_host(samba.folder if samba else tmp_path, "lab-hv")  # the "Hyper-V host"
        self.ops = LabRestoreOps(self.target_lab, {"D:": self.target_lab.root})
        super().__init__(tmp_path, monkeypatch, WSManServer(LabBackend(self.target_lab, self.ops)))
        self.samba = samba
        self.files: FolderRemoteFiles | None = None
        if samba is not None:
            smb = share_settings(samba, "lab-hv", monkeypatch)
            self.winrm = make_winrm_host(self.server.port, long_timeout=60.0, smb=smb)
        else:
            self.files = FolderRemoteFiles("hv-test", {"D:": self.target_lab.root})
            self.winrm = make_winrm_host(self.server.port, remote_files=self.files, long_timeout=60.0)

    def staged_leftovers(self) -> list[Path]:
        restore_root = self.target_lab.root / "hvtui-restore"
        return [p for p in restore_root.rglob("*") if p.is_file()] if restore_root.exists() else []


@pytest.fixture
def rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, samba_server: SambaServer):  # noqa: ANN201
    rig = Rig(tmp_path, monkeypatch, samba_server)
    yield rig
    rig.close()


@pytest.fixture
def folder_rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    rig = Rig(tmp_path, monkeypatch, None)
    yield rig
    rig.close()


def test_a_lab_point_restored_as_a_new_vm_on_the_winrm_host(rig: Rig) -> None:
    vm_id = add_vm(rig.source, "web01", blocks=6, seed=11)
    point = run_backup(rig.repo, rig.source, vm_id, "full").point_id
    expected = rig.expected(point)

    result = restore_to_host(rig.repo, point, rig.winrm, "new", new_name="web01-copy")

    assert result.host == "hv-test" and result.vm_name == "web01-copy" and result.vm_id != vm_id
    restored = rig.target_lab.vm(result.vm_id)
    assert restored.name == "web01-copy" and restored.state == "Off"
    folder = rig.target_lab.vm_folder(result.vm_id)
    got = disk_files(folder)
    # the lab names a new VM's disks after it: same bytes, new name
    assert {name.replace("web01-copy", "web01"): data for name, data in got.items()} == expected
    for path in folder.glob("*.vhdx"):
        qemu_check(path)
    # the bytes went over SMB into the prepared folder; WinRM carried only the operations' arguments
    prepare = rig.server.commands_for("restore.prepare")[0].arguments
    assert prepare is not None and prepare["bytes"] == result.written_bytes
    assert prepare["folder"].startswith("D:\\hvtui-restore\\hvtui-restore-")
    assert rig.ops.imported[0]["folder"] == prepare["folder"]
    assert all(len(c.stdin) < 64 * 1024 for c in rig.server.commands)
    imported = rig.ops.imported[0]
    assert imported["mode"] == "new" and imported["new_name"] == "web01-copy"
    assert imported["config_path"].endswith(".vmcx") and imported["destination"] == "D:\\VMs\\web01-copy"
    assert rig.staged_leftovers() == [] and not list((rig.target_lab.root / "hvtui-restore").iterdir())


def test_a_point_of_the_winrm_host_restored_in_place_and_onto_another_lab_host(rig: Rig, tmp_path: Path) -> None:
    # wbackup's WinRM backup is not merged: the point is made from the lab host the server wraps.
    vm_id = add_vm(rig.target_lab, "db01", blocks=5, seed=5)
    before = state_digests(rig.target_lab, vm_id)
    point = run_backup(rig.repo, rig.target_lab, vm_id, "full").point_id
    scribble(rig.target_lab, vm_id, random.Random(3), writes=4)
    assert state_digests(rig.target_lab, vm_id) != before

    restore_to_host(rig.repo, point, rig.winrm, "in_place", vm_id=vm_id)
    assert state_digests(rig.target_lab, vm_id) == before
    assert rig.ops.imported[-1]["mode"] == "in_place" and rig.ops.imported[-1]["vm_id"] == vm_id
    assert rig.staged_leftovers() == []

    other = make_host(tmp_path, "lab-other")
    copy = restore_to_host(rig.repo, point, other, "new", new_name="db01")
    assert disk_files(other.vm_folder(copy.vm_id)) == rig.expected(point)


def test_in_place_over_a_running_vm_is_refused_before_anything_is_written(rig: Rig) -> None:
    vm_id = add_vm(rig.target_lab, "db01", state="Running", blocks=2)
    point = run_backup(rig.repo, rig.target_lab, vm_id, "full").point_id
    with pytest.raises(HostError, match="turn it off") as info:
        restore_to_host(rig.repo, point, rig.winrm, "in_place", vm_id=vm_id)
    assert info.value.kind == "state"
    assert rig.staged_leftovers() == [] and rig.server.commands_for("restore.prepare") == []


def test_no_space_on_the_host_is_a_clear_error_and_nothing_is_written(rig: Rig) -> None:
    vm_id = add_vm(rig.source, "web01", blocks=4)
    point = run_backup(rig.repo, rig.source, vm_id, "full").point_id
    rig.ops.free_bytes = 1000
    with pytest.raises(HostError) as info:
        restore_to_host(rig.repo, point, rig.winrm, "new", new_name="copy")
    assert info.value.kind == "space"
    assert "not enough free space" in str(info.value) and "nothing was written" in str(info.value)
    assert not (rig.target_lab.root / "hvtui-restore").exists() and rig.ops.imported == []
    assert [vm.name for vm in rig.target_lab.inventory(5).vms] == []


def test_the_share_gone_mid_write_removes_the_staged_files_and_imports_nothing(folder_rig: Rig) -> None:
    rig = folder_rig
    assert rig.files is not None
    vm_id = add_vm(rig.source, "web01", blocks=8)
    point = run_backup(rig.repo, rig.source, vm_id, "full").point_id
    rig.files.share_gone_after = 2 * MiB
    with pytest.raises(HostError, match="went away") as info:
        restore_to_host(rig.repo, point, rig.winrm, "new", new_name="copy")
    assert info.value.kind == "smb-lost"
    assert rig.files.opened and sorted(rig.files.removed) == sorted(rig.files.opened)
    assert rig.staged_leftovers() == []
    assert rig.ops.imported == [] and rig.target_lab.inventory(5).vms == ()


def test_a_share_gone_for_good_leaves_the_staged_files_named_in_the_log(
    folder_rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    rig = folder_rig
    assert rig.files is not None
    vm_id = add_vm(rig.source, "web01", blocks=8)
    point = run_backup(rig.repo, rig.source, vm_id, "full").point_id
    rig.files.share_gone_after = 2 * MiB
    rig.files.gone_for_good = True
    with pytest.raises(HostError, match="went away"):
        restore_to_host(rig.repo, point, rig.winrm, "new", new_name="copy")
    assert rig.ops.imported == [] and rig.target_lab.inventory(5).vms == ()
    folder = rig.files.opened[0].rsplit("\\", 1)[0]
    assert any(f"are left in {folder}: delete the folder on the host" in r.getMessage() for r in caplog.records)


def test_an_incompatible_configuration_is_refused_by_kind_and_the_staged_files_removed(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    vm_id = add_vm(rig.source, "web01", blocks=2)
    point = run_backup(rig.repo, rig.source, vm_id, "full").point_id
    message = "Cannot import the restored VM: The processor of this host is not compatible (message 24004)"
    monkeypatch.setattr(rig.ops, "import_", lambda args: failure("incompatible", message))
    with pytest.raises(HostError) as info:
        restore_to_host(rig.repo, point, rig.winrm, "new", new_name="copy")
    assert info.value.kind == "incompatible" and "message 24004" in info.value.detail
    assert "HvtuiKind" not in str(info.value)
    assert (rig.target_lab.root / "hvtui-restore").exists() and rig.staged_leftovers() == []


def test_safe_fixes_the_host_made_are_warnings_of_the_result(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    vm_id = add_vm(rig.source, "web01", blocks=2)
    point = run_backup(rig.repo, rig.source, vm_id, "full").point_id
    real = rig.ops.import_
    note = "Network adapter Network Adapter disconnected: Could not find Ethernet switch 'LAN'"
    monkeypatch.setattr(rig.ops, "import_", lambda args: {**real(args), "warnings": [note]})
    result = restore_to_host(rig.repo, point, rig.winrm, "new", new_name="copy")
    assert result.warnings == [note] and result.to_dict()["warnings"] == [note]


def test_hostile_names_travel_intact(rig: Rig) -> None:
    vm_id = add_vm(rig.source, "web01", blocks=2)
    point = run_backup(rig.repo, rig.source, vm_id, "full").point_id
    result = restore_to_host(rig.repo, point, rig.winrm, "new", new_name=HOSTILE)
    assert rig.target_lab.vm(result.vm_id).name == HOSTILE
    command = rig.server.commands_for("restore.import")[0]
    assert command.arguments is not None and command.arguments["new_name"] == HOSTILE
    assert HOSTILE not in command.script


def test_names_a_hyper_v_host_cannot_take_and_taken_names_are_refused_before_writing(rig: Rig) -> None:
    vm_id = add_vm(rig.source, "web01", blocks=2)
    add_vm(rig.target_lab, "taken", blocks=1)
    point = run_backup(rig.repo, rig.source, vm_id, "full").point_id
    with pytest.raises(HostError, match="cannot name a VM"):
        restore_to_host(rig.repo, point, rig.winrm, "new", new_name='a "quoted" name')
    with pytest.raises(HostRefused, match="already exists"):
        restore_to_host(rig.repo, point, rig.winrm, "new", new_name="TAKEN")
    assert rig.staged_leftovers() == [] and rig.server.commands_for("restore.prepare") == []


def test_a_read_only_winrm_host_refuses_restores(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    vm_id = add_vm(rig.source, "web01", blocks=2)
    point = run_backup(rig.repo, rig.source, vm_id, "full").point_id
    monkeypatch.setattr(rig.winrm, "read_only", True)
    with pytest.raises(ReadOnlyError):
        restore_to_host(rig.repo, point, rig.winrm, "new", new_name="copy")
    assert rig.server.commands == []


def test_smbd_killed_mid_write_ends_the_restore_cleanly_and_imports_nothing(
    rig: Rig, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The SMB client retries a lost session on its own schedule (seconds); a short one here,
    # since what is checked is what the restore does once the share stays gone.
    real_open = smb.open_remote_files
    monkeypatch.setattr(smb, "open_remote_files", lambda *a, **k: real_open(*a, **k, retry_delays=(0.05, 0.1)))
    vm_id = add_vm(rig.source, "web01", blocks=16)
    point = run_backup(rig.repo, rig.source, vm_id, "full").point_id
    assert rig.samba is not None
    samba = rig.samba

    def kill_once_written(event: Progress) -> None:
        if event.phase == "restore" and (event.done or 0) >= 2 * MiB and samba.process is not None:
            samba.kill()

    with pytest.raises(HostError) as info:
        restore_to_host(rig.repo, point, rig.winrm, "new", new_name="copy", progress=kill_once_written, progress_interval=0)
    assert info.value.kind.startswith("smb-"), info.value
    assert "hv-test" in str(info.value)
    assert rig.ops.imported == [] and rig.target_lab.inventory(5).vms == ()
    # the share is gone, so the staged files stay: the log names the folder to delete
    assert any("delete the folder on the host" in r.getMessage() for r in caplog.records)


def test_the_templates_read_exactly_the_arguments_the_host_sends(rig: Rig) -> None:
    vm_id = add_vm(rig.target_lab, "db01", blocks=2)
    point = run_backup(rig.repo, rig.target_lab, vm_id, "full").point_id
    restore_to_host(rig.repo, point, rig.winrm, "new", new_name="copy")
    restore_to_host(rig.repo, point, rig.winrm, "in_place", vm_id=vm_id)
    sent: dict[str, set[str]] = {}
    for command in rig.server.commands:
        if command.op and command.op.startswith("restore.") and command.arguments is not None:
            sent.setdefault(command.op, set()).update(command.arguments)
            assert command.script == full_script(command.op)
    assert sent == {
        "restore.prepare": {"op", "v", "folder", "bytes"},
        "restore.import": {"op", "v", "folder", "config_path", "mode", "destination", "new_name", "flatten", "vm_id"},
    }
    for op, keys in sent.items():
        used = set(re.findall(r"\$HvtuiArgs\.(\w+)", full_script(op)))
        assert used == keys - {"op"}


def test_in_place_over_a_vm_with_checkpoints_is_refused_on_a_winrm_host(rig: Rig) -> None:
    # Only the disks are replaced there: the VM's checkpoints would point into a chain that is gone.
    vm_id = add_vm(rig.target_lab, "db01", blocks=2)
    point = run_backup(rig.repo, rig.target_lab, vm_id, "full").point_id
    rig.target_lab.create_checkpoint(vm_id, "after the point", "Standard")
    before = state_digests(rig.target_lab, vm_id)
    with pytest.raises(HostError, match="has 1 checkpoint") as info:
        restore_to_host(rig.repo, point, rig.winrm, "in_place", vm_id=vm_id)
    assert info.value.kind == "state"
    assert state_digests(rig.target_lab, vm_id) == before
    assert rig.server.commands_for("restore.prepare") == []


def test_a_point_with_checkpoints_restored_as_a_flattened_new_vm(rig: Rig) -> None:
    vm_id = add_vm(rig.source, "web01", blocks=4, seed=21)
    rig.source.create_checkpoint(vm_id, "before the patch", "Standard")
    scribble(rig.source, vm_id, random.Random(8), writes=3)
    point = run_backup(rig.repo, rig.source, vm_id, "full").point_id
    current = state_digests(rig.source, vm_id)["current:0"]

    result = restore_to_host(rig.repo, point, rig.winrm, "new", new_name="flat", keep_checkpoints=False)
    assert rig.ops.imported[-1]["flatten"] is True
    flat = rig.target_lab.vm(result.vm_id)
    assert flat.checkpoints == () and [p.suffix for p in rig.target_lab.vm_folder(result.vm_id).iterdir()
                                      if p.suffix in (".vhdx", ".avhdx")] == [".vhdx"]
    assert state_digests(rig.target_lab, result.vm_id)["current:0"] == current  # the guest's data as backed up
    for path in rig.target_lab.vm_folder(result.vm_id).glob("*.vhdx"):
        qemu_check(path)

    kept = restore_to_host(rig.repo, point, rig.winrm, "new", new_name="kept", keep_checkpoints=True)
    assert rig.ops.imported[-1]["flatten"] is False
    assert [cp.name for cp in rig.target_lab.vm(kept.vm_id).checkpoints] == ["before the patch"]
