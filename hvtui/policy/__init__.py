"""The sprawl policy: an inventory in, findings out.

``evaluate`` is a pure function of the inventory, the policy config and optional
"when was this VM last backed up" and "did a dead hvtui backup leave this Recovery
checkpoint" lookups.  Ages are measured against each host's own
clock (``HostFacts.now``), so a skewed jump-box clock does not distort them.

Boundaries (the tests pin these): ages fire *at* their threshold (``age >= warn``);
counts, depths and sizes fire *above* theirs (``count > warn``), except the platform
limit, which fires at ``count >= count_limit``.

Unreachable hosts give a ``host-unreachable`` finding with severity WARN: the console
counts it like any other warning and ``hvtui check`` turns it into the UNKNOWN state
(exit 3) unless a real CRIT is present elsewhere, which must never be masked.

Exemptions keep the finding but report it with severity OK, the reason in
``exempt_reason`` and the severity it would have had in ``data["exempt_severity"]``;
they are left out of ``summary`` and ``worst_by_vm`` counts of problems.  A
checkpoint-name pattern only exempts findings that name a checkpoint; an unreachable host
is only exempted by an exemption naming ``host-unreachable`` (its vm glob is matched
against the host name, so ``vm: "hv02/*"`` or ``vm: hv02`` both work).

Where things live:

- ``context``: the rule interface (``VMRule``, ``HostRule``) and ``VMContext``, which a
  rule reads (VM, host facts, thresholds, last backup) and reports through (``add``).
- ``rules/``: the rules, one family per module (``checkpoints``, ``chains``,
  ``backup_recency``, ``disk_files``, ``hosts``), and the registry in ``rules/__init__``.
- ``evaluation``: ``evaluate`` (every rule, then exemptions, then the order); the caller
  passes the "last backup" lookup (``Backups.last_backup_of``).
- ``exemptions``, ``headroom`` (shared with the checkpoint actions), ``findings`` (order,
  summary, worst per VM) and ``text`` (``size_text``, ``age_text``, ``age_seconds``).

Adding a rule: write a function ``check(context: VMContext) -> None`` that calls
``context.add(severity, RULE_ID, message, action, ...)`` for each finding, in a new module
under ``rules/`` (or the module of its family) with its rule id and a
``RULES = (VMRule((RULE_ID,), check),)`` tuple; add that tuple to ``VM_RULES`` in
``rules/__init__.py`` and the id to ``config.RULE_IDS`` (so exemptions may name it).
Nothing in ``evaluate`` changes.  A rule about the host itself is a ``HostRule`` whose
``check(host)`` returns its findings.  The policy layer imports only config, model, errors
and base utilities.
"""

from __future__ import annotations

from hvtui.policy.context import BackupLeft, HostRule, LastBackup, OpenWindow, VMContext, VMRule, WindowCheckpoints
from hvtui.policy.evaluation import evaluate, run_vm_rules
from hvtui.policy.exemptions import ExemptionMatcher, apply_exemption
from hvtui.policy.findings import is_about_host, is_problem, sort_findings, summary, vm_key, vm_keys_of, worst_by_vm
from hvtui.policy.headroom import Headroom, headroom, merge_needs_by_volume
from hvtui.policy.rules import (
    BACKUP_OVERDUE,
    CHAIN_DEPTH,
    CHANGE_WINDOW_OPEN,
    CHECKPOINT_AGE,
    CHECKPOINT_COUNT,
    CHECKPOINT_NOT_BACKUP,
    DIFFERENCING_SIZE,
    DISK_UNREADABLE,
    HOST_RULES,
    HOST_UNREACHABLE,
    MERGE_HEADROOM,
    RECOVERY_LEFT,
    RULES,
    RUNNING_ON_AVHDX,
    STRAY_DISK_FILE,
    VM_RULES,
)
from hvtui.policy.text import age_seconds, age_text, file_name, size_text

__all__ = [
    "BACKUP_OVERDUE",
    "CHAIN_DEPTH",
    "CHANGE_WINDOW_OPEN",
    "CHECKPOINT_AGE",
    "CHECKPOINT_COUNT",
    "CHECKPOINT_NOT_BACKUP",
    "DIFFERENCING_SIZE",
    "DISK_UNREADABLE",
    "HOST_RULES",
    "HOST_UNREACHABLE",
    "MERGE_HEADROOM",
    "RECOVERY_LEFT",
    "RULES",
    "RUNNING_ON_AVHDX",
    "STRAY_DISK_FILE",
    "VM_RULES",
    "BackupLeft",
    "ExemptionMatcher",
    "Headroom",
    "HostRule",
    "LastBackup",
    "OpenWindow",
    "VMContext",
    "VMRule",
    "WindowCheckpoints",
    "age_seconds",
    "age_text",
    "apply_exemption",
    "evaluate",
    "file_name",
    "headroom",
    "is_about_host",
    "is_problem",
    "merge_needs_by_volume",
    "run_vm_rules",
    "size_text",
    "sort_findings",
    "summary",
    "vm_key",
    "vm_keys_of",
    "worst_by_vm",
]
