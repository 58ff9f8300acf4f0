"""What a finished backup tells the audit log and the user beyond the engine's result.

Apart from ``service.py`` to keep it short: how the audit entry of a backup reads (the mode that
ran beside the one asked for, why disk files were read whole, what the host said), and the
warning that a full was taken because the VM's earlier points are under another VM id.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hvtui.backups.points import PointListing, vm_points
from hvtui.engine.backup import BackupResult
from hvtui.errors import HvtuiError
from hvtui.inventory import InventoryService


def backup_audit_args(result: BackupResult, asked: dict[str, Any]) -> dict[str, Any]:
    """The audit entry's arguments: what ran, and what was asked when it differs (an incremental
    with no earlier point runs as a full: "mode=full requested=incremental")."""
    ran: dict[str, Any] = {"mode": result.mode}
    if result.requested_mode != result.mode:
        ran["requested"] = result.requested_mode
    args = {**ran, **{k: v for k, v in asked.items() if k != "mode"}, "point": result.point_id}
    if result.whole_reads:  # why disk files were read whole: a full read is never silent
        args["whole_reads"] = list(result.whole_reads)
    if result.disk_set_changed:
        args["disk_set_changed"] = result.disk_set_changed
    if result.host_warnings:  # what the host said (a fall back to crash consistency)
        args["host_warnings"] = list(result.host_warnings)
    return args


def earlier_id_warning(
    point_listing: Callable[..., PointListing], inventory: InventoryService, host_name: str, result: BackupResult
) -> list[str]:
    """Why a full was taken although points of the VM's name exist: they are under an earlier
    VM id, and an incremental never builds on another id's point (``VMPoints``)."""
    try:
        listing = point_listing(host=host_name, repository=result.repository)
    except HvtuiError:
        return []
    listing.points = [i for i in listing.points if i.summary.id != result.point_id]
    known = inventory.latest.host(host_name)
    current = {vm.id for vm in known.vms if vm.id != result.vm_id} if known is not None else set()
    earlier = vm_points(listing, result.vm_id, result.vm_name, current)
    if earlier.own or not earlier.same_name:
        return []
    return [
        f"no restore point under VM id {result.vm_id}, so a full was taken; {earlier.earlier_text()} "
        f"{'are' if len(earlier.same_name) != 1 else 'is'} not built on (`hvtui points {earlier.earlier_ids[0]}` "
        "lists them, `hvtui restore` restores them)"
    ]
