"""Shared helpers for the lab tests: small hosts on real files in tmp dirs."""

from __future__ import annotations

import random
from pathlib import Path

from hvtui.clock import FixedClock
from hvtui.hosts.lab.disk import BLOCK_SIZE, logical_digest
from hvtui.hosts.lab.host import LabHost

MIB = 1 << 20
SMALL_DISK = 64 * MIB


def make_host(tmp_path: Path, name: str = "lab-t1", clock: FixedClock | None = None) -> LabHost:
    clock = clock or FixedClock()
    return LabHost.create(tmp_path / name, name, clock, volume_size=1 << 40)


def add_vm(host: LabHost, name: str = "vm1", state: str = "Off", blocks: int = 4, disks: int = 1, seed: int = 7) -> str:
    vm_id = host.add_vm(name, state=state, disk_sizes=(SMALL_DISK,) * disks, seed=seed)
    rng = random.Random(f"{name}:{seed}")
    for d in range(disks):
        host.write_guest_blocks(vm_id, d, ((i, rng.randbytes(BLOCK_SIZE)) for i in range(blocks)))
    return vm_id


def scribble(host: LabHost, vm_id: str, rng: random.Random, writes: int = 3, disk: int = 0) -> None:
    """A few writes at random places (partial blocks, crossing block edges)."""
    for _ in range(writes):
        offset = rng.randrange(0, SMALL_DISK - 300_000)
        host.write_guest_data(vm_id, disk, offset, rng.randbytes(rng.randint(1, 300_000)))


def state_digests(host: LabHost, vm_id: str) -> dict[str, str]:
    """Logical digest of the running state and of every checkpoint, per disk."""
    vm = host.vm(vm_id)
    out: dict[str, str] = {}
    for index, disk in enumerate(vm.disks):
        out[f"current:{index}"] = logical_digest(Path(disk.path))
        for cp in vm.checkpoints:
            out[f"{cp.id}:{index}"] = logical_digest(host.checkpoint_disk_path(vm_id, cp.id, index))
    return out


def vm_files(host: LabHost, vm_id: str) -> set[str]:
    folder = host.vm_folder(vm_id)
    return {p.name for p in folder.iterdir() if p.suffix in (".vhdx", ".avhdx")}
