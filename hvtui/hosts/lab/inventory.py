"""The inventory of a lab host: its VMs and checkpoints as the console's model shows them.

Built from ``host.json`` plus ``stat`` of the files (disk files are never opened), so a host
with hundreds of VMs reads in milliseconds.  ``InventoryReader`` caches each VM's model while
neither the state nor the VM's folder changed; only the clock-dependent fields (uptime, CPU)
are refreshed on every read.
"""

from __future__ import annotations

import dataclasses
import os
from datetime import datetime
from typing import Any

from hvtui.errors import HostError, NotFoundError
from hvtui.hosts.base import HostSnapshot
from hvtui.hosts.lab import guest
from hvtui.hosts.lab.records import DISK_SUFFIXES, checkpoint_model, parse_time
from hvtui.hosts.lab.store import LOCK_TIMEOUT, LabStore
from hvtui.model import VM, Disk, HostFacts, VhdLink, Volume


class InventoryReader:
    """Reads a lab host's VMs into the model (``VM``, ``HostSnapshot``)."""

    def __init__(self, store: LabStore) -> None:
        self.store = store
        self._model_cache: dict[str, tuple[int, VM, int]] = {}
        self._model_cache_state: dict[str, Any] | None = None

    def inventory(self, timeout: float = LOCK_TIMEOUT) -> HostSnapshot:
        self.store.check_exists("inventory")
        if not (self.store.root / "host.json").exists():
            raise HostError(self.store.name, "inventory", self.store.missing_message(), kind="unreachable")
        if self._needs_write(timeout):
            with self.store.txn("inventory", timeout=timeout):
                pass
        state = self.store.read_state()
        return self.snapshot(state)

    def _needs_write(self, timeout: float) -> bool:
        """Whether a catch-up or recovery is due (checked without the lock, cheaply)."""
        state = self.store.read_state()
        if not self.store.guest_activity:
            return any(vm.get("journal") or vm.get("operation") for vm in state["vms"].values())
        now_tick = guest.tick_of(self.store.clock.now().timestamp())
        for vm in state["vms"].values():
            if vm.get("journal") or vm.get("operation"):
                return True  # maybe a dead process to clean up after
            if vm["state"] == "Running" and (vm.get("guest") or {}).get("tick", -1) != now_tick:
                g = vm.get("guest") or {}
                if g.get("tick") is None or (g.get("profile") or {}).get("kib_per_minute", 0) > 0:
                    return True
        return False

    def snapshot(self, state: dict[str, Any], only_vm: str | None = None) -> HostSnapshot:
        now = self.store.clock.now()
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
            path=str(self.store.root),
            label=vol.get("label", "VMs"),
            size=int(vol["size"]),
            free=max(0, int(vol["size"]) - used - int(vol.get("other", 0))),
        )
        return HostSnapshot(
            facts=HostFacts(
                name=state.get("name", self.store.name),
                os=facts["os"],
                build=facts["build"],
                now=now,
                logical_processors=int(facts["logical_processors"]),
                memory_bytes=int(facts["memory_bytes"]),
                volumes=(volume,),
            ),
            vms=tuple(vms),
        )

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
        folder = f"{self.store.root}/{vm['folder']}"
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
        checkpoints = tuple(checkpoint_model(cp) for cp in sorted(vm["checkpoints"], key=lambda c: c["created"]))
        state = vm["state"]
        running = state in ("Running", "Paused")
        status = "Operating normally"
        if vm.get("journal"):
            status = "Merging disks"
        elif (vm.get("operation") or {}).get("kind") == "backup":
            status = "Backing up"
        model = VM(
            host=self.store.name,
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
        self.store.check_exists("inventory")
        with self.store.txn("inventory"):
            pass
        state = self.store.read_state()
        rec = self.store.vm_record(state, vm_id, "inventory")
        return self.snapshot(state, only_vm=rec["id"]).vms[0]

    def find_vm(self, name: str) -> str:
        """The id of the VM called ``name``."""
        self.store.check_exists("inventory")
        state = self.store.read_state()
        for rec in state["vms"].values():
            if rec["name"] == name:
                return rec["id"]
        raise NotFoundError(self.store.name, "inventory", f"no VM named {name!r} on this host")

