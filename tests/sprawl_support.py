"""Hand-built estates and a test-double host for the inventory, policy, actions and check tests.

``StubHost`` is a real ``Host`` subclass (no mocks): it keeps its VMs as model objects and
changes them the way Hyper-V does (a checkpoint freezes the current file and starts a new
differencing file; deleting one merges its file into the parent).  It can be told to fail
or to hang on a ``threading.Event`` to exercise the inventory's deadlines.
"""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hvtui.clock import FixedClock
from hvtui.config import Config, HostConfig, PolicyConfig
from hvtui.core import Core
from hvtui.errors import HostError, NotFoundError
from hvtui.events import CancelToken, Progress, ProgressCallback
from hvtui.hosts.base import Host, HostSnapshot
from hvtui.hosts.registry import HostRegistry
from hvtui.inventory import InventoryService
from hvtui.model import VM, Checkpoint, Disk, HostFacts, VhdLink, Volume
from hvtui.paths import Paths

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
GiB = 1024**3
MiB = 1024**2
DAY = 86400.0
HOUR = 3600.0


def make_facts(name: str = "hv01", now: datetime = NOW, free: int = 500 * GiB, size: int = 1024 * GiB) -> HostFacts:
    return HostFacts(
        name=name.upper(),
        os="Windows Server 2022 Datacenter",
        build="20348",
        now=now,
        logical_processors=32,
        memory_bytes=256 * GiB,
        volumes=(Volume("C:\\", "System", 100 * GiB, 40 * GiB), Volume("D:\\", "VMs", size, free)),
    )


def new_id() -> str:
    return str(uuid.uuid4())


def checkpoint(
    name: str, age: float, type: str = "Standard", parent: str | None = None, now: datetime = NOW
) -> Checkpoint:  # noqa: A002
    return Checkpoint(id=new_id(), name=name, type=type, created=now - timedelta(seconds=age), parent_id=parent)


def linear_vm(
    name: str,
    host: str = "hv01",
    ages: tuple[float, ...] = (),
    types: tuple[str, ...] | None = None,
    diff_sizes: tuple[int, ...] | None = None,
    base_virtual: int = 40 * GiB,
    base_stored: int = 10 * GiB,
    state: str = "Running",
    stray: tuple[str, ...] = (),
    now: datetime = NOW,
    folder: str | None = None,
) -> VM:
    """A VM with one linear checkpoint branch (oldest first in ``ages``) and one disk whose
    chain has one differencing file per checkpoint, as Hyper-V lays it out."""
    folder = folder or f"D:\\VMs\\{name}"
    types = types or tuple("Standard" for _ in ages)
    checkpoints: list[Checkpoint] = []
    parent: str | None = None
    for i, age in enumerate(ages):
        cp = checkpoint(f"{name} cp{i + 1}", age, types[i], parent, now)
        checkpoints.append(cp)
        parent = cp.id
    depth = len(ages)
    sizes = diff_sizes if diff_sizes is not None else tuple(100 * MiB for _ in range(depth))
    base = VhdLink(f"{folder}\\{name}.vhdx", "Dynamic", base_stored, base_virtual, None)
    links = [base]
    for i in range(depth):
        # files oldest first while building; the chain runs newest -> base
        cp = checkpoints[i]
        links.insert(
            0, VhdLink(f"{folder}\\{name}_{cp.id.upper()}.avhdx", "Differencing", sizes[i], base_virtual, links[0].path)
        )
    disk = Disk("SCSI", 0, 0, links[0].path, tuple(links))
    return VM(
        host=host,
        id=new_id(),
        name=name,
        state=state,
        uptime_seconds=3600 if state == "Running" else 0,
        path=folder,
        checkpoint_path=folder,
        parent_checkpoint_id=parent,
        checkpoints=tuple(checkpoints),
        disks=(disk,),
        stray_disk_files=stray,
    )


class StubHost(Host):
    """A test-double host holding model objects; thread-safe enough for the tests."""

    def __init__(
        self,
        name: str,
        vms: list[VM] | None = None,
        facts: HostFacts | None = None,
        group: str | None = None,
        read_only: bool = False,
        kind: str = "lab",
    ) -> None:
        self.name = name
        self.kind = kind
        self.group = group
        self.read_only = read_only
        self.vms: dict[str, VM] = {vm.id: vm for vm in (vms or [])}
        self.facts = facts or make_facts(name)
        self.fail_with: Exception | None = None
        self.hang: threading.Event | None = None  # inventory waits on it when set
        self.entered = threading.Event()  # set when an inventory call starts
        self.inventory_calls = 0
        self.calls: list[tuple] = []  # changes asked for, in order
        self.change_error: Exception | None = None  # raised by every change when set
        self._lock = threading.Lock()

    # -- inventory ----------------------------------------------------------------------------
    def inventory(self, timeout: float) -> HostSnapshot:
        with self._lock:
            self.inventory_calls += 1
        self.entered.set()
        if self.hang is not None:
            self.hang.wait()
        if self.fail_with is not None:
            raise self.fail_with
        with self._lock:
            return HostSnapshot(facts=self.facts, vms=tuple(self.vms.values()))

    # -- changes -------------------------------------------------------------------------------
    def _vm(self, vm_id: str) -> VM:
        if vm_id not in self.vms:
            raise NotFoundError(self.name, "find VM", f"no VM {vm_id}")
        return self.vms[vm_id]

    def _fail_if_told(self, operation: str) -> None:
        if self.change_error is not None:
            raise self.change_error

    def create_checkpoint(self, vm_id: str, name: str | None, checkpoint_type: str = "Standard") -> Checkpoint:
        self.calls.append(("create", vm_id, name, checkpoint_type))
        self._fail_if_told("checkpoint.create")
        with self._lock:
            vm = self._vm(vm_id)
            cp = Checkpoint(
                id=new_id(),
                name=name or f"{vm.name} - ({self.facts.now:%m/%d/%Y - %H:%M:%S})",
                type=checkpoint_type,
                created=self.facts.now,
                parent_id=vm.parent_checkpoint_id,
            )
            disks = []
            for disk in vm.disks:
                link = VhdLink(
                    f"{vm.path}\\{vm.name}_{cp.id.upper()}.avhdx",
                    "Differencing",
                    4 * MiB,
                    disk.chain[0].size,
                    disk.path,
                )
                disks.append(dataclasses.replace(disk, path=link.path, chain=(link, *disk.chain)))
            self.vms[vm_id] = dataclasses.replace(
                vm, checkpoints=(*vm.checkpoints, cp), parent_checkpoint_id=cp.id, disks=tuple(disks)
            )
            return cp

    def apply_checkpoint(self, vm_id: str, checkpoint_id: str, progress: ProgressCallback | None = None) -> None:
        self.calls.append(("apply", vm_id, checkpoint_id))
        self._fail_if_told("checkpoint.apply")
        with self._lock:
            vm = self._vm(vm_id)
            if vm.checkpoint(checkpoint_id) is None:
                raise NotFoundError(self.name, "checkpoint.apply", f"no checkpoint {checkpoint_id}")
            self.vms[vm_id] = dataclasses.replace(vm, parent_checkpoint_id=checkpoint_id, state="Off")

    def remove_checkpoint(
        self,
        vm_id: str,
        checkpoint_id: str,
        subtree: bool = False,
        progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
    ) -> None:
        self.calls.append(("remove", vm_id, checkpoint_id, subtree))
        self._fail_if_told("checkpoint.remove")
        with self._lock:
            vm = self._vm(vm_id)
            going = vm.subtree(checkpoint_id) if subtree else [vm.checkpoint(checkpoint_id)]
            if not going or going[0] is None:
                raise NotFoundError(self.name, "checkpoint.remove", f"no checkpoint {checkpoint_id}")
            for cp in going:
                vm = self._merge_one(vm, cp)
            self.vms[vm_id] = vm
        if progress is not None:
            progress(Progress("merge", done=1, total=1))

    @staticmethod
    def _merge_one(vm: VM, cp: Checkpoint) -> VM:
        # Along the current branch, the file created at cp merges into cp's frozen file.
        branch: list[str] = []
        current = vm.parent_checkpoint_id
        while current is not None:
            branch.append(current)
            found = vm.checkpoint(current)
            current = found.parent_id if found else None
        disks = list(vm.disks)
        if cp.id in branch:
            i = branch.index(cp.id)
            for n, disk in enumerate(disks):
                chain = list(disk.chain)
                merged, into = chain[i], chain[i + 1]
                chain[i + 1] = dataclasses.replace(into, file_size=into.file_size + merged.file_size)
                del chain[i]
                if i > 0:
                    chain[i - 1] = dataclasses.replace(chain[i - 1], parent_path=chain[i].path)
                disks[n] = dataclasses.replace(disk, path=chain[0].path, chain=tuple(chain))
        checkpoints = tuple(
            dataclasses.replace(c, parent_id=cp.parent_id) if c.parent_id == cp.id else c
            for c in vm.checkpoints
            if c.id != cp.id
        )
        parent = cp.parent_id if vm.parent_checkpoint_id == cp.id else vm.parent_checkpoint_id
        return dataclasses.replace(vm, checkpoints=checkpoints, parent_checkpoint_id=parent, disks=tuple(disks))

    def rename_checkpoint(self, vm_id: str, checkpoint_id: str, new_name: str) -> None:
        self.calls.append(("rename", vm_id, checkpoint_id, new_name))
        self._fail_if_told("checkpoint.rename")
        with self._lock:
            vm = self._vm(vm_id)
            cps = tuple(dataclasses.replace(c, name=new_name) if c.id == checkpoint_id else c for c in vm.checkpoints)
            self.vms[vm_id] = dataclasses.replace(vm, checkpoints=cps)


def make_core(
    hosts: list[StubHost],
    paths: Paths,
    read_only: bool = False,
    policy: PolicyConfig | None = None,
    clock: FixedClock | None = None,
) -> Core:
    config = Config(
        source=Path("/nonexistent/test-config.yaml"),
        hosts=tuple(HostConfig(name=h.name, kind=h.kind, group=h.group, read_only=h.read_only) for h in hosts),
        policy=policy or PolicyConfig(),
    )
    return Core(config, paths, clock=clock or FixedClock(NOW), read_only=read_only, hosts={h.name: h for h in hosts})


def inventory_service(core: Core, **kwargs: float) -> InventoryService:
    """A stand-alone inventory service over the core's hosts, settings and clock (the core
    wires its own the same way)."""
    hosts = HostRegistry(
        lambda: core.host_configs,
        lambda host_config: core.host(host_config.name),
        settings=core.config.hosts,
        read_only=core.read_only,
        hosts=core.hosts,
    )
    return InventoryService(hosts, core.clock, **kwargs)


def host_error(host: str, message: str = "connection refused", kind: str = "unreachable") -> HostError:
    return HostError(host, "inventory", message, kind=kind)


# -- hanging hosts ---------------------------------------------------------------------------------
def wait_until(predicate: Callable[[], bool], rounds: int = 1000) -> None:
    """Until ``predicate()`` holds (checked every 10 ms), or fail: never a fixed sleep."""
    event = threading.Event()
    for _ in range(rounds):
        if predicate():
            return
        event.wait(0.01)
    raise AssertionError("condition never became true")


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """The Event a hung ``StubHost`` waits on (``host.hang = release``); set after the test,
    so no stub thread is left hanging.  Import it into the test module to use it."""
    event = threading.Event()
    yield event
    event.set()
