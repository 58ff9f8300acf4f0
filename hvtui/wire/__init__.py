"""The WinRM wire contract (``shared/contracts/winrm-wire.md``) <-> the inventory model.

``parse_inventory`` reads the inventory document a host's script wrote; it also accepts
the shapes Windows PowerShell 5.1's ``ConvertTo-Json`` emits by accident (a single object
where a list was expected, empty output for an empty list, ``{"value": [...], "Count": n}``
wrappers, ``/Date(ms)/`` dates and the DisplayHint date object, enums as integers where
the integer is stable across Windows versions).  Anything else malformed raises
``HostError(kind="protocol")`` naming the host, the operation and the field path.

``snapshot_to_wire`` and friends render the model back into exactly that document
(``hvtui inventory --json`` and the loopback test server use them).

Where things live: ``envelope`` (``ok``/failure documents, ``WIRE_VERSION``), ``fields``
(the field readers and ``Malformed``), ``dates``, ``enums``, ``inventory`` (the inventory
document), ``results`` (checkpoint operations' answers, their documents listed there),
``backup`` (the backup operations' answers) and ``render`` (model -> documents).  This package sits in the hosts layer: it imports
hosts.base, model, errors and hosts.winrm.errors, nothing above.
"""

from __future__ import annotations

from hvtui.wire.dates import format_datetime, parse_datetime
from hvtui.wire.enums import (
    CONTROLLER_BY_INT,
    HEARTBEAT_BY_INT,
    SNAPSHOT_TYPE_BY_INT,
    VHD_TYPE_BY_INT,
    VM_CHECKPOINT_TYPE_BY_INT,
    VM_STATE_BY_INT,
)
from hvtui.wire.envelope import WIRE_VERSION, check_envelope
from hvtui.wire.inventory import parse_inventory
from hvtui.wire.render import checkpoint_to_wire, facts_to_wire, snapshot_to_wire, vm_to_wire
from hvtui.wire.results import OPERATION_LABELS, OperationResult, parse_result

__all__ = [
    "CONTROLLER_BY_INT",
    "HEARTBEAT_BY_INT",
    "OPERATION_LABELS",
    "SNAPSHOT_TYPE_BY_INT",
    "VHD_TYPE_BY_INT",
    "VM_CHECKPOINT_TYPE_BY_INT",
    "VM_STATE_BY_INT",
    "WIRE_VERSION",
    "OperationResult",
    "check_envelope",
    "checkpoint_to_wire",
    "facts_to_wire",
    "format_datetime",
    "parse_datetime",
    "parse_inventory",
    "parse_result",
    "snapshot_to_wire",
    "vm_to_wire",
]
