"""A point backed up from a WinRM host, restored: the backup half (backup.begin -> frozen files over
SMB3 -> backup.end) and the restore half (restore.prepare -> files written over SMB3 ->
restore.import) together, over one loopback WS-Management server answering from a lab host whose
folder lies inside a real Samba share (``D:\\``).  The point comes back as a new VM on the same
WinRM host and onto a lab host, byte-identical to a plain folder restore and qemu-img-valid.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from lab_support import add_vm, make_host  # noqa: E402
from samba_support import SambaServer  # noqa: E402
from winrm_rig_support import MiB, WinRMRig, disk_files, qemu_check, share_settings  # noqa: E402
from wsman_backup import LabBackupBackend  # noqa: E402
from wsman_restore import LabRestoreOps  # noqa: E402
from wsman_server import WSManServer, make_winrm_host  # noqa: E402

from hvtui.engine.backup import run_backup  # noqa: E402
from hvtui.engine.restore import restore_to_host  # noqa: E402
from hvtui.hosts.lab.disk import read_logical  # noqa: E402


class Rig(WinRMRig):
    """One lab host inside the Samba share behind the loopback server, answering backup.* and restore.*."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, samba: SambaServer) -> None:
        self.lab = make_host(samba.folder, "lab-rt")
        # D:\ is the lab host's folder: its volume is the host's D:\ (restore.prepare checks its space)
        self.backend = LabBackupBackend(self.lab, self.lab.root)
        self.ops = LabRestoreOps(self.lab, {"D:": self.lab.root})
        self.backend.restore = self.ops
        super().__init__(tmp_path, monkeypatch, WSManServer(self.backend))
        smb = share_settings(samba, "lab-rt", monkeypatch)
        self.winrm = make_winrm_host(self.server.port, "hv-test", long_timeout=60.0, timeout=30.0, smb=smb)


@pytest.fixture
def rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, samba_server: SambaServer):  # noqa: ANN201
    r = Rig(tmp_path, monkeypatch, samba_server)
    yield r
    r.close()


def backed_up_twice(rig: Rig) -> tuple[str, str, bytes]:
    """A full and an incremental backup of web01 from the WinRM host: the incremental's point and
    the guest content it holds."""
    vm_id = add_vm(rig.lab, "web01", blocks=8, seed=19)
    run_backup(rig.repo, rig.winrm, vm_id, "full")
    rig.lab.write_guest_data(vm_id, 0, 3 * MiB, b"\x33" * MiB)
    content = read_logical(Path(rig.lab.vm(vm_id).disks[0].path))
    inc = run_backup(rig.repo, rig.winrm, vm_id, "incremental")
    assert inc.mode == "incremental" and inc.whole_reads == []
    return vm_id, inc.point_id, content


def test_a_point_backed_up_from_the_winrm_host_restored_as_a_new_vm_on_it(rig: Rig) -> None:
    vm_id, point, content = backed_up_twice(rig)
    expected = rig.expected(point)

    result = rig_restore = restore_to_host(rig.repo, point, rig.winrm, "new", new_name="web01-copy")

    assert rig_restore.host == "hv-test" and result.vm_id != vm_id and result.vm_name == "web01-copy"
    restored = rig.lab.vm(result.vm_id)
    assert restored.name == "web01-copy" and restored.state == "Off"
    folder = rig.lab.vm_folder(result.vm_id)
    got = disk_files(folder)
    assert {name.replace("web01-copy", "web01"): data for name, data in got.items()} == expected
    for path in folder.glob("*.vhdx"):
        qemu_check(path)
    assert read_logical(Path(restored.disks[0].path)) == content
    assert rig.ops.imported[0]["mode"] == "new"
    assert [c.op for c in rig.server.commands].count("backup.end") == 2
    assert [cp for cp in rig.lab.vm(vm_id).checkpoints if cp.type == "Recovery"] == []
    assert not (Path(rig.ops.drives["D:"]) / "hvtui-restore").exists() or not any(
        (Path(rig.ops.drives["D:"]) / "hvtui-restore").rglob("*.*")
    )


def test_a_point_backed_up_from_the_winrm_host_restored_onto_a_lab_host(rig: Rig, tmp_path: Path) -> None:
    _, point, content = backed_up_twice(rig)
    expected = rig.expected(point)
    other = make_host(tmp_path, "lab-other")

    copy = restore_to_host(rig.repo, point, other, "new", new_name="web01")

    folder = other.vm_folder(copy.vm_id)
    assert disk_files(folder) == expected
    for path in folder.glob("*.vhdx"):
        qemu_check(path)
    vm = other.vm(copy.vm_id)
    assert vm.name == "web01" and read_logical(Path(vm.disks[0].path)) == content


def test_a_winrm_point_whose_disk_lies_outside_the_vm_folder_is_refused_by_a_lab_host_by_name() -> None:
    from hvtui.errors import HostError
    from hvtui.hosts.lab.restore_config import check_restore_config

    config = {
        "kind": "winrm",
        "vm": {"id": "x", "name": "web01", "generation": 2, "version": "10.0"},
        "files": [{"role": "disk", "path": "E:\\Disks\\data.vhdx", "rel_path": "_disks/E/Disks/data.vhdx",
                   "parent_path": None, "virtual_size": MiB}],
    }  # fmt: skip
    with pytest.raises(HostError) as err:
        check_restore_config("lab-other", config)
    assert "E:\\Disks\\data.vhdx" in err.value.detail and "outside the VM's folder" in err.value.detail


def test_a_winrm_point_of_a_vm_with_a_checkpoint_comes_back_flattened_on_a_lab_host(rig: Rig, tmp_path: Path) -> None:
    vm_id = add_vm(rig.lab, "app01", blocks=4, seed=23)
    rig.lab.create_checkpoint(vm_id, "before the update", "Standard")
    rig.lab.write_guest_data(vm_id, 0, 2 * MiB, b"\x44" * MiB)  # into the checkpoint's differencing disk
    content = read_logical(Path(rig.lab.vm(vm_id).disks[0].path))
    point = run_backup(rig.repo, rig.winrm, vm_id, "full").point_id
    assert any(f.path.endswith(".avhdx") for f in rig.repo.load_point(point).files)  # the chain was backed up
    other = make_host(tmp_path, "lab-other")

    copy = restore_to_host(rig.repo, point, other, "new", new_name="app01", keep_checkpoints=False)  # as hvtui restore --as

    vm = other.vm(copy.vm_id)
    assert not vm.checkpoints and [Path(d.path).suffix for d in vm.disks] == [".vhdx"]
    assert read_logical(Path(vm.disks[0].path)) == content
    qemu_check(Path(vm.disks[0].path))
