"""The lab's Resilient Change Tracking: an RCT id per disk file that advances at each reference
point (each backup), answered in virtual-disk bytes like the wire contract's ``backup.changes``."""

from __future__ import annotations

from pathlib import Path

import pytest
from lab_support import SMALL_DISK, add_vm, make_host

from hvtui.engine.backup import run_backup
from hvtui.engine.repository import Repository
from hvtui.errors import HostError
from hvtui.hosts.base import SourceFile
from hvtui.hosts.lab import state as lab_state
from hvtui.hosts.lab.backup import CHANGES_WINDOW, backup_changes
from hvtui.hosts.lab.disk import coalesce

MiB = 1 << 20


def base_file(source) -> SourceFile:  # noqa: ANN001
    (found,) = [f for f in source.files if f.rel_path == "vm1.vhdx"]
    return found


def covers(ranges: list[tuple[int, int]], offset: int, length: int) -> bool:
    return any(off <= offset and offset + length <= off + n for off, n in ranges)


def test_the_rct_id_advances_at_each_backup_and_changes_are_virtual_disk_bytes(tmp_path: Path) -> None:
    host = make_host(tmp_path)
    vm_id = add_vm(host, blocks=8)
    with host.open_backup_source(vm_id) as first:
        id1 = base_file(first).change_id
    with host.open_backup_source(vm_id) as second:
        disk = base_file(second)
        id2 = disk.change_id
        assert disk.virtual_ranges
        assert disk.changed_ranges(id1) == []  # nothing written between the two reference points
    assert id1 and id2 and id1 != id2
    writes = [(5 * MiB + 100, 3000), (40 * MiB, 2 * MiB + 7), (SMALL_DISK - 512, 512)]
    for offset, length in writes:
        host.write_guest_data(vm_id, 0, offset, b"\x5a" * length)
    with host.open_backup_source(vm_id) as third:
        disk = base_file(third)
        since2 = disk.changed_ranges(id2)
        since1 = disk.changed_ranges(id1)
    # Exactly the guest's virtual writes, not where their blocks sit in the file.
    assert since2 == since1 == coalesce(writes)


def test_a_merge_is_recorded_in_virtual_offsets(tmp_path: Path) -> None:
    host = make_host(tmp_path)
    vm_id = add_vm(host, blocks=4)
    with host.open_backup_source(vm_id) as first:
        since = base_file(first).change_id
        # The VM writes into the Recovery checkpoint's file; closing merges it into the base.
        host.write_guest_data(vm_id, 0, 30 * MiB + 4096, b"\x11" * 8192)
    checkpoint = host.create_checkpoint(vm_id, "before patch")
    host.write_guest_data(vm_id, 0, 50 * MiB, b"\x22" * 100)
    host.remove_checkpoint(vm_id, checkpoint.id)  # merges the .avhdx into the base disk
    with host.open_backup_source(vm_id) as second:
        ranges = base_file(second).changed_ranges(since)
    # Block-wise (a superset of the sectors merged), inside the virtual disk.
    assert covers(ranges, 30 * MiB + 4096, 8192) and covers(ranges, 50 * MiB, 100)
    assert all(off >= 0 and off + n <= SMALL_DISK for off, n in ranges)
    assert sum(n for _, n in ranges) <= 2 * MiB


def test_unknown_or_too_old_ids_fail_with_rct_invalid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    host = make_host(tmp_path)
    vm_id = add_vm(host, blocks=2)
    with host.open_backup_source(vm_id) as first:
        disk = base_file(first)
        old = disk.change_id
        assert old is not None
        identity = disk.identity
    generation = old.rsplit(":", 1)[1].split("-")[0]
    unknowns = ("garbage", "rct:another-disk:ab-1", f"rct:{identity}:{generation}-424242", f"rct:{identity}:{generation}-1")
    for unknown in (*unknowns, f"rct:{identity}:{'0' * 32}-{old.rsplit('-', 1)[1]}"):  # 1: a write, no reference point
        with pytest.raises(HostError) as caught:
            backup_changes(host.store, identity, SMALL_DISK, unknown, 0, SMALL_DISK)
        assert caught.value.kind == "rct-invalid", unknown
    monkeypatch.setattr(lab_state, "_MAX_RECORDS", 8)  # the log forgets its oldest half when long
    for i in range(12):
        host.write_guest_data(vm_id, 0, i * MiB, b"\x01" * 10)
    with pytest.raises(HostError) as caught:
        backup_changes(host.store, identity, SMALL_DISK, old, 0, SMALL_DISK)
    assert caught.value.kind == "rct-invalid" and "older" in caught.value.detail


def test_backup_changes_has_the_wire_contracts_shape_and_window_rules(tmp_path: Path) -> None:
    host = make_host(tmp_path)
    vm_id = add_vm(host, blocks=2)
    with host.open_backup_source(vm_id) as first:
        disk = base_file(first)
        since = disk.change_id
        assert since is not None
    host.write_guest_data(vm_id, 0, 3 * MiB - 10, b"\x07" * 20)
    answer = backup_changes(host.store, disk.identity, SMALL_DISK, since, 3 * MiB, MiB)
    assert answer == {"ranges": [[3 * MiB, 10]], "processed": MiB}  # clipped to the window
    for offset, length in ((0, CHANGES_WINDOW + 1), (SMALL_DISK - MiB, 2 * MiB), (-1, 10)):
        with pytest.raises(HostError) as caught:
            backup_changes(host.store, disk.identity, SMALL_DISK, since, offset, length)
        assert caught.value.kind == "argument"


def test_a_restore_point_records_the_rct_id_each_disk_was_read_at(tmp_path: Path) -> None:
    host = make_host(tmp_path)
    vm_id = add_vm(host, blocks=4, disks=2)
    repo = Repository.open(tmp_path / "repo", create=True)
    full = run_backup(repo, host, vm_id, "full")
    point = repo.load_point(full.point_id)
    disks = {f.path: f.change_id for f in point.files if f.path.endswith(".vhdx")}
    assert len(disks) == 2 and all(cid and cid.startswith("rct:") for cid in disks.values())
    host.write_guest_data(vm_id, 1, 7 * MiB, b"\x33" * 4096)
    second = host.disk_path(vm_id, 1).name
    with host.open_backup_source(vm_id) as source:
        answers = {f.rel_path: f.changed_ranges(disks[f.rel_path]) for f in source.files if f.rel_path in disks}
    # Each recorded id is a reference point the host still answers for.
    assert answers == {name: ([(7 * MiB, 4096)] if name == second else []) for name in disks}
    inc = run_backup(repo, host, vm_id, "incremental")
    assert inc.files_changed_ranges == 2 and inc.whole_reads == []


def test_a_lost_change_log_never_answers_for_its_old_ids(tmp_path: Path) -> None:
    host = make_host(tmp_path)
    vm_id = add_vm(host, blocks=2)
    with host.open_backup_source(vm_id) as first:
        disk = base_file(first)
        old = disk.change_id
    assert old is not None
    for log in (host.root / lab_state.RCT_DIR).iterdir():
        log.unlink()  # the log is lost: a new one starts, with the same sequence numbers
    host.write_guest_data(vm_id, 0, 0, b"\x01" * 4096)
    with host.open_backup_source(vm_id) as second:
        again = base_file(second)
        assert again.change_id != old and again.change_id.rsplit("-", 1)[1] == old.rsplit("-", 1)[1]
        with pytest.raises(HostError) as caught:
            again.changed_ranges(old)
    assert caught.value.kind == "rct-invalid" and "no longer has" in caught.value.detail


def test_a_change_log_of_an_older_lab_reads_as_invalid_and_starts_again(tmp_path: Path) -> None:
    host = make_host(tmp_path)
    vm_id = add_vm(host, blocks=2)
    with host.open_backup_source(vm_id) as first:
        identity = base_file(first).identity
    log = host.root / lab_state.RCT_DIR / f"{identity}.rct"
    log.write_bytes(b"HVLABRCT" + bytes(8) + bytes(24) * 3)  # format 1: file ranges, no generation
    with pytest.raises(HostError) as caught:
        backup_changes(host.store, identity, SMALL_DISK, f"rct:{identity}:00-1", 0, SMALL_DISK)
    assert caught.value.kind == "rct-invalid"
    with host.open_backup_source(vm_id) as second:
        since = base_file(second).change_id
    host.write_guest_data(vm_id, 0, MiB, b"\x02" * 512)
    with host.open_backup_source(vm_id) as third:
        assert base_file(third).changed_ranges(since) == [(MiB, 512)]


def test_a_disk_over_one_window_is_asked_window_by_window(tmp_path: Path) -> None:
    host = make_host(tmp_path)
    vm_id = host.add_vm("big", disk_sizes=(3 * CHANGES_WINDOW,))
    with host.open_backup_source(vm_id) as first:
        (disk,) = [f for f in first.files if f.rel_path.endswith(".vhdx")]
        since = disk.change_id
    assert since is not None
    host.write_guest_data(vm_id, 0, CHANGES_WINDOW - 4096, b"\x0c" * 8192)  # across the first window's end
    host.write_guest_data(vm_id, 0, 3 * CHANGES_WINDOW - 512, b"\x0d" * 512)  # the last sector
    with host.open_backup_source(vm_id) as second:
        (disk,) = [f for f in second.files if f.rel_path.endswith(".vhdx")]
        ranges = disk.changed_ranges(since)
    assert ranges == [(CHANGES_WINDOW - 4096, 4096), (CHANGES_WINDOW, 4096), (3 * CHANGES_WINDOW - 512, 512)]
    second_window = backup_changes(host.store, disk.identity, 3 * CHANGES_WINDOW, since, CHANGES_WINDOW, CHANGES_WINDOW)
    assert second_window == {"ranges": [[CHANGES_WINDOW, 4096]], "processed": CHANGES_WINDOW}
