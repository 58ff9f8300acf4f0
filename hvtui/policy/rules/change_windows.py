"""The change-window-open rule: a checkpoint taken for a change window that is still open,
named by its window and ticket ("window pre-patch: 12 VMs, 3 days open") rather than as one
more old checkpoint; warn and crit after ``change_window_age`` (2 and 7 days by default).

The rule runs per VM (thresholds and exemptions are per VM); ``one_per_window`` then folds
a window's findings into ONE, so monitoring counts a 12-VM window once.  That finding
lists its VMs in ``vm_keys`` and each of them shows its severity in the VM list: the
window's severity is the worst of its VMs' (exempted VMs left out, unless all are).  A
window with a single VM keeps that VM and checkpoint (enter opens it, d deletes it).
"""

from __future__ import annotations

import dataclasses

from hvtui.model import Finding, Severity
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


def one_per_window(findings: list[Finding]) -> list[Finding]:
    """``findings`` with each window's per-VM change-window-open findings folded into one."""
    out: list[Finding] = []
    windows: dict[str, list[Finding]] = {}
    for finding in findings:
        if finding.rule == CHANGE_WINDOW_OPEN and "window" in finding.data:
            windows.setdefault(str(finding.data["window"]), []).append(finding)
        else:
            out.append(finding)
    out.extend(_window_finding(members) for members in windows.values())
    return out


def _window_finding(members: list[Finding]) -> Finding:
    counted = [f for f in members if f.exempt_reason is None] or members
    lead = max(counted, key=lambda f: (int(f.severity), f.age_seconds or 0.0))
    keys = tuple(sorted({f"{f.host}/{f.vm_id}" for f in members}))
    if len(keys) == 1:
        return dataclasses.replace(lead, vm_keys=keys)
    data = {k: v for k, v in lead.data.items() if k != "checkpoint_type"}
    data["vms"] = len(keys)
    return dataclasses.replace(
        lead,
        host=", ".join(sorted({f.host for f in members})),
        vm_id=None,
        vm_name=None,
        checkpoint_id=None,
        age_seconds=max((f.age_seconds or 0.0) for f in counted),
        data=data,
        vm_keys=keys,
    )


RULES = (VMRule((CHANGE_WINDOW_OPEN,), change_window_open),)
