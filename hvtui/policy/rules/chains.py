"""Disk chain rules: chains too deep, differencing data too large, a merge the volume has no room for."""

from __future__ import annotations

from hvtui.model import Severity
from hvtui.policy.context import VMContext, VMRule
from hvtui.policy.headroom import headroom, merge_needs_by_volume
from hvtui.policy.text import file_name, size_text

CHAIN_DEPTH = "chain-depth"
DIFFERENCING_SIZE = "differencing-size"
MERGE_HEADROOM = "merge-headroom"


def chain_depth(ctx: VMContext) -> None:
    t = ctx.t
    for disk in ctx.vm.disks:
        depth = disk.depth
        if depth > t.depth_crit:
            severity, limit = Severity.CRIT, f"crit above {t.depth_crit}"
        elif depth > t.depth_warn:
            severity, limit = Severity.WARN, f"warn above {t.depth_warn}"
        else:
            continue
        base = disk.base.path if disk.base is not None else disk.path
        ctx.add(
            severity,
            CHAIN_DEPTH,
            f"disk {file_name(base)} runs through {depth} differencing files ({limit})",
            "Delete old checkpoints so the chain merges; every read walks the whole chain",
            file=disk.path,
            age=ctx.oldest_age,
            depth=depth,
        )


def differencing_size(ctx: VMContext) -> None:
    t = ctx.t
    diff = ctx.vm.differencing_bytes
    if diff <= 0:
        return
    base = ctx.vm.base_virtual_bytes
    percent = 100.0 * diff / base if base > 0 else None
    over_percent = percent is not None and percent > t.differencing_warn_percent
    over_bytes = t.differencing_warn_bytes is not None and diff > t.differencing_warn_bytes
    if not (over_percent or over_bytes):
        return
    if percent is not None:
        message = (
            f"differencing disks hold {size_text(diff)}, {percent:.0f}% of the base disks' "
            f"{size_text(base)} virtual size"
        )
    else:
        message = f"differencing disks hold {size_text(diff)}"
    limits = [f"warn above {t.differencing_warn_percent:g}%"] if over_percent else []
    if over_bytes:
        limits.append(f"warn above {size_text(t.differencing_warn_bytes or 0)}")
    message += f" ({', '.join(limits)})"
    ctx.add(
        Severity.WARN,
        DIFFERENCING_SIZE,
        message,
        "Delete checkpoints to merge the differencing data back while the volume still has room",
        age=ctx.oldest_age,
        bytes=diff,
        percent=round(percent, 1) if percent is not None else -1,
    )


def merge_headroom(ctx: VMContext) -> None:
    for need in merge_needs_by_volume(ctx.vm, ctx.facts):
        room = headroom(need.need, need.volume, ctx.t)
        if room.ok or room.volume is None:
            continue
        volume = room.volume
        ctx.add(
            Severity.CRIT,
            MERGE_HEADROOM,
            f"merging needs up to {size_text(room.need)} but {volume.path} has {size_text(volume.free)} free "
            f"and must keep {size_text(room.margin)} ({ctx.t.merge_min_free_percent:g}%)",
            f"Free space on {volume.path} (or move storage) before deleting checkpoints: "
            "a merge that fills the volume pauses every VM on it",
            file=volume.path,
            age=ctx.oldest_age,
            need=room.need,
            free=volume.free,
            margin=room.margin,
        )


RULES = (
    VMRule((CHAIN_DEPTH,), chain_depth, sprawl_only=True),
    VMRule((DIFFERENCING_SIZE,), differencing_size, sprawl_only=True),
    VMRule((MERGE_HEADROOM,), merge_headroom, sprawl_only=True),
)
