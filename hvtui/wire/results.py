"""Checkpoint operations' answers -> ``OperationResult``.

The documents (version 1; not in the contract text, fixed here and in ``hosts/winrm/scripts``):

- ``checkpoint.create``: ``{"ok": true, "checkpoint": <checkpoint record>}``
- ``checkpoint.rename``: ``{"ok": true, "checkpoint": <checkpoint record>}``
- ``checkpoint.apply``:  ``{"ok": true, "vm_state": "<state name>"}``
- ``checkpoint.remove``: ``{"ok": true, "removed": ["<checkpoint id>", ...], "merge_pending": <bool>}``
  (``merge_pending`` true: the host was still merging when the script stopped waiting;
  missing means false)
- ``checkpoint.type``:   ``{"ok": true, "checkpoint_type": "<VM checkpoint type>", "restored": <bool>}``
  (the VM's setting, after putting it back when asked; null on hosts without the setting)

and every failure is the envelope's failure document (``envelope``).
"""

from __future__ import annotations

from dataclasses import dataclass

from hvtui.model import Checkpoint
from hvtui.wire.enums import VM_CHECKPOINT_TYPE_BY_INT, VM_STATE_BY_INT
from hvtui.wire.envelope import check_envelope, protocol_error
from hvtui.wire.fields import Malformed, as_bool, as_enum, as_list, as_str, get_field
from hvtui.wire.inventory import read_checkpoint

# Wire operation names -> the operation names errors show (the same words the lab host uses).
OPERATION_LABELS: dict[str, str] = {
    "inventory": "inventory",
    "checkpoint.create": "create checkpoint",
    "checkpoint.apply": "apply checkpoint",
    "checkpoint.remove": "remove checkpoint",
    "checkpoint.rename": "rename checkpoint",
    "checkpoint.type": "checkpoint type",
    "restore.prepare": "prepare restore",
    "restore.import": "import restored VM",
}


@dataclass(frozen=True, slots=True)
class OperationResult:
    """A checkpoint operation's answer, checked."""

    operation: str
    checkpoint: Checkpoint | None = None  # create, rename
    vm_state: str | None = None  # apply
    removed: tuple[str, ...] = ()  # remove
    merge_pending: bool = False  # remove: the host still merges the removed checkpoints' data
    checkpoint_type: str | None = None  # type: the VM's checkpoint type setting
    type_restored: bool = False  # type: the call put the VM's checkpoint type back


def parse_result(doc: object, host: str, op: str, operation: str | None = None) -> OperationResult:
    """Check a checkpoint operation's document (``op`` is ``checkpoint.create`` etc.) and read it.

    ``operation`` names the operation in errors (default: ``op``'s label)."""
    operation = operation or OPERATION_LABELS.get(op, op)
    body = check_envelope(doc, host, operation)
    try:
        checkpoint = None
        if op in ("checkpoint.create", "checkpoint.rename"):
            checkpoint = read_checkpoint(get_field(body, "checkpoint", "document", True), "checkpoint")
        vm_state = None
        if op == "checkpoint.apply" and body.get("vm_state") is not None:
            vm_state = as_enum(body["vm_state"], "vm_state", VM_STATE_BY_INT, "VM state")
        removed: tuple[str, ...] = ()
        merge_pending = False
        if op == "checkpoint.remove":
            removed = tuple(as_str(item, f"removed[{i}]") for i, item in enumerate(as_list(body.get("removed"), "removed")))
            merge_pending = as_bool(body.get("merge_pending"), "merge_pending", default=False)
        checkpoint_type = None
        type_restored = False
        if op == "checkpoint.type":
            if body.get("checkpoint_type") not in (None, ""):
                checkpoint_type = as_enum(
                    body["checkpoint_type"], "checkpoint_type", VM_CHECKPOINT_TYPE_BY_INT, "checkpoint type"
                )
            type_restored = as_bool(body.get("restored"), "restored", default=False)
    except Malformed as err:
        raise protocol_error(host, operation, err) from None
    return OperationResult(
        operation=op,
        checkpoint=checkpoint,
        vm_state=vm_state,
        removed=removed,
        merge_pending=merge_pending,
        checkpoint_type=checkpoint_type,
        type_restored=type_restored,
    )
