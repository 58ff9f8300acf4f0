"""The inventory document (``op: inventory``) -> ``HostSnapshot``, and the checkpoint record -> ``Checkpoint``."""

from __future__ import annotations

from hvtui.hosts.base import HostSnapshot
from hvtui.model import VM, Checkpoint, Disk, HostFacts, VhdLink, Volume
from hvtui.wire.dates import as_datetime
from hvtui.wire.enums import (
    CONTROLLER_BY_INT,
    HEARTBEAT_BY_INT,
    SNAPSHOT_TYPE_BY_INT,
    VHD_TYPE_BY_INT,
    VM_CHECKPOINT_TYPE_BY_INT,
    VM_STATE_BY_INT,
)
from hvtui.wire.envelope import check_envelope, protocol_error
from hvtui.wire.fields import (
    Malformed,
    as_bool,
    as_enum,
    as_int,
    as_list,
    as_object,
    as_opt_str,
    as_seconds,
    as_str,
    get_field,
)


def _volume(raw: object, path: str) -> Volume:
    obj = as_object(raw, path)
    return Volume(
        path=as_str(get_field(obj, "path", path, True), f"{path}.path"),
        label=as_str(get_field(obj, "label", path, False), f"{path}.label", default=""),
        size=as_int(get_field(obj, "size", path, True), f"{path}.size"),
        free=as_int(get_field(obj, "free", path, True), f"{path}.free"),
    )


def _facts(raw: object, path: str) -> HostFacts:
    obj = as_object(raw, path)
    build = get_field(obj, "build", path, False)
    if isinstance(build, int) and not isinstance(build, bool):
        build = str(build)
    return HostFacts(
        name=as_str(get_field(obj, "name", path, True), f"{path}.name"),
        os=as_str(get_field(obj, "os", path, False), f"{path}.os", default=""),
        build=as_str(build, f"{path}.build", default=""),
        now=as_datetime(get_field(obj, "now", path, True), f"{path}.now"),
        logical_processors=as_int(get_field(obj, "logical_processors", path, False), f"{path}.logical_processors", 0),
        memory_bytes=as_int(get_field(obj, "memory_bytes", path, False), f"{path}.memory_bytes", 0),
        volumes=tuple(
            _volume(item, f"{path}.volumes[{i}]")
            for i, item in enumerate(as_list(get_field(obj, "volumes", path, False), f"{path}.volumes"))
        ),
    )


def read_checkpoint(raw: object, path: str) -> Checkpoint:
    obj = as_object(raw, path)
    return Checkpoint(
        id=as_str(get_field(obj, "id", path, True), f"{path}.id"),
        name=as_str(get_field(obj, "name", path, True), f"{path}.name"),
        type=as_enum(get_field(obj, "type", path, True), f"{path}.type", SNAPSHOT_TYPE_BY_INT, "checkpoint type"),
        created=as_datetime(get_field(obj, "created", path, True), f"{path}.created"),
        parent_id=as_opt_str(get_field(obj, "parent_id", path, False), f"{path}.parent_id"),
        is_automatic=as_bool(get_field(obj, "is_automatic", path, False), f"{path}.is_automatic", default=False),
    )


def _link(raw: object, path: str) -> VhdLink:
    obj = as_object(raw, path)
    return VhdLink(
        path=as_str(get_field(obj, "path", path, True), f"{path}.path"),
        vhd_type=as_enum(get_field(obj, "vhd_type", path, True), f"{path}.vhd_type", VHD_TYPE_BY_INT, "VHD type"),
        file_size=as_int(get_field(obj, "file_size", path, True), f"{path}.file_size"),
        size=as_int(get_field(obj, "size", path, True), f"{path}.size"),
        parent_path=as_opt_str(get_field(obj, "parent_path", path, False), f"{path}.parent_path"),
    )


def _disk(raw: object, path: str) -> Disk:
    obj = as_object(raw, path)
    return Disk(
        controller=as_enum(get_field(obj, "controller", path, True), f"{path}.controller", CONTROLLER_BY_INT, "controller"),
        controller_number=as_int(get_field(obj, "controller_number", path, False), f"{path}.controller_number", 0),
        controller_location=as_int(get_field(obj, "controller_location", path, False), f"{path}.controller_location", 0),
        path=as_str(get_field(obj, "path", path, True), f"{path}.path"),
        chain=tuple(
            _link(item, f"{path}.chain[{i}]")
            for i, item in enumerate(as_list(get_field(obj, "chain", path, False), f"{path}.chain"))
        ),
        error=as_opt_str(get_field(obj, "error", path, False), f"{path}.error"),
    )


def _vm(raw: object, path: str, host: str) -> VM:
    obj = as_object(raw, path)

    def field(key: str, required: bool = False) -> object:
        return get_field(obj, key, path, required)

    return VM(
        host=host,
        id=as_str(field("id", True), f"{path}.id"),
        name=as_str(field("name", True), f"{path}.name"),
        state=as_enum(field("state", True), f"{path}.state", VM_STATE_BY_INT, "VM state"),
        status=as_str(field("status"), f"{path}.status", default=""),
        cpu_usage=as_int(field("cpu_usage"), f"{path}.cpu_usage", 0),
        memory_assigned=as_int(field("memory_assigned"), f"{path}.memory_assigned", 0),
        uptime_seconds=as_seconds(field("uptime_seconds"), f"{path}.uptime_seconds"),
        heartbeat=as_enum(field("heartbeat"), f"{path}.heartbeat", HEARTBEAT_BY_INT, "heartbeat status", default=""),
        generation=as_int(field("generation"), f"{path}.generation", 2),
        version=as_str(field("version"), f"{path}.version", default=""),
        checkpoint_type=as_enum(
            field("checkpoint_type"),
            f"{path}.checkpoint_type",
            VM_CHECKPOINT_TYPE_BY_INT,
            "checkpoint type",
            default="Production",
        ),
        is_clustered=as_bool(field("is_clustered"), f"{path}.is_clustered", default=False),
        path=as_str(field("path"), f"{path}.path", default=""),
        checkpoint_path=as_str(field("checkpoint_path"), f"{path}.checkpoint_path", default=""),
        parent_checkpoint_id=as_opt_str(field("parent_checkpoint_id"), f"{path}.parent_checkpoint_id"),
        checkpoints=tuple(
            read_checkpoint(item, f"{path}.checkpoints[{i}]")
            for i, item in enumerate(as_list(field("checkpoints"), f"{path}.checkpoints"))
        ),
        disks=tuple(_disk(item, f"{path}.disks[{i}]") for i, item in enumerate(as_list(field("disks"), f"{path}.disks"))),
        stray_disk_files=tuple(
            as_str(item, f"{path}.stray_disk_files[{i}]")
            for i, item in enumerate(as_list(field("stray_disk_files"), f"{path}.stray_disk_files"))
        ),
    )


def parse_inventory(doc: object, host: str) -> HostSnapshot:
    """The ``op: inventory`` document -> ``HostSnapshot``; ``host`` is the configured host name."""
    operation = "inventory"
    body = check_envelope(doc, host, operation)
    try:
        facts = _facts(get_field(body, "host", "document", True), "host")
        vms = tuple(
            _vm(item, f"vms[{i}]", host) for i, item in enumerate(as_list(get_field(body, "vms", "document", False), "vms"))
        )
    except Malformed as err:
        raise protocol_error(host, operation, err) from None
    return HostSnapshot(facts=facts, vms=vms)
