"""End to end on the lab: real lab VMs (checkpoints, merges, change tracking) into a real repository.

Restores are compared with the VM's files exactly as the backup saw them: the test host
is a ``LabHost`` that also copies the frozen files while the Recovery checkpoint exists.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from hvtui.audit import AuditLog
from hvtui.clock import FixedClock
from hvtui.config import Config, HostConfig, RepositoryConfig, Retention
from hvtui.core import Core
from hvtui.engine.packstore import REPACK_BELOW
from hvtui.engine.repository import PointNotFound, Repository
from hvtui.errors import Cancelled, ReadOnlyError, RefusedError
from hvtui.events import CancelToken
from hvtui.hosts.lab.host import LabHost
from hvtui.paths import Paths

MiB = 1 << 20
HOST = "lab-a"


class CapturingLabHost(LabHost):
    """A lab host that keeps a copy of every backup's frozen files (what a restore must give)."""

    captured: list[dict[str, bytes]]

    def open_backup_source(self, vm_id, progress=None, on_checkpoint=None, **options):  # noqa: ANN001, ANN003, ANN201
        source = super().open_backup_source(vm_id, progress, on_checkpoint, **options)
        snapshot = {}
        for f in source.files:
            with f.open() as fh:
                snapshot[f.rel_path] = fh.read()
        self.captured.append(snapshot)
        return source


def write_mixed(host: LabHost, vm_id: str, rng: random.Random, writes: int, size: int = 200 * 1024) -> None:
    for _ in range(writes):
        offset = rng.randrange(0, 20 * MiB)
        half = size // 2
        data = (b"lab text %d " % rng.randrange(1000)) * (half // 12) + rng.randbytes(half)
        host.write_guest_data(vm_id, 0, offset, data[:size])


def read_dir(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def lab(tmp_path: Path, paths: Paths, request: pytest.FixtureRequest):  # noqa: ANN201
    """A lab host with VM web01 and a config whose repository is the default format unless a test
    asks for another through ``indirect`` parametrization."""
    clock = FixedClock()
    lab_dir = tmp_path / "lab"
    LabHost.create(lab_dir / HOST, HOST, clock)
    host = CapturingLabHost.open(lab_dir / HOST, HOST, clock)
    host.captured = []
    vm_id = host.add_vm("web01", state="Off", disk_sizes=(24 * MiB,), fsync=False)
    write_mixed(host, vm_id, random.Random(1), 12)
    retention = Retention(keep_last=3, keep_hourly=0, keep_daily=0, keep_weekly=0, keep_monthly=0, keep_yearly=0)
    config = Config(
        source=tmp_path / "config.yaml",
        hosts=(HostConfig(name=HOST, kind="lab"),),
        repositories=(
            RepositoryConfig(
                name="default",
                path=tmp_path / "repo",
                default=True,
                retention=retention,
                **({"format": request.param} if hasattr(request, "param") else {}),
            ),
        ),
    )
    core = Core(config, paths, clock=clock, lab_dir=lab_dir, hosts={HOST: host})
    yield core, host, vm_id, clock
    core.close()


def recovery_checkpoints(host: LabHost, vm_id: str) -> list:
    return [cp for cp in host.vm(vm_id).checkpoints if cp.type == "Recovery"]


@pytest.mark.parametrize("lab", [1, 2], indirect=True)
def test_every_mode_on_the_lab_restores_exactly_what_was_frozen_even_after_prune(lab, tmp_path: Path) -> None:  # noqa: ANN001
    core, host, vm_id, clock = lab
    backups = core.backups
    rng = random.Random(2)
    expected: dict[str, dict[str, bytes]] = {}
    results = []
    for mode in ("full", "incremental", "incremental", "differential", "incremental"):
        clock.advance(hours=1)
        result = backups.backup(HOST, vm_id, mode, apply_retention=False)
        expected[result.point_id] = host.captured[-1]
        results.append(result)
        assert recovery_checkpoints(host, vm_id) == []
        write_mixed(host, vm_id, rng, 2)
    full, inc1, inc2, diff, inc3 = results
    assert [r.mode for r in results] == ["full", "incremental", "incremental", "differential", "incremental"]
    assert (inc1.parent, inc2.parent, diff.parent, inc3.parent) == (
        full.point_id,
        inc1.point_id,
        full.point_id,
        diff.point_id,
    )
    # Incrementals read only the changed regions of the disk (plus the small config files).
    for inc in (inc1, inc2, inc3):
        assert inc.files_changed_ranges >= 1 and inc.read_bytes < full.read_bytes / 2
    assert diff.read_bytes >= inc2.read_bytes  # changes since the full, not since the last point

    pruned = backups.prune()
    assert sorted(d.point for d in pruned.removed) == sorted([full.point_id, inc1.point_id])
    repo = Repository.open(core.backups.repository_config().path)
    if repo.version == 1:  # the chunk files only the removed points used are deleted one by one
        assert pruned.chunks_removed > 0
    else:  # whole packs: the removed points' own chunks stay only in packs at least REPACK_BELOW live
        # (here one pack holds everything; packs rewritten and deleted by prune: test_engine_packs)
        referenced = set().union(*(repo.load_point(p).chunk_ids() for p in repo.point_ids()))
        packs = repo.store.index.refresh().packs  # type: ignore[union-attr]
        assert repo.store.unreferenced(referenced) > 0  # type: ignore[union-attr]
        assert packs and all(
            sum(e.length for e in entries if e.digest in referenced) >= REPACK_BELOW * sum(e.length for e in entries)
            for entries in packs.values()
        )
    with pytest.raises(PointNotFound):
        backups.restore(full.point_id, to_dir=tmp_path / "gone")
    for result in (inc2, diff, inc3):
        out = tmp_path / f"out-{result.point_id}"
        backups.restore(result.point_id, to_dir=out)
        assert read_dir(out) == expected[result.point_id], result.mode
    assert backups.verify().ok


def test_a_running_vm_is_backed_up_consistently_while_the_guest_writes(lab, tmp_path: Path) -> None:  # noqa: ANN001
    core, host, vm_id, clock = lab
    host.set_vm_state(vm_id, "Running")
    host.set_guest_activity(vm_id, 256, warm_share=0.0)  # writes stay in a 4 MiB hot region
    first = core.backups.backup(HOST, vm_id, "incremental")
    clock.advance(minutes=30)  # the guest keeps writing: real changed data
    second = core.backups.backup(HOST, vm_id, "incremental")
    assert first.mode == "full" and second.mode == "incremental"
    assert second.files_changed_ranges == 1 and 0 < second.read_bytes < first.read_bytes
    out = tmp_path / "out"
    core.backups.restore(second.point_id, to_dir=out)
    assert read_dir(out) == host.captured[-1]
    assert recovery_checkpoints(host, vm_id) == []


def test_restore_as_a_new_vm_and_over_the_original(lab) -> None:  # noqa: ANN001
    core, host, vm_id, _clock = lab
    before = host.read_disk(vm_id, 0, 0, 24 * MiB)
    point = core.backups.backup(HOST, vm_id, "full").point_id

    copy = core.backups.restore(point, as_name="web01-restored")
    assert copy.vm_name == "web01-restored" and copy.vm_id != vm_id
    assert host.read_disk(copy.vm_id, 0, 0, 24 * MiB) == before
    assert {vm.name for vm in host.inventory(10).vms} == {"web01", "web01-restored"}

    host.write_guest_data(vm_id, 0, 0, b"\xff" * MiB)
    host.set_vm_state(vm_id, "Running")
    with pytest.raises(RefusedError, match="turn it off"):
        core.backups.restore(point, in_place=True)
    assert host.read_disk(vm_id, 0, 0, 1024) == b"\xff" * 1024
    host.set_vm_state(vm_id, "Off")
    core.backups.restore(point, in_place=True)
    assert host.read_disk(vm_id, 0, 0, 24 * MiB) == before
    actions = [e["action"] for e in AuditLog(core.paths.audit_log).read()]
    assert actions.count("restore-in-place") == 2 and "restore-as-new" in actions and "backup" in actions


def test_read_only_refuses_host_changes_but_allows_reading(lab, tmp_path: Path) -> None:  # noqa: ANN001
    core, host, vm_id, clock = lab
    point = core.backups.backup(HOST, vm_id, "full").point_id
    ro = Core(core.config, core.paths, clock=clock, read_only=True, lab_dir=core.lab_dir, hosts={HOST: host})
    for call in (
        lambda: ro.backups.backup(HOST, vm_id, "full"),
        lambda: ro.backups.restore(point, as_name="copy"),
        lambda: ro.backups.restore(point, in_place=True),
        lambda: ro.backups.prune(),
    ):
        with pytest.raises(ReadOnlyError, match="read-only"):
            call()
    assert ro.backups.prune(dry_run=True).dry_run
    ro.backups.restore(point, to_dir=tmp_path / "out")  # reads the repository, changes no host
    assert ro.backups.verify().ok
    assert [p.id for p in ro.backups.list_points(vm="web01")] == [point]
    assert ro.backups.last_backup(HOST, vm_id) == clock.now()
    refused = [e for e in AuditLog(core.paths.audit_log).read() if e["result"] == "refused"]
    assert {e["action"] for e in refused} == {"backup", "restore-as-new", "restore-in-place", "prune"}


def test_a_backup_that_fails_is_audited_under_the_vm_name_like_one_that_succeeds(lab) -> None:  # noqa: ANN001
    core, _host, vm_id, _clock = lab
    core.inventory.refresh()  # the console and the CLI have the inventory when they start a backup
    stopped = CancelToken()
    stopped.cancel()
    with pytest.raises(Cancelled):
        core.backups.backup(HOST, vm_id, "full", cancel=stopped)
    core.backups.backup(HOST, vm_id, "full")
    entries = [e for e in AuditLog(core.paths.audit_log).read() if e["action"] == "backup"]
    assert [(e["vm"], e["result"] == "ok") for e in entries] == [("web01", False), ("web01", True)]


def test_retention_runs_after_a_successful_backup_only(lab) -> None:  # noqa: ANN001
    core, host, vm_id, clock = lab
    ids = []
    for _ in range(4):
        clock.advance(hours=1)
        ids.append(core.backups.backup(HOST, vm_id, "incremental").point_id)
    assert [p.id for p in core.backups.list_points(HOST)] == ids[1:]  # keep_last=3

    def broken(vm_id, progress=None, on_checkpoint=None):  # noqa: ANN001, ANN202
        raise OSError(28, "No space left on device")

    host.open_backup_source = broken  # type: ignore[method-assign]
    clock.advance(hours=1)
    with pytest.raises(OSError):
        core.backups.backup(HOST, vm_id, "incremental")
    assert [p.id for p in core.backups.list_points(HOST)] == ids[1:]


def test_points_of_a_damaged_repository_still_list(lab) -> None:  # noqa: ANN001
    core, host, vm_id, _ = lab
    point = core.backups.backup(HOST, vm_id, "full").point_id
    repo = Repository.open(core.backups.repository_config().path)
    (repo.points_dir / "20260101T000000Z-deadbeef.json").write_text(json.dumps({"garbage": True}))
    assert [p.id for p in core.backups.list_points()] == [point]
    report = core.backups.verify()
    assert not report.ok and report.damaged_manifests[0]["point"] == "20260101T000000Z-deadbeef"


def test_last_backup_follows_this_and_other_processes(lab) -> None:  # noqa: ANN001
    core, host, vm_id, clock = lab
    other = Core(core.config, core.paths, clock=clock, lab_dir=core.lab_dir, hosts={HOST: host})
    assert core.backups.last_backup(HOST, vm_id) is None and other.backups.last_backup(HOST, vm_id) is None
    clock.advance(hours=1)
    core.backups.backup(HOST, vm_id, "full")
    first = clock.now()
    assert core.backups.last_backup(HOST, vm_id) == first  # its own change: at once
    other.backups.recheck_seconds = 0  # another process's change: at the next re-check
    assert other.backups.last_backup(HOST, vm_id) == first
    clock.advance(hours=1)
    core.backups.backup(HOST, vm_id, "incremental")
    assert other.backups.last_backup(HOST, vm_id) == clock.now()
    assert other.backups.last_backup(HOST, "no-such-vm") is None
