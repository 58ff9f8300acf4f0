"""Which differencing files each checkpoint of a VM started, and the files it writes to now."""

from __future__ import annotations

from hvtui.model import VM, VhdLink


def checkpoint_files(vm: VM) -> dict[str, list[VhdLink]]:
    """The differencing file(s) each checkpoint started, where the inventory shows them.

    Hyper-V freezes the current file when it takes a checkpoint and starts a new
    differencing file; along the VM's current branch (nearest first) the file started
    by the i-th checkpoint is ``chain[i]`` of each disk.  Checkpoints on other branches
    (or chains that do not match the tree after a failed merge) map to nothing.
    """
    branch = vm.current_branch()
    files: dict[str, list[VhdLink]] = {}
    for disk in vm.disks:
        if disk.depth != len(branch):
            continue
        for index, cp in enumerate(branch):
            link = disk.chain[index]
            if link.vhd_type == "Differencing":
                files.setdefault(cp.id, []).append(link)
    return files


def now_files(vm: VM) -> list[VhdLink]:
    """The files the VM writes to now (one per disk)."""
    return [disk.chain[0] for disk in vm.disks if disk.chain]
