"""Backup recency: a VM with checkpoints and no recent backup (a checkpoint is not a backup)."""

from __future__ import annotations

from hvtui.model import Severity
from hvtui.policy.context import VMContext, VMRule
from hvtui.policy.text import age_seconds, age_text

CHECKPOINT_NOT_BACKUP = "checkpoint-not-backup"


def checkpoint_not_backup(ctx: VMContext) -> None:
    # A Recovery checkpoint is a backup's own (one running now, or one that died: the
    # recovery-left rule reports that), not a sign that checkpoints stand in for backups.
    kept = [cp for cp in ctx.sprawl_checkpoints if cp.type != "Recovery"]
    if not kept:
        return
    when = ctx.last_backup(ctx.vm) if ctx.last_backup is not None else None
    oldest = max(age_seconds(ctx.facts.now, cp.created) for cp in kept)
    count = len(kept)
    has = f"has {count} checkpoint{'s' if count != 1 else ''}"
    limit = age_text(ctx.t.backup_max_age)
    if when is None:
        message = f"{has} and no backup known (a checkpoint is not a backup)"
        age = oldest
        since = -1.0
    else:
        since = age_seconds(ctx.facts.now, when)
        if since < ctx.t.backup_max_age:
            return
        message = (
            f"{has} and its last backup is {age_text(since)} old (crit after {limit}; a checkpoint is not a backup)"
        )
        age = since
    # A grace period, like the other age rules: a routine checkpoint (say, before patching)
    # is a warning at first, critical once the oldest checkpoint reaches the threshold.
    grace = ctx.t.not_backup_crit
    severity = Severity.CRIT if oldest >= grace else Severity.WARN
    if severity is Severity.WARN:
        message += f"; critical once its oldest checkpoint is {age_text(grace)} old"
    ctx.add(
        severity,
        CHECKPOINT_NOT_BACKUP,
        message,
        "Back the VM up; do not rely on checkpoints to restore it",
        age=age,
        backup_age_s=since,
    )


RULES = (VMRule((CHECKPOINT_NOT_BACKUP,), checkpoint_not_backup, sprawl_only=True),)
