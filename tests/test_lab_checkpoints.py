"""Lab checkpoints: create, apply, remove (merge), rename change real files as Hyper-V does."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
from lab_support import SMALL_DISK, add_vm, make_host, scribble, state_digests, vm_files

from hvtui.errors import HostError, NotFoundError, ReadOnlyError
from hvtui.events import Progress
from hvtui.hosts.lab.disk import DiskFile, logical_digest, read_header
from hvtui.hosts.lab.host import LabHost

GUID_AVHDX = re.compile(r"^vm1_[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}\.avhdx$")


def test_create_checkpoint_freezes_current_file_and_starts_a_differencing_child(tmp_path: Path) -> None:
    host = make_host(tmp_path)
    vm_id = add_vm(host)
    before = host.vm(vm_id)
    base = Path(before.disks[0].path)
    assert base.name == "vm1.vhdx" and before.disks[0].depth == 0
    base_bytes = base.read_bytes()

    cp = host.create_checkpoint(vm_id, None, "Standard")

    vm = host.vm(vm_id)
    assert cp.name == "vm1 - (11/24/2026 - 12:00:00 PM)"  # Hyper-V's default name, from the clock
    assert cp.type == "Standard" and cp.created == host.clock.now() and cp.parent_id is None
    assert vm.parent_checkpoint_id == cp.id
    current = Path(vm.disks[0].path)
    assert GUID_AVHDX.match(current.name)
    assert [Path(link.path).name for link in vm.disks[0].chain] == [current.name, "vm1.vhdx"]
    assert vm.disks[0].chain[0].vhd_type == "Differencing" and vm.disks[0].chain[1].vhd_type == "Dynamic"
    assert vm.disks[0].chain[0].parent_path == str(base)
    assert read_header(current).parent_name == "vm1.vhdx"
    assert host.checkpoint_disk_path(vm_id, cp.id) == base
    # Later writes go to the new file only: the frozen base is untouched.
    host.write_guest_data(vm_id, 0, 12345, b"after the checkpoint")
    assert base.read_bytes() == base_bytes
    assert host.read_disk(vm_id, 0, 12345, 20) == b"after the checkpoint"
    with DiskFile(current) as top:
        assert top.present_blocks() == [0]


def test_checkpoint_types_and_name_rules(tmp_path: Path) -> None:
    host = make_host(tmp_path)
    vm_id = add_vm(host)
    for kind in ("Standard", "Production", "Recovery"):
        assert host.create_checkpoint(vm_id, f"cp {kind}", kind).type == kind
    with pytest.raises(HostError, match="cannot create a 'Replica' checkpoint"):
        host.create_checkpoint(vm_id, "x", "Replica")
    with pytest.raises(HostError, match="1 to 100 characters"):
        host.create_checkpoint(vm_id, "x" * 101, "Standard")
    with pytest.raises(NotFoundError, match="no VM with id"):
        host.create_checkpoint("no-such-vm", None, "Standard")


def test_apply_discards_current_state_and_starts_fresh_from_checkpoint(tmp_path: Path) -> None:
    host = make_host(tmp_path)
    vm_id = add_vm(host, state="Running")
    cp = host.create_checkpoint(vm_id, "clean", "Production")
    frozen = logical_digest(host.checkpoint_disk_path(vm_id, cp.id))
    scribble(host, vm_id, random.Random(1))
    discarded = Path(host.vm(vm_id).disks[0].path)
    assert logical_digest(discarded) != frozen

    host.apply_checkpoint(vm_id, cp.id)

    vm = host.vm(vm_id)
    assert not discarded.exists()
    current = Path(vm.disks[0].path)
    assert current != discarded and GUID_AVHDX.match(current.name)
    assert read_header(current).parent_name == "vm1.vhdx"
    assert logical_digest(current) == frozen
    assert vm.state == "Off"  # a production checkpoint has no memory state
    assert vm.parent_checkpoint_id == cp.id
    assert vm_files(host, vm_id) == {"vm1.vhdx", current.name}


def test_apply_standard_checkpoint_of_running_vm_leaves_it_saved(tmp_path: Path) -> None:
    host = make_host(tmp_path)
    vm_id = add_vm(host, state="Running")
    cp = host.create_checkpoint(vm_id, "with memory", "Standard")
    host.apply_checkpoint(vm_id, cp.id)
    vm = host.vm(vm_id)
    assert vm.state == "Saved"
    assert (host.vm_folder(vm_id) / f"{vm_id.upper()}.vmrs").exists()


def test_remove_latest_checkpoint_merges_child_into_parent_and_keeps_logical_disk(tmp_path: Path) -> None:
    host = make_host(tmp_path)
    vm_id = add_vm(host, state="Running")
    rng = random.Random(2)
    cp = host.create_checkpoint(vm_id, "one", "Standard")
    scribble(host, vm_id, rng, writes=5)
    avhdx = Path(host.vm(vm_id).disks[0].path)
    before = logical_digest(avhdx)
    events: list[Progress] = []

    host.remove_checkpoint(vm_id, cp.id, progress=events.append)

    vm = host.vm(vm_id)
    assert vm.checkpoints == () and vm.parent_checkpoint_id is None
    assert not avhdx.exists()
    assert Path(vm.disks[0].path).name == "vm1.vhdx" and vm.disks[0].depth == 0
    assert logical_digest(Path(vm.disks[0].path)) == before
    assert vm_files(host, vm_id) == {"vm1.vhdx"}
    merge = [e for e in events if e.phase == "merge"]
    with DiskFile(avhdx.parent / "vm1.vhdx") as base:
        assert base.present_blocks()  # the blocks really moved
    assert merge and merge[-1].done == merge[-1].total > 0


def test_remove_middle_of_chain_keeps_every_state_identical(tmp_path: Path) -> None:
    host = make_host(tmp_path)
    vm_id = add_vm(host, state="Running")
    rng = random.Random(3)
    ids = []
    for n in range(4):
        ids.append(host.create_checkpoint(vm_id, f"cp{n}", "Standard").id)
        scribble(host, vm_id, rng)
    before = state_digests(host, vm_id)
    files_before = vm_files(host, vm_id)

    host.remove_checkpoint(vm_id, ids[1])

    after = state_digests(host, vm_id)
    assert {k: v for k, v in before.items() if not k.startswith(ids[1])} == after
    vm = host.vm(vm_id)
    assert [cp.name for cp in vm.checkpoints] == ["cp0", "cp2", "cp3"]
    assert vm.checkpoint(ids[2]).parent_id == ids[0]
    assert vm.disks[0].depth == 3
    assert len(vm_files(host, vm_id)) == len(files_before) - 1


def test_subtree_remove_with_vm_running_inside_the_subtree(tmp_path: Path) -> None:
    host = make_host(tmp_path)
    vm_id = add_vm(host, state="Running")
    rng = random.Random(4)
    a = host.create_checkpoint(vm_id, "a", "Standard").id
    scribble(host, vm_id, rng)
    b = host.create_checkpoint(vm_id, "b", "Standard").id
    scribble(host, vm_id, rng)
    c = host.create_checkpoint(vm_id, "c", "Standard").id
    scribble(host, vm_id, rng)
    before = state_digests(host, vm_id)

    host.remove_checkpoint(vm_id, b, subtree=True)

    vm = host.vm(vm_id)
    assert [cp.id for cp in vm.checkpoints] == [a]
    assert vm.parent_checkpoint_id == a
    after = state_digests(host, vm_id)
    assert after == {"current:0": before["current:0"], f"{a}:0": before[f"{a}:0"]}
    assert vm.disks[0].depth == 1 and len(vm_files(host, vm_id)) == 2
    assert c not in {cp.id for cp in vm.checkpoints}


def test_subtree_remove_of_a_discarded_branch_deletes_its_files(tmp_path: Path) -> None:
    host = make_host(tmp_path)
    vm_id = add_vm(host)
    rng = random.Random(5)
    root = host.create_checkpoint(vm_id, "root", "Standard").id
    scribble(host, vm_id, rng)
    branch = host.create_checkpoint(vm_id, "branch", "Standard").id
    scribble(host, vm_id, rng)
    host.create_checkpoint(vm_id, "leaf", "Standard")
    host.apply_checkpoint(vm_id, root)  # the VM now runs from "root": branch+leaf are another branch
    scribble(host, vm_id, rng)
    before = state_digests(host, vm_id)

    host.remove_checkpoint(vm_id, branch, subtree=True)

    vm = host.vm(vm_id)
    assert [cp.name for cp in vm.checkpoints] == ["root"]
    assert state_digests(host, vm_id) == {k: before[k] for k in ("current:0", f"{root}:0")}
    assert vm_files(host, vm_id) == {"vm1.vhdx", Path(vm.disks[0].path).name}


def test_remove_checkpoint_with_several_children_merges_into_each(tmp_path: Path) -> None:
    host = make_host(tmp_path)
    vm_id = add_vm(host, disks=2)
    rng = random.Random(6)
    host.create_checkpoint(vm_id, "base", "Standard")
    scribble(host, vm_id, rng)
    scribble(host, vm_id, rng, disk=1)
    fork = host.create_checkpoint(vm_id, "fork", "Standard").id
    scribble(host, vm_id, rng)
    left = host.create_checkpoint(vm_id, "left", "Standard").id
    host.apply_checkpoint(vm_id, fork)
    scribble(host, vm_id, rng)
    scribble(host, vm_id, rng, disk=1)
    right = host.create_checkpoint(vm_id, "right", "Standard").id
    scribble(host, vm_id, rng)
    before = state_digests(host, vm_id)

    host.remove_checkpoint(vm_id, fork)

    vm = host.vm(vm_id)
    assert vm.checkpoint(left).parent_id == vm.checkpoint(right).parent_id != fork
    assert state_digests(host, vm_id) == {k: v for k, v in before.items() if not k.startswith(fork)}


@pytest.mark.parametrize("seed", range(6))
def test_random_trees_every_removal_keeps_all_other_states(tmp_path: Path, seed: int) -> None:
    """Random histories of create/write/apply, then remove checkpoints one by one (or subtrees)."""
    rng = random.Random(seed)
    host = make_host(tmp_path)
    vm_id = add_vm(host, state="Running", seed=seed)
    ids: list[str] = []
    for _ in range(rng.randint(5, 9)):
        roll = rng.random()
        if roll < 0.5 or not ids:
            ids.append(host.create_checkpoint(vm_id, None, "Standard").id)
            host.clock.advance(seconds=61)
        elif roll < 0.7:
            host.apply_checkpoint(vm_id, rng.choice(ids))
        scribble(host, vm_id, rng, writes=2)
    while True:
        vm = host.vm(vm_id)
        if not vm.checkpoints:
            break
        before = state_digests(host, vm_id)
        victim = rng.choice(vm.checkpoints)
        subtree = rng.random() < 0.25
        gone = {cp.id for cp in vm.subtree(victim.id)} if subtree else {victim.id}
        host.remove_checkpoint(vm_id, victim.id, subtree=subtree)
        after = state_digests(host, vm_id)
        expected = {k: v for k, v in before.items() if k.split(":")[0] not in gone}
        assert after == expected
        registered = {Path(link.path).name for d in host.vm(vm_id).disks for link in d.chain}
        frozen = {host.checkpoint_disk_path(vm_id, cp.id).name for cp in host.vm(vm_id).checkpoints}
        assert vm_files(host, vm_id) == registered | frozen  # no leftovers, nothing missing
    assert vm_files(host, vm_id) == {"vm1.vhdx"} or host.vm(vm_id).disks[0].depth <= 1


def test_rename_checkpoint_and_name_limits(tmp_path: Path) -> None:
    host = make_host(tmp_path)
    vm_id = add_vm(host)
    cp = host.create_checkpoint(vm_id, "old", "Standard")
    host.rename_checkpoint(vm_id, cp.id, "n" * 100)
    assert host.vm(vm_id).checkpoint(cp.id).name == "n" * 100
    for bad in ("", "n" * 101):
        with pytest.raises(HostError, match="1 to 100 characters"):
            host.rename_checkpoint(vm_id, cp.id, bad)
    with pytest.raises(NotFoundError, match="has no checkpoint with id 'nope'"):
        host.rename_checkpoint(vm_id, "nope", "x")
    with pytest.raises(NotFoundError):
        host.apply_checkpoint(vm_id, "nope")
    with pytest.raises(NotFoundError):
        host.remove_checkpoint(vm_id, "nope")


def test_merge_refused_when_volume_cannot_hold_it(tmp_path: Path) -> None:
    host = make_host(tmp_path)
    vm_id = add_vm(host, blocks=1)
    cp = host.create_checkpoint(vm_id, "big", "Standard")
    scribble(host, vm_id, random.Random(7), writes=6)
    host.set_volume(free=1 << 20)
    assert host.inventory(5).facts.volumes[0].free == 1 << 20
    with pytest.raises(HostError, match="not enough space on the volume to merge"):
        host.remove_checkpoint(vm_id, cp.id)
    assert host.vm(vm_id).checkpoint(cp.id) is not None  # nothing changed
    host.set_volume(free=1 << 30)
    host.remove_checkpoint(vm_id, cp.id)
    assert host.vm(vm_id).checkpoints == ()


def test_read_only_host_refuses_changes(tmp_path: Path) -> None:
    host = make_host(tmp_path)
    vm_id = add_vm(host)
    ro = LabHost.open(host.root, host.name, host.clock, read_only=True)
    with pytest.raises(ReadOnlyError):
        ro.create_checkpoint(vm_id, None, "Standard")
    assert ro.inventory(5).vms[0].checkpoints == ()


def test_missing_host_directory_is_unreachable(tmp_path: Path) -> None:
    clock = make_host(tmp_path / "elsewhere").clock
    host = LabHost.open(tmp_path / "no-lab" / "lab-x", "lab-x", clock)
    with pytest.raises(HostError, match=r"there is no lab at .*no-lab: run `hvtui lab init`") as info:
        host.inventory(1)
    assert info.value.kind == "unreachable"


def test_host_missing_from_an_existing_lab_names_the_hosts_it_has(tmp_path: Path) -> None:
    # `lab init` would refuse (the lab exists) and no profile makes this name: say what exists.
    existing = make_host(tmp_path)  # tmp_path/lab-t1
    host = LabHost.open(tmp_path / "lab-a", "lab-a", existing.clock)
    with pytest.raises(HostError) as info:
        host.inventory(1)
    assert str(info.value) == (
        f"lab-a: inventory: the lab at {tmp_path} has no host 'lab-a': its hosts are lab-t1; "
        "name one of those in the config (`hvtui lab status` lists them)"
    )
    with pytest.raises(HostError, match="has no host 'lab-a'"):
        host.create_checkpoint("any", None, "Standard")


def test_virtual_size_far_above_stored_bytes(tmp_path: Path) -> None:
    host = make_host(tmp_path)
    vm_id = host.add_vm("big", disk_sizes=(127 << 30,))
    host.write_guest_data(vm_id, 0, 100 << 30, b"x" * 5000)
    link = host.vm(vm_id).disks[0].chain[0]
    assert link.size == 127 << 30
    # Genuine VHDX has a floor Hyper-V's own files show (an empty one is 4 MiB): 1 MiB of headers
    # and region tables, 1 MiB log, 1 MiB metadata, the BAT rounded to 1 MiB; then the one block.
    assert link.file_size == 5 << 20
    st = Path(link.path).stat()
    assert st.st_blocks * 512 < 3 << 20  # the BAT region is a hole
    assert host.read_disk(vm_id, 0, 100 << 30, 5000) == b"x" * 5000
    assert host.read_disk(vm_id, 0, 50 << 30, 10) == bytes(10)
    assert link.size > SMALL_DISK


def test_cancel_before_the_merge_starts_changes_nothing(tmp_path: Path) -> None:
    from hvtui.errors import Cancelled
    from hvtui.events import CancelToken

    host = make_host(tmp_path)
    vm_id = add_vm(host)
    cp = host.create_checkpoint(vm_id, "keep me", "Standard")
    scribble(host, vm_id, random.Random(8))
    before = state_digests(host, vm_id)
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        host.remove_checkpoint(vm_id, cp.id, cancel=token)
    assert host.vm(vm_id).checkpoint(cp.id) is not None
    assert state_digests(host, vm_id) == before


def test_damaged_files_give_clear_errors(tmp_path: Path) -> None:
    host = make_host(tmp_path)
    vm_id = add_vm(host)
    disk = host.disk_path(vm_id)
    start = host.read_disk(vm_id, 0, 0, 10)
    with open(disk, "r+b") as fh:  # one VHDX header damaged: the other one still serves
        fh.seek((64 << 10) + 20)
        fh.write(b"\xff\xff")
    assert host.read_disk(vm_id, 0, 0, 10) == start
    with open(disk, "r+b") as fh:
        fh.seek((128 << 10) + 20)
        fh.write(b"\xff\xff")
    with pytest.raises(HostError, match=r"vm1\.vhdx: both VHDX headers are damaged \(signature or CRC-32C\)"):
        host.read_disk(vm_id, 0, 0, 10)
    (host.root / "host.json").write_text("{not json")
    with pytest.raises(HostError, match="lab state .*host.json is unreadable") as info:
        LabHost.open(host.root, host.name, host.clock).inventory(5)
    assert info.value.kind == "protocol"


def test_state_lock_held_elsewhere_times_out_cleanly(tmp_path: Path) -> None:
    from hvtui.hosts.lab.state import host_lock

    host = make_host(tmp_path)
    vm_id = add_vm(host, state="Running")
    host.set_guest_activity(vm_id, 64)
    host.clock.advance(minutes=2)  # a catch-up is due: the inventory needs the lock
    with host_lock(host.root, host.name, "test"), pytest.raises(HostError, match="busy") as info:
        LabHost.open(host.root, host.name, host.clock).inventory(timeout=0.2)
    assert info.value.kind == "timeout"
