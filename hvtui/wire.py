"""The WinRM wire contract (``shared/contracts/winrm-wire.md``) <-> the inventory model.

``parse_inventory`` reads the inventory document a host's script wrote; it also accepts
the shapes Windows PowerShell 5.1's ``ConvertTo-Json`` emits by accident (a single object
where a list was expected, empty output for an empty list, ``{"value": [...], "Count": n}``
wrappers, ``/Date(ms)/`` dates and the DisplayHint date object, enums as integers where
the integer is stable across Windows versions).  Anything else malformed raises
``HostError(kind="protocol")`` naming the host, the operation and the field path.

``snapshot_to_wire`` and friends render the model back into exactly that document
(``hvtui inventory --json`` and the loopback test server use them).

Checkpoint operations answer with these documents (version 1; not in the contract text,
fixed here and in ``hosts/winrm/scripts``):

- ``checkpoint.create``: ``{"ok": true, "checkpoint": <checkpoint record>}``
- ``checkpoint.rename``: ``{"ok": true, "checkpoint": <checkpoint record>}``
- ``checkpoint.apply``:  ``{"ok": true, "vm_state": "<state name>"}``
- ``checkpoint.remove``: ``{"ok": true, "removed": ["<checkpoint id>", ...], "merge_pending": <bool>}``
  (``merge_pending`` true: the host was still merging when the script stopped waiting;
  missing means false)
- ``checkpoint.type``:   ``{"ok": true, "checkpoint_type": "<VM checkpoint type>", "restored": <bool>}``
  (the VM's setting, after putting it back when asked; null on hosts without the setting)

and every failure is ``{"ok": false, "error": "<message>", "fqid": "<FullyQualifiedErrorId>"}``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from hvtui.errors import HostError
from hvtui.hosts.base import HostSnapshot
from hvtui.model import VM, Checkpoint, Disk, HostFacts, VhdLink, Volume

WIRE_VERSION = 1

# Wire operation names -> the operation names errors show (the same words the lab host uses).
OPERATION_LABELS: dict[str, str] = {
    "inventory": "inventory",
    "checkpoint.create": "create checkpoint",
    "checkpoint.apply": "apply checkpoint",
    "checkpoint.remove": "remove checkpoint",
    "checkpoint.rename": "rename checkpoint",
    "checkpoint.type": "checkpoint type",
}

# -- enums: integer values trusted only where stable across Windows versions (hyperv.md §2)
VM_STATE_BY_INT: dict[int, str] = {
    1: "Other",
    2: "Running",
    3: "Off",
    4: "Stopping",
    6: "Saved",
    9: "Paused",
    10: "Starting",
    11: "Reset",
    32773: "Saving",
    32776: "Pausing",
    32777: "Resuming",
    32779: "FastSaved",
    32780: "FastSaving",
    32781: "ForceShutdown",
    32782: "ForceReboot",
}
SNAPSHOT_TYPE_BY_INT: dict[int, str] = {
    0: "Standard",
    1: "Recovery",
    2: "Planned",
    5: "Missing",
    6: "Replica",
    7: "AppConsistentReplica",
    8: "SyncedReplica",
}
VM_CHECKPOINT_TYPE_BY_INT: dict[int, str] = {2: "Disabled", 3: "Production", 4: "ProductionOnly", 5: "Standard"}
VHD_TYPE_BY_INT: dict[int, str] = {0: "Unknown", 2: "Fixed", 3: "Dynamic", 4: "Differencing"}
HEARTBEAT_BY_INT: dict[int, str] = {
    0: "Unknown",
    1: "Disabled",
    2: "NoContact",
    3: "Error",
    4: "LostCommunication",
    5: "OkApplicationsUnknown",
    6: "OkApplicationsHealthy",
    7: "OkApplicationsCritical",
    8: "Paused",
}
CONTROLLER_BY_INT: dict[int, str] = {0: "IDE", 1: "SCSI", 2: "PMEM"}

_DATE_MS = re.compile(r"^\\?/Date\((?P<ms>[+-]?\d+)(?P<offset>[+-]\d{4})?\)\\?/$")
_ISO = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})[T ](?P<time>\d{2}:\d{2}:\d{2})(?:\.(?P<frac>\d+))?"
    r"(?P<tz>Z|z|[+-]\d{2}:?\d{2})?$"
)


_MISSING = object()


class _Malformed(Exception):
    def __init__(self, path: str, expected: str, found: object) -> None:
        super().__init__(path, expected, found)
        self.path = path
        self.expected = expected
        self.found = found


def _describe(value: object) -> str:
    if value is _MISSING:
        return "nothing (the field is missing)"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = value if len(value) <= 60 else value[:57] + "..."
        return f"the text {text!r}"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, list):
        return f"a list of {len(value)}"
    if isinstance(value, dict):
        keys = ", ".join(list(value)[:6])
        return f"an object with keys {keys}" if keys else "an empty object"
    return type(value).__name__


def _protocol_error(host: str, operation: str, err: _Malformed) -> HostError:
    return HostError(
        host, operation, f"{err.path}: expected {err.expected}, found {_describe(err.found)}", kind="protocol"
    )


# -- field readers -------------------------------------------------------------------------


def _get(obj: Mapping, key: str, path: str, required: bool) -> object:
    value = obj.get(key, _MISSING)
    if value is _MISSING:
        if required:
            raise _Malformed(f"{path}.{key}", "a value", _MISSING)
        return None
    return value


def _object(value: object, path: str) -> Mapping:
    if not isinstance(value, dict):
        raise _Malformed(path, "an object", value)
    return value


def _str(value: object, path: str, default: str | None = None) -> str:
    if value is None and default is not None:
        return default
    if not isinstance(value, str):
        raise _Malformed(path, "a string", value)
    return value


def _opt_str(value: object, path: str) -> str | None:
    """Null and the empty string both mean 'none' (PowerShell emits either)."""
    if value is None or value == "":
        return None
    return _str(value, path)


def _int(value: object, path: str, default: int | None = None) -> int:
    if value is None and default is not None:
        return default
    if isinstance(value, bool):
        raise _Malformed(path, "an integer", value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    raise _Malformed(path, "an integer", value)


def _seconds(value: object, path: str) -> int:
    """A duration in seconds; also a raw TimeSpan object (PS 5.1 emits Ticks, TotalSeconds, ...)."""
    if value is None:
        return 0
    if isinstance(value, dict) and "TotalSeconds" in value:
        value = value["TotalSeconds"]
        path = f"{path}.TotalSeconds"
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise _Malformed(path, "a number of seconds", value)
    return int(value)


def _bool(value: object, path: str, default: bool | None = None) -> bool:
    if value is None and default is not None:
        return default
    if not isinstance(value, bool):
        raise _Malformed(path, "true or false", value)
    return value


def _list(value: object, path: str) -> list:
    """A list, or one of the shapes PS 5.1 emits for one: empty output, one object, value/Count."""
    if value is None or value == "":
        return []
    if isinstance(value, list):
        return value
    if isinstance(value, str | int | float):
        return [value]  # one scalar unrolled out of its array
    if isinstance(value, dict):
        if set(value) == {"value", "Count"} and isinstance(value["value"], list):
            if _int(value["Count"], f"{path}.Count") != len(value["value"]):
                raise _Malformed(f"{path}.Count", f"{len(value['value'])} (the length of value)", value["Count"])
            return value["value"]
        return [value]
    raise _Malformed(path, "a list", value)


def _enum(value: object, path: str, by_int: Mapping[int, str], what: str, default: str | None = None) -> str:
    """Enum names pass as sent (``.ToString()`` is authoritative); integers only if stable."""
    if (value is None or value == "") and default is not None:
        return default  # an optional enum PowerShell left empty (heartbeat of a VM that is off)
    if isinstance(value, str) and value.strip():
        return value.strip()
    if isinstance(value, int) and not isinstance(value, bool) and value in by_int:
        return by_int[value]
    stable = ", ".join(str(key) for key in sorted(by_int))
    raise _Malformed(path, f"a {what} name, or one of the stable integer values {stable}", value)


def parse_datetime(value: object, path: str = "date") -> datetime:
    """ISO 8601 (any fraction digits, Z or offset), ``/Date(ms[+hhmm])/``, or the DisplayHint object.

    Returns an aware UTC datetime.  Raises ``ValueError`` with the path on bad input.
    """
    try:
        return _datetime(value, path)
    except _Malformed as err:
        raise ValueError(f"{err.path}: expected {err.expected}, found {_describe(err.found)}") from None


def _datetime(value: object, path: str) -> datetime:
    expected = "an ISO 8601 time or /Date(ms)/"
    if isinstance(value, dict) and "value" in value and ("DisplayHint" in value or "DateTime" in value):
        return _datetime(value["value"], f"{path}.value")
    if not isinstance(value, str):
        raise _Malformed(path, expected, value)
    text = value.strip()
    match = _DATE_MS.match(text)
    if match:
        # The milliseconds are UTC since the epoch; the +hhmm suffix only says which local
        # offset the writer was in, it does not shift the instant.
        try:
            return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=int(match.group("ms")))
        except OverflowError:
            raise _Malformed(path, expected, value) from None
    match = _ISO.match(text)
    if not match:
        raise _Malformed(path, expected, value)
    frac = (match.group("frac") or "")[:6].ljust(6, "0")
    tz = match.group("tz")
    try:
        parsed = datetime.fromisoformat(f"{match.group('date')}T{match.group('time')}.{frac}")
    except ValueError:
        raise _Malformed(path, expected, value) from None
    if tz is None or tz in ("Z", "z"):
        # '.ToUniversalTime().ToString("o")' always ends in Z; a zone-less time is read as UTC.
        return parsed.replace(tzinfo=UTC)
    sign = 1 if tz[0] == "+" else -1
    digits = tz[1:].replace(":", "")
    offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    return (parsed - sign * offset).replace(tzinfo=UTC)


def format_datetime(when: datetime) -> str:
    """``.ToUniversalTime().ToString('o')``: seven fraction digits and a Z."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    when = when.astimezone(UTC)
    return f"{when:%Y-%m-%dT%H:%M:%S}.{when.microsecond:06d}0Z"


# -- documents -> model ------------------------------------------------------------------------
def _volume(raw: object, path: str) -> Volume:
    obj = _object(raw, path)
    return Volume(
        path=_str(_get(obj, "path", path, True), f"{path}.path"),
        label=_str(_get(obj, "label", path, False), f"{path}.label", default=""),
        size=_int(_get(obj, "size", path, True), f"{path}.size"),
        free=_int(_get(obj, "free", path, True), f"{path}.free"),
    )


def _facts(raw: object, path: str) -> HostFacts:
    obj = _object(raw, path)
    build = _get(obj, "build", path, False)
    if isinstance(build, int) and not isinstance(build, bool):
        build = str(build)
    return HostFacts(
        name=_str(_get(obj, "name", path, True), f"{path}.name"),
        os=_str(_get(obj, "os", path, False), f"{path}.os", default=""),
        build=_str(build, f"{path}.build", default=""),
        now=_datetime(_get(obj, "now", path, True), f"{path}.now"),
        logical_processors=_int(_get(obj, "logical_processors", path, False), f"{path}.logical_processors", 0),
        memory_bytes=_int(_get(obj, "memory_bytes", path, False), f"{path}.memory_bytes", 0),
        volumes=tuple(
            _volume(item, f"{path}.volumes[{i}]")
            for i, item in enumerate(_list(_get(obj, "volumes", path, False), f"{path}.volumes"))
        ),
    )


def _checkpoint(raw: object, path: str) -> Checkpoint:
    obj = _object(raw, path)
    return Checkpoint(
        id=_str(_get(obj, "id", path, True), f"{path}.id"),
        name=_str(_get(obj, "name", path, True), f"{path}.name"),
        type=_enum(_get(obj, "type", path, True), f"{path}.type", SNAPSHOT_TYPE_BY_INT, "checkpoint type"),
        created=_datetime(_get(obj, "created", path, True), f"{path}.created"),
        parent_id=_opt_str(_get(obj, "parent_id", path, False), f"{path}.parent_id"),
        is_automatic=_bool(_get(obj, "is_automatic", path, False), f"{path}.is_automatic", default=False),
    )


def _link(raw: object, path: str) -> VhdLink:
    obj = _object(raw, path)
    return VhdLink(
        path=_str(_get(obj, "path", path, True), f"{path}.path"),
        vhd_type=_enum(_get(obj, "vhd_type", path, True), f"{path}.vhd_type", VHD_TYPE_BY_INT, "VHD type"),
        file_size=_int(_get(obj, "file_size", path, True), f"{path}.file_size"),
        size=_int(_get(obj, "size", path, True), f"{path}.size"),
        parent_path=_opt_str(_get(obj, "parent_path", path, False), f"{path}.parent_path"),
    )


def _disk(raw: object, path: str) -> Disk:
    obj = _object(raw, path)
    return Disk(
        controller=_enum(_get(obj, "controller", path, True), f"{path}.controller", CONTROLLER_BY_INT, "controller"),
        controller_number=_int(_get(obj, "controller_number", path, False), f"{path}.controller_number", 0),
        controller_location=_int(_get(obj, "controller_location", path, False), f"{path}.controller_location", 0),
        path=_str(_get(obj, "path", path, True), f"{path}.path"),
        chain=tuple(
            _link(item, f"{path}.chain[{i}]")
            for i, item in enumerate(_list(_get(obj, "chain", path, False), f"{path}.chain"))
        ),
        error=_opt_str(_get(obj, "error", path, False), f"{path}.error"),
    )


def _vm(raw: object, path: str, host: str) -> VM:
    obj = _object(raw, path)

    def field(key: str, required: bool = False) -> object:
        return _get(obj, key, path, required)

    return VM(
        host=host,
        id=_str(field("id", True), f"{path}.id"),
        name=_str(field("name", True), f"{path}.name"),
        state=_enum(field("state", True), f"{path}.state", VM_STATE_BY_INT, "VM state"),
        status=_str(field("status"), f"{path}.status", default=""),
        cpu_usage=_int(field("cpu_usage"), f"{path}.cpu_usage", 0),
        memory_assigned=_int(field("memory_assigned"), f"{path}.memory_assigned", 0),
        uptime_seconds=_seconds(field("uptime_seconds"), f"{path}.uptime_seconds"),
        heartbeat=_enum(field("heartbeat"), f"{path}.heartbeat", HEARTBEAT_BY_INT, "heartbeat status", default=""),
        generation=_int(field("generation"), f"{path}.generation", 2),
        version=_str(field("version"), f"{path}.version", default=""),
        checkpoint_type=_enum(
            field("checkpoint_type"),
            f"{path}.checkpoint_type",
            VM_CHECKPOINT_TYPE_BY_INT,
            "checkpoint type",
            default="Production",
        ),
        is_clustered=_bool(field("is_clustered"), f"{path}.is_clustered", default=False),
        path=_str(field("path"), f"{path}.path", default=""),
        checkpoint_path=_str(field("checkpoint_path"), f"{path}.checkpoint_path", default=""),
        parent_checkpoint_id=_opt_str(field("parent_checkpoint_id"), f"{path}.parent_checkpoint_id"),
        checkpoints=tuple(
            _checkpoint(item, f"{path}.checkpoints[{i}]")
            for i, item in enumerate(_list(field("checkpoints"), f"{path}.checkpoints"))
        ),
        disks=tuple(_disk(item, f"{path}.disks[{i}]") for i, item in enumerate(_list(field("disks"), f"{path}.disks"))),
        stray_disk_files=tuple(
            _str(item, f"{path}.stray_disk_files[{i}]")
            for i, item in enumerate(_list(field("stray_disk_files"), f"{path}.stray_disk_files"))
        ),
    )


def check_envelope(doc: object, host: str, operation: str) -> Mapping:
    """The document as an object whose ``ok`` is true; a failure document raises its mapped error."""
    if not isinstance(doc, dict):
        raise _protocol_error(host, operation, _Malformed("document", "an object", doc))
    ok = doc.get("ok", _MISSING)
    if ok is True:
        return doc
    if ok is False:
        from hvtui.hosts.winrm.errors import remote_failure

        message = doc.get("error")
        fqid = doc.get("fqid")
        raise remote_failure(
            host, operation, message if isinstance(message, str) else "", fqid if isinstance(fqid, str) else ""
        )
    raise _protocol_error(host, operation, _Malformed("document.ok", "true or false", ok))


def parse_inventory(doc: object, host: str) -> HostSnapshot:
    """The ``op: inventory`` document -> ``HostSnapshot``; ``host`` is the configured host name."""
    operation = "inventory"
    body = check_envelope(doc, host, operation)
    try:
        facts = _facts(_get(body, "host", "document", True), "host")
        vms = tuple(
            _vm(item, f"vms[{i}]", host) for i, item in enumerate(_list(_get(body, "vms", "document", False), "vms"))
        )
    except _Malformed as err:
        raise _protocol_error(host, operation, err) from None
    return HostSnapshot(facts=facts, vms=vms)


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
            checkpoint = _checkpoint(_get(body, "checkpoint", "document", True), "checkpoint")
        vm_state = None
        if op == "checkpoint.apply" and body.get("vm_state") is not None:
            vm_state = _enum(body["vm_state"], "vm_state", VM_STATE_BY_INT, "VM state")
        removed: tuple[str, ...] = ()
        merge_pending = False
        if op == "checkpoint.remove":
            removed = tuple(_str(item, f"removed[{i}]") for i, item in enumerate(_list(body.get("removed"), "removed")))
            merge_pending = _bool(body.get("merge_pending"), "merge_pending", default=False)
        checkpoint_type = None
        type_restored = False
        if op == "checkpoint.type":
            if body.get("checkpoint_type") not in (None, ""):
                checkpoint_type = _enum(
                    body["checkpoint_type"], "checkpoint_type", VM_CHECKPOINT_TYPE_BY_INT, "checkpoint type"
                )
            type_restored = _bool(body.get("restored"), "restored", default=False)
    except _Malformed as err:
        raise _protocol_error(host, operation, err) from None
    return OperationResult(
        operation=op,
        checkpoint=checkpoint,
        vm_state=vm_state,
        removed=removed,
        merge_pending=merge_pending,
        checkpoint_type=checkpoint_type,
        type_restored=type_restored,
    )


# -- model -> documents --------------------------------------------------------------------------
def checkpoint_to_wire(cp: Checkpoint) -> dict:
    return {
        "id": cp.id,
        "name": cp.name,
        "type": cp.type,
        "created": format_datetime(cp.created),
        "parent_id": cp.parent_id,
        "is_automatic": cp.is_automatic,
    }


def _link_to_wire(link: VhdLink) -> dict:
    return {
        "path": link.path,
        "vhd_type": link.vhd_type,
        "file_size": link.file_size,
        "size": link.size,
        "parent_path": link.parent_path,
    }


def _disk_to_wire(disk: Disk) -> dict:
    record = {
        "controller": disk.controller,
        "controller_number": disk.controller_number,
        "controller_location": disk.controller_location,
        "path": disk.path,
        "chain": [_link_to_wire(link) for link in disk.chain],
    }
    if disk.error is not None:
        record["error"] = disk.error  # only on a disk Get-VHD could not read
    return record


def vm_to_wire(vm: VM, *, with_host: bool = True) -> dict:
    """One VM record with the contract's field names; ``with_host`` adds ``"host"`` first
    (the configured host name: ``hvtui inventory --json`` lists VMs of many hosts)."""
    record: dict = {"host": vm.host} if with_host else {}
    record.update(
        {
            "id": vm.id,
            "name": vm.name,
            "state": vm.state,
            "status": vm.status,
            "cpu_usage": vm.cpu_usage,
            "memory_assigned": vm.memory_assigned,
            "uptime_seconds": vm.uptime_seconds,
            "heartbeat": vm.heartbeat,
            "generation": vm.generation,
            "version": vm.version,
            "checkpoint_type": vm.checkpoint_type,
            "is_clustered": vm.is_clustered,
            "path": vm.path,
            "checkpoint_path": vm.checkpoint_path,
            "parent_checkpoint_id": vm.parent_checkpoint_id,
            "checkpoints": [checkpoint_to_wire(cp) for cp in vm.checkpoints],
            "disks": [_disk_to_wire(disk) for disk in vm.disks],
            "stray_disk_files": list(vm.stray_disk_files),
        }
    )
    return record


def facts_to_wire(facts: HostFacts) -> dict:
    return {
        "name": facts.name,
        "os": facts.os,
        "build": facts.build,
        "now": format_datetime(facts.now),
        "logical_processors": facts.logical_processors,
        "memory_bytes": facts.memory_bytes,
        "volumes": [{"path": v.path, "label": v.label, "size": v.size, "free": v.free} for v in facts.volumes],
    }


def snapshot_to_wire(snapshot: HostSnapshot) -> dict:
    """Exactly the contract's inventory document (VM records without ``host``)."""
    return {
        "ok": True,
        "host": facts_to_wire(snapshot.facts),
        "vms": [vm_to_wire(vm, with_host=False) for vm in snapshot.vms],
    }
