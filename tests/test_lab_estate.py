"""Lab estates (demo, bench, scale), lab directory management and `hvtui lab`."""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from hvtui.cli import main
from hvtui.clock import FixedClock
from hvtui.errors import RefusedError
from hvtui.hosts.lab import estate
from hvtui.hosts.lab.disk import DiskFile
from hvtui.hosts.lab.estate import LabError, ensure_lab, init_lab, lab_host_names, lab_status, reset_lab
from hvtui.hosts.lab.host import LabHost
from hvtui.hosts.lab.state import FileLock
from hvtui.model import VM

# The demo estate with a fifth of its data: same structure. Not smaller: every VHDX file has a
# fixed 4 MiB (headers, log, metadata, BAT) that does not scale, and below about 0.15 app01's nine
# near-empty checkpoint files outweigh build01's scaled data.
DEMO_SIZE = 0.2


@pytest.fixture(scope="module")
def demo_lab(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, FixedClock]:
    clock = FixedClock()
    lab_dir = tmp_path_factory.mktemp("demo") / "lab"
    init_lab(lab_dir, "demo", clock, size=DEMO_SIZE)
    return lab_dir, clock


def demo_vms(lab_dir: Path, clock: FixedClock) -> dict[str, tuple[LabHost, VM]]:
    out = {}
    for name in lab_host_names(lab_dir):
        host = LabHost.open(lab_dir / name, name, clock)
        for vm in host.inventory(10).vms:
            out[vm.name] = (host, vm)
    return out


def test_demo_estate_contains_every_built_in_problem(demo_lab: tuple[Path, FixedClock]) -> None:
    lab_dir, clock = demo_lab
    now = clock.now()
    assert lab_host_names(lab_dir) == ["lab-hv01", "lab-hv02", "lab-hv03"]
    vms = demo_vms(lab_dir, clock)
    assert len(vms) >= 12
    assert {LabHost.open(lab_dir / "lab-hv01", "lab-hv01", clock).group} == {"prod"}

    healthy = [vm for _, vm in vms.values() if not vm.checkpoints and vm.chain_depth == 0 and not vm.stray_disk_files]
    assert len(healthy) >= 3
    # A user checkpoint forgotten for weeks.
    assert any(cp.type in ("Standard", "Production") and now - cp.created > timedelta(days=14) for _, vm in vms.values() for cp in vm.checkpoints)
    # A chain eight or more deep.
    assert max(vm.chain_depth for _, vm in vms.values()) >= 8
    # A leftover Recovery checkpoint older than a day.
    assert any(cp.type == "Recovery" and now - cp.created > timedelta(days=1) for _, vm in vms.values() for cp in vm.checkpoints)
    # A stray .avhdx that belongs to no chain.
    strays = [f for _, vm in vms.values() for f in vm.stray_disk_files]
    assert strays and all(f.endswith(".avhdx") and Path(f).exists() for f in strays)
    # A VM running on an .avhdx with no checkpoint at all (a failed merge).
    assert any(not vm.checkpoints and vm.disks and vm.disks[0].path.endswith(".avhdx") for _, vm in vms.values())
    # Off, Saved, Paused and Running VMs.
    assert {vm.state for _, vm in vms.values()} >= {"Running", "Off", "Saved", "Paused"}
    # Replica recovery points, which must raise nothing.
    assert any(cp.type in ("Replica", "AppConsistentReplica") for _, vm in vms.values() for cp in vm.checkpoints)
    # A user checkpoint about four days old (a warning, not yet critical).
    assert any(timedelta(days=3) < now - cp.created < timedelta(days=7) and cp.type in ("Standard", "Production") for _, vm in vms.values() for cp in vm.checkpoints)
    # The VM with the most differencing data has far more than any other at full size
    # (scaled here), and its volume is not the nearly full one.
    biggest = max(vms.values(), key=lambda hv: hv[1].differencing_bytes)[1]
    assert biggest.name == "build01" and biggest.differencing_bytes >= 250 * DEMO_SIZE * (1 << 20)
    # A volume so full that the pending merge does not fit.
    host3, fs02 = vms["fs02"]
    free = host3.inventory(5).facts.volumes[0].free
    assert fs02.checkpoints and fs02.disks[0].chain[0].file_size > free
    # Sizes, paths and times are real.
    for host, vm in vms.values():
        for disk in vm.disks:
            for link in disk.chain:
                assert Path(link.path).is_file() and link.size > link.file_size > 0
        assert vm.path == str(host.root / "Virtual Machines" / vm.name)
        assert vm.uptime_seconds > 0 if vm.state in ("Running", "Paused") else vm.uptime_seconds == 0


def test_ensure_lab_creates_once_and_is_a_cheap_no_op_after(tmp_path: Path) -> None:
    lab_dir = tmp_path / "lab"
    clock = FixedClock()
    ensure_lab(lab_dir, "scale", clock, size=0.01)
    names = lab_host_names(lab_dir)
    assert names and lab_status(lab_dir)["profile"] == "scale"
    marker = lab_dir / names[0] / "host.json"
    before = marker.stat().st_mtime_ns
    ensure_lab(lab_dir, "demo", clock)  # a full demo build would change the hosts: nothing happens
    assert lab_host_names(lab_dir) == names and marker.stat().st_mtime_ns == before


def test_init_refuses_existing_lab_without_force_and_replaces_it_with(tmp_path: Path) -> None:
    lab_dir = tmp_path / "lab"
    clock = FixedClock()
    init_lab(lab_dir, "bench", clock, size=0.004)
    with pytest.raises(RefusedError, match="a lab already exists at .* use --force"):
        init_lab(lab_dir, "demo", clock, size=DEMO_SIZE)
    status = init_lab(lab_dir, "demo", clock, force=True, size=DEMO_SIZE)
    assert status["profile"] == "demo" and [h["name"] for h in status["hosts"]] == ["lab-hv01", "lab-hv02", "lab-hv03"]
    assert not list(tmp_path.glob(".lab.*-*"))  # no build or old directories left
    reset = reset_lab(lab_dir, clock)
    assert reset["profile"] == "demo" and reset["vms"] == status["vms"]


def test_init_refuses_a_directory_that_is_not_a_lab(tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("do not delete")
    with pytest.raises(Exception, match="not a lab directory"):
        init_lab(precious, "demo", FixedClock(), force=True, size=DEMO_SIZE)
    assert (precious / "thesis.tex").read_text() == "do not delete"


def test_a_lab_larger_than_the_free_space_is_refused_before_anything_is_written(tmp_path: Path, capsys) -> None:
    lab_dir = tmp_path / "lab"
    # A size no disk has: the check against the real free space refuses it up front.
    with pytest.raises(LabError, match=r"not enough disk space to build the demo lab at .*lab: it needs about .*, .* is free there \(nothing was left behind\)\. .*lab\.dir in the config file or --lab-dir"):
        init_lab(lab_dir, "demo", FixedClock(), size=1e9)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lab.lock"]


def test_the_disk_filling_up_midway_keeps_the_old_lab(tmp_path: Path) -> None:
    lab_dir = tmp_path / "lab"
    clock = FixedClock()
    init_lab(lab_dir, "demo", clock, size=DEMO_SIZE)
    before = lab_status(lab_dir)
    writes = 0
    real_pwrite = os.pwrite

    def pwrite_until_full(fd: int, data: bytes, offset: int) -> int:  # a disk that fills up part-way through
        nonlocal writes
        writes += 1
        if writes > 50:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_pwrite(fd, data, offset)

    with pytest.MonkeyPatch.context() as disk, pytest.raises(LabError, match=r"the disk filled up while building the demo lab at .* \(the lab there is unchanged\)"):
        disk.setattr(os, "pwrite", pwrite_until_full)
        init_lab(lab_dir, "demo", clock, force=True, size=DEMO_SIZE)
    assert writes > 50
    assert lab_status(lab_dir) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lab.lock", "lab"]  # the half-built copy is gone


@pytest.mark.usefixtures("restore_logging")  # main() sets up logging
def test_first_use_names_a_full_disk_instead_of_a_traceback(tmp_path: Path, monkeypatch, capsys) -> None:
    # The lab a newcomer gets is made on first use; a lab bigger than any disk stands for a disk too small.
    monkeypatch.setitem(estate.PROFILE_DISK_BYTES, "demo", (1 << 62, 0))
    assert main(["inventory", "--lab-dir", str(tmp_path / "lab")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("hvtui: ") and "not enough disk space to build the demo lab" in err and "Traceback" not in err


def test_a_build_killed_midway_leaves_nothing_behind_once_the_lab_is_next_used(tmp_path: Path) -> None:
    # A real build in a child process, killed with SIGKILL while it writes (an SSH session dropped).
    lab_dir = tmp_path / "lab"
    script = (
        "from pathlib import Path\n"
        "from hvtui.clock import FixedClock\n"
        "from hvtui.hosts.lab.estate import ensure_lab\n"
        f"ensure_lab(Path({str(lab_dir)!r}), 'demo', FixedClock())\n"  # the full demo: about 2 s to catch it in
    )
    child = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 60
        while not any(p.is_dir() and any(p.iterdir()) for p in tmp_path.glob(".lab.new-*")):
            assert child.poll() is None and time.monotonic() < deadline, "the child never started building"
            time.sleep(0.02)
    finally:
        child.kill()
        child.wait(30)
    assert child.returncode == -signal.SIGKILL and not lab_dir.exists()
    assert list(tmp_path.glob(".lab.new-*"))  # the half-built copy the next run must clear

    ensure_lab(lab_dir, "demo", FixedClock(), size=DEMO_SIZE)
    assert lab_host_names(lab_dir) == ["lab-hv01", "lab-hv02", "lab-hv03"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lab.lock", "lab"]


def test_a_lab_moved_aside_by_a_killed_rebuild_is_put_back(tmp_path: Path) -> None:
    lab_dir = tmp_path / "lab"
    init_lab(lab_dir, "demo", FixedClock(), size=DEMO_SIZE)
    before = lab_status(lab_dir)
    (lab_dir / "notes.txt").write_text("the user's own lab")  # a rebuilt lab would not have it
    # What _build_lab leaves when killed between moving the old lab aside and moving the new one in.
    os.rename(lab_dir, tmp_path / ".lab.old-999-1")
    (tmp_path / ".lab.new-999-1").mkdir()
    ensure_lab(lab_dir, "demo", FixedClock(), size=DEMO_SIZE)
    assert lab_status(lab_dir) == before and (lab_dir / "notes.txt").exists()  # the user's lab, not a new one
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lab.lock", "lab"]


def test_lab_init_without_force_keeps_a_lab_put_back_from_a_killed_rebuild(tmp_path: Path) -> None:
    lab_dir = tmp_path / "lab"
    init_lab(lab_dir, "demo", FixedClock(), size=DEMO_SIZE)
    (lab_dir / "notes.txt").write_text("the user's own lab")
    os.rename(lab_dir, tmp_path / ".lab.old-999-1")  # a rebuild killed between its two renames
    with pytest.raises(RefusedError, match="a lab already exists .* use --force"):
        init_lab(lab_dir, "demo", FixedClock(), size=DEMO_SIZE)
    assert (lab_dir / "notes.txt").exists()


def test_a_lab_in_use_clears_a_half_built_copy_left_by_a_killed_rebuild(tmp_path: Path) -> None:
    lab_dir = tmp_path / "lab"
    init_lab(lab_dir, "demo", FixedClock(), size=DEMO_SIZE)
    half_built = tmp_path / ".lab.new-999-1"
    shutil.copytree(lab_dir, half_built)  # `lab init --force` killed midway leaves a copy like this
    ensure_lab(lab_dir, "demo", FixedClock())  # what every start of hvtui on the lab does
    assert not half_built.exists() and lab_host_names(lab_dir)


@pytest.mark.usefixtures("restore_logging")  # main() sets up logging
def test_lab_status_and_reset_find_a_lab_a_killed_rebuild_moved_aside(tmp_path: Path, capsys) -> None:
    lab_dir = tmp_path / "lab"
    init_lab(lab_dir, "demo", FixedClock(), size=DEMO_SIZE)
    os.rename(lab_dir, tmp_path / ".lab.old-999-1")
    assert main(["lab", "status", "--lab-dir", str(lab_dir)]) == 0
    assert "no lab here" not in capsys.readouterr().out and lab_host_names(lab_dir)
    os.rename(lab_dir, tmp_path / ".lab.old-999-2")
    assert main(["lab", "reset", "--yes", "--lab-dir", str(lab_dir)]) == 0
    assert lab_host_names(lab_dir) and not list(tmp_path.glob(".lab.old-*"))


def test_a_lab_in_use_leaves_a_running_builds_copy_alone(tmp_path: Path) -> None:
    lab_dir = tmp_path / "lab"
    init_lab(lab_dir, "demo", FixedClock(), size=DEMO_SIZE)
    building = tmp_path / ".lab.new-999-1"
    building.mkdir()
    lock = FileLock(tmp_path / ".lab.lock")
    assert lock.try_acquire()  # a rebuild is running in another process
    try:
        ensure_lab(lab_dir, "demo", FixedClock())
        assert building.exists()
    finally:
        lock.release()


def test_bench_profile_has_large_sparse_disks_of_mixed_data(tmp_path: Path) -> None:
    lab_dir = tmp_path / "lab"
    clock = FixedClock()
    init_lab(lab_dir, "bench", clock, size=0.02)  # 2 % of 1.5 GiB
    host = LabHost.open(lab_dir / "lab-bench", "lab-bench", clock)
    vms = {vm.name: vm for vm in host.inventory(5).vms}
    disk = vms["bench01"].disks[0].chain[0]
    assert disk.size >= 8 << 30 and disk.file_size < disk.size // 100
    with DiskFile(Path(disk.path)) as f:
        present = f.present_blocks()
        kinds = {"zero": 0, "text": 0, "random": 0}
        for index in present:
            block = f.read_block(index)
            assert block is not None
            if block == bytes(len(block)):
                kinds["zero"] += 1
            elif block[:4096].count(b" ") > 200:
                kinds["text"] += 1
            else:
                kinds["random"] += 1
    assert len(present) >= 25 and all(kinds.values()), kinds
    assert present[-1] - present[0] + 1 > len(present)  # holes between the data runs
    assert vms["bench02"].checkpoints and vms["bench02"].state == "Running"


def test_scale_profile_small_size(tmp_path: Path) -> None:
    lab_dir = tmp_path / "lab"
    clock = FixedClock()
    status = init_lab(lab_dir, "scale", clock, size=0.02)  # 100 VMs
    assert status["vms"] == 100 and len(status["hosts"]) >= 2
    total = 0
    for name in lab_host_names(lab_dir):
        vms = LabHost.open(lab_dir / name, name, clock).inventory(5).vms
        total += len(vms)
        assert all(vm.disks for vm in vms)
    assert total == 100


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str], stdin: str | None = None, monkeypatch=None) -> tuple[int, str, str]:
    if stdin is not None and monkeypatch is not None:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_init_status_reset(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    lab = str(tmp_path / "lab")
    code, out, _ = run_cli(["lab", "status", "--lab-dir", lab], capsys)
    assert code == 0 and "no lab here: run `hvtui lab init`" in out
    code, out, _ = run_cli(["lab", "init", "--profile", "bench", "--size", "0.004", "--lab-dir", lab], capsys)
    assert code == 0 and "created the bench lab" in out and "lab-bench" in out
    code, _, err = run_cli(["lab", "init", "--lab-dir", lab], capsys)
    assert code == 4 and "a lab already exists" in err and "--force" in err
    code, out, _ = run_cli(["lab", "status", "--json", "--lab-dir", lab], capsys)
    status = json.loads(out)
    assert code == 0 and status["profile"] == "bench" and status["vms"] == 2
    # Reset asks first; without a terminal it needs --yes.
    code, _, err = run_cli(["lab", "reset", "--lab-dir", lab], capsys, stdin="", monkeypatch=monkeypatch)
    assert code == 4 and "--yes" in err
    monkeypatch.setattr("sys.stdin.isatty", lambda: True, raising=False)
    monkeypatch.setattr("builtins.input", lambda _prompt: "n")
    code, out, _ = run_cli(["lab", "reset", "--lab-dir", lab], capsys)
    assert code == 1 and "not reset" in out
    state = tmp_path / "lab" / "lab-bench" / "host.json"
    before = json.loads(state.read_text())["vms"].keys()
    code, out, _ = run_cli(["lab", "reset", "--yes", "--lab-dir", lab], capsys)
    assert code == 0 and "reset the bench lab" in out
    info = json.loads((tmp_path / "lab" / "lab.json").read_text())
    assert info["profile"] == "bench" and info["size"] == 0.004  # the same profile and size
    assert json.loads(state.read_text())["vms"].keys().isdisjoint(before)  # but new VMs


def test_cli_status_fails_when_a_host_is_unreadable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lab = tmp_path / "lab"
    assert run_cli(["lab", "init", "--profile", "bench", "--size", "0.004", "--lab-dir", str(lab)], capsys)[0] == 0
    (lab / "lab-bench" / "host.json").write_text("{garbage", encoding="utf-8")
    code, out, _ = run_cli(["lab", "status", "--lab-dir", str(lab)], capsys)
    assert code == 1  # a script must see it, as `hvtui inventory` reports it
    assert "lab-bench" in out and "error:" in out
    code, out, _ = run_cli(["lab", "status", "--json", "--lab-dir", str(lab)], capsys)
    assert code == 1 and "error" in json.loads(out)["hosts"][0]


def test_a_smaller_demo_has_the_same_vms_checkpoints_and_findings(shared_demo_lab: Path, fresh_demo_lab: Path, paths) -> None:
    # The console tests run on a tenth of the demo's data (conftest.FRESH_DEMO_SIZE): only the bytes may differ.
    from hvtui.config import Config
    from hvtui.core import Core
    from hvtui.policy import evaluate

    def picture(lab: Path) -> tuple[list, set]:
        core = Core(Config.lab_default(paths), paths, clock=FixedClock(), lab_dir=lab)
        inventory = core.inventory.refresh()
        vms = sorted(
            (vm.host, vm.name, vm.state, vm.chain_depth, tuple((cp.name, cp.type, cp.created) for cp in vm.checkpoints))
            for vm in inventory.vms
        )
        findings = {(f.host, f.vm_name, f.rule, f.severity) for f in evaluate(inventory, core.config.policy)}
        return vms, findings

    full_vms, full_findings = picture(shared_demo_lab)
    small_vms, small_findings = picture(fresh_demo_lab)
    assert len(full_vms) >= 12 and full_findings
    assert small_vms == full_vms
    assert small_findings == full_findings
