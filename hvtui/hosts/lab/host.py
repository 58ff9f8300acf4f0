"""``LabHost``: a simulated Hyper-V host whose VMs are real files on disk.

The host state (``host.json``) is the registry Hyper-V keeps in its VMMS database: VMs,
their checkpoint tree, and the graph of disk files (which file is whose parent).  The
inventory is built from that state plus ``stat`` of the files; disk files are opened only
to read or write their blocks, so a host with hundreds of VMs reads in milliseconds.

Checkpoint semantics follow Hyper-V (see ``_plan_removal`` for the merge rules):

- every checkpoint *freezes* the file the VM wrote to when it was taken (``files`` in the
  checkpoint record, one per disk) and the VM continues in a new differencing file
  (``<stem>_<GUID>.avhdx``), a child of the frozen one;
- applying a checkpoint discards the VM's current differencing file and starts a fresh one
  whose parent is the checkpoint's frozen file;
- removing a checkpoint merges, so that every remaining checkpoint and the running state
  read exactly the same logical bytes as before.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from hvtui.clock import Clock
from hvtui.errors import Cancelled, HostError, NotFoundError, ReadOnlyError
from hvtui.events import CancelToken, Progress, ProgressCallback
from hvtui.hosts.base import (
    CHECKPOINT_TYPES_CREATABLE,
    BackupSource,
    Host,
    HostSnapshot,
    RestoreTarget,
    SourceFile,
)
from hvtui.hosts.lab import disk as vdisk
from hvtui.hosts.lab import guest
from hvtui.hosts.lab.state import (
    STAGING_DIR,
    VM_ROOT,
    ChangeLog,
    OpLock,
    StagingLock,
    host_lock,
    load_state,
    save_state,
)
from hvtui.model import VM, Checkpoint, Disk, HostFacts, VhdLink, Volume

log = logging.getLogger(__name__)

VM_STATES = ("Running", "Off", "Saved", "Paused")
MAX_CHECKPOINTS = 50  # Hyper-V's per-VM limit
CONFIG_FORMAT = "hvtui-lab-vm/1"
DISK_SUFFIXES = (".vhdx", ".avhdx")
LOCK_TIMEOUT = 30.0


def iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat()


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def default_checkpoint_name(vm_name: str, when: datetime) -> str:
    """Hyper-V's default: ``<vm> - (MM/DD/YYYY - hh:mm:ss AM/PM)``."""
    return f"{vm_name} - ({when:%m/%d/%Y - %I:%M:%S %p})"


def new_guid() -> str:
    return str(uuid.uuid4())


def validate_vm_name(name: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ValueError("a VM name cannot be empty")
    if len(name) > 100:
        raise ValueError(f"a VM name is at most 100 characters (got {len(name)})")
    if any(ch in name for ch in '/\\\0:*?"<>|') or name in (".", "..") or name != name.strip():
        raise ValueError(f"{name!r} cannot be a VM name: no slashes, control or reserved characters, no edge spaces")
    return name


@dataclass
class _Txn:
    state: dict[str, Any]
    dirty: bool = False


class LabHost(Host):
    kind = "lab"

    def __init__(self, root: Path, name: str, clock: Clock, group: str | None = None, read_only: bool = False) -> None:
        self.root = Path(root).absolute()
        self.name = name
        self.clock = clock
        self.group = group
        self.read_only = read_only
        self._batch: dict[str, Any] | None = None  # state held in memory by ``batch()``
        self._fsync = True
        # Off while an estate is built with a clock jumping through the past.
        self.guest_activity = True
        self._model_cache: dict[str, tuple[int, VM, int]] = {}
        self._model_cache_state: dict[str, Any] | None = None

    # ------------------------------------------------------------------------------
    # construction
    # ------------------------------------------------------------------------------
    @classmethod
    def open(
        cls, root: Path, name: str, clock: Clock, group: str | None = None, read_only: bool = False
    ) -> LabHost:
        """Never fails: a missing directory is reported by ``inventory``.

        Without a configured group, the group recorded in the lab host's state is used.
        """
        if group is None:
            with contextlib.suppress(Exception):
                group = json.loads((Path(root) / "host.json").read_bytes()).get("group")
        return cls(root, name, clock, group=group, read_only=read_only)

    @classmethod
    def create(
        cls,
        root: Path,
        name: str,
        clock: Clock,
        *,
        os_name: str = "Windows Server 2022 Datacenter",
        build: str = "20348",
        logical_processors: int = 32,
        memory_bytes: int = 256 << 30,
        volume_size: int = 2 << 40,
        volume_label: str = "VMs",
        other_data: int = 0,
        profile: str = "custom",
        group: str | None = None,
    ) -> LabHost:
        """Create an empty lab host directory (fails if one exists)."""
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        if (root / "host.json").exists():
            raise HostError(name, "create host", f"{root} already holds a lab host")
        (root / VM_ROOT).mkdir(exist_ok=True)
        state = {
            "format": 1,
            "name": name,
            "profile": profile,
            "group": group,
            "created": iso(clock.now()),
            "facts": {
                "os": os_name,
                "build": build,
                "logical_processors": logical_processors,
                "memory_bytes": memory_bytes,
            },
            "volume": {"label": volume_label, "size": volume_size, "other": other_data},
            "vms": {},
        }
        save_state(root, state)
        return cls(root, name, clock, group=group)

    # ------------------------------------------------------------------------------
    # state plumbing
    # ------------------------------------------------------------------------------
    def _check_exists(self, operation: str) -> None:
        if not self.root.is_dir():
            raise HostError(self.name, operation, self._missing_message(), kind="unreachable")

    def _missing_message(self) -> str:
        """Why this host is not in the lab, and what would fix it (which differs when the lab
        exists with other hosts: `lab init` would refuse, and no profile makes this name)."""
        from hvtui.hosts.lab.estate import lab_host_names

        lab_dir = self.root.parent
        others = [name for name in lab_host_names(lab_dir) if name != self.name]
        if not others:
            return f"there is no lab at {lab_dir}: run `hvtui lab init` (or `hvtui lab init --profile demo`)"
        return (
            f"the lab at {lab_dir} has no host {self.name!r}: its hosts are {', '.join(others)}; "
            "name one of those in the config (`hvtui lab status` lists them)"
        )

    def _require_writable(self, operation: str) -> None:
        if self.read_only:
            raise ReadOnlyError(f"{self.name}: {operation}: the host is read-only")

    @contextlib.contextmanager
    def _txn(self, operation: str, timeout: float = LOCK_TIMEOUT, catch_up: bool = True) -> Iterator[_Txn]:
        """Hold the host lock with a fresh state; saved on success when marked dirty."""
        if self._batch is not None:
            yield _Txn(self._batch)
            return
        self._check_exists(operation)
        with host_lock(self.root, self.name, operation, timeout):
            state = load_state(self.root, self.name)
            # Recovery and guest catch-up already changed files: save them whatever happens next.
            pre = self._recover(state)
            if catch_up and self.guest_activity and self._catch_up_guests(state):
                pre = True
            if pre:
                save_state(self.root, state, fsync=self._fsync)
            txn = _Txn(state)
            yield txn
            if txn.dirty:
                save_state(self.root, state, fsync=self._fsync)

    @contextlib.contextmanager
    def batch(self, fsync: bool = False) -> Iterator[None]:
        """Many changes under one lock and one state write (building estates quickly).

        Guest activity and crash recovery are skipped inside; ``fsync`` False skips
        flushing each new file (the state itself is always written atomically).
        """
        self._check_exists("batch")
        with host_lock(self.root, self.name, "batch"):
            self._batch = load_state(self.root, self.name)
            previous, self._fsync = self._fsync, fsync and self._fsync
            try:
                yield
                save_state(self.root, self._batch, fsync=self._fsync)
            finally:
                self._batch = None
                self._fsync = previous

    def _read_state(self) -> dict[str, Any]:
        """The state for reading only (shared, do not modify)."""
        if self._batch is not None:
            return self._batch
        return load_state(self.root, self.name, cached=True)

    def _vm(self, state: dict[str, Any], vm_id: str, operation: str) -> dict[str, Any]:
        vm = state["vms"].get(vm_id)
        if vm is None:
            # Accept a VM name too, as long as it is unique.
            matches = [rec for rec in state["vms"].values() if rec["name"] == vm_id]
            if len(matches) == 1:
                return matches[0]
            raise NotFoundError(self.name, operation, f"no VM with id {vm_id!r} on this host")
        return vm

    def _checkpoint(self, vm: dict[str, Any], checkpoint_id: str, operation: str) -> dict[str, Any]:
        for cp in vm["checkpoints"]:
            if cp["id"] == checkpoint_id:
                return cp
        raise NotFoundError(self.name, operation, f"VM {vm['name']!r} has no checkpoint with id {checkpoint_id!r}")

    def vm_folder(self, vm: dict[str, Any] | str) -> Path:
        if isinstance(vm, str):
            vm = self._vm(self._read_state(), vm, "locate VM")
        return self.root / vm["folder"]

    def _busy_error(self, vm: dict[str, Any], operation: str) -> HostError:
        what = (vm.get("operation") or {}).get("kind") or ("merge" if vm.get("journal") else "another operation")
        return HostError(
            self.name,
            operation,
            f"VM {vm['name']!r} is busy ({what} in progress); try again when it has finished",
            kind="busy",
        )

    @contextlib.contextmanager
    def _op_lock(self, vm_id: str, operation: str) -> Iterator[OpLock]:
        lock = OpLock(self.root, vm_id)
        if not lock.try_acquire():
            raise HostError(
                self.name, operation, "the VM is busy with another operation (a backup, merge or restore)", kind="busy"
            )
        try:
            yield lock
        finally:
            lock.release()

    def _resolve_vm_id(self, vm_id: str, operation: str) -> str:
        self._check_exists(operation)
        return self._vm(self._read_state(), vm_id, operation)["id"]

    # ------------------------------------------------------------------------------
    # recovery after a crashed process
    # ------------------------------------------------------------------------------
    def _recover(self, state: dict[str, Any]) -> bool:
        """Finish merges and clear backups whose process died.  Under the host lock."""
        changed = False
        for vm in state["vms"].values():
            if not vm.get("journal") and not vm.get("operation"):
                continue
            lock = OpLock(self.root, vm["id"])
            if not lock.try_acquire():
                continue  # a live process is working on it
            try:
                if vm.get("journal"):
                    try:
                        self._run_journal(vm, vm["journal"], None)
                    except (HostError, OSError) as err:
                        # Leave it pending (the VM shows "Merging disks"): one damaged VM
                        # must not take the whole host down.
                        log.warning("%s: cannot finish the interrupted merge of VM %s: %s", self.name, vm["name"], err)
                        continue
                    self._finish_journal(vm)
                op = vm.get("operation")
                if op and op.get("kind") == "backup":
                    # The backup died: its Recovery checkpoint stays behind (as on Hyper-V).
                    shutil.rmtree(self.root / STAGING_DIR / f"backup-{op.get('checkpoint')}", ignore_errors=True)
                elif op and op.get("kind") == "restore":
                    self._roll_back_restore(vm, op.get("staging") or "-")
                vm["operation"] = None
                changed = True
            finally:
                lock.release()
        return changed

    def _roll_back_restore(self, vm: dict[str, Any], token: str) -> None:
        """An in-place restore died before its state was saved: put the old files back."""
        staging = self.root / STAGING_DIR
        aside = staging / f"{token}-old"
        folder = self.vm_folder(vm)
        if aside.is_dir():
            if folder.exists():
                shutil.rmtree(folder)  # the restored files, never registered
            os.rename(aside, folder)
        shutil.rmtree(staging / token, ignore_errors=True)

    def sweep_staging(self) -> int:
        """Remove staging left by dead processes (restores and backups); returns how many."""
        staging = self.root / STAGING_DIR
        try:
            entries = list(staging.iterdir())
        except FileNotFoundError:
            return 0
        state = self._read_state()
        in_use: set[str] = set()
        for vm in state["vms"].values():
            op = vm.get("operation") or {}
            if op.get("staging"):
                in_use.update({op["staging"], f"{op['staging']}-old"})
            if op.get("checkpoint"):
                in_use.add(f"backup-{op['checkpoint']}")
        removed = 0
        for entry in entries:
            if not entry.is_dir() or entry.name in in_use:
                continue
            token = entry.name.removesuffix("-old")
            lock = StagingLock(self.root, token)
            if not lock.try_acquire():
                continue  # a live restore
            try:
                shutil.rmtree(entry, ignore_errors=True)
                removed += 1
            finally:
                lock.release()
                with contextlib.suppress(FileNotFoundError):
                    lock.path.unlink()
        return removed

    # ------------------------------------------------------------------------------
    # guest activity
    # ------------------------------------------------------------------------------
    def _catch_up_guests(self, state: dict[str, Any]) -> bool:
        now_tick = guest.tick_of(self.clock.now().timestamp())
        changed = False
        for vm in state["vms"].values():
            g = vm.setdefault("guest", {})
            if vm["state"] != "Running" or vm.get("journal"):
                continue
            profile = guest.GuestProfile.from_dict(g.get("profile"))
            last = g.get("tick")
            if last is None:
                g["tick"] = now_tick
                changed = True
                continue
            ticks = guest.ticks_to_apply(last, now_tick)
            if not ticks:
                continue
            g["tick"] = now_tick
            changed = True
            if profile.kib_per_minute <= 0 or not vm["disks"]:
                continue
            try:
                self._apply_guest_ticks(vm, ticks, profile)
            except (HostError, OSError) as err:
                log.warning("%s: guest writes of VM %s skipped: %s", self.name, vm["name"], err)
        return changed

    def _apply_guest_ticks(self, vm: dict[str, Any], ticks: range, profile: guest.GuestProfile) -> None:
        disk0 = vm["disks"][0]
        top_name = disk0["current"]
        meta = vm["files"][top_name]
        tracker = ChangeLog(self.root, meta["identity"])
        seq = tracker.begin()
        changed: vdisk.Ranges = []
        with vdisk.DiskChain.open(self.vm_folder(vm) / top_name, writable_top=True) as chain:
            for tick in ticks:
                for offset, data in guest.tick_writes(vm["seed"], tick, profile, chain.virtual_size):
                    changed += chain.write(offset, data)
        tracker.commit(seq, vdisk.coalesce(changed, vdisk.PAGE))

    def _write(self, vm: dict[str, Any], disk_index: int, offset: int, data: bytes) -> None:
        top_name = vm["disks"][disk_index]["current"]
        tracker = ChangeLog(self.root, vm["files"][top_name]["identity"])
        seq = tracker.begin()
        with vdisk.DiskChain.open(self.vm_folder(vm) / top_name, writable_top=True) as chain:
            changed = chain.write(offset, data)
        tracker.commit(seq, vdisk.coalesce(changed, vdisk.PAGE))

    def _write_blocks(self, vm: dict[str, Any], disk_index: int, blocks: Iterator[tuple[int, bytes]]) -> int:
        """Write whole blocks straight into the VM's current file (estate building)."""
        top_name = vm["disks"][disk_index]["current"]
        tracker = ChangeLog(self.root, vm["files"][top_name]["identity"])
        seq = tracker.begin()
        written = 0
        changed: vdisk.Ranges = []
        with vdisk.DiskFile(self.vm_folder(vm) / top_name, writable=True) as top:
            for index, data in blocks:
                changed += top.write_block(index, data)
                written += len(data)
        tracker.commit(seq, vdisk.coalesce(changed, vdisk.PAGE))
        return written

    # ------------------------------------------------------------------------------
    # inventory
    # ------------------------------------------------------------------------------
    def inventory(self, timeout: float = LOCK_TIMEOUT) -> HostSnapshot:
        self._check_exists("inventory")
        if not (self.root / "host.json").exists():
            raise HostError(self.name, "inventory", self._missing_message(), kind="unreachable")
        if self._needs_write(timeout):
            with self._txn("inventory", timeout=timeout):
                pass
        state = self._read_state()
        return self._snapshot(state)

    def _needs_write(self, timeout: float) -> bool:
        """Whether a catch-up or recovery is due (checked without the lock, cheaply)."""
        state = self._read_state()
        if not self.guest_activity:
            return any(vm.get("journal") or vm.get("operation") for vm in state["vms"].values())
        now_tick = guest.tick_of(self.clock.now().timestamp())
        for vm in state["vms"].values():
            if vm.get("journal") or vm.get("operation"):
                return True  # maybe a dead process to clean up after
            if vm["state"] == "Running" and (vm.get("guest") or {}).get("tick", -1) != now_tick:
                g = vm.get("guest") or {}
                if g.get("tick") is None or (g.get("profile") or {}).get("kib_per_minute", 0) > 0:
                    return True
        return False

    def _snapshot(self, state: dict[str, Any], only_vm: str | None = None) -> HostSnapshot:
        now = self.clock.now()
        now_tick = guest.tick_of(now.timestamp())
        if self._model_cache_state is not state:
            # A new state object (the file changed): every cached model may be stale.
            self._model_cache = {}
            self._model_cache_state = state
        vms: list[VM] = []
        used = 0
        for vm in state["vms"].values():
            model, bytes_used = self._vm_static(vm)
            used += bytes_used
            if only_vm is not None and vm["id"] != only_vm:
                continue
            vms.append(self._with_time(model, vm, now, now_tick))
        vms.sort(key=lambda v: v.name.lower())
        vol = state["volume"]
        facts = state["facts"]
        volume = Volume(
            path=str(self.root),
            label=vol.get("label", "VMs"),
            size=int(vol["size"]),
            free=max(0, int(vol["size"]) - used - int(vol.get("other", 0))),
        )
        return HostSnapshot(
            facts=HostFacts(
                name=state.get("name", self.name),
                os=facts["os"],
                build=facts["build"],
                now=now,
                logical_processors=int(facts["logical_processors"]),
                memory_bytes=int(facts["memory_bytes"]),
                volumes=(volume,),
            ),
            vms=tuple(vms),
        )

    def _used_bytes(self, state: dict[str, Any]) -> int:
        total = 0
        for vm in state["vms"].values():
            folder = self.root / vm["folder"]
            with contextlib.suppress(FileNotFoundError):
                for entry in os.scandir(folder):
                    with contextlib.suppress(FileNotFoundError):
                        total += entry.stat().st_size
        return total

    def _with_time(self, model: VM, vm: dict[str, Any], now: datetime, now_tick: int) -> VM:
        """Fill the fields that move with the clock (uptime, CPU)."""
        state = vm["state"]
        started = vm.get("started")
        uptime = int((now - parse_time(started)).total_seconds()) if state in ("Running", "Paused") and started else 0
        cpu = guest.cpu_usage(vm["seed"], now_tick) if state == "Running" else 0
        if uptime == model.uptime_seconds and cpu == model.cpu_usage:
            return model
        return dataclasses.replace(model, uptime_seconds=max(0, uptime), cpu_usage=cpu)

    def _vm_static(self, vm: dict[str, Any]) -> tuple[VM, int]:
        """The VM's model without clock-dependent fields, and the bytes its folder holds.

        Cached while the state object is the same (host.json unchanged: every lab write
        marks the state) and the folder's mtime is too (a file added or removed by hand).
        A VM in the middle of a merge or backup is always read afresh.
        """
        folder = f"{self.root}/{vm['folder']}"
        try:
            folder_mtime = os.stat(folder).st_mtime_ns
        except FileNotFoundError:
            folder_mtime = -1
        cacheable = not vm.get("journal") and not vm.get("operation")
        hit = self._model_cache.get(vm["id"])
        if cacheable and hit is not None and hit[0] == folder_mtime:
            return hit[1], hit[2]
        model, used = self._vm_model(vm, folder)
        if cacheable:
            self._model_cache[vm["id"]] = (folder_mtime, model, used)
        return model, used

    def _vm_model(self, vm: dict[str, Any], folder: str) -> tuple[VM, int]:
        sizes: dict[str, int] = {}
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    try:
                        sizes[entry.name] = entry.stat().st_size
                    except FileNotFoundError:
                        continue
        except FileNotFoundError:
            pass
        files = vm["files"]
        disks: list[Disk] = []
        for d in vm["disks"]:
            chain: list[VhdLink] = []
            name: str | None = d["current"]
            seen: set[str] = set()
            while name is not None and name not in seen:
                seen.add(name)
                meta = files.get(name, {})
                parent = meta.get("parent")
                chain.append(
                    VhdLink(
                        path=f"{folder}/{name}",
                        vhd_type="Differencing" if parent else "Dynamic",
                        file_size=sizes.get(name, 0),
                        size=int(meta.get("size", 0)),
                        parent_path=f"{folder}/{parent}" if parent else None,
                    )
                )
                name = parent
            disks.append(
                Disk(
                    controller=d.get("controller", "SCSI"),
                    controller_number=int(d.get("number", 0)),
                    controller_location=int(d.get("location", 0)),
                    path=f"{folder}/{d['current']}",
                    chain=tuple(chain),
                )
            )
        strays = tuple(
            f"{folder}/{name}" for name in sorted(sizes) if name.lower().endswith(DISK_SUFFIXES) and name not in files
        )
        checkpoints = tuple(
            Checkpoint(
                id=cp["id"],
                name=cp["name"],
                type=cp["type"],
                created=parse_time(cp["created"]),
                parent_id=cp.get("parent_id"),
                is_automatic=bool(cp.get("is_automatic", False)),
            )
            for cp in sorted(vm["checkpoints"], key=lambda c: c["created"])
        )
        state = vm["state"]
        running = state in ("Running", "Paused")
        status = "Operating normally"
        if vm.get("journal"):
            status = "Merging disks"
        elif (vm.get("operation") or {}).get("kind") == "backup":
            status = "Backing up"
        model = VM(
            host=self.name,
            id=vm["id"],
            name=vm["name"],
            state=state,
            status=status,
            cpu_usage=0,
            memory_assigned=int(vm.get("memory", 0)) if running else 0,
            uptime_seconds=0,
            heartbeat={"Running": "OkApplicationsHealthy", "Paused": "Paused"}.get(state, ""),
            generation=int(vm.get("generation", 2)),
            version=str(vm.get("version", "10.0")),
            checkpoint_type=vm.get("checkpoint_type", "Production"),
            is_clustered=False,
            path=folder,
            checkpoint_path=folder,
            parent_checkpoint_id=vm.get("parent_checkpoint_id"),
            checkpoints=checkpoints,
            disks=tuple(disks),
            stray_disk_files=strays,
        )
        return model, sum(sizes.values())

    def vm(self, vm_id: str) -> VM:
        """One VM as the inventory shows it (catching up guest activity first)."""
        self._check_exists("inventory")
        with self._txn("inventory"):
            pass
        state = self._read_state()
        rec = self._vm(state, vm_id, "inventory")
        return self._snapshot(state, only_vm=rec["id"]).vms[0]

    def find_vm(self, name: str) -> str:
        """The id of the VM called ``name``."""
        self._check_exists("inventory")
        state = self._read_state()
        for rec in state["vms"].values():
            if rec["name"] == name:
                return rec["id"]
        raise NotFoundError(self.name, "inventory", f"no VM named {name!r} on this host")

    # ------------------------------------------------------------------------------
    # VM registry (estate building, restore, tests)
    # ------------------------------------------------------------------------------
    def add_vm(
        self,
        name: str,
        *,
        state: str = "Off",
        disk_sizes: tuple[int, ...] = (127 << 30,),
        generation: int = 2,
        version: str = "10.0",
        checkpoint_type: str = "Production",
        cpus: int = 2,
        memory: int = 4 << 30,
        seed: int | None = None,
        guest_kib_per_minute: int = 0,
        vm_id: str | None = None,
        fsync: bool = True,
    ) -> str:
        """Register a new VM with empty base disks; returns its id."""
        self._require_writable("add VM")
        try:
            validate_vm_name(name)
        except ValueError as err:
            raise HostError(self.name, "add VM", str(err)) from None
        if state not in VM_STATES:
            raise HostError(self.name, "add VM", f"unknown VM state {state!r} (expected one of {', '.join(VM_STATES)})")
        vm_id = vm_id or new_guid()
        with self._txn("add VM") as txn:
            if any(rec["name"] == name for rec in txn.state["vms"].values()):
                raise HostError(self.name, "add VM", f"a VM named {name!r} already exists")
            folder = Path(VM_ROOT) / name
            abs_folder = self.root / folder
            if abs_folder.exists():
                raise HostError(self.name, "add VM", f"folder {abs_folder} already exists")
            abs_folder.mkdir(parents=True)
            now = self.clock.now()
            files: dict[str, Any] = {}
            disks: list[dict[str, Any]] = []
            for index, size in enumerate(disk_sizes):
                stem = name if index == 0 else f"{name}_disk{index}"
                file_name = f"{stem}.vhdx"
                vdisk.create_disk(abs_folder / file_name, size, fsync=fsync and self._fsync)
                files[file_name] = {"parent": None, "size": size, "identity": new_guid()}
                disks.append(
                    {
                        "controller": "SCSI" if generation == 2 else "IDE",
                        "number": 0,
                        "location": index,
                        "current": file_name,
                        "stem": stem,
                    }
                )
            rec = {
                "id": vm_id,
                "name": name,
                "state": state,
                "generation": generation,
                "version": version,
                "checkpoint_type": checkpoint_type,
                "cpus": cpus,
                "memory": memory,
                "created": iso(now),
                "started": iso(now) if state in ("Running", "Paused") else None,
                "seed": seed if seed is not None else uuid.UUID(vm_id).int % (1 << 31),
                "guest": {
                    "tick": guest.tick_of(now.timestamp()) if state == "Running" else None,
                    "profile": guest.GuestProfile(kib_per_minute=guest_kib_per_minute).to_dict(),
                },
                "folder": str(folder),
                "config_file": f"{vm_id.upper()}.vmcx",
                "parent_checkpoint_id": None,
                "checkpoints": [],
                "disks": disks,
                "files": files,
                "journal": None,
                "operation": None,
            }
            txn.state["vms"][vm_id] = rec
            self._write_vm_config(rec)
            self._sync_runtime_file(rec)
            txn.dirty = True
        return vm_id

    def _vm_config(self, vm: dict[str, Any]) -> dict[str, Any]:
        """The VM's configuration as the .vmcx holds it (JSON here; binary on Hyper-V)."""
        return {
            "format": CONFIG_FORMAT,
            "id": vm["id"],
            "name": vm["name"],
            "state": vm["state"],
            "generation": vm.get("generation", 2),
            "version": vm.get("version", "10.0"),
            "checkpoint_type": vm.get("checkpoint_type", "Production"),
            "cpus": vm.get("cpus", 2),
            "memory": vm.get("memory", 0),
            "config_file": vm["config_file"],
            "parent_checkpoint_id": vm.get("parent_checkpoint_id"),
            "disks": [dict(d) for d in vm["disks"]],
            "files": {name: {"parent": meta["parent"], "size": meta["size"]} for name, meta in vm["files"].items()},
            "checkpoints": [dict(cp) for cp in vm["checkpoints"]],
        }

    def _write_vm_config(self, vm: dict[str, Any]) -> None:
        from hvtui.files import atomic_write

        data = json.dumps(self._vm_config(vm), indent=1, sort_keys=True).encode("utf-8")
        atomic_write(self.vm_folder(vm) / vm["config_file"], data, fsync=self._fsync)

    def _runtime_file(self, vm: dict[str, Any]) -> Path:
        return self.vm_folder(vm) / vm["config_file"].replace(".vmcx", ".vmrs")

    def _sync_runtime_file(self, vm: dict[str, Any]) -> None:
        """Running, saved and paused VMs have a .vmrs (saved ones hold memory: bigger)."""
        path = self._runtime_file(vm)
        if vm["state"] == "Off":
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            return
        size = (1 << 20) if vm["state"] == "Saved" else (64 << 10)
        if not path.exists() or path.stat().st_size != size:
            source = guest.BlockSource(f"vmrs:{vm['seed']}:{vm['state']}", block_size=size)
            path.write_bytes(source.text_block(0))

    def set_vm_state(self, vm_id: str, state: str) -> None:
        """Start, stop, save or pause a VM (estate building and tests)."""
        if state not in VM_STATES:
            raise HostError(self.name, "set state", f"unknown VM state {state!r} (expected one of {', '.join(VM_STATES)})")
        with self._txn("set state") as txn:
            vm = self._vm(txn.state, vm_id, "set state")
            if vm["state"] == state:
                return
            now = self.clock.now()
            was_running = vm["state"] in ("Running", "Paused")
            vm["state"] = state
            if state in ("Running", "Paused") and not was_running:
                vm["started"] = iso(now)
            elif state not in ("Running", "Paused"):
                vm["started"] = None
            vm.setdefault("guest", {})["tick"] = guest.tick_of(now.timestamp()) if state == "Running" else None
            self._sync_runtime_file(vm)
            self._write_vm_config(vm)
            txn.dirty = True

    def set_guest_activity(self, vm_id: str, kib_per_minute: int, **profile: Any) -> None:
        with self._txn("set guest activity") as txn:
            vm = self._vm(txn.state, vm_id, "set guest activity")
            current = guest.GuestProfile.from_dict(vm.setdefault("guest", {}).get("profile")).to_dict()
            current.update(profile, kib_per_minute=kib_per_minute)
            vm["guest"]["profile"] = guest.GuestProfile.from_dict(current).to_dict()
            txn.dirty = True

    def write_guest_data(self, vm_id: str, disk_index: int, offset: int, data: bytes) -> None:
        """Write into the VM's current disk file as the guest would (change-tracked)."""
        with self._txn("write") as txn:
            vm = self._vm(txn.state, vm_id, "write")
            if vm.get("journal"):
                raise self._busy_error(vm, "write")
            self._disk_record(vm, disk_index, "write")
            self._write(vm, disk_index, offset, data)
            vm["writes"] = vm.get("writes", 0) + 1  # the state changes with the files
            txn.dirty = True

    def write_guest_blocks(self, vm_id: str, disk_index: int, blocks: Iterator[tuple[int, bytes]]) -> int:
        """Write whole blocks ``(block index, payload)`` into the current file; returns bytes."""
        with self._txn("write") as txn:
            vm = self._vm(txn.state, vm_id, "write")
            self._disk_record(vm, disk_index, "write")
            written = self._write_blocks(vm, disk_index, blocks)
            vm["writes"] = vm.get("writes", 0) + 1  # the state changes with the files
            txn.dirty = True
            return written

    def _disk_record(self, vm: dict[str, Any], disk_index: int, operation: str) -> dict[str, Any]:
        if not 0 <= disk_index < len(vm["disks"]):
            raise NotFoundError(self.name, operation, f"VM {vm['name']!r} has no disk {disk_index}")
        return vm["disks"][disk_index]

    def read_disk(self, vm_id: str, disk_index: int, offset: int, length: int) -> bytes:
        """Read the VM's logical disk (the running state) through its chain."""
        self._check_exists("read disk")
        state = self._read_state()
        vm = self._vm(state, vm_id, "read disk")
        d = self._disk_record(vm, disk_index, "read disk")
        return vdisk.read_logical(self.vm_folder(vm) / d["current"], offset, length)

    def disk_path(self, vm_id: str, disk_index: int = 0) -> Path:
        """The file the VM writes to now."""
        state = self._read_state()
        vm = self._vm(state, vm_id, "locate disk")
        return self.vm_folder(vm) / self._disk_record(vm, disk_index, "locate disk")["current"]

    def checkpoint_disk_path(self, vm_id: str, checkpoint_id: str, disk_index: int = 0) -> Path:
        """The file a checkpoint froze (its state is that file's logical disk)."""
        state = self._read_state()
        vm = self._vm(state, vm_id, "locate disk")
        cp = self._checkpoint(vm, checkpoint_id, "locate disk")
        return self.vm_folder(vm) / cp["files"][disk_index]

    # -- volume and failure knobs ------------------------------------------------------
    def set_volume(self, size: int | None = None, free: int | None = None, other: int | None = None) -> None:
        """Resize the simulated volume; ``free`` sets the "other data" so that this much is free."""
        with self._txn("set volume") as txn:
            vol = txn.state["volume"]
            if size is not None:
                vol["size"] = int(size)
            if other is not None:
                vol["other"] = max(0, int(other))
            if free is not None:
                used = self._used_bytes(txn.state)
                vol["other"] = max(0, int(vol["size"]) - used - int(free))
            txn.dirty = True

    def add_stray_file(self, vm_id: str, name: str | None = None, data_bytes: int = 4 << 20) -> Path:
        """Leave an unregistered ``.avhdx`` in the VM's folder (an orphan from a failed merge)."""
        with self._txn("add stray file") as txn:
            vm = self._vm(txn.state, vm_id, "add stray file")
            d = vm["disks"][0]
            base = self._chain_names(vm, d["current"])[-1]
            name = name or f"{d.get('stem', vm['name'])}_{new_guid().upper()}.avhdx"
            path = self.vm_folder(vm) / name
            vdisk.create_disk(path, vm["files"][base]["size"], parent_name=base, fsync=self._fsync)
            source = guest.BlockSource(f"stray:{vm['seed']}:{name}")
            with vdisk.DiskFile(path, writable=True) as f:
                count = min(f.block_count, -(-data_bytes // vdisk.BLOCK_SIZE))
                first = max(0, min(100, f.block_count - count))
                for i in range(count):
                    f.write_block(first + i, source.mixed_block(i))
            txn.dirty = True
            return path

    def simulate_failed_merge(self, vm_id: str) -> None:
        """Leave the VM running on an .avhdx with no checkpoint, as a merge that failed does.

        The checkpoint records vanish (Hyper-V already forgot them) but no file is merged;
        files of other branches stay on disk unregistered (stray).
        """
        with self._txn("simulate failed merge") as txn:
            vm = self._vm(txn.state, vm_id, "simulate failed merge")
            if vm.get("journal"):
                raise self._busy_error(vm, "simulate failed merge")
            folder = self.vm_folder(vm)
            for d in vm["disks"]:
                if vm["files"][d["current"]]["parent"] is None:
                    new = f"{d['stem']}_{new_guid().upper()}.avhdx"
                    vdisk.create_disk(folder / new, vm["files"][d["current"]]["size"], parent_name=d["current"], fsync=self._fsync)
                    vm["files"][new] = {"parent": d["current"], "size": vm["files"][d["current"]]["size"], "identity": new_guid()}
                    d["current"] = new
            keep: set[str] = set()
            for d in vm["disks"]:
                keep.update(self._chain_names(vm, d["current"]))
            vm["files"] = {name: meta for name, meta in vm["files"].items() if name in keep}
            vm["checkpoints"] = []
            vm["parent_checkpoint_id"] = None
            self._write_vm_config(vm)
            txn.dirty = True

    def backdate_checkpoint(self, vm_id: str, checkpoint_id: str, created: datetime) -> None:
        """Change a checkpoint's creation time (estate building, tests of ages)."""
        with self._txn("backdate checkpoint") as txn:
            vm = self._vm(txn.state, vm_id, "backdate checkpoint")
            cp = self._checkpoint(vm, checkpoint_id, "backdate checkpoint")
            cp["created"] = iso(created)
            txn.dirty = True

    def _chain_names(self, vm: dict[str, Any], top: str) -> list[str]:
        out: list[str] = []
        name: str | None = top
        while name is not None and name not in out:
            out.append(name)
            name = vm["files"][name]["parent"]
        return out

    # ------------------------------------------------------------------------------
    # checkpoints
    # ------------------------------------------------------------------------------
    def create_checkpoint(self, vm_id: str, name: str | None, checkpoint_type: str = "Standard") -> Checkpoint:
        self._require_writable("create checkpoint")
        real_id = self._resolve_vm_id(vm_id, "create checkpoint")
        with self._op_lock(real_id, "create checkpoint"), self._txn("create checkpoint") as txn:
            vm = self._vm(txn.state, real_id, "create checkpoint")
            cp = self._create_checkpoint(vm, name, checkpoint_type)
            txn.dirty = True
        return self._checkpoint_model(cp)

    def _checkpoint_model(self, cp: dict[str, Any]) -> Checkpoint:
        return Checkpoint(
            id=cp["id"],
            name=cp["name"],
            type=cp["type"],
            created=parse_time(cp["created"]),
            parent_id=cp.get("parent_id"),
            is_automatic=bool(cp.get("is_automatic", False)),
        )

    @staticmethod
    def _validate_checkpoint_name(host: str, operation: str, name: str) -> str:
        if not isinstance(name, str) or not 1 <= len(name) <= 100:
            length = len(name) if isinstance(name, str) else 0
            raise HostError(host, operation, f"a checkpoint name must be 1 to 100 characters (got {length})")
        if any(ord(ch) < 32 for ch in name):
            raise HostError(host, operation, "a checkpoint name cannot contain control characters")
        return name

    def _create_checkpoint(self, vm: dict[str, Any], name: str | None, checkpoint_type: str) -> dict[str, Any]:
        operation = "create checkpoint"
        if checkpoint_type not in CHECKPOINT_TYPES_CREATABLE:
            raise HostError(
                self.name,
                operation,
                f"cannot create a {checkpoint_type!r} checkpoint (expected one of {', '.join(CHECKPOINT_TYPES_CREATABLE)})",
            )
        if vm.get("journal"):
            raise self._busy_error(vm, operation)
        if vm.get("checkpoint_type") == "Disabled" and checkpoint_type != "Recovery":
            raise HostError(self.name, operation, f"checkpoints are disabled for VM {vm['name']!r}")
        if len(vm["checkpoints"]) >= MAX_CHECKPOINTS:
            raise HostError(
                self.name, operation, f"VM {vm['name']!r} already has {MAX_CHECKPOINTS} checkpoints, Hyper-V's limit"
            )
        now = self.clock.now()
        name = self._validate_checkpoint_name(self.name, operation, name or default_checkpoint_name(vm["name"], now))
        folder = self.vm_folder(vm)
        cp = {
            "id": new_guid(),
            "name": name,
            "type": checkpoint_type,
            "created": iso(now),
            "parent_id": vm.get("parent_checkpoint_id"),
            "is_automatic": False,
            "vm_state": vm["state"],
            "files": [],
        }
        created: list[Path] = []
        try:
            for d in vm["disks"]:
                frozen = d["current"]
                size = vm["files"][frozen]["size"]
                child = f"{d['stem']}_{new_guid().upper()}.avhdx"
                vdisk.create_disk(folder / child, size, parent_name=frozen, fsync=self._fsync)
                created.append(folder / child)
                vm["files"][child] = {"parent": frozen, "size": size, "identity": new_guid()}
                cp["files"].append(frozen)
                d["current"] = child
        except OSError as err:
            for path in created:
                with contextlib.suppress(OSError):
                    path.unlink()
            raise HostError(self.name, operation, f"cannot create the differencing file: {err}") from None
        vm["checkpoints"].append(cp)
        vm["parent_checkpoint_id"] = cp["id"]
        self._write_vm_config(vm)
        return cp

    def apply_checkpoint(self, vm_id: str, checkpoint_id: str, progress: ProgressCallback | None = None) -> None:
        self._require_writable("apply checkpoint")
        real_id = self._resolve_vm_id(vm_id, "apply checkpoint")
        with self._op_lock(real_id, "apply checkpoint"), self._txn("apply checkpoint") as txn:
            vm = self._vm(txn.state, real_id, "apply checkpoint")
            if vm.get("journal"):
                raise self._busy_error(vm, "apply checkpoint")
            cp = self._checkpoint(vm, checkpoint_id, "apply checkpoint")
            if progress:
                progress(Progress(phase="apply", message=f"applying {cp['name']}", done=0, total=1))
            folder = self.vm_folder(vm)
            frozen = {name for c in vm["checkpoints"] for name in c["files"]}
            for index, d in enumerate(vm["disks"]):
                old = d["current"]
                base = cp["files"][index]
                size = vm["files"][base]["size"]
                child = f"{d['stem']}_{new_guid().upper()}.avhdx"
                vdisk.create_disk(folder / child, size, parent_name=base, fsync=self._fsync)
                vm["files"][child] = {"parent": base, "size": size, "identity": new_guid()}
                d["current"] = child
                has_children = any(meta["parent"] == old for meta in vm["files"].values())
                if old not in frozen and not has_children:
                    # The current state is discarded, as Hyper-V does on apply.
                    self._delete_file(vm, old)
            vm["parent_checkpoint_id"] = cp["id"]
            # A production (or recovery) checkpoint has no memory state: the VM ends up off.
            # A standard one of a running VM restores its saved memory: the VM ends up saved.
            if cp["type"] == "Standard" and cp.get("vm_state", "Off") != "Off":
                vm["state"] = "Saved"
            else:
                vm["state"] = "Off"
            vm["started"] = None
            vm.setdefault("guest", {})["tick"] = None
            self._sync_runtime_file(vm)
            self._write_vm_config(vm)
            txn.dirty = True
            if progress:
                progress(Progress(phase="apply", message=f"applied {cp['name']}", done=1, total=1))

    def _delete_file(self, vm: dict[str, Any], name: str) -> None:
        meta = vm["files"].pop(name, None)
        with contextlib.suppress(FileNotFoundError):
            (self.vm_folder(vm) / name).unlink()
        if meta is not None:
            ChangeLog(self.root, meta["identity"]).delete()

    def rename_checkpoint(self, vm_id: str, checkpoint_id: str, new_name: str) -> None:
        self._require_writable("rename checkpoint")
        self._validate_checkpoint_name(self.name, "rename checkpoint", new_name)
        with self._txn("rename checkpoint") as txn:
            vm = self._vm(txn.state, vm_id, "rename checkpoint")
            cp = self._checkpoint(vm, checkpoint_id, "rename checkpoint")
            cp["name"] = new_name
            self._write_vm_config(vm)
            txn.dirty = True

    def remove_checkpoint(
        self,
        vm_id: str,
        checkpoint_id: str,
        subtree: bool = False,
        progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
    ) -> None:
        self._require_writable("remove checkpoint")
        real_id = self._resolve_vm_id(vm_id, "remove checkpoint")
        with self._op_lock(real_id, "remove checkpoint"):
            self._remove_checkpoints(real_id, [checkpoint_id], subtree, progress, cancel)

    def cleanup_recovery_checkpoints(self, vm_id: str, progress: ProgressCallback | None = None) -> int:
        """Remove every Recovery checkpoint of the VM (left by a backup that died); returns how many."""
        self._require_writable("remove recovery checkpoints")
        real_id = self._resolve_vm_id(vm_id, "remove recovery checkpoints")
        with self._op_lock(real_id, "remove recovery checkpoints"):
            with self._txn("remove recovery checkpoints") as txn:
                vm = self._vm(txn.state, real_id, "remove recovery checkpoints")
                ids = [cp["id"] for cp in vm["checkpoints"] if cp["type"] == "Recovery"]
            if ids:
                self._remove_checkpoints(real_id, ids, False, progress, None)
            return len(ids)

    def _remove_checkpoints(
        self,
        vm_id: str,
        checkpoint_ids: list[str],
        subtree: bool,
        progress: ProgressCallback | None,
        cancel: CancelToken | None,
    ) -> None:
        """Remove checkpoints (the caller holds the VM's operation lock).

        Phase 1 (host lock): plan, check space, record the plan as a journal and drop the
        checkpoint records, as Hyper-V does at once.  Phase 2 (no host lock, so the console
        keeps refreshing): merge.  Phase 3 (host lock): commit the new file graph.
        A process that dies in phase 2 leaves the journal; the next process to take the
        host lock re-runs it (every step is idempotent).
        """
        operation = "remove checkpoint"
        with self._txn(operation) as txn:
            vm = self._vm(txn.state, vm_id, operation)
            if vm.get("journal"):
                raise self._busy_error(vm, operation)
            remove: set[str] = set()
            for cid in checkpoint_ids:
                cp = self._checkpoint(vm, cid, operation)
                if subtree:
                    remove.update(self._subtree_ids(vm, cp["id"]))
                else:
                    remove.add(cp["id"])
            journal = self._plan_removal(vm, remove)
            needed = journal["allocate"]
            snapshot_free = self._free_bytes(txn.state)
            if needed > snapshot_free:
                raise HostError(
                    self.name,
                    operation,
                    f"not enough space on the volume to merge: the merge needs {needed} bytes, {snapshot_free} are free",
                    kind="failed",
                )
            if cancel is not None and cancel.cancelled:
                raise Cancelled()
            vm["journal"] = journal
            vm["checkpoints"] = journal["final"]["checkpoints"]
            vm["parent_checkpoint_id"] = journal["final"]["parent_checkpoint_id"]
            self._write_vm_config(vm)
            txn.dirty = True
        # Phase 2: merging can take a while; once started it runs to the end (a half-merged
        # parent is no longer the checkpoint it was), so ``cancel`` is only honoured above.
        self._run_journal(vm, journal, progress)
        with self._txn(operation, catch_up=False) as txn:
            vm = self._vm(txn.state, vm_id, operation)
            if vm.get("journal"):
                self._finish_journal(vm)
            txn.dirty = True
        if progress:
            total = journal["copy"]
            progress(Progress(phase="merge", message="merge complete", done=total, total=total))

    def _free_bytes(self, state: dict[str, Any]) -> int:
        vol = state["volume"]
        return int(vol["size"]) - self._used_bytes(state) - int(vol.get("other", 0))

    @staticmethod
    def _subtree_ids(vm: dict[str, Any], root_id: str) -> set[str]:
        out = {root_id}
        todo = [root_id]
        while todo:
            current = todo.pop()
            for cp in vm["checkpoints"]:
                if cp.get("parent_id") == current and cp["id"] not in out:
                    out.add(cp["id"])
                    todo.append(cp["id"])
        return out

    def _plan_removal(self, vm: dict[str, Any], remove: set[str]) -> dict[str, Any]:
        """Plan the merges that remove checkpoints ``remove`` without changing any state.

        Every checkpoint froze one file per disk.  After dropping the removed checkpoints,
        the files still needed ("anchors") are the VM's current files and the frozen files
        of the remaining checkpoints.  For each file a removed checkpoint froze:

        - no child left (its branch was discarded by an apply, or the whole subtree goes):
          delete it;
        - exactly one child: merge the child INTO it (the child's blocks overwrite the
          parent's, Hyper-V's direction: "the .avhdx is merged into its parent"), re-parent
          the grandchildren, point whoever used the child (the running VM or a checkpoint)
          at the merged file, delete the child.  Cost: the child's data.
        - several children (a checkpoint with branches): merge it into EACH child (only the
          blocks a child lacks, since the child's own are newer), re-parent the children to
          its parent, delete it.  A base disk with several children stays as it is.

        Each step keeps every anchor's logical disk identical, and each step is idempotent,
        so a crashed merge can simply be re-run.
        """
        folder = self.vm_folder(vm)
        files = {name: dict(meta) for name, meta in vm["files"].items()}
        remaining = [dict(cp, files=list(cp["files"])) for cp in vm["checkpoints"] if cp["id"] not in remove]
        by_id = {cp["id"]: cp for cp in vm["checkpoints"]}
        # Re-parent remaining checkpoints to their nearest remaining ancestor.
        for cp in remaining:
            parent = cp.get("parent_id")
            while parent is not None and parent in remove:
                parent = by_id[parent].get("parent_id")
            cp["parent_id"] = parent
        pcp = vm.get("parent_checkpoint_id")
        while pcp is not None and pcp in remove:
            pcp = by_id[pcp].get("parent_id")
        current = [d["current"] for d in vm["disks"]]
        candidates = {name for cid in remove for name in by_id[cid]["files"]}

        # Blocks present per file, to cost the plan and simulate fills exactly.
        blocks: dict[str, set[int]] = {}

        def present(name: str) -> set[int]:
            if name not in blocks:
                with vdisk.DiskFile(folder / name) as f:
                    blocks[name] = set(f.present_blocks())
            return blocks[name]

        block_size = vdisk.BLOCK_SIZE
        steps: list[list[Any]] = []
        copy_bytes = 0
        allocate = 0

        def anchored(name: str) -> bool:
            return name in current or any(name in cp["files"] for cp in remaining)

        def children(name: str) -> list[str]:
            return sorted(child for child, meta in files.items() if meta["parent"] == name)

        def repoint(old: str, new: str) -> None:
            for i, name in enumerate(current):
                if name == old:
                    current[i] = new
            for cp in remaining:
                cp["files"] = [new if name == old else name for name in cp["files"]]

        changed = True
        while changed:
            changed = False
            for name in sorted(candidates):
                if name not in files or anchored(name):
                    candidates.discard(name)
                    changed = True
                    break
                kids = children(name)
                if not kids:
                    steps.append(["delete", name])
                    del files[name]
                    candidates.discard(name)
                    changed = True
                    break
                if len(kids) == 1:
                    kid = kids[0]
                    src, dst = present(kid), present(name)
                    copy_bytes += len(src) * block_size
                    allocate += len(src - dst) * block_size
                    blocks[name] = dst | src
                    steps.append(["merge", kid, name, "overwrite"])
                    for grandchild in children(kid):
                        steps.append(["set_parent", grandchild, name])
                        files[grandchild]["parent"] = name
                    steps.append(["delete", kid])
                    del files[kid]
                    repoint(kid, name)
                    candidates.discard(kid)
                    changed = True
                    break
                if files[name]["parent"] is None:
                    candidates.discard(name)  # a base disk shared by branches stays
                    changed = True
                    break
                grand = files[name]["parent"]
                for kid in kids:
                    src, dst = present(name), present(kid)
                    copy_bytes += len(src - dst) * block_size
                    allocate += len(src - dst) * block_size
                    blocks[kid] = dst | src
                    steps.append(["merge", name, kid, "fill"])
                    steps.append(["set_parent", kid, grand])
                    files[kid]["parent"] = grand
                steps.append(["delete", name])
                del files[name]
                candidates.discard(name)
                changed = True
                break
        disks = [dict(d, current=current[i]) for i, d in enumerate(vm["disks"])]
        return {
            "op": "remove",
            "removed": sorted(remove),
            "steps": steps,
            "copy": copy_bytes,
            "allocate": allocate,
            "final": {
                "checkpoints": remaining,
                "parent_checkpoint_id": pcp,
                "disks": disks,
                "files": files,
            },
        }

    def _run_journal(self, vm: dict[str, Any], journal: dict[str, Any], progress: ProgressCallback | None) -> None:
        folder = self.vm_folder(vm)
        identities = {name: meta["identity"] for name, meta in vm["files"].items()}
        total = int(journal.get("copy", 0))
        done = 0
        last_report = 0.0

        def report(current: str | None, force: bool = False) -> None:
            nonlocal last_report
            if progress is None:
                return
            now = time.monotonic()
            if force or now - last_report >= 0.1:
                last_report = now
                progress(Progress(phase="merge", message="merging disks", current=current, done=done, total=total))

        report(None, force=True)
        for step in journal["steps"]:
            kind = step[0]
            if kind == "merge":
                _, src_name, dst_name, mode = step
                if not (folder / src_name).exists():
                    continue  # done before a crash: the source is deleted only after its merge
                tracker = ChangeLog(self.root, identities.get(dst_name, "unknown"))
                seq = tracker.begin()
                with vdisk.DiskFile(folder / src_name) as src, vdisk.DiskFile(folder / dst_name, writable=True) as dst:

                    def on_block(nbytes: int, _current: str = dst_name) -> None:
                        nonlocal done
                        done += nbytes
                        report(_current)

                    ranges = vdisk.merge_into(src, dst, mode, on_block)
                tracker.commit(seq, ranges)
            elif kind == "set_parent":
                _, name, parent = step
                if not (folder / name).exists():
                    continue
                tracker = ChangeLog(self.root, identities.get(name, "unknown"))
                seq = tracker.begin()
                with vdisk.DiskFile(folder / name, writable=True) as f:
                    ranges = f.set_parent(parent)
                    f.fsync()
                tracker.commit(seq, ranges)
            elif kind == "delete":
                _, name = step
                with contextlib.suppress(FileNotFoundError):
                    (folder / name).unlink()
                if name in identities:
                    ChangeLog(self.root, identities[name]).delete()
        report(None, force=True)

    def _finish_journal(self, vm: dict[str, Any]) -> None:
        final = vm["journal"]["final"]
        vm["files"] = final["files"]
        vm["disks"] = final["disks"]
        # The records were already replaced in phase 1 (and may have been renamed since):
        # only their frozen files moved.
        frozen = {cp["id"]: cp["files"] for cp in final["checkpoints"]}
        for cp in vm["checkpoints"]:
            if cp["id"] in frozen:
                cp["files"] = frozen[cp["id"]]
        vm["journal"] = None
        self._write_vm_config(vm)

    # ------------------------------------------------------------------------------
    # backup and restore
    # ------------------------------------------------------------------------------
    def open_backup_source(self, vm_id: str, progress: ProgressCallback | None = None) -> BackupSource:
        from hvtui.hosts.lab.backup import open_backup_source

        return open_backup_source(self, vm_id, progress)

    def prepare_restore(
        self,
        config: dict,
        mode: str,
        vm_id: str | None = None,
        new_name: str | None = None,
    ) -> RestoreTarget:
        from hvtui.hosts.lab.backup import prepare_restore

        return prepare_restore(self, config, mode, vm_id=vm_id, new_name=new_name)


def open_file(path: Path) -> BinaryIO:
    return open(path, "rb")


__all__ = ["LabHost", "SourceFile", "default_checkpoint_name", "open_file"]
