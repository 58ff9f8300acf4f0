"""Disk file rules: what a failed merge or a removed disk leaves behind, and disk files the host cannot read."""

from __future__ import annotations

from hvtui.model import Severity
from hvtui.policy.context import VMContext, VMRule
from hvtui.policy.text import file_name

RUNNING_ON_AVHDX = "running-on-avhdx"
STRAY_DISK_FILE = "stray-disk-file"
DISK_UNREADABLE = "disk-unreadable"


def running_on_avhdx(ctx: VMContext) -> None:
    if ctx.vm.checkpoints:
        return
    for disk in ctx.vm.disks:
        current = disk.chain[0] if disk.chain else None
        differencing = (current is not None and current.vhd_type == "Differencing") or disk.path.lower().endswith(
            ".avhdx"
        )
        if not differencing:
            continue
        ctx.add(
            Severity.CRIT,
            RUNNING_ON_AVHDX,
            f"runs on differencing disk {file_name(disk.path)} but has no checkpoint: a merge failed",
            "Check the host's VMMS log (event 19100 without 19080); plan a merge of the chain with the VM off",
            file=disk.path,
            depth=disk.depth,
        )


def stray_files(ctx: VMContext) -> None:
    for path in ctx.vm.stray_disk_files:
        ctx.add(
            Severity.WARN,
            STRAY_DISK_FILE,
            f"{file_name(path)} lies in the VM's folder but belongs to no disk chain",
            "Confirm no VM or backup uses it (Inspect Disk / Get-VHD), then archive or delete it",
            file=path,
        )


def unreadable_disks(ctx: VMContext) -> None:
    # The host could not read a disk file (Get-VHD failed): its chain, sizes and the stray
    # files beside it are unknown, so the other rules may be silent about this VM.
    for disk in ctx.vm.disks:
        if disk.error is not None:
            ctx.add(
                Severity.WARN,
                DISK_UNREADABLE,
                f"{file_name(disk.path)}: {disk.error}",
                "Check the file on the host (Get-VHD, Inspect Disk): a locked, moved or damaged disk file",
                file=disk.path,
            )


RULES = (
    VMRule((RUNNING_ON_AVHDX,), running_on_avhdx),
    VMRule((STRAY_DISK_FILE,), stray_files),
    VMRule((DISK_UNREADABLE,), unreadable_disks),
)
