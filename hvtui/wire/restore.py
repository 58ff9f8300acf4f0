"""The restore operations' answers (contract: "Backup and restore operations").

- ``restore.prepare``: ``{"ok": true, "free": <bytes free on the folder's volume>}``; fails
  with kind ``space`` when the restore does not fit with 10% to spare.
- ``restore.import``: ``{"ok": true, "vm_id": "<id>", "warnings": ["<safe fix made>", ...]}``
  (arguments as the contract says, plus ``"flatten": true|false`` for a new VM: true removes the
  imported copy's checkpoints, merging each chain into one disk, before ``Test-VHD``);
  fails with kind ``incompatible`` (naming what), ``state`` (in place over a VM not Off) or
  ``disk-check`` (a restored disk failed ``Test-VHD``).

Failure documents are the envelope's (``check_envelope``), their ``kind`` carried on the error.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from hvtui.wire.envelope import check_envelope, protocol_error
from hvtui.wire.fields import Malformed, as_list, as_str, get_field
from hvtui.wire.results import OPERATION_LABELS

PREPARE_LABEL = OPERATION_LABELS["restore.prepare"]
IMPORT_LABEL = OPERATION_LABELS["restore.import"]


@dataclass(frozen=True, slots=True)
class ImportResult:
    vm_id: str
    warnings: tuple[str, ...] = ()


def _as_size(value: object, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0 or value != int(value):
        raise Malformed(path, "a byte count", value)
    return int(value)


def parse_prepare(doc: object, host: str) -> int:
    """The free bytes on the restore folder's volume."""
    body = check_envelope(doc, host, PREPARE_LABEL)
    try:
        return _as_size(get_field(body, "free", "free", True), "free")
    except Malformed as err:
        raise protocol_error(host, PREPARE_LABEL, err) from None


def parse_import(doc: object, host: str) -> ImportResult:
    body = check_envelope(doc, host, IMPORT_LABEL)
    try:
        vm_id = as_str(get_field(body, "vm_id", "vm_id", True), "vm_id")
        try:
            uuid.UUID(vm_id)
        except ValueError:
            raise Malformed("vm_id", "a GUID", vm_id) from None
        warnings = tuple(
            as_str(item, f"warnings[{i}]") for i, item in enumerate(as_list(body.get("warnings"), "warnings"))
        )
    except Malformed as err:
        raise protocol_error(host, IMPORT_LABEL, err) from None
    return ImportResult(vm_id=vm_id, warnings=warnings)
