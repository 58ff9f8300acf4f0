"""Lab profiles: the demo, bench and scale estates, built by driving ``LabHost``.

Estates are built through the same operations a user would (create checkpoint, apply,
write) with a private clock that walks from weeks ago to now, so checkpoint ages, chains
and differencing sizes are real, not painted on.  ``estate`` builds a lab directory from
``PROFILE_BUILDERS``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from hvtui.clock import Clock, FixedClock
from hvtui.hosts.lab import guest
from hvtui.hosts.lab.disk import BLOCK_SIZE
from hvtui.hosts.lab.host import LabHost
from hvtui.hosts.lab.records import iso

MIB = 1 << 20
GIB = 1 << 30
TIB = 1 << 40


# ----------------------------------------------------------------------------------
# building blocks
# ----------------------------------------------------------------------------------
class _Timeline:
    """A private clock walking from the past to "now" while the estate is built."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.clock = FixedClock(now)

    def at(self, **ago: float) -> FixedClock:
        self.clock.set(self.now - timedelta(**ago))
        return self.clock

    def present(self) -> FixedClock:
        self.clock.set(self.now)
        return self.clock


def _building(host: LabHost) -> None:
    """Estate building: no guest activity while the clock jumps through the past, and no
    fsync per file (the lab is built in a temp directory and swapped in when complete)."""
    host.guest_activity = False
    host.store.fsync = False


def _fill(host: LabHost, vm_id: str, seed: str, first_block: int, count: int, random_share: float = 0.5, disk: int = 0) -> None:
    """Write ``count`` whole blocks of mixed data starting at ``first_block``."""
    source = guest.BlockSource(seed)
    host.write_guest_blocks(
        vm_id, disk, ((first_block + i, source.mixed_block(first_block + i, random_share)) for i in range(count))
    )


def _finish_host(host: LabHost, real_clock: Clock, uptime_days: dict[str, float] | None = None) -> None:
    """Make running VMs' guest clocks start at the real now (no replay of the build period)."""
    now = real_clock.now()
    with host.batch(fsync=False) as state:
        for vm in state["vms"].values():
            g = vm.setdefault("guest", {})
            g["tick"] = guest.tick_of(now.timestamp()) if vm["state"] == "Running" else None
            if vm["state"] in ("Running", "Paused"):
                days = (uptime_days or {}).get(vm["name"], 9.0)
                vm["started"] = iso(now - timedelta(days=days))


# ----------------------------------------------------------------------------------
# demo
# ----------------------------------------------------------------------------------
def build_demo(lab_dir: Path, clock: Clock, seed: int, size: float = 1.0) -> None:
    """Three hosts, fourteen VMs, every problem the console is built to show."""
    tl = _Timeline(clock.now())

    def mib(n: float) -> int:
        return max(1, int(n * size))

    # -- lab-hv01: production --------------------------------------------------------
    hv1 = LabHost.create(
        lab_dir / "lab-hv01", "lab-hv01", tl.at(days=400), os_name="Windows Server 2022 Datacenter",
        build="20348", logical_processors=64, memory_bytes=512 * GIB, volume_size=4 * TIB,
        other_data=1200 * GIB, profile="demo", group="prod",
    )
    _building(hv1)
    hv1.clock = tl.at(days=300)
    dc01 = hv1.add_vm("dc01", state="Running", disk_sizes=(60 * GIB,), memory=4 * GIB, cpus=2, seed=seed + 1,
                      guest_kib_per_minute=16)
    _fill(hv1, dc01, f"{seed}:dc01", 0, mib(12))
    web01 = hv1.add_vm("web01", state="Running", disk_sizes=(127 * GIB, 500 * GIB), memory=8 * GIB, cpus=4,
                       seed=seed + 2, guest_kib_per_minute=48)
    _fill(hv1, web01, f"{seed}:web01", 0, mib(10))
    _fill(hv1, web01, f"{seed}:web01:data", 0, mib(6), disk=1)
    sql01 = hv1.add_vm("sql01", state="Running", disk_sizes=(127 * GIB,), memory=32 * GIB, cpus=8, seed=seed + 3,
                       guest_kib_per_minute=64)
    _fill(hv1, sql01, f"{seed}:sql01", 0, mib(16))
    app01 = hv1.add_vm("app01", state="Running", disk_sizes=(80 * GIB,), memory=8 * GIB, cpus=4, seed=seed + 4,
                       checkpoint_type="Standard", guest_kib_per_minute=32)
    _fill(hv1, app01, f"{seed}:app01", 0, mib(10))
    file01 = hv1.add_vm("file01", state="Running", disk_sizes=(127 * GIB,), memory=8 * GIB, cpus=2, seed=seed + 5,
                        guest_kib_per_minute=32)
    _fill(hv1, file01, f"{seed}:file01", 0, mib(14))

    # sql01: a checkpoint "before patching" forgotten for over three weeks.
    hv1.clock = tl.at(days=23, hours=5)
    hv1.create_checkpoint(sql01, "Before KB5031364", "Production")
    hv1.clock = tl.at(days=10)
    _fill(hv1, sql01, f"{seed}:sql01:after", 40, mib(40))
    # app01: a nightly script that checkpoints and never cleans up: a chain nine deep.
    for night in range(9, 0, -1):
        hv1.clock = tl.at(days=night, hours=22 - night)
        hv1.create_checkpoint(app01, f"Nightly {(tl.now - timedelta(days=night)):%Y-%m-%d}", "Standard")
        _fill(hv1, app01, f"{seed}:app01:n{night}", 20 + night * 3, mib(3))
    # file01: a backup died two days ago and left its Recovery checkpoint behind.
    hv1.clock = tl.at(days=2, hours=3)
    hv1.create_checkpoint(file01, None, "Recovery")
    _fill(hv1, file01, f"{seed}:file01:after", 60, mib(8))
    hv1.clock = tl.present()
    _finish_host(hv1, clock, {"dc01": 41, "web01": 12, "sql01": 23, "app01": 9.5, "file01": 30})

    # -- lab-hv02: dev/test ------------------------------------------------------------
    hv2 = LabHost.create(
        lab_dir / "lab-hv02", "lab-hv02", tl.at(days=700), os_name="Windows Server 2019 Datacenter",
        build="17763", logical_processors=32, memory_bytes=256 * GIB, volume_size=2 * TIB,
        other_data=900 * GIB, profile="demo",
    )
    _building(hv2)
    hv2.clock = tl.at(days=200)
    build01 = hv2.add_vm("build01", state="Running", disk_sizes=(256 * GIB,), memory=16 * GIB, cpus=8,
                         seed=seed + 11, checkpoint_type="Standard", guest_kib_per_minute=128)
    _fill(hv2, build01, f"{seed}:build01", 0, mib(12))
    test01 = hv2.add_vm("test01", state="Off", disk_sizes=(60 * GIB,), memory=4 * GIB, seed=seed + 12,
                        checkpoint_type="Standard")
    _fill(hv2, test01, f"{seed}:test01", 0, mib(8))
    legacy01 = hv2.add_vm("legacy01", state="Off", disk_sizes=(40 * GIB,), generation=1, version="5.0",
                          memory=2 * GIB, cpus=1, seed=seed + 13, checkpoint_type="Standard")
    _fill(hv2, legacy01, f"{seed}:legacy01", 0, mib(8))
    print01 = hv2.add_vm("print01", state="Running", disk_sizes=(60 * GIB,), memory=2 * GIB, seed=seed + 14)
    _fill(hv2, print01, f"{seed}:print01", 0, mib(6))
    web02 = hv2.add_vm("web02", state="Running", disk_sizes=(127 * GIB,), memory=4 * GIB, seed=seed + 15,
                       guest_kib_per_minute=32)
    _fill(hv2, web02, f"{seed}:web02", 0, mib(10))
    exch01 = hv2.add_vm("exch01", state="Off", disk_sizes=(200 * GIB,), memory=16 * GIB, cpus=4, seed=seed + 16)
    _fill(hv2, exch01, f"{seed}:exch01", 0, mib(12))

    # build01: two checkpoints and hundreds of MiB of build output in differencing disks.
    hv2.clock = tl.at(days=6)
    hv2.create_checkpoint(build01, "Toolchain 17.8 installed", "Standard")
    _fill(hv2, build01, f"{seed}:build01:a", 100, mib(120), random_share=0.4)
    hv2.clock = tl.at(days=2, hours=8)
    hv2.create_checkpoint(build01, "Before nightly cleanup", "Standard")
    _fill(hv2, build01, f"{seed}:build01:b", 260, mib(150), random_share=0.4)
    # test01: a checkpoint four days old (a warning, not yet critical).
    hv2.clock = tl.at(days=4, hours=2)
    hv2.create_checkpoint(test01, "Clean install", "Standard")
    _fill(hv2, test01, f"{seed}:test01:exp", 30, mib(4))
    # web02: a checkpoint whose merge failed: the VM runs on an .avhdx with no checkpoint.
    hv2.clock = tl.at(days=15)
    hv2.create_checkpoint(web02, None, "Recovery")
    _fill(hv2, web02, f"{seed}:web02:after", 30, mib(12))
    hv2.simulate_failed_merge(web02)
    # exch01: someone copied an .avhdx into the VM's folder by hand: a stray file.
    hv2.add_stray_file(exch01, data_bytes=mib(6) * MIB)
    # legacy01 is saved, print01 paused.
    hv2.set_vm_state(legacy01, "Saved")
    hv2.set_vm_state(print01, "Paused")
    hv2.clock = tl.present()
    _finish_host(hv2, clock, {"build01": 6, "print01": 3, "web02": 15})

    # -- lab-hv03: DR site, replica target, nearly full volume ---------------------------
    hv3 = LabHost.create(
        lab_dir / "lab-hv03", "lab-hv03", tl.at(days=500), os_name="Windows Server 2022 Standard",
        build="20348", logical_processors=16, memory_bytes=128 * GIB, volume_size=1 * TIB,
        profile="demo", group="dr",
    )
    _building(hv3)
    hv3.clock = tl.at(days=120)
    dc02 = hv3.add_vm("dc02-replica", state="Off", disk_sizes=(60 * GIB,), memory=4 * GIB, seed=seed + 21)
    _fill(hv3, dc02, f"{seed}:dc02", 0, mib(8))
    fs02 = hv3.add_vm("fs02", state="Running", disk_sizes=(500 * GIB,), memory=8 * GIB, cpus=4, seed=seed + 22,
                      guest_kib_per_minute=32)
    _fill(hv3, fs02, f"{seed}:fs02", 0, mib(10))
    mon01 = hv3.add_vm("mon01", state="Running", disk_sizes=(40 * GIB,), memory=2 * GIB, seed=seed + 23,
                       guest_kib_per_minute=16)
    _fill(hv3, mon01, f"{seed}:mon01", 0, mib(6))
    # dc02-replica: Hyper-V Replica recovery points (not sprawl: they must raise nothing).
    for hours, kind in ((30, "AppConsistentReplica"), (6, "Replica")):
        hv3.clock = tl.at(hours=hours)
        cp = hv3.create_checkpoint(dc02, None, "Standard")
        _retype_checkpoint(hv3, dc02, cp.id, kind)
        _fill(hv3, dc02, f"{seed}:dc02:{hours}", 20 + hours, mib(2))
    # fs02: a ten-day-old checkpoint with a large differencing file on a volume so full that
    # the merge would not fit.
    hv3.clock = tl.at(days=10)
    hv3.create_checkpoint(fs02, "Before share migration", "Production")
    _fill(hv3, fs02, f"{seed}:fs02:after", 50, mib(64), random_share=0.6)
    # Their guests write inside data they already have, so the nearly full volume stays so.
    hv3.set_guest_activity(fs02, 32, hot_offset=50 * MIB, hot_size=mib(64) * MIB, warm_size=0, warm_share=0.0)
    hv3.set_guest_activity(mon01, 16, hot_offset=0, hot_size=mib(6) * MIB, warm_size=0, warm_share=0.0)
    hv3.clock = tl.present()
    _finish_host(hv3, clock, {"fs02": 44, "mon01": 60})
    # Leave less free space than the merge would need (it needs the avhdx's new blocks).
    hv3.set_volume(free=mib(24) * MIB)


def _retype_checkpoint(host: LabHost, vm_id: str, checkpoint_id: str, checkpoint_type: str) -> None:
    """Give a checkpoint a type only Hyper-V itself creates (Replica, Planned, Missing ...)."""
    store = host.store
    with store.txn("retype checkpoint") as txn:
        vm = store.vm_record(txn.state, vm_id, "retype checkpoint")
        store.checkpoint_record(vm, checkpoint_id, "retype checkpoint")["type"] = checkpoint_type
        txn.dirty = True


# ----------------------------------------------------------------------------------
# bench
# ----------------------------------------------------------------------------------
def build_bench(lab_dir: Path, clock: Clock, seed: int, size: float = 1.0) -> None:
    """GiB-scale disks for the engine benchmark.

    ``bench01`` (off): a 16 GiB virtual disk holding about 1.5 GiB laid out like a used
    dynamic disk: runs of random (incompressible) blocks, text-like (compressible)
    blocks, allocated zero blocks and never-written holes.  ``bench02`` (running, with a
    checkpoint): a smaller disk whose guest keeps writing, for incremental runs.
    """
    tl = _Timeline(clock.now())
    host = LabHost.create(
        lab_dir / "lab-bench", "lab-bench", tl.at(days=30), logical_processors=32, memory_bytes=256 * GIB,
        volume_size=8 * TIB, profile="bench",
    )
    _building(host)
    total_blocks = max(8, int(1536 * size))
    vm1 = host.add_vm("bench01", state="Off", disk_sizes=(16 * GIB,), memory=8 * GIB, seed=seed + 101)
    _write_bench_layout(host, vm1, f"{seed}:bench01", total_blocks, 16 * GIB // BLOCK_SIZE)
    vm2 = host.add_vm("bench02", state="Running", disk_sizes=(8 * GIB,), memory=4 * GIB, seed=seed + 102,
                      guest_kib_per_minute=256)
    _write_bench_layout(host, vm2, f"{seed}:bench02", max(4, total_blocks // 6), 8 * GIB // BLOCK_SIZE)
    host.clock = tl.at(days=1)
    host.create_checkpoint(vm2, "Baseline", "Production")
    _fill(host, vm2, f"{seed}:bench02:after", 10, max(1, total_blocks // 48))
    host.clock = tl.present()
    _finish_host(host, clock, {"bench02": 1})


def _write_bench_layout(host: LabHost, vm_id: str, seed: str, data_blocks: int, disk_blocks: int) -> None:
    import random

    rng = random.Random(seed)
    source = guest.BlockSource(seed)

    def generate() -> Any:
        index = 0
        written = 0
        while written < data_blocks and index < disk_blocks:
            run = rng.randint(4, max(4, min(64, data_blocks // 8)))  # several runs even when tiny
            kind = rng.random()
            for _ in range(run):
                if written >= data_blocks or index >= disk_blocks:
                    break
                if kind < 0.45:
                    yield index, source.random_block(index)
                elif kind < 0.85:
                    yield index, source.text_block(index)
                else:
                    yield index, bytes(BLOCK_SIZE)  # allocated, all zero (a zeroed region)
                index += 1
                written += 1
            index += rng.choice((0, 0, 1, 8, 64))  # holes: never-written regions

    host.write_guest_blocks(vm_id, 0, generate())


# ----------------------------------------------------------------------------------
# scale
# ----------------------------------------------------------------------------------
def build_scale(lab_dir: Path, clock: Clock, seed: int, size: float = 1.0) -> None:
    """Thousands of VMs over tens of hosts (5,000 over 25 at size 1), with tiny disks."""
    import random

    rng = random.Random(seed)
    tl = _Timeline(clock.now())
    hosts = max(1, round(25 * min(1.0, size * 4)))  # small sizes keep a few hosts
    vms_total = max(hosts, int(5000 * size))
    per_host = -(-vms_total // hosts)
    made = 0
    for h in range(hosts):
        name = f"lab-hv{h + 1:02d}"
        host = LabHost.create(
            lab_dir / name, name, tl.at(days=900), logical_processors=rng.choice((32, 48, 64, 96)),
            memory_bytes=rng.choice((256, 384, 512, 768)) * GIB, volume_size=rng.choice((4, 8, 16)) * TIB,
            other_data=rng.randint(1, 3) * TIB, profile="scale", group=("prod", "dev", "dr", None)[h % 4],
        )
        _building(host)
        with host.batch(fsync=False):
            for i in range(per_host):
                if made >= vms_total:
                    break
                made += 1
                vm_name = f"vm{h + 1:02d}-{i + 1:03d}"
                roll = rng.random()
                state = "Running" if roll < 0.72 else "Off" if roll < 0.92 else "Saved" if roll < 0.96 else "Paused"
                host.clock = tl.at(days=rng.randint(30, 800))
                vm_id = host.add_vm(
                    vm_name, state=state, disk_sizes=(rng.choice((40, 60, 127)) * GIB,),
                    memory=rng.choice((2, 4, 8, 16)) * GIB, cpus=rng.choice((1, 2, 4, 8)),
                    seed=rng.randrange(1 << 31), fsync=False,
                )
                roll = rng.random()
                if roll < 0.15:
                    for _ in range(rng.randint(1, 4)):
                        host.clock = tl.at(days=rng.uniform(0.1, 60))
                        host.create_checkpoint(vm_id, None, rng.choice(("Standard", "Production")))
                elif roll < 0.17:
                    host.clock = tl.at(days=rng.uniform(0.5, 5))
                    host.create_checkpoint(vm_id, None, "Recovery")
                elif roll < 0.18:
                    host.simulate_failed_merge(vm_id)
            host.clock = tl.present()
        _finish_host(host, clock)


PROFILE_BUILDERS: dict[str, Callable[[Path, Clock, int, float], None]] = {
    "demo": build_demo,
    "bench": build_bench,
    "scale": build_scale,
}
PROFILES = tuple(PROFILE_BUILDERS)
