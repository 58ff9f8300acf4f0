"""Checkpoint rules: checkpoints kept too long (and Recovery checkpoints a dead backup left), too many of them."""

from __future__ import annotations

from hvtui.model import REPLICA_CHECKPOINT_TYPES, USER_CHECKPOINT_TYPES, Severity
from hvtui.policy.context import VMContext, VMRule
from hvtui.policy.text import age_seconds, age_text

CHECKPOINT_AGE = "checkpoint-age"
RECOVERY_LEFT = "recovery-checkpoint-left"
CHECKPOINT_COUNT = "checkpoint-count"


def checkpoint_ages(ctx: VMContext) -> None:
    t = ctx.t
    for cp in ctx.vm.checkpoints:
        age = age_seconds(ctx.facts.now, cp.created)
        left_by = None
        if cp.type == "Recovery":
            warn, crit, rule = t.recovery_age_warn, t.recovery_age_crit, RECOVERY_LEFT
            # hvtui's journal knows the backup that took it is over: no need to wait an hour.
            left_by = ctx.backup_left(ctx.vm, cp) if ctx.backup_left is not None else None
            if left_by is not None:
                warn = float("-inf")  # whatever the host's clock says
        elif ctx.window_of(cp) is not None:
            continue  # an open change window's: the change-window-open rule names it by its window
        elif cp.type in USER_CHECKPOINT_TYPES or cp.type in REPLICA_CHECKPOINT_TYPES and t.replica_alerts:
            warn, crit, rule = t.checkpoint_age_warn, t.checkpoint_age_crit, CHECKPOINT_AGE
        else:
            continue
        if age >= crit:
            severity, limit = Severity.CRIT, f"crit at {age_text(crit)}"
        elif age >= warn:
            severity = Severity.WARN
            limit = f"crit at {age_text(crit)}" if left_by is not None else f"warn at {age_text(warn)}"
        else:
            continue
        if left_by is not None:
            message = (
                f"Recovery checkpoint {cp.name!r} left behind for {age_text(age)} ({limit}) by {left_by}, "
                "which is no longer running"
            )
            action = (
                "Delete it (d in the findings view): hvtui made it and its backup is over; "
                "the VM's next backup also removes it"
            )
        elif rule == RECOVERY_LEFT:
            message = f"Recovery checkpoint {cp.name!r} left behind for {age_text(age)} ({limit}): a backup died"
            action = (
                "Make sure no backup job is running on this VM, then delete the Recovery checkpoint "
                "(it merges back; Hyper-V Manager offers no Delete for it)"
            )
        else:
            message = f"{cp.type} checkpoint {cp.name!r} is {age_text(age)} old ({limit})"
            action = (
                "Delete it once nobody needs it: a checkpoint is not a backup, and the chain grows while it exists"
            )
        ctx.add(severity, rule, message, action, checkpoint=cp, age=age)


def checkpoint_count(ctx: VMContext) -> None:
    t = ctx.t
    counted = len(ctx.sprawl_checkpoints)
    total = len(ctx.vm.checkpoints)  # the platform limit counts every checkpoint
    if total >= t.count_limit:
        severity, limit = Severity.CRIT, f"Hyper-V stops at 50; crit at {t.count_limit}"
        shown = total
    elif counted > t.count_crit:
        severity, limit, shown = Severity.CRIT, f"crit above {t.count_crit}", counted
    elif counted > t.count_warn:
        severity, limit, shown = Severity.WARN, f"warn above {t.count_warn}", counted
    else:
        return
    ctx.add(
        severity,
        CHECKPOINT_COUNT,
        f"{shown} checkpoints ({limit})",
        "Delete the checkpoints nobody needs, oldest first (delete a subtree to merge a whole branch)",
        age=ctx.oldest_age,
        count=shown,
    )


RULES = (
    VMRule((CHECKPOINT_AGE, RECOVERY_LEFT), checkpoint_ages),
    VMRule((CHECKPOINT_COUNT,), checkpoint_count),
)
