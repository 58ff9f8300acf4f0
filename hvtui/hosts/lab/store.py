"""The storage of one lab host: its state transactions, records, locks and VM files.

``LabStore`` is what every other part of a lab host works through: ``txn`` holds the host
lock around a fresh ``host.json`` (finishing merges and backups of dead processes and
catching up guest activity first), ``vm_record``/``checkpoint_record``/``disk_record``
look records up, ``op_lock`` keeps two long operations off one VM, and the VM's
configuration (.vmcx), runtime state (.vmrs) and disk writes go through here so that
every change lands in the change logs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hvtui.clock import Clock
from hvtui.errors import HostError, NotFoundError, ReadOnlyError
from hvtui.files import atomic_write
from hvtui.hosts.lab import disk as vdisk
from hvtui.hosts.lab import guest, merge
from hvtui.hosts.lab.records import vm_config
from hvtui.hosts.lab.state import (
    STAGING_DIR,
    ChangeLog,
    OpLock,
    StagingLock,
    host_lock,
    lab_host_names,
    load_state,
    save_state,
)

log = logging.getLogger(__name__)

LOCK_TIMEOUT = 30.0


@dataclass
class Txn:
    """A state inside ``LabStore.txn``: mark it ``dirty`` to have it saved."""

    state: dict[str, Any]
    dirty: bool = False


class LabStore:
    """One lab host's directory: its ``host.json`` records, locks and VM files."""

    def __init__(self, root: Path, name: str, clock: Clock, read_only: bool = False) -> None:
        self.root = Path(root).absolute()
        self.name = name
        self.clock = clock
        self.read_only = read_only
        self._batch: dict[str, Any] | None = None  # state held in memory by ``batch()``
        # Whether each new file is flushed; off while an estate is built in a temp directory.
        self.fsync = True
        # Off while an estate is built with a clock jumping through the past.
        self.guest_activity = True

    # ------------------------------------------------------------------------------
    # state, records, locks
    # ------------------------------------------------------------------------------
    def check_exists(self, operation: str) -> None:
        if not self.root.is_dir():
            raise HostError(self.name, operation, self.missing_message(), kind="unreachable")

    def missing_message(self) -> str:
        """Why this host is not in the lab, and what would fix it (which differs when the lab
        exists with other hosts: `lab init` would refuse, and no profile makes this name)."""
        lab_dir = self.root.parent
        others = [name for name in lab_host_names(lab_dir) if name != self.name]
        if not others:
            return f"there is no lab at {lab_dir}: run `hvtui lab init` (or `hvtui lab init --profile demo`)"
        return (
            f"the lab at {lab_dir} has no host {self.name!r}: its hosts are {', '.join(others)}; "
            "name one of those in the config (`hvtui lab status` lists them)"
        )

    def require_writable(self, operation: str) -> None:
        if self.read_only:
            raise ReadOnlyError(f"{self.name}: {operation}: the host is read-only")

    @contextlib.contextmanager
    def txn(self, operation: str, timeout: float = LOCK_TIMEOUT, catch_up: bool = True) -> Iterator[Txn]:
        """Hold the host lock with a fresh state; saved on success when marked dirty."""
        if self._batch is not None:
            yield Txn(self._batch)
            return
        self.check_exists(operation)
        with host_lock(self.root, self.name, operation, timeout):
            state = load_state(self.root, self.name)
            # Recovery and guest catch-up already changed files: save them whatever happens next.
            pre = self._recover(state)
            if catch_up and self.guest_activity and self._catch_up_guests(state):
                pre = True
            if pre:
                save_state(self.root, state, fsync=self.fsync)
            txn = Txn(state)
            yield txn
            if txn.dirty:
                save_state(self.root, state, fsync=self.fsync)

    @contextlib.contextmanager
    def batch(self, fsync: bool = False) -> Iterator[dict[str, Any]]:
        """Many changes under one lock and one state write (building estates quickly).

        Guest activity and crash recovery are skipped inside; ``fsync`` False skips
        flushing each new file (the state itself is always written atomically).  Yields the
        state held in memory meanwhile (every ``txn`` inside works on it).
        """
        self.check_exists("batch")
        with host_lock(self.root, self.name, "batch"):
            self._batch = load_state(self.root, self.name)
            previous, self.fsync = self.fsync, fsync and self.fsync
            try:
                yield self._batch
                save_state(self.root, self._batch, fsync=self.fsync)
            finally:
                self._batch = None
                self.fsync = previous

    def read_state(self) -> dict[str, Any]:
        """The state for reading only (shared, do not modify)."""
        if self._batch is not None:
            return self._batch
        return load_state(self.root, self.name, cached=True)

    def vm_record(self, state: dict[str, Any], vm_id: str, operation: str) -> dict[str, Any]:
        vm = state["vms"].get(vm_id)
        if vm is None:
            # Accept a VM name too, as long as it is unique.
            matches = [rec for rec in state["vms"].values() if rec["name"] == vm_id]
            if len(matches) == 1:
                return matches[0]
            raise NotFoundError(self.name, operation, f"no VM with id {vm_id!r} on this host")
        return vm

    def checkpoint_record(self, vm: dict[str, Any], checkpoint_id: str, operation: str) -> dict[str, Any]:
        for cp in vm["checkpoints"]:
            if cp["id"] == checkpoint_id:
                return cp
        raise NotFoundError(self.name, operation, f"VM {vm['name']!r} has no checkpoint with id {checkpoint_id!r}")

    def vm_folder(self, vm: dict[str, Any] | str) -> Path:
        if isinstance(vm, str):
            vm = self.vm_record(self.read_state(), vm, "locate VM")
        return self.root / vm["folder"]

    def busy_error(self, vm: dict[str, Any], operation: str) -> HostError:
        what = (vm.get("operation") or {}).get("kind") or ("merge" if vm.get("journal") else "another operation")
        return HostError(
            self.name,
            operation,
            f"VM {vm['name']!r} is busy ({what} in progress); try again when it has finished",
            kind="busy",
        )

    @contextlib.contextmanager
    def op_lock(self, vm_id: str, operation: str) -> Iterator[OpLock]:
        lock = OpLock(self.root, vm_id)
        if not lock.try_acquire():
            raise HostError(
                self.name, operation, "the VM is busy with another operation (a backup, merge or restore)", kind="busy"
            )
        try:
            yield lock
        finally:
            lock.release()

    def resolve_vm_id(self, vm_id: str, operation: str) -> str:
        self.check_exists(operation)
        return self.vm_record(self.read_state(), vm_id, operation)["id"]

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
                        merge.run_journal(self.root, self.vm_folder(vm), vm, vm["journal"], None)
                    except (HostError, OSError) as err:
                        # Leave it pending (the VM shows "Merging disks"): one damaged VM
                        # must not take the whole host down.
                        log.warning("%s: cannot finish the interrupted merge of VM %s: %s", self.name, vm["name"], err)
                        continue
                    merge.finish_journal(vm)
                    self.write_vm_config(vm)
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
        state = self.read_state()
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
                    chain.write(offset, data)
                    changed.append((offset, len(data)))  # RCT reports virtual-disk ranges
        tracker.commit(seq, vdisk.coalesce(changed))

    # ------------------------------------------------------------------------------
    # VM files: disks (change-tracked), configuration, runtime state, space
    # ------------------------------------------------------------------------------
    def write_disk(self, vm: dict[str, Any], disk_index: int, offset: int, data: bytes) -> None:
        top_name = vm["disks"][disk_index]["current"]
        tracker = ChangeLog(self.root, vm["files"][top_name]["identity"])
        seq = tracker.begin()
        with vdisk.DiskChain.open(self.vm_folder(vm) / top_name, writable_top=True) as chain:
            chain.write(offset, data)
        tracker.commit(seq, [(offset, len(data))])

    def write_blocks(self, vm: dict[str, Any], disk_index: int, blocks: Iterator[tuple[int, bytes]]) -> int:
        """Write whole blocks straight into the VM's current file (estate building)."""
        top_name = vm["disks"][disk_index]["current"]
        tracker = ChangeLog(self.root, vm["files"][top_name]["identity"])
        seq = tracker.begin()
        written = 0
        changed: vdisk.Ranges = []
        with vdisk.DiskFile(self.vm_folder(vm) / top_name, writable=True) as top:
            for index, data in blocks:
                top.write_block(index, data)
                changed.append((index * top.block_size, len(data)))
                written += len(data)
        tracker.commit(seq, vdisk.coalesce(changed))
        return written

    def write_vm_config(self, vm: dict[str, Any]) -> None:
        data = json.dumps(vm_config(vm), indent=1, sort_keys=True).encode("utf-8")
        atomic_write(self.vm_folder(vm) / vm["config_file"], data, fsync=self.fsync)

    def runtime_file(self, vm: dict[str, Any]) -> Path:
        return self.vm_folder(vm) / vm["config_file"].replace(".vmcx", ".vmrs")

    def sync_runtime_file(self, vm: dict[str, Any]) -> None:
        """Running, saved and paused VMs have a .vmrs (saved ones hold memory: bigger)."""
        path = self.runtime_file(vm)
        if vm["state"] == "Off":
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            return
        size = (1 << 20) if vm["state"] == "Saved" else (64 << 10)
        if not path.exists() or path.stat().st_size != size:
            source = guest.BlockSource(f"vmrs:{vm['seed']}:{vm['state']}", block_size=size)
            path.write_bytes(source.text_block(0))

    def disk_record(self, vm: dict[str, Any], disk_index: int, operation: str) -> dict[str, Any]:
        if not 0 <= disk_index < len(vm["disks"]):
            raise NotFoundError(self.name, operation, f"VM {vm['name']!r} has no disk {disk_index}")
        return vm["disks"][disk_index]

    def delete_file(self, vm: dict[str, Any], name: str) -> None:
        meta = vm["files"].pop(name, None)
        with contextlib.suppress(FileNotFoundError):
            (self.vm_folder(vm) / name).unlink()
        if meta is not None:
            ChangeLog(self.root, meta["identity"]).delete()

    def used_bytes(self, state: dict[str, Any]) -> int:
        total = 0
        for vm in state["vms"].values():
            folder = self.root / vm["folder"]
            with contextlib.suppress(FileNotFoundError):
                for entry in os.scandir(folder):
                    with contextlib.suppress(FileNotFoundError):
                        total += entry.stat().st_size
        return total

    def free_bytes(self, state: dict[str, Any]) -> int:
        vol = state["volume"]
        return int(vol["size"]) - self.used_bytes(state) - int(vol.get("other", 0))
