"""Lab backup sources (Recovery checkpoint, frozen files, change tracking) and restore targets."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from lab_support import add_vm, make_host, scribble, state_digests, vm_files

from hvtui.errors import HostError
from hvtui.events import Progress
from hvtui.hosts.lab.disk import DiskChain, logical_digest
from hvtui.hosts.lab.host import LabHost
from hvtui.hosts.vhdx.ranges import file_ranges_for


def read_all(source_file) -> bytes:
    with source_file.open() as fh:
        return fh.read()


def copy_to(source, target_dir: Path) -> None:
    for f in source.files:
        (target_dir / f.rel_path).write_bytes(read_all(f))


def test_backup_source_freezes_chain_and_close_merges_recovery_checkpoint(tmp_path: Path) -> None:
    host = make_host(tmp_path)
    vm_id = add_vm(host, state="Running")
    host.set_guest_activity(vm_id, 256)
    cp = host.create_checkpoint(vm_id, "kept", "Standard")
    scribble(host, vm_id, random.Random(1))
    running_before = logical_digest(host.disk_path(vm_id))
    events: list[Progress] = []

    source = host.open_backup_source(vm_id, events.append)

    live = host.vm(vm_id)
    recovery = [c for c in live.checkpoints if c.type == "Recovery"]
    assert len(recovery) == 1 and live.status == "Backing up"
    new_top = Path(live.disks[0].path).name
    names = [f.rel_path for f in source.files]
    assert names[0] == f"{vm_id.upper()}.vmcx" and names[1] == f"{vm_id.upper()}.vmrs"
    disk_names = names[2:]
    assert new_top not in disk_names  # the file the recovery checkpoint started is not frozen
    assert set(disk_names) == {Path(link.path).name for link in live.disks[0].chain[1:]}
    assert source.vm.checkpoints == (host.vm(vm_id).checkpoint(cp.id),)
    assert source.config["parent_checkpoint_id"] == cp.id
    frozen = {f.rel_path: read_all(f) for f in source.files}
    assert all(len(data) == f.size for f, data in zip(source.files, frozen.values(), strict=True))

    # The guest keeps writing during the backup: into the new file, never the frozen ones.
    host.clock.advance(minutes=20)
    host.inventory(5)
    assert {f.rel_path: read_all(f) for f in source.files if f.change_id} == {
        k: v for k, v in frozen.items() if k in disk_names
    }
    during = logical_digest(host.disk_path(vm_id))
    assert during != running_before

    source.close()
    source.close()  # idempotent

    vm = host.vm(vm_id)
    assert [c.id for c in vm.checkpoints] == [cp.id] and vm.status == "Operating normally"
    assert logical_digest(host.disk_path(vm_id)) == during  # the guest's writes survived the merge
    assert new_top not in vm_files(host, vm_id)
    assert any(e.phase == "cleanup" for e in events)
    assert not any((host.root / ".staging").iterdir())


def test_backup_checkpoint_removed_after_an_exception_and_vm_is_busy_meanwhile(tmp_path: Path) -> None:
    host = make_host(tmp_path)
    vm_id = add_vm(host)
    with pytest.raises(RuntimeError, match="boom"), host.open_backup_source(vm_id) as source:
        assert source.vm.id == vm_id
        with pytest.raises(HostError) as busy:
            host.create_checkpoint(vm_id, None, "Standard")
        assert busy.value.kind == "busy"
        with pytest.raises(HostError, match="busy"):
            host.open_backup_source(vm_id)
        raise RuntimeError("boom")
    assert host.vm(vm_id).checkpoints == ()
    assert vm_files(host, vm_id) == {"vm1.vhdx"}
    host.create_checkpoint(vm_id, None, "Standard")  # no longer busy


def test_change_tracking_reports_every_changed_byte_of_the_frozen_file(tmp_path: Path) -> None:
    host = make_host(tmp_path)
    # 24 blocks: the mapped ranges always include VHDX's fixed 4 MiB (headers, log, metadata, BAT)
    vm_id = add_vm(host, state="Running", blocks=24)
    with host.open_backup_source(vm_id) as first:
        (base1,) = [f for f in first.files if f.rel_path == "vm1.vhdx"]
        bytes1 = read_all(base1)
        id1 = base1.change_id
    assert id1 is not None
    rng = random.Random(9)
    for offset, length in ((100, 10), (3 * (1 << 20) - 5, 20), (40 << 20, 5000)):
        host.write_guest_data(vm_id, 0, offset, rng.randbytes(length))
    with host.open_backup_source(vm_id) as second:
        (base2,) = [f for f in second.files if f.rel_path == "vm1.vhdx"]
        bytes2 = read_all(base2)
        assert base2.identity == base1.identity
        assert base2.virtual_ranges and base2.local_path is not None
        virtual = base2.changed_ranges(id1)
        for unknown in ("rct:someone-else:3", "garbage", base2.change_id.rsplit("-", 1)[0] + "-999999"):
            with pytest.raises(HostError) as caught:
                base2.changed_ranges(unknown)
            assert caught.value.kind == "rct-invalid"
        assert base2.changed_ranges(base2.change_id) == []
        # RCT answers in virtual-disk bytes; mapped to the file, they cover every changed file byte.
        assert virtual is not None and virtual
        ranges = file_ranges_for(base2.local_path, virtual, base1.size)
    assert ranges
    covered = bytearray(len(bytes2))
    for offset, length in ranges:
        covered[offset : offset + length] = b"\1" * len(covered[offset : offset + length])
    padded = bytes1.ljust(len(bytes2), b"\0")
    differing = [i for i in range(0, len(bytes2), 512) if bytes2[i : i + 512] != padded[i : i + 512]]
    assert differing
    assert all(covered[i] for i in differing)
    assert sum(length for _, length in ranges) < len(bytes2) // 2  # not "everything"


def test_crashed_backup_process_leaves_recovery_checkpoint_that_cleanup_removes(tmp_path: Path) -> None:
    host = make_host(tmp_path)
    vm_id = add_vm(host, state="Running")
    before = logical_digest(host.disk_path(vm_id))
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from hvtui.clock import FixedClock
        from hvtui.hosts.lab.host import LabHost
        host = LabHost.open(Path({str(host.root)!r}), {host.name!r}, FixedClock())
        source = host.open_backup_source({vm_id!r})
        print("open", flush=True)
        time.sleep(60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "open"
        with pytest.raises(HostError, match="busy"):
            host.cleanup_recovery_checkpoints(vm_id)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    vm = host.vm(vm_id)  # a new reader notices the dead backup
    assert [c.type for c in vm.checkpoints] == ["Recovery"]
    assert vm.status == "Operating normally"
    assert host.cleanup_recovery_checkpoints(vm_id) == 1
    assert host.vm(vm_id).checkpoints == ()
    assert logical_digest(host.disk_path(vm_id)) == before
    assert vm_files(host, vm_id) == {"vm1.vhdx"}


def test_merge_interrupted_midway_is_finished_by_the_next_process(tmp_path: Path) -> None:
    host = make_host(tmp_path)
    vm_id = add_vm(host, blocks=8)
    rng = random.Random(11)
    ids = []
    for n in range(3):
        ids.append(host.create_checkpoint(vm_id, f"c{n}", "Standard").id)
        scribble(host, vm_id, rng, writes=6)
    before = state_digests(host, vm_id)
    calls = 0

    def die(event: Progress) -> None:
        nonlocal calls
        calls += 1
        if event.done > 0:
            raise KeyboardInterrupt  # the process "dies" with blocks half copied

    with pytest.raises(KeyboardInterrupt):
        host.remove_checkpoint(vm_id, ids[0], progress=die)
    assert calls >= 2
    fresh = LabHost.open(host.root, host.name, host.clock)
    vm = fresh.vm(vm_id)
    assert [c.name for c in vm.checkpoints] == ["c1", "c2"] and vm.status == "Operating normally"
    assert state_digests(fresh, vm_id) == {k: v for k, v in before.items() if not k.startswith(ids[0])}


def test_restore_as_new_vm_recreates_the_frozen_state(tmp_path: Path) -> None:
    host = make_host(tmp_path)
    vm_id = add_vm(host, state="Running", disks=2)
    rng = random.Random(12)
    cp = host.create_checkpoint(vm_id, "patched", "Production")
    scribble(host, vm_id, rng)
    scribble(host, vm_id, rng, disk=1)
    expected = state_digests(host, vm_id)
    with host.open_backup_source(vm_id) as source:
        config = source.config
        target = host.prepare_restore(config, "new", new_name="vm1-restored")
        assert target.staging_dir.is_relative_to(host.root)
        copy_to(source, target.staging_dir)
    scribble(host, vm_id, rng)  # the original moves on; the restore must not care
    restored = target.commit()

    assert restored.name == "vm1-restored" and restored.id != vm_id and restored.state == "Off"
    assert [c.name for c in restored.checkpoints] == ["patched"] and restored.checkpoints[0].id != cp.id
    assert restored.parent_checkpoint_id == restored.checkpoints[0].id
    digests = state_digests(host, restored.id)
    new_cp = restored.checkpoints[0].id
    assert digests == {
        "current:0": expected["current:0"],
        "current:1": expected["current:1"],
        f"{new_cp}:0": expected[f"{cp.id}:0"],
        f"{new_cp}:1": expected[f"{cp.id}:1"],
    }
    names = {Path(link.path).name for d in restored.disks for link in d.chain}
    assert all(n.startswith("vm1-restored") for n in names)
    assert (host.vm_folder(restored.id) / f"{restored.id.upper()}.vmcx").exists()
    later = host.create_checkpoint(restored.id, "on the copy", "Standard")
    assert Path(host.vm(restored.id).disks[1].path).name.startswith("vm1-restored_disk1_")
    host.remove_checkpoint(restored.id, later.id)
    for d in restored.disks:
        with DiskChain.open(Path(d.path)) as chain:
            assert len(chain.files) == len(d.chain)
    assert not any((host.root / ".staging").iterdir())


def test_restore_in_place_requires_off_and_replaces_files(tmp_path: Path) -> None:
    host = make_host(tmp_path)
    vm_id = add_vm(host, state="Running")
    with host.open_backup_source(vm_id) as source:
        saved = {f.rel_path: read_all(f) for f in source.files}
        config = source.config
    expected = logical_digest(host.disk_path(vm_id))
    with pytest.raises(HostError, match="is Running: turn it off"):
        host.prepare_restore(config, "in_place", vm_id=vm_id)
    host.set_vm_state(vm_id, "Off")
    host.create_checkpoint(vm_id, "after the backup", "Standard")
    scribble(host, vm_id, random.Random(13))
    assert logical_digest(host.disk_path(vm_id)) != expected

    target = host.prepare_restore(config, "in_place", vm_id=vm_id)
    with pytest.raises(HostError, match="busy"):
        host.open_backup_source(vm_id)
    for rel, data in saved.items():
        (target.staging_dir / rel).write_bytes(data)
    vm = target.commit()

    assert vm.id == vm_id and vm.checkpoints == () and vm.state == "Off"
    assert logical_digest(host.disk_path(vm_id)) == expected
    assert vm_files(host, vm_id) == {"vm1.vhdx"}
    host.create_checkpoint(vm_id, None, "Standard")  # the lock was released


def test_restore_abort_and_refusals(tmp_path: Path) -> None:
    host = make_host(tmp_path)
    vm_id = add_vm(host)
    with host.open_backup_source(vm_id) as source:
        config = source.config
    target = host.prepare_restore(config, "new", new_name="copy")
    (target.staging_dir / "vm1.vhdx").write_bytes(b"partial")
    target.abort()
    target.abort()
    assert not target.staging_dir.exists()
    assert [v.name for v in host.inventory(5).vms] == ["vm1"]
    incomplete = host.prepare_restore(config, "new", new_name="copy")
    with pytest.raises(HostError, match="restore is incomplete: missing vm1.vhdx"):
        incomplete.commit()
    assert not incomplete.staging_dir.exists()
    with pytest.raises(HostError, match="already exists"):
        host.prepare_restore(config, "new", new_name="vm1")
    with pytest.raises(HostError, match="not a lab VM configuration"):
        host.prepare_restore({"name": "x"}, "new", new_name="y")
    with pytest.raises(HostError, match="unknown restore mode"):
        host.prepare_restore(config, "sideways", new_name="y")


def test_guest_writes_land_in_current_file_only_for_running_vms(tmp_path: Path) -> None:
    host = make_host(tmp_path)
    running = add_vm(host, "run1", state="Running")
    stopped = add_vm(host, "off1", state="Off", seed=8)
    saved = add_vm(host, "saved1", state="Saved", seed=9)
    for vm_id in (running, stopped, saved):
        host.set_guest_activity(vm_id, 128, hot_offset=1 << 20, hot_size=4 << 20, warm_size=16 << 20)
        host.create_checkpoint(vm_id, "c", "Standard")
    frozen = {vm_id: (host.vm_folder(vm_id) / f"{name}.vhdx").read_bytes() for vm_id, name in ((running, "run1"), (stopped, "off1"), (saved, "saved1"))}
    tops = {vm_id: host.disk_path(vm_id).read_bytes() for vm_id in frozen}
    host.clock.advance(minutes=30)
    host.inventory(5)
    for vm_id, name in ((running, "run1"), (stopped, "off1"), (saved, "saved1")):
        assert (host.vm_folder(vm_id) / f"{name}.vhdx").read_bytes() == frozen[vm_id]
    assert host.disk_path(running).read_bytes() != tops[running]
    assert host.disk_path(stopped).read_bytes() == tops[stopped]
    assert host.disk_path(saved).read_bytes() == tops[saved]
    assert host.vm(running).cpu_usage > 0 and host.vm(stopped).cpu_usage == 0


def test_guest_writes_are_deterministic_and_bounded(tmp_path: Path) -> None:
    digests = []
    sizes = []
    for n in range(2):
        host = make_host(tmp_path / f"run{n}")
        vm_id = add_vm(host, "vm1", state="Running", seed=5)
        host.set_guest_activity(vm_id, 512, hot_offset=1 << 20, hot_size=2 << 20, warm_size=8 << 20, warm_share=0.3)
        host.create_checkpoint(vm_id, "c", "Standard")
        for minutes in (3, 7, 60):
            host.clock.advance(minutes=minutes)
            host.inventory(5)
        digests.append(logical_digest(host.disk_path(vm_id)))
        host.clock.advance(days=30)  # a lab left alone for a month
        host.inventory(5)
        sizes.append(host.vm(vm_id).disks[0].chain[0].file_size)
    assert digests[0] == digests[1]
    # hot + warm + VHDX's fixed 4 MiB (headers, log, metadata, BAT) + one 1 MiB sector bitmap: it cannot explode
    assert sizes[0] == sizes[1] <= (2 + 8 + 4 + 1) << 20


def test_guest_writes_are_change_tracked(tmp_path: Path) -> None:
    host = make_host(tmp_path)
    vm_id = add_vm(host, state="Running")
    host.set_guest_activity(vm_id, 64, hot_offset=1 << 20, hot_size=2 << 20)
    with host.open_backup_source(vm_id) as source:
        (base,) = [f for f in source.files if f.rel_path == "vm1.vhdx"]
        since = base.change_id
        host.clock.advance(minutes=5)
        host.inventory(5)  # the guest writes into the recovery checkpoint's file meanwhile
    with host.open_backup_source(vm_id) as source:
        (base,) = [f for f in source.files if f.rel_path == "vm1.vhdx"]
        ranges = base.changed_ranges(since)
    assert ranges and all(length > 0 for _, length in ranges)


def test_stray_file_and_failed_merge_show_in_inventory(tmp_path: Path) -> None:
    host = make_host(tmp_path)
    vm_id = add_vm(host)
    stray = host.add_stray_file(vm_id, data_bytes=1 << 20)
    host.simulate_failed_merge(vm_id)
    vm = host.vm(vm_id)
    assert vm.stray_disk_files == (str(stray),)
    assert vm.checkpoints == () and vm.disks[0].path.endswith(".avhdx") and vm.disks[0].depth == 1
    shutil.rmtree(host.vm_folder(vm_id))
    assert host.vm(vm_id).disks[0].chain[0].file_size == 0  # gone files read as size 0, no crash


def test_inventory_keeps_working_during_a_merge(tmp_path: Path) -> None:
    host = make_host(tmp_path)
    vm_id = add_vm(host, blocks=8)
    cp = host.create_checkpoint(vm_id, "to merge", "Standard")
    scribble(host, vm_id, random.Random(14), writes=8)
    seen: list[tuple[str, int]] = []

    def during(event: Progress) -> None:
        if event.phase == "merge" and not seen:
            vm = {v.id: v for v in host.inventory(timeout=0.5).vms}[vm_id]  # the state lock is free
            seen.append((vm.status, len(vm.checkpoints)))

    host.remove_checkpoint(vm_id, cp.id, progress=during)
    assert seen == [("Merging disks", 0)]  # Hyper-V drops the checkpoint at once, then merges
    assert host.vm(vm_id).status == "Operating normally"


def test_two_processes_change_one_host_without_losing_updates(tmp_path: Path) -> None:
    host = make_host(tmp_path)
    vms = [add_vm(host, f"p{n}", seed=n) for n in range(2)]
    script = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        from hvtui.clock import FixedClock
        from hvtui.hosts.lab.host import LabHost
        root, name, vm_id = sys.argv[1:4]
        host = LabHost.open(Path(root), name, FixedClock())
        made = [host.create_checkpoint(vm_id, f"c{i}", "Standard").id for i in range(8)]
        for cp in made[::2]:
            host.remove_checkpoint(vm_id, cp)
            host.inventory(30)
        """
    )
    procs = [subprocess.Popen([sys.executable, "-c", script, str(host.root), host.name, vm]) for vm in vms]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    for vm_id in vms:
        vm = host.vm(vm_id)
        assert [c.name for c in vm.checkpoints] == ["c1", "c3", "c5", "c7"]
        assert vm.disks[0].depth == 4
        assert vm_files(host, vm_id) == {Path(link.path).name for link in vm.disks[0].chain}


def test_a_vm_with_missing_files_does_not_break_the_host(tmp_path: Path) -> None:
    host = make_host(tmp_path)
    broken = add_vm(host, "broken", state="Running")
    add_vm(host, "fine", state="Running", seed=3)
    host.set_guest_activity(broken, 64)
    host.disk_path(broken).unlink()  # someone deleted the disk by hand
    host.clock.advance(minutes=5)
    vms = {vm.name: vm for vm in host.inventory(5).vms}
    assert set(vms) == {"broken", "fine"}
    assert vms["broken"].disks[0].chain[0].file_size == 0
    with pytest.raises(HostError, match="disk file does not exist"):
        host.read_disk(broken, 0, 0, 10)


def test_in_place_restore_killed_mid_swap_rolls_back_to_the_old_files(tmp_path: Path) -> None:
    host = make_host(tmp_path)
    vm_id = add_vm(host)
    with host.open_backup_source(vm_id) as source:
        config = source.config
        staged = {f.rel_path: read_all(f) for f in source.files}
    scribble(host, vm_id, random.Random(15))
    current = logical_digest(host.disk_path(vm_id))
    target = host.prepare_restore(config, "in_place", vm_id=vm_id)
    for rel, data in staged.items():
        (target.staging_dir / rel).write_bytes(data[:-1] + b"X")  # (never registered: must vanish)
    # The process dies right between the two renames of the swap: mimic its leftovers.
    folder = host.vm_folder(vm_id)
    os.rename(folder, target.staging_dir.with_name(target.staging_dir.name + "-old"))
    os.rename(target.staging_dir, folder)
    target._lock.release()  # the kernel drops a dead process's locks
    target._staging_lock.release()

    vm = LabHost.open(host.root, host.name, host.clock).vm(vm_id)
    assert vm.status == "Operating normally"
    assert logical_digest(host.disk_path(vm_id)) == current
    assert not any(p.is_dir() for p in (host.root / ".staging").iterdir())
    host.create_checkpoint(vm_id, None, "Standard")  # usable again


def test_in_place_restore_failing_in_commit_keeps_the_old_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    host = make_host(tmp_path)
    vm_id = add_vm(host)
    with host.open_backup_source(vm_id) as source:
        config = source.config
        staged = {f.rel_path: read_all(f) for f in source.files}
    scribble(host, vm_id, random.Random(16))
    current = logical_digest(host.disk_path(vm_id))
    target = host.prepare_restore(config, "in_place", vm_id=vm_id)
    for rel, data in staged.items():
        (target.staging_dir / rel).write_bytes(data)

    def broken(_vm: dict) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(host.store, "write_vm_config", broken)
    with pytest.raises(OSError, match="No space left"):
        target.commit()
    monkeypatch.undo()
    assert logical_digest(host.disk_path(vm_id)) == current
    assert host.vm(vm_id).status == "Operating normally"
    assert not (host.root / ".staging").exists() or not any((host.root / ".staging").iterdir())


def test_staging_of_a_dead_restore_is_swept(tmp_path: Path) -> None:
    host = make_host(tmp_path)
    vm_id = add_vm(host)
    with host.open_backup_source(vm_id) as source:
        config = source.config
    dead = host.prepare_restore(config, "new", new_name="ghost")
    (dead.staging_dir / "vm1.vhdx").write_bytes(b"half")
    dead._staging_lock.release()  # its process died
    alive = host.prepare_restore(config, "new", new_name="copy2")  # sweeps on the way
    assert not dead.staging_dir.exists() and alive.staging_dir.exists()
    assert host.sweep_staging() == 0  # the live one stays
    alive.abort()
