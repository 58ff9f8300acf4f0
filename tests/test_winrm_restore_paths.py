"""The host-side names a restore to a WinRM host makes: where a new VM goes, its folder name,
the staging folder, the restored configuration file."""

from __future__ import annotations

import pytest

from hvtui.errors import HostError, HostRefused
from hvtui.hosts.winrm.restore import check_new_name, config_file, host_path, new_folder, staged_folders, vm_home
from hvtui.model import VM


def vm(name: str, path: str) -> VM:
    return VM(host="hv01", id=name, name=name, state="Off", path=path)


def test_a_new_vm_goes_where_most_of_the_hosts_vms_are() -> None:
    vms = [vm("a", "D:\\VMs\\a"), vm("b", "D:\\VMs\\b\\"), vm("c", "E:\\Hyper-V\\c")]
    assert vm_home(vms, "D:\\hvtui-restore") == "D:\\VMs"
    assert vm_home([], "E:\\restores\\hvtui") == "E:\\VMs"  # no VMs yet: beside the restore folder's drive


def test_restored_files_land_under_the_staging_folder_with_backslashes() -> None:
    assert host_path("D:\\hvtui-restore\\hvtui-restore-ab12", "Virtual Hard Disks/web01.vhdx") == (
        "D:\\hvtui-restore\\hvtui-restore-ab12\\Virtual Hard Disks\\web01.vhdx"
    )


def test_the_staging_folder_is_the_jobs_or_a_new_one_never_anything_else() -> None:
    assert new_folder("D:\\hvtui-restore\\", "hvtui-restore-0123abcd") == "D:\\hvtui-restore\\hvtui-restore-0123abcd"
    assert new_folder("D:\\hvtui-restore").startswith("D:\\hvtui-restore\\hvtui-restore-")
    for bad in ("..", "hvtui-restore-..\\x", "other", "hvtui-restore-a\\b"):
        with pytest.raises(ValueError, match="refused staging folder name"):
            new_folder("D:\\hvtui-restore", bad)


@pytest.mark.parametrize("name", ["", "   ", 'say "hi"', "a\\b", "c:d", "x" * 101, "tab\there"])
def test_names_a_hyper_v_host_cannot_take_are_refused(name: str) -> None:
    with pytest.raises(HostError) as info:
        check_new_name("hv01", name, [])
    assert not isinstance(info.value, HostRefused)


def test_a_taken_name_is_a_refusal_whatever_its_case() -> None:
    with pytest.raises(HostRefused, match="already exists"):
        check_new_name("hv01", "WEB01", [vm("web01", "D:\\VMs\\web01")])
    assert check_new_name("hv01", "it's $x ‘q’", [vm("web01", "D:\\VMs\\web01")]) == "it's $x ‘q’"


def test_the_configuration_file_is_the_one_the_point_names_else_a_vmcx() -> None:
    assert config_file({"config_file": "4F27.vmcx"}, ["web01.vhdx", "4F27.vmcx"]) == "4F27.vmcx"
    assert config_file({}, ["web01.vhdx", "Virtual Machines/4F27.VMCX"]) == "Virtual Machines/4F27.VMCX"
    with pytest.raises(ValueError, match="no VM configuration file"):
        config_file({"config_file": "gone.vmcx"}, ["web01.vhdx"])


def test_the_staging_folders_are_removed_deepest_first_and_the_staging_folder_last() -> None:
    folder = "D:\\hvtui-restore\\hvtui-restore-ab12"
    rel = ["Virtual Machines/x.vmcx", "Virtual Hard Disks/a/b.vhdx", "Virtual Hard Disks/c.vhdx", "top.vhdx"]
    assert staged_folders(folder, rel) == [
        folder + "\\Virtual Hard Disks\\a",
        folder + "\\Virtual Hard Disks",
        folder + "\\Virtual Machines",
        folder,
    ]
