"""Backup and restore on a real repository over real files (the DirHost test double)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from hvtui.audit import AuditLog
from hvtui.backups.ledger import CheckpointJournal
from hvtui.backups.leftovers import LeftoverCheckpoints
from hvtui.engine import keys
from hvtui.engine.backup import run_backup
from hvtui.engine.repository import Repository
from hvtui.engine.restore import restore_to_directory, restore_to_host
from hvtui.engine.verify import run_verify
from hvtui.errors import Cancelled, HostError, RepositoryError
from hvtui.events import CancelToken, Progress

sys.path.insert(0, str(Path(__file__).parent))
from engine_support import DirHost, OneHost, read_tree  # noqa: E402

KiB = 1024
MiB = 1024 * KiB
CS = 64 * KiB
DISK = "Virtual Hard Disks/web01.vhdx"


@pytest.fixture
def host(tmp_path: Path) -> DirHost:
    h = DirHost(tmp_path / "host")
    h.add_vm("vm1", "web01")
    h.create_disk("vm1", DISK, 16 * MiB, seed=1, data_mib=5)
    (h.vm_dir("vm1") / "web01.vmcx").write_bytes(b"<config>" + os.urandom(3000))
    return h


@pytest.fixture(params=[1, 2, "2e"], ids=["v1", "v2", "v2-encrypted"])
def repo(tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Repository:
    """Every test runs on both formats: chunk files (v1) and packs with an index (v2), plain
    and encrypted."""
    encrypt = request.param == "2e"
    monkeypatch.setattr(keys, "SCRYPT_N", 1 << 12)  # key derivation's cost is not what these tests check
    repo = Repository.open(
        tmp_path / "repo", create=True, chunk_size=CS, version=2 if encrypt else request.param,
        passphrase=lambda: "correct horse", encrypt=encrypt,
    )
    if request.param != 1:
        repo.store.pack_size = 256 * KiB  # type: ignore[union-attr]  # several packs per backup
    return repo


def restored(repo: Repository, point_id: str, tmp_path: Path, name: str) -> dict[str, bytes]:
    out = tmp_path / name
    restore_to_directory(repo, point_id, out)
    return read_tree(out)


def test_every_mode_restores_byte_identical_and_reads_only_what_changed(
    host: DirHost, repo: Repository, tmp_path: Path
) -> None:
    states: dict[str, dict[str, bytes]] = {}
    full = run_backup(repo, host, "vm1", "full")
    states[full.point_id] = read_tree(host.vm_dir("vm1"))
    assert full.mode == "full" and full.parent is None
    assert full.read_bytes < full.logical_bytes  # holes were skipped, not read

    host.write("vm1", DISK, 3 * CS + 10, b"x" * 100)  # one chunk
    inc1 = run_backup(repo, host, "vm1", "incremental")
    states[inc1.point_id] = read_tree(host.vm_dir("vm1"))
    assert (inc1.mode, inc1.parent) == ("incremental", full.point_id)
    assert inc1.read_bytes == CS and inc1.files_changed_ranges == 1 and inc1.files_unchanged == 1
    assert inc1.new_chunks == 1

    host.write("vm1", DISK, 9 * CS - 5, b"y" * 10)  # straddles two chunks
    inc2 = run_backup(repo, host, "vm1", "incremental")
    states[inc2.point_id] = read_tree(host.vm_dir("vm1"))
    assert inc2.read_bytes == 2 * CS and inc2.parent == inc1.point_id

    diff = run_backup(repo, host, "vm1", "differential")
    states[diff.point_id] = read_tree(host.vm_dir("vm1"))
    # Everything changed since the full: the chunk of the first write and the two of the second.
    assert (diff.mode, diff.parent) == ("differential", full.point_id)
    assert diff.read_bytes == 3 * CS
    assert diff.new_chunks == 0  # all of it is already stored: referenced, not copied

    for point_id, expected in states.items():
        assert restored(repo, point_id, tmp_path, f"out-{point_id}") == expected
    assert run_verify(repo).ok
    assert host.marker("vm1").exists() is False


def test_untracked_files_are_reread_and_deduplicated(host: DirHost, repo: Repository) -> None:
    run_backup(repo, host, "vm1", "full")
    config = host.vm_dir("vm1") / "web01.vmcx"
    config.write_bytes(config.read_bytes()[:-1] + b"!")  # no change tracking: read again
    result = run_backup(repo, host, "vm1", "incremental")
    assert result.files_read == 1 and result.files_unchanged == 1
    assert result.read_bytes == config.stat().st_size
    assert result.new_chunks == 1


def test_full_mode_reads_everything_but_stores_nothing_twice(host: DirHost, repo: Repository) -> None:
    first = run_backup(repo, host, "vm1", "full")
    second = run_backup(repo, host, "vm1", "full")
    assert second.read_bytes == first.read_bytes > 0
    assert second.new_chunks == 0 and second.stored_bytes == 0


def test_zero_chunks_are_not_stored_and_restore_as_holes(host: DirHost, repo: Repository, tmp_path: Path) -> None:
    zeros = host.vm_dir("vm1") / "zeros.bin"
    zeros.write_bytes(bytes(2 * MiB))  # allocated zeros, not a sparse file
    before = set(repo.store.iter_ids())
    result = run_backup(repo, host, "vm1", "full")
    manifest = repo.load_point(result.point_id)
    entry = next(f for f in manifest.files if f.path == "zeros.bin")
    assert entry.chunks == [None] * (2 * MiB // CS)
    out = tmp_path / "out"
    restore_to_directory(repo, result.point_id, out)
    assert (out / "zeros.bin").read_bytes() == bytes(2 * MiB)
    assert os.stat(out / "zeros.bin").st_blocks * 512 < 64 * KiB  # a hole, not written zeros
    sparse = os.stat(out / DISK)
    assert sparse.st_blocks * 512 < sparse.st_size // 2
    assert zeros.stat().st_size == 2 * MiB and len(set(repo.store.iter_ids()) - before) == result.new_chunks


def test_two_vms_with_the_same_disk_share_chunks(host: DirHost, repo: Repository) -> None:
    host.add_vm("vm2", "web02")
    (host.vm_dir("vm2") / "Virtual Hard Disks").mkdir()
    (host.vm_dir("vm2") / DISK).write_bytes((host.vm_dir("vm1") / DISK).read_bytes())
    run_backup(repo, host, "vm1", "full")
    second = run_backup(repo, host, "vm2", "full")
    assert second.new_chunks == 0 and second.new_bytes == 0


def test_progress_reports_phases_and_reaches_the_total(host: DirHost, repo: Repository) -> None:
    events: list[Progress] = []
    result = run_backup(repo, host, "vm1", "full", progress=events.append, progress_interval=0)
    phases = [e.phase for e in events]
    for phase in ("checkpoint", "backup", "commit", "cleanup", "done"):
        assert phase in phases
    backup_events = [e for e in events if e.phase == "backup"]
    done = [e.done for e in backup_events]
    assert done == sorted(done) and backup_events[-1].done == backup_events[-1].total == result.logical_bytes
    currents = {e.current for e in backup_events} - {None}
    assert currents and currents <= {DISK, "web01.vmcx"}
    assert events[-1].bytes_new == result.new_bytes and events[-1].bytes_stored == result.stored_bytes
    assert events[-1].compression_ratio and events[-1].compression_ratio > 1


@pytest.mark.parametrize("phase", ["cleanup", "checkpoint", "backup"])
def test_cancel_at_any_moment_leaves_no_point_and_no_checkpoint(
    host: DirHost, repo: Repository, phase: str, tmp_path: Path
) -> None:
    """Cancelled when the first event of ``phase`` arrives (every phase before the commit)."""
    token = CancelToken()
    leftovers = LeftoverCheckpoints(CheckpointJournal(tmp_path / "checkpoints.jsonl"), OneHost(host), AuditLog(tmp_path / "audit"))
    if phase == "cleanup":  # only a leftover of our own makes a cleanup phase: an earlier backup's, never removed
        host.open_backup_source("vm1", None, leftovers.recorder(host.name, "vm1", None, lambda: ""))
        leftovers.ended([host.recovery_id("vm1")])

    def progress(event: Progress) -> None:
        if event.phase == phase:
            token.cancel()

    with pytest.raises(Cancelled):
        run_backup(
            repo,
            host,
            "vm1",
            "full",
            progress=progress,
            cancel=token,
            progress_interval=0,
            clear_leftovers=lambda p: leftovers.clear(host.name, "vm1", "vm1", p),
        )
    assert repo.point_ids() == []
    assert not host.marker("vm1").exists()
    assert os.listdir(repo.tmp_dir) == []
    ok = run_backup(repo, host, "vm1", "full")
    assert run_verify(repo).ok and repo.point_ids() == [ok.point_id]


def test_a_failing_source_leaves_no_point_and_removes_the_checkpoint(host: DirHost, repo: Repository) -> None:
    original = host.open_backup_source

    def broken_source(vm_id: str, progress=None):  # noqa: ANN001, ANN202
        source = original(vm_id, progress)

        def fail_open():  # noqa: ANN202
            raise OSError(5, "Input/output error")

        source.files[-1].opener = fail_open
        return source

    host.open_backup_source = broken_source  # type: ignore[method-assign]
    with pytest.raises(RepositoryError, match="cannot open"):
        run_backup(repo, host, "vm1", "full")
    assert repo.point_ids() == [] and not host.marker("vm1").exists()


def test_a_file_that_shrinks_during_the_backup_fails_it_cleanly(host: DirHost, repo: Repository) -> None:
    original = host.open_backup_source

    def shrinking(vm_id: str, progress=None):  # noqa: ANN001, ANN202
        source = original(vm_id, progress)
        disk = next(f for f in source.files if f.rel_path == DISK)
        os.truncate(host.vm_dir("vm1") / DISK, 1 * MiB)  # the "frozen" file changes under us
        disk.size = 16 * MiB
        return source

    host.open_backup_source = shrinking  # type: ignore[method-assign]
    with pytest.raises(RepositoryError, match="changed during the backup"):
        run_backup(repo, host, "vm1", "full")
    assert repo.point_ids() == []


def test_restore_as_new_vm_and_in_place_through_the_host(host: DirHost, repo: Repository) -> None:
    original = read_tree(host.vm_dir("vm1"))
    point = run_backup(repo, host, "vm1", "full").point_id
    result = restore_to_host(repo, point, host, "new", new_name="web01-copy")
    assert result.vm_name == "web01-copy" and result.vm_id != "vm1"
    assert read_tree(host.vm_dir(result.vm_id)) == original

    host.write("vm1", DISK, 0, b"ruined" * 1000)
    host.meta("vm1")
    (host.vm_dir("vm1") / "vm.json").write_text('{"name": "web01", "state": "Running"}')
    with pytest.raises(HostError, match="must be off"):
        restore_to_host(repo, point, host, "in_place", vm_id="vm1")
    assert read_tree(host.vm_dir("vm1")) != original  # refused: nothing touched
    (host.vm_dir("vm1") / "vm.json").write_text('{"name": "web01", "state": "Off"}')
    restore_to_host(repo, point, host, "in_place", vm_id="vm1")
    assert read_tree(host.vm_dir("vm1")) == original
    assert not list(host.root.glob("staging-*"))


def test_restore_refuses_to_overwrite_existing_files(host: DirHost, repo: Repository, tmp_path: Path) -> None:
    point = run_backup(repo, host, "vm1", "full").point_id
    out = tmp_path / "out"
    (out / "Virtual Hard Disks").mkdir(parents=True)
    (out / DISK).write_bytes(b"precious")
    with pytest.raises(RepositoryError, match="refusing to overwrite"):
        restore_to_directory(repo, point, out)
    assert (out / DISK).read_bytes() == b"precious"
    assert sorted(p.name for p in out.iterdir()) == ["Virtual Hard Disks"]


def test_restore_can_be_cancelled_and_leaves_nothing(host: DirHost, repo: Repository, tmp_path: Path) -> None:
    point = run_backup(repo, host, "vm1", "full").point_id
    token = CancelToken()

    def progress(event: Progress) -> None:
        if event.phase == "restore" and event.done > 0:
            token.cancel()

    out = tmp_path / "out"
    with pytest.raises(Cancelled):
        restore_to_directory(repo, point, out, progress=progress, cancel=token, progress_interval=0)
    assert list(out.iterdir()) == []


def test_the_backup_error_stays_the_reported_one_when_the_checkpoint_removal_also_fails(
    host: DirHost, repo: Repository
) -> None:
    original = host.open_backup_source

    def source_with_failing_merge(vm_id: str, progress=None):  # noqa: ANN001, ANN202
        source = original(vm_id, progress)

        def failing_close() -> None:
            raise HostError(host.name, "merge", "the volume is full")

        def fail_open():  # noqa: ANN202
            raise OSError(5, "Input/output error")

        source.close = failing_close  # type: ignore[method-assign]
        source.files[0].opener = fail_open
        return source

    host.open_backup_source = source_with_failing_merge  # type: ignore[method-assign]
    with pytest.raises(RepositoryError, match="cannot open.*removing the backup checkpoint failed too.*volume is full"):
        run_backup(repo, host, "vm1", "full")
    assert repo.point_ids() == []
