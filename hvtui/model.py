"""Plain data the whole product shares: hosts, VMs, checkpoints, disk chains, findings.

Field names follow ``shared/contracts/winrm-wire.md`` so that the lab and WinRM
backends fill one model.  Everything here is immutable and Textual-free.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum

# Checkpoint types that are Hyper-V Replica recovery points, not user sprawl.
REPLICA_CHECKPOINT_TYPES = frozenset({"Replica", "AppConsistentReplica", "SyncedReplica"})
USER_CHECKPOINT_TYPES = frozenset({"Standard", "Production"})
BACKUP_MODES = ("full", "incremental", "differential")


@dataclass(frozen=True, slots=True)
class Volume:
    path: str
    label: str
    size: int
    free: int


@dataclass(frozen=True, slots=True)
class HostFacts:
    name: str
    os: str
    build: str
    now: datetime  # the host's own clock: ages are computed against it
    logical_processors: int
    memory_bytes: int
    volumes: tuple[Volume, ...] = ()

    def volume_for(self, path: str) -> Volume | None:
        """The volume whose path is the longest prefix of ``path`` (case-insensitive)."""
        best: Volume | None = None
        folded = path.lower()
        for vol in self.volumes:
            if folded.startswith(vol.path.lower()) and (best is None or len(vol.path) > len(best.path)):
                best = vol
        return best


@dataclass(frozen=True, slots=True)
class Checkpoint:
    id: str
    name: str
    type: str  # Standard, Recovery, Planned, Missing, Replica, AppConsistentReplica, SyncedReplica
    created: datetime
    parent_id: str | None
    is_automatic: bool = False


@dataclass(frozen=True, slots=True)
class VhdLink:
    """One file of a disk chain (the output of ``Get-VHD``)."""

    path: str
    vhd_type: str  # Fixed, Dynamic, Differencing
    file_size: int  # bytes on disk
    size: int  # virtual size
    parent_path: str | None


@dataclass(frozen=True, slots=True)
class Disk:
    controller: str
    controller_number: int
    controller_location: int
    path: str  # the file the VM writes to now
    chain: tuple[VhdLink, ...]  # from ``path`` down to the base disk
    # Why the chain stops short: Get-VHD could not read a file of it (``chain`` is then empty
    # or ends at a link whose parent is that file).  None when the chain was read whole.
    error: str | None = None

    @property
    def depth(self) -> int:
        """Number of differencing files in the chain."""
        return sum(1 for link in self.chain if link.vhd_type == "Differencing")

    @property
    def differencing_bytes(self) -> int:
        return sum(link.file_size for link in self.chain if link.vhd_type == "Differencing")

    @property
    def base(self) -> VhdLink | None:
        return self.chain[-1] if self.chain else None


@dataclass(frozen=True, slots=True)
class VM:
    host: str  # the configured host name this VM was read from
    id: str
    name: str
    state: str
    status: str = ""
    cpu_usage: int = 0
    memory_assigned: int = 0
    uptime_seconds: int = 0
    heartbeat: str = ""
    generation: int = 2
    version: str = ""
    checkpoint_type: str = "Production"
    is_clustered: bool = False
    path: str = ""
    checkpoint_path: str = ""
    parent_checkpoint_id: str | None = None
    checkpoints: tuple[Checkpoint, ...] = ()
    disks: tuple[Disk, ...] = ()
    stray_disk_files: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """Unique across the estate: host and VM id."""
        return f"{self.host}/{self.id}"

    @property
    def checkpoint_count(self) -> int:
        return len(self.checkpoints)

    def checkpoint(self, checkpoint_id: str) -> Checkpoint | None:
        for cp in self.checkpoints:
            if cp.id == checkpoint_id:
                return cp
        return None

    def children_of(self, checkpoint_id: str | None) -> list[Checkpoint]:
        return [cp for cp in self.checkpoints if cp.parent_id == checkpoint_id]

    def subtree(self, checkpoint_id: str) -> list[Checkpoint]:
        """The checkpoint and all its descendants, parents first."""
        out: list[Checkpoint] = []
        todo = [checkpoint_id]
        while todo:
            current = todo.pop(0)
            cp = self.checkpoint(current)
            if cp is not None:
                out.append(cp)
            todo.extend(child.id for child in self.children_of(current))
        return out

    def current_branch(self) -> list[Checkpoint]:
        """The checkpoint the VM runs from and its ancestors, nearest first."""
        branch: list[Checkpoint] = []
        seen: set[str] = set()  # a damaged tree with a cycle must not loop forever
        current = self.parent_checkpoint_id
        while current is not None and current not in seen:
            seen.add(current)
            cp = self.checkpoint(current)
            if cp is None:
                break
            branch.append(cp)
            current = cp.parent_id
        return branch

    @property
    def oldest_checkpoint(self) -> Checkpoint | None:
        return min(self.checkpoints, key=lambda cp: cp.created, default=None)

    @property
    def chain_depth(self) -> int:
        return max((disk.depth for disk in self.disks), default=0)

    @property
    def differencing_bytes(self) -> int:
        return sum(disk.differencing_bytes for disk in self.disks)

    @property
    def base_virtual_bytes(self) -> int:
        return sum(disk.base.size for disk in self.disks if disk.base is not None)


@dataclass(frozen=True, slots=True)
class HostInventory:
    """What one host returned on the latest refresh (or why it did not)."""

    name: str  # configured host name
    kind: str  # lab or winrm
    group: str | None = None
    read_only: bool = False
    facts: HostFacts | None = None
    vms: tuple[VM, ...] = ()
    error: str | None = None  # why the latest refresh failed; data may still be there, stale
    stale: bool = False  # True when ``vms`` come from an earlier refresh
    # Its current read is late but has not failed: ``error`` says so; shown as waiting, not down.
    waiting: bool = False
    refreshed_at: datetime | None = None  # local time of the last successful refresh
    duration: float = 0.0  # seconds the latest refresh took

    @property
    def reachable(self) -> bool:
        return self.error is None


@dataclass(frozen=True, slots=True)
class Inventory:
    hosts: tuple[HostInventory, ...] = ()

    @property
    def vms(self) -> list[VM]:
        return [vm for host in self.hosts for vm in host.vms]

    def host(self, name: str) -> HostInventory | None:
        for host in self.hosts:
            if host.name == name:
                return host
        return None

    def vm(self, host: str, vm_id: str) -> VM | None:
        inv = self.host(host)
        if inv is None:
            return None
        for vm in inv.vms:
            if vm.id == vm_id:
                return vm
        return None


class Severity(IntEnum):
    OK = 0
    WARN = 1
    CRIT = 2

    @property
    def label(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class Finding:
    severity: Severity
    rule: str  # rule id, e.g. checkpoint-age
    host: str
    vm_id: str | None
    vm_name: str | None
    message: str  # one line with the numbers that matter
    action: str  # suggested action
    checkpoint_id: str | None = None
    file: str | None = None
    age_seconds: float | None = None  # for sorting: older first within a severity
    exempt_reason: str | None = None  # set when an exemption silenced this finding (shown, not hidden)
    data: dict[str, float | int | str] = field(default_factory=dict)
    # The VMs ("host/vm id") a finding about several VMs at once covers: a change window's
    # finding is one per window, and each of these VMs shows its severity in the VM list.
    vm_keys: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RestorePointSummary:
    """A restore point as the inventory, policy and console see it."""

    id: str
    host: str
    vm_id: str
    vm_name: str
    time: datetime
    mode: str  # full, incremental, differential
    logical_bytes: int
    stored_bytes: int
    verified: bool | None = None
    repository: str = "default"
