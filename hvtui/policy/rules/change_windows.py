"""The change-window-open rule: a checkpoint taken for a change window that is still open,
named by its window and ticket ("window pre-patch: 12 VMs, 3 days open") rather than as one
more old checkpoint; warn and crit after ``change_window_age`` (2 and 7 days by default)."""

from __future__ import annotations

from hvtui.model import Severity
from hvtui.policy.context import VMContext, VMRule
from hvtui.policy.text import age_seconds, age_text

CHANGE_WINDOW_OPEN = "change-window-open"


def change_window_open(ctx: VMContext) -> None:
    t = ctx.t
    for cp in ctx.vm.checkpoints:
        window = ctx.window_of(cp)
        if window is None:
            continue
        age = age_seconds(ctx.facts.now, min(cp.created, window.opened))
        if age >= t.change_window_crit:
            severity, limit = Severity.CRIT, f"crit at {age_text(t.change_window_crit)}"
        elif age >= t.change_window_warn:
            severity, limit = Severity.WARN, f"warn at {age_text(t.change_window_warn)}"
        else:
            continue
        ticket = f" (ticket {window.ticket})" if window.ticket else ""
        vms = f"{window.vm_count} VM{'s' if window.vm_count != 1 else ''}"
        ctx.add(
            severity,
            CHANGE_WINDOW_OPEN,
            f"window {window.name}{ticket}: {vms}, {age_text(age)} open ({limit})",
            f"Close the window once the change is verified: promote it (back up, then delete the checkpoints), "
            f"roll back or discard (hvtui change promote|rollback|discard {window.name!r}, or :changes)",
            checkpoint=cp,
            age=age,
            window=window.name,
            ticket=window.ticket or "",
        )


RULES = (VMRule((CHANGE_WINDOW_OPEN,), change_window_open),)
