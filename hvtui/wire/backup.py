"""The backup operations' answers (``backup.begin``, ``backup.changes``, ``backup.end``,
``backup.leftovers``; docs/winrm-wire.md, "Backup and restore operations") -> checked records.

They accept Windows PowerShell 5.1's accidental shapes like the inventory reader does (one
object for a one-item list, empty output for an empty one, ``{"value": [...], "Count": n}``,
``/Date(ms)/`` dates, integer enums where stable).  A malformed answer raises
``HostError(kind="protocol")`` naming the host, the operation and the field path; a failure
document with a ``kind`` the caller acts on (``rct-invalid``, ``busy``, ``consistency``,
``state``, ``argument``, ``not-found``) raises ``HostError`` of that kind, and any other kind
is a plain failure shown with its message.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from hvtui.errors import HostError, NotFoundError
from hvtui.wire.dates import as_datetime
from hvtui.wire.enums import VHD_TYPE_BY_INT, VM_STATE_BY_INT
from hvtui.wire.envelope import check_envelope, protocol_error
from hvtui.wire.fields import Malformed, as_bool, as_enum, as_int, as_list, as_object, as_opt_str, as_str, get_field

# Failure kinds of the backup operations that callers act on (the contract names them).
BACKUP_FAILURE_KINDS = frozenset({"rct-invalid", "busy", "consistency", "state", "argument", "not-found"})
CONSISTENCY_LEVELS = ("application", "crash")
FILE_ROLES = ("disk", "config", "state", "guest-state")


@dataclass(frozen=True, slots=True)
class FrozenFile:
    """One file ``backup.begin`` froze: a disk chain link or a configuration file."""

    role: str  # disk, config, state, guest-state
    path: str  # the host's own path (D:\\VMs\\sql01\\sql01.vhdx)
    size: int
    mtime: datetime | None
    disk_id: str | None = None  # disks only: Get-VHD DiskIdentifier
    format: str | None = None
    vhd_type: str | None = None
    virtual_size: int | None = None
    block_size: int | None = None
    logical_sector_size: int | None = None
    parent_path: str | None = None
    controller: str | None = None
    controller_number: int | None = None
    controller_location: int | None = None


@dataclass(frozen=True, slots=True)
class ReferencePoint:
    id: str
    created: datetime | None
    rct: dict[str, str] = field(default_factory=dict)  # disk path -> RCT id


@dataclass(frozen=True, slots=True)
class FrozenVM:
    id: str
    name: str
    generation: int
    version: str
    state: str
    config_path: str | None


@dataclass(frozen=True, slots=True)
class BeginAnswer:
    checkpoint_id: str
    consistency: str  # what the checkpoint got: application or crash
    warnings: tuple[str, ...]
    vm: FrozenVM
    files: tuple[FrozenFile, ...]
    reference_points: tuple[ReferencePoint, ...]


@dataclass(frozen=True, slots=True)
class ChangesAnswer:
    ranges: tuple[tuple[int, int], ...]  # virtual-disk bytes
    processed: int


@dataclass(frozen=True, slots=True)
class EndAnswer:
    reference_point_id: str | None = None  # success
    rct: dict[str, str] = field(default_factory=dict)  # success: disk path -> the new RCT id
    removed: bool = False  # failed: the checkpoint was removed (merged)
    already_gone: bool = False
    retired: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class LeftoverCheckpoint:
    vm_id: str
    vm_name: str
    checkpoint_id: str
    name: str
    created: datetime | None


@dataclass(frozen=True, slots=True)
class LeftoverReferencePoint:
    vm_id: str
    id: str
    created: datetime | None


@dataclass(frozen=True, slots=True)
class LeftoversAnswer:
    checkpoints: tuple[LeftoverCheckpoint, ...]
    reference_points: tuple[LeftoverReferencePoint, ...]


def check_backup_envelope(doc: object, host: str, operation: str) -> Mapping:
    """``envelope.check_envelope``, plus a failure's ``kind`` when it is one callers act on."""
    if isinstance(doc, dict) and doc.get("ok") is False:
        kind = doc.get("kind")
        message = doc.get("error") if isinstance(doc.get("error"), str) else ""
        if kind == "not-found":
            raise NotFoundError(host, operation, message or "not found")
        if isinstance(kind, str) and kind in BACKUP_FAILURE_KINDS:
            raise HostError(host, operation, message or kind, kind=kind)
    return check_envelope(doc, host, operation)


def _time(value: object, path: str) -> datetime | None:
    return None if value in (None, "") else as_datetime(value, path)


def _opt_int(value: object, path: str) -> int | None:
    return None if value is None else as_int(value, path)


def _count(value: object, path: str) -> int:
    number = as_int(value, path)
    if number < 0:
        raise Malformed(path, "a number of bytes (0 or more)", value)
    return number


def _rct(value: object, path: str) -> dict[str, str]:
    if value is None or value == "":
        return {}
    rct = as_object(value, path)
    return {as_str(key, path): as_str(item, f"{path}[{key!r}]") for key, item in rct.items()}


def _reference_point(raw: object, path: str) -> ReferencePoint:
    obj = as_object(raw, path)
    return ReferencePoint(
        id=as_str(get_field(obj, "id", path, True), f"{path}.id"),
        created=_time(obj.get("created"), f"{path}.created"),
        rct=_rct(obj.get("rct"), f"{path}.rct"),
    )


def _frozen_file(raw: object, path: str) -> FrozenFile:
    obj = as_object(raw, path)
    role = as_str(get_field(obj, "role", path, True), f"{path}.role")
    if role not in FILE_ROLES:
        raise Malformed(f"{path}.role", f"one of {', '.join(FILE_ROLES)}", role)
    file_path = as_str(get_field(obj, "path", path, True), f"{path}.path")
    if not file_path:
        raise Malformed(f"{path}.path", "a file path", file_path)
    size = _count(get_field(obj, "size", path, True), f"{path}.size")
    mtime = _time(obj.get("mtime"), f"{path}.mtime")
    if role != "disk":
        return FrozenFile(role, file_path, size, mtime)
    virtual_size = _count(get_field(obj, "virtual_size", path, True), f"{path}.virtual_size")
    return FrozenFile(
        role,
        file_path,
        size,
        mtime,
        disk_id=as_opt_str(obj.get("disk_id"), f"{path}.disk_id"),
        format=as_opt_str(obj.get("format"), f"{path}.format"),
        vhd_type=as_enum(obj.get("vhd_type"), f"{path}.vhd_type", VHD_TYPE_BY_INT, "VHD type", default="Dynamic"),
        virtual_size=virtual_size,
        block_size=_opt_int(obj.get("block_size"), f"{path}.block_size"),
        logical_sector_size=_opt_int(obj.get("logical_sector_size"), f"{path}.logical_sector_size"),
        parent_path=as_opt_str(obj.get("parent_path"), f"{path}.parent_path"),
        controller=as_opt_str(obj.get("controller"), f"{path}.controller"),
        controller_number=_opt_int(obj.get("controller_number"), f"{path}.controller_number"),
        controller_location=_opt_int(obj.get("controller_location"), f"{path}.controller_location"),
    )


def parse_begin(doc: object, host: str, operation: str = "backup.begin") -> BeginAnswer:
    body = check_backup_envelope(doc, host, operation)
    try:
        vm_raw = as_object(get_field(body, "vm", "document", True), "vm")
        vm = FrozenVM(
            id=as_str(get_field(vm_raw, "id", "vm", True), "vm.id"),
            name=as_str(get_field(vm_raw, "name", "vm", True), "vm.name"),
            generation=as_int(vm_raw.get("generation"), "vm.generation", default=2),
            version=as_str(vm_raw.get("version"), "vm.version", default=""),
            state=as_enum(vm_raw.get("state"), "vm.state", VM_STATE_BY_INT, "VM state", default="Running"),
            config_path=as_opt_str(vm_raw.get("config_path"), "vm.config_path"),
        )
        consistency = as_str(get_field(body, "consistency", "document", True), "consistency")
        if consistency not in CONSISTENCY_LEVELS:
            raise Malformed("consistency", "application or crash", consistency)
        files = tuple(_frozen_file(item, f"files[{i}]") for i, item in enumerate(as_list(body.get("files"), "files")))
        if not files:
            raise Malformed("files", "the frozen files (at least one)", body.get("files"))
        return BeginAnswer(
            checkpoint_id=as_str(get_field(body, "checkpoint_id", "document", True), "checkpoint_id"),
            consistency=consistency,
            warnings=tuple(as_str(w, f"warnings[{i}]") for i, w in enumerate(as_list(body.get("warnings"), "warnings"))),
            vm=vm,
            files=files,
            reference_points=tuple(
                _reference_point(item, f"reference_points[{i}]")
                for i, item in enumerate(as_list(body.get("reference_points"), "reference_points"))
            ),
        )
    except Malformed as err:
        raise protocol_error(host, operation, err) from None


def parse_changes(doc: object, host: str, offset: int, length: int, operation: str = "backup.changes") -> ChangesAnswer:
    """The window's changed ranges; each must lie inside the window ``offset``+``length`` asked for."""
    body = check_backup_envelope(doc, host, operation)
    try:
        ranges: list[tuple[int, int]] = []
        for i, item in enumerate(as_list(body.get("ranges"), "ranges")):
            pair = item if isinstance(item, list) else as_list(item, f"ranges[{i}]")
            if len(pair) != 2:
                raise Malformed(f"ranges[{i}]", "[offset, length]", item)
            start, size = _count(pair[0], f"ranges[{i}][0]"), _count(pair[1], f"ranges[{i}][1]")
            if start < offset or start + size > offset + length:
                raise Malformed(f"ranges[{i}]", f"a range within the window {offset}+{length}", item)
            ranges.append((start, size))
        processed = _count(get_field(body, "processed", "document", True), "processed")
        if processed == 0 or processed > length:
            raise Malformed("processed", f"between 1 and {length} bytes", processed)
    except Malformed as err:
        raise protocol_error(host, operation, err) from None
    return ChangesAnswer(tuple(ranges), processed)


def parse_end(doc: object, host: str, outcome: str, operation: str = "backup.end") -> EndAnswer:
    body = check_backup_envelope(doc, host, operation)
    try:
        already_gone = as_bool(body.get("already_gone"), "already_gone", default=False)
        retired = tuple(as_str(x, f"retired[{i}]") for i, x in enumerate(as_list(body.get("retired"), "retired")))
        if already_gone:
            return EndAnswer(already_gone=True, retired=retired)
        if outcome == "success":
            return EndAnswer(
                reference_point_id=as_str(get_field(body, "reference_point_id", "document", True), "reference_point_id"),
                rct=_rct(get_field(body, "rct", "document", True), "rct"),
                retired=retired,
            )
        return EndAnswer(removed=as_bool(body.get("removed"), "removed", default=False), retired=retired)
    except Malformed as err:
        raise protocol_error(host, operation, err) from None


def parse_leftovers(doc: object, host: str, operation: str = "backup.leftovers") -> LeftoversAnswer:
    body = check_backup_envelope(doc, host, operation)
    try:
        checkpoints = []
        for i, item in enumerate(as_list(body.get("checkpoints"), "checkpoints")):
            path = f"checkpoints[{i}]"
            obj = as_object(item, path)
            checkpoints.append(
                LeftoverCheckpoint(
                    vm_id=as_str(get_field(obj, "vm_id", path, True), f"{path}.vm_id"),
                    vm_name=as_str(obj.get("vm_name"), f"{path}.vm_name", default=""),
                    checkpoint_id=as_str(get_field(obj, "checkpoint_id", path, True), f"{path}.checkpoint_id"),
                    name=as_str(get_field(obj, "name", path, True), f"{path}.name"),
                    created=_time(obj.get("created"), f"{path}.created"),
                )
            )
        points = []
        for i, item in enumerate(as_list(body.get("reference_points"), "reference_points")):
            path = f"reference_points[{i}]"
            obj = as_object(item, path)
            points.append(
                LeftoverReferencePoint(
                    vm_id=as_str(get_field(obj, "vm_id", path, True), f"{path}.vm_id"),
                    id=as_str(get_field(obj, "id", path, True), f"{path}.id"),
                    created=_time(obj.get("created"), f"{path}.created"),
                )
            )
    except Malformed as err:
        raise protocol_error(host, operation, err) from None
    return LeftoversAnswer(tuple(checkpoints), tuple(points))
