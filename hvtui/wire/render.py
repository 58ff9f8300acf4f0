"""The model -> wire documents: exactly the contract's inventory document and its records
(``hvtui inventory --json`` and the loopback test server use them)."""

from __future__ import annotations

from hvtui.hosts.base import HostSnapshot
from hvtui.model import VM, Checkpoint, Disk, HostFacts, VhdLink
from hvtui.wire.dates import format_datetime


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
