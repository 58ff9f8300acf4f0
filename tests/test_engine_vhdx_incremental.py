"""Incrementals of genuine VHDX disks from virtual-disk changes (RCT): the engine maps them to the
file ranges to read, takes everything else from the previous point, and restores the frozen file
byte for byte; every fall back to a whole-file read says why."""

from __future__ import annotations

import dataclasses
import subprocess
import uuid
from datetime import UTC, datetime
from pathlib import Path

from lab_support import SMALL_DISK, add_vm

from hvtui.audit import AuditLog
from hvtui.clock import FixedClock
from hvtui.config import Config, HostConfig, RepositoryConfig
from hvtui.core import Core
from hvtui.engine.backup import run_backup
from hvtui.engine.manifest import FileEntry, Manifest
from hvtui.engine.plan import plan_files
from hvtui.engine.repository import Repository
from hvtui.engine.restore import restore_to_directory
from hvtui.hosts.base import SourceFile
from hvtui.hosts.lab.disk import create_disk, read_logical
from hvtui.hosts.lab.host import LabHost
from hvtui.hosts.lab.state import RCT_DIR
from hvtui.hosts.vhdx import format as fmt
from hvtui.paths import Paths

MiB = 1 << 20
FIXED = 4 * MiB  # header section, log, metadata and BAT regions: re-read by every incremental


class CapturingLabHost(LabHost):
    """A lab host that keeps a copy of every backup's frozen files (what a restore must give)."""

    captured: list[dict[str, bytes]]

    def open_backup_source(self, vm_id, progress=None, on_checkpoint=None, **options):  # noqa: ANN001, ANN003, ANN201
        source = super().open_backup_source(vm_id, progress, on_checkpoint, **options)
        snapshot = {}
        for f in source.files:
            with f.open() as fh:
                snapshot[f.rel_path] = fh.read()
        self.captured = [*getattr(self, "captured", []), snapshot]
        return source


def lab(tmp_path: Path) -> tuple[CapturingLabHost, str, Repository]:
    clock = FixedClock()
    LabHost.create(tmp_path / "lab-t1", "lab-t1", clock, volume_size=1 << 40)
    host = CapturingLabHost.open(tmp_path / "lab-t1", "lab-t1", clock)
    vm_id = add_vm(host, blocks=48)
    return host, vm_id, Repository.open(tmp_path / "repo", create=True)


def test_an_incremental_reads_only_the_changed_blocks_and_the_metadata_and_restores_byte_identical(tmp_path: Path) -> None:
    host, vm_id, repo = lab(tmp_path)
    full = run_backup(repo, host, vm_id, "incremental")
    # No previous point: a full, and it says why.
    assert full.mode == "full" and "no restore point of this VM" in (full.fallback or "")
    changed = 0
    for block in (3, 17, 40):  # about 5% of the 64 MiB disk, in whole 1 MiB blocks
        host.write_guest_data(vm_id, 0, block * MiB, bytes([block]) * MiB)
        changed += MiB
    inc = run_backup(repo, host, vm_id, "incremental")
    assert inc.mode == "incremental" and inc.whole_reads == [] and inc.files_changed_ranges >= 1
    config_bytes = sum(len(data) for name, data in host.captured[-1].items() if not name.endswith("vhdx"))
    assert inc.read_bytes <= 2 * changed + FIXED + config_bytes, (inc.read_bytes, changed)
    assert inc.read_bytes < full.read_bytes / 4
    out = tmp_path / "out"
    restore_to_directory(repo, inc.point_id, out)
    frozen = host.captured[-1]
    for name, data in frozen.items():
        assert (out / name).read_bytes() == data, name
    # Another tool reads the restored disk as the guest's content: the lab's own reader of the frozen file.
    frozen_copy = tmp_path / "frozen.vhdx"
    frozen_copy.write_bytes(frozen["vm1.vhdx"])
    subprocess.run(["qemu-img", "check", str(out / "vm1.vhdx")], check=True, capture_output=True)
    raw = tmp_path / "disk.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(out / "vm1.vhdx"), str(raw)], check=True, capture_output=True)
    assert raw.read_bytes() == read_logical(frozen_copy)
    assert raw.read_bytes()[17 * MiB : 18 * MiB] == bytes([17]) * MiB


def test_an_invalid_rct_id_reads_the_disk_whole_and_says_why(tmp_path: Path) -> None:
    host, vm_id, repo = lab(tmp_path)
    run_backup(repo, host, vm_id, "full")
    host.write_guest_data(vm_id, 0, 5 * MiB, b"\x09" * 4096)
    for log in (host.root / RCT_DIR).iterdir():
        log.unlink()  # the host forgot its change tracking (as after a VM re-import)
    inc = run_backup(repo, host, vm_id, "incremental")
    assert inc.mode == "incremental"
    assert [w.split(": ")[:2] for w in inc.whole_reads] == [["vm1.vhdx", "rct-invalid"]]
    assert any("vm1.vhdx: rct-invalid" in w and "read whole" in w for w in inc.warnings)
    out = tmp_path / "out"
    restore_to_directory(repo, inc.point_id, out)
    assert (out / "vm1.vhdx").read_bytes() == host.captured[-1]["vm1.vhdx"]


def vhdx_source(path: Path, identity: str, change_id: str | None, ranges: list[tuple[int, int]] | None) -> SourceFile:
    st = path.stat()
    return SourceFile(
        rel_path=path.name,
        size=st.st_size,
        mtime_ns=st.st_mtime_ns + 1,
        identity=identity,
        change_id=change_id,
        opener=lambda: open(path, "rb"),  # noqa: SIM115
        changes=lambda _since: ranges,
        virtual_ranges=True,
        local_path=path,
    )


def parent_point(path: Path, identity: str, change_id: str | None, virtual_size: int | None) -> Manifest:
    size = path.stat().st_size
    entry = FileEntry(path.name, size, 1, identity, change_id, [b"x" * 32] * (-(-size // MiB)))
    vm = {"virtual_sizes": {path.name: virtual_size}} if virtual_size else {}
    return Manifest("p1", datetime(2026, 1, 1, tzinfo=UTC), "h", "v", "vm", "full", MiB, [entry], vm=vm)


def reason(tmp_path: Path, disk: Path, **kw) -> str | None:  # noqa: ANN003
    source = vhdx_source(disk, kw.get("identity", "d1"), kw.get("change_id", "rct:d1:2"), kw.get("ranges", [(0, 4096)]))
    parent = parent_point(disk, kw.get("old_identity", "d1"), kw.get("old_change_id", "rct:d1:1"), kw.get("old_size"))
    (plan,) = plan_files([source], parent, MiB, reuse=True)
    assert plan.how == ("read" if plan.whole_read_reason else "changed-ranges")
    return plan.whole_read_reason


def test_each_whole_read_states_its_reason(tmp_path: Path) -> None:
    disk = tmp_path / "d.vhdx"
    create_disk(disk, SMALL_DISK)
    assert reason(tmp_path, disk) is None  # the ordinary incremental
    assert reason(tmp_path, disk, old_size=SMALL_DISK) is None
    assert "resized" in (reason(tmp_path, disk, old_size=SMALL_DISK // 2) or "")
    assert "resized" in (reason(tmp_path, disk, ranges=[(SMALL_DISK - 10, 4096)]) or "")
    for hostile in ("64", [1], -5, True):  # a damaged manifest's record is ignored, never a crash
        assert reason(tmp_path, disk, old_size=hostile) is None
    assert "disk set changed" in (reason(tmp_path, disk, old_identity="d0") or "")
    assert "no change tracking" in (reason(tmp_path, disk, old_change_id=None) or "")
    assert "does not know what changed" in (reason(tmp_path, disk, ranges=None) or "")
    plain = tmp_path / "plain.vhdx"
    plain.write_bytes(b"not a disk" * 1000)
    assert "not a VHDX" in (reason(tmp_path, plain) or "")
    # A header whose log is not empty: the file needs a log replay first.
    logged = tmp_path / "logged.vhdx"
    create_disk(logged, SMALL_DISK)
    data = bytearray(logged.read_bytes())
    for at in fmt.HEADER_OFFSETS:
        header = fmt.Header.parse(bytes(data[at : at + fmt.HEADER_SIZE]))
        assert header is not None
        raw = dataclasses.replace(header, log_guid=uuid.uuid4()).pack()
        data[at : at + len(raw)] = raw
    logged.write_bytes(bytes(data))
    assert "log" in (reason(tmp_path, logged) or "")


def test_whole_reads_reach_the_backup_result_the_job_result_and_the_audit_log(tmp_path: Path, paths: Paths) -> None:
    host, vm_id, _repo = lab(tmp_path)
    config = Config(
        source=tmp_path / "config.yaml",
        hosts=(HostConfig(name="lab-t1", kind="lab"),),
        repositories=(RepositoryConfig(name="default", path=tmp_path / "core-repo", default=True),),
    )
    core = Core(config, paths, clock=host.store.clock, lab_dir=tmp_path, hosts={"lab-t1": host})
    try:
        core.backups.backup("lab-t1", vm_id, "full", apply_retention=False)
        for log in (host.root / RCT_DIR).iterdir():
            log.unlink()
        result = core.backups.backup("lab-t1", vm_id, "incremental", apply_retention=False)
        for log in (host.root / RCT_DIR).iterdir():
            log.unlink()
        job = core.jobs.wait(core.jobs.submit_backup("lab-t1", vm_id, "incremental").id, 60)
    finally:
        core.close()
    assert result.to_dict()["whole_reads"] == result.whole_reads and len(result.whole_reads) == 1
    # The job's result (what `hvtui backup --json` and the console's job detail show) says it too.
    summary = dict(job.summary or {})
    assert summary["whole_reads"] and "rct-invalid" in summary["whole_reads"][0]
    assert any("rct-invalid" in w for w in summary["warnings"])
    entries = [e for e in AuditLog(paths.audit_log).read() if e["action"] == "backup"]
    assert entries[-2]["args"]["whole_reads"] == result.whole_reads  # the service's backup
    assert entries[-1]["args"]["whole_reads"] == summary["whole_reads"]  # the job's
    assert "rct-invalid" in entries[-1]["args"]["whole_reads"][0]


def test_a_file_new_to_the_vm_is_read_whole_without_a_fallback_and_its_virtual_size_is_kept(tmp_path: Path) -> None:
    disk = tmp_path / "d.vhdx"
    create_disk(disk, SMALL_DISK)
    other = tmp_path / "other.vhdx"
    create_disk(other, SMALL_DISK)
    # A checkpoint's new .avhdx or an added disk: nothing to build on, so no fall back to report.
    (plan,) = plan_files([vhdx_source(disk, "d1", "rct:d1:2", [])], parent_point(other, "d0", "rct:d0:1", None), MiB, True)
    assert plan.how == "read" and plan.whole_read_reason is None and plan.virtual_size == SMALL_DISK
    (full,) = plan_files([vhdx_source(disk, "d1", "rct:d1:2", [])], None, MiB, False)
    assert full.whole_read_reason is None and full.virtual_size == SMALL_DISK


def test_incrementals_across_checkpoints_and_merges_restore_each_frozen_chain(tmp_path: Path) -> None:
    host, vm_id, repo = lab(tmp_path)
    results = [run_backup(repo, host, vm_id, "full")]
    assert repo.load_point(results[0].point_id).vm["virtual_sizes"] == {"vm1.vhdx": SMALL_DISK}
    expected = {results[0].point_id: host.captured[-1]}
    checkpoint = host.create_checkpoint(vm_id, "before patch")
    steps = [
        lambda: host.write_guest_data(vm_id, 0, 9 * MiB + 512, b"\x44" * 70_000),  # into the .avhdx
        lambda: host.write_guest_data(vm_id, 0, 60 * MiB, b"\x45" * 3 * MiB),  # new blocks in the child
        lambda: host.remove_checkpoint(vm_id, checkpoint.id),  # merged into the base disk
        lambda: host.write_guest_data(vm_id, 0, 1 * MiB, b"\x46" * 4096),
    ]
    for step, mode in zip(steps, ("incremental", "incremental", "incremental", "differential"), strict=True):
        step()
        result = run_backup(repo, host, vm_id, mode)
        assert result.mode == mode and result.whole_reads == [], result.whole_reads
        expected[result.point_id] = host.captured[-1]
        results.append(result)
    assert all(r.read_bytes < results[0].read_bytes for r in results[1:3])
    for result in results:
        out = tmp_path / f"out-{result.point_id}"
        restore_to_directory(repo, result.point_id, out)
        for name, data in expected[result.point_id].items():
            assert (out / name).read_bytes() == data, (result.mode, name)


class OpenerOnlyLabHost(LabHost):
    """The lab with its source files offered only through ``open()``, as a remote host's are
    (no ``local_path``): the engine must parse the VHDX through the reader."""

    def open_backup_source(self, vm_id, progress=None, on_checkpoint=None, **options):  # noqa: ANN001, ANN003, ANN201
        source = super().open_backup_source(vm_id, progress, on_checkpoint, **options)
        source.files = [dataclasses.replace(f, local_path=None) for f in source.files]
        return source


def test_a_file_offered_only_through_open_is_mapped_like_a_local_one(tmp_path: Path) -> None:
    clock = FixedClock()
    LabHost.create(tmp_path / "lab-t1", "lab-t1", clock, volume_size=1 << 40)
    host = OpenerOnlyLabHost.open(tmp_path / "lab-t1", "lab-t1", clock)
    vm_id = add_vm(host, blocks=48)
    repo = Repository.open(tmp_path / "repo", create=True)
    full = run_backup(repo, host, vm_id, "full")
    host.write_guest_data(vm_id, 0, 9 * MiB, b"\x07" * MiB)
    inc = run_backup(repo, host, vm_id, "incremental")
    assert inc.whole_reads == [] and inc.files_changed_ranges >= 1
    assert inc.read_bytes < full.read_bytes / 4
