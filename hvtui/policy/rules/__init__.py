"""The sprawl rules, one family per module, and the registry ``evaluate`` runs.

Each module defines its rule ids and a ``RULES`` tuple of ``VMRule`` (or ``HostRule``)
entries; this registry lists the modules in the order their findings are produced.
"""

from __future__ import annotations

from hvtui.policy.context import HostRule, VMRule
from hvtui.policy.rules import (
    backup_recency,
    chains,
    change_windows,
    checkpoints,
    disk_files,
    hosts,
    offsite,
    schedules,
)
from hvtui.policy.rules.backup_recency import CHECKPOINT_NOT_BACKUP
from hvtui.policy.rules.chains import CHAIN_DEPTH, DIFFERENCING_SIZE, MERGE_HEADROOM
from hvtui.policy.rules.change_windows import CHANGE_WINDOW_OPEN
from hvtui.policy.rules.checkpoints import CHECKPOINT_AGE, CHECKPOINT_COUNT, RECOVERY_LEFT
from hvtui.policy.rules.disk_files import DISK_UNREADABLE, RUNNING_ON_AVHDX, STRAY_DISK_FILE
from hvtui.policy.rules.hosts import HOST_UNREACHABLE
from hvtui.policy.rules.offsite import NO_OFFSITE_COPY
from hvtui.policy.rules.schedules import BACKUP_OVERDUE

VM_RULES: tuple[VMRule, ...] = (
    *checkpoints.RULES,
    *change_windows.RULES,
    *chains.RULES,
    *backup_recency.RULES,
    *schedules.RULES,
    *offsite.RULES,
    *disk_files.RULES,
)
HOST_RULES: tuple[HostRule, ...] = hosts.RULES

# Every rule id, as shown to users and named by the config's exemptions (config.RULE_IDS
# lists the same ids; a test keeps the two equal).
RULES: tuple[str, ...] = tuple(rule_id for rule in (*VM_RULES, *HOST_RULES) for rule_id in rule.ids)

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
    "NO_OFFSITE_COPY",
    "RECOVERY_LEFT",
    "RULES",
    "RUNNING_ON_AVHDX",
    "STRAY_DISK_FILE",
    "VM_RULES",
]
