"""Checkpoint actions (``service.CheckpointActions``): create, apply, remove, rename, made safe.

- ``plans``: what a removal or an apply will do (merge steps, headroom), before it runs.
- ``names``: checkpoint names and types Hyper-V accepts; finding a checkpoint by name or id.
- ``service``: ``CheckpointActions``, read-only refusal, the headroom rule, the audit entries.
"""

from hvtui.actions.names import (
    CREATABLE_TYPES,
    MAX_NAME_LENGTH,
    find_checkpoint,
    normalise_checkpoint_type,
    validate_checkpoint_name,
    vm_checkpoint_type,
)
from hvtui.actions.plans import ApplyPlan, MergeStep, RemovePlan
from hvtui.actions.service import HYPERV_CHECKPOINT_LIMIT, CheckpointActions

__all__ = [
    "CREATABLE_TYPES",
    "HYPERV_CHECKPOINT_LIMIT",
    "MAX_NAME_LENGTH",
    "ApplyPlan",
    "CheckpointActions",
    "MergeStep",
    "RemovePlan",
    "find_checkpoint",
    "normalise_checkpoint_type",
    "validate_checkpoint_name",
    "vm_checkpoint_type",
]
