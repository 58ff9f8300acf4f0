"""Evaluate everything: run every registered rule over the inventory, apply the exemptions, sort.

The backup-recency rule asks a ``LastBackup`` function and the recovery-left rule a
``BackupLeft`` one; the caller passes the backup service's (``Backups.last_backup_of``,
``Backups.backup_checkpoint_left``), so the policy never reaches above itself.
"""

from __future__ import annotations

from hvtui.config import PolicyConfig
from hvtui.config.schedules import ScheduleConfig
from hvtui.model import Checkpoint, Finding, Inventory
from hvtui.policy.context import BackupLeft, LastBackup, OffsiteState, VMContext, VMRule, WindowCheckpoints
from hvtui.policy.exemptions import ExemptionMatcher, apply_exemption
from hvtui.policy.findings import sort_findings
from hvtui.policy.rules import HOST_RULES, VM_RULES
from hvtui.policy.rules.change_windows import one_per_window


def run_vm_rules(context: VMContext, rules: tuple[VMRule, ...] = VM_RULES) -> list[tuple[Finding, Checkpoint | None]]:
    """The VM's findings, each with the checkpoint it names (exemptions may match on that)."""
    has_sprawl = bool(context.sprawl_checkpoints)
    for rule in rules:
        if rule.sprawl_only and not has_sprawl:
            continue
        rule.check(context)
    return context.out


def evaluate(
    inventory: Inventory,
    policy: PolicyConfig,
    last_backup: LastBackup | None = None,
    backup_left: BackupLeft | None = None,
    windows: WindowCheckpoints | None = None,
    schedules: tuple[ScheduleConfig, ...] = (),
    offsite: OffsiteState | None = None,
) -> list[Finding]:
    """All findings for the inventory, sorted by ``sort_findings``.

    ``windows``: the open change windows' checkpoints; each is reported by the
    change-window-open rule, named by its window, instead of by checkpoint-age, and
    a window's findings are folded into one (``one_per_window``).
    ``schedules``: the backup schedules (``config.schedules``), for the backup-overdue rule.
    ``offsite``: the copies of each VM's newest point, for the no-offsite-copy rule.
    """
    findings: list[Finding] = []
    matchers = [ExemptionMatcher.compile(exemption) for exemption in policy.exemptions]
    for host in inventory.hosts:
        for host_rule in HOST_RULES:
            findings.extend(apply_exemption(finding, None, matchers) for finding in host_rule.check(host))
        if host.facts is None:
            continue
        stale = host.error is not None
        for vm in host.vms:
            thresholds = policy.thresholds_for(host.name, vm.name, host.group)
            context = VMContext(
                vm, host, host.facts, thresholds, stale, last_backup, backup_left, windows, schedules, offsite
            )
            for finding, checkpoint in run_vm_rules(context):
                findings.append(apply_exemption(finding, checkpoint, matchers))
    return sort_findings(one_per_window(findings))

