"""Which restore points are a VM's (README): its id first; with none under its id, the points of
the same host and VM name under an earlier id are offered as "the same VM?", marked, restorable,
never built on.  A lab reset (or a re-imported VM) gives the VM a new id: the CLI and the
console's detail say the same thing about its old points."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tui_support import make_app, make_core, screen_text, settle

from hvtui.clock import FixedClock, SystemClock
from hvtui.hosts.lab.estate import reset_lab
from hvtui.hosts.lab.host import LabHost
from hvtui.tui.screens.restore_dialog import RestoreDialog
from hvtui.tui.screens.vm_detail import VmDetailScreen

MiB = 1 << 20


def build_host(lab_dir: Path) -> str:
    """lab-a with sql01 (a new id each time it is built) and web01; returns sql01's id."""
    if lab_dir.exists():
        shutil.rmtree(lab_dir)  # the re-import: same host, same name, new id
    host = LabHost.create(lab_dir / "lab-a", "lab-a", SystemClock())
    vm_id = host.add_vm("sql01", state="Off", disk_sizes=(8 * MiB,), fsync=False)
    host.write_guest_data(vm_id, 0, MiB, b"sql page " * 30_000)
    host.add_vm("web01", state="Off", disk_sizes=(8 * MiB,), fsync=False)
    return vm_id


@pytest.fixture
def estate(tmp_path: Path) -> dict:
    config = tmp_path / "config.yaml"
    config.write_text(
        f"hosts:\n  - name: lab-a\n    kind: lab\nrepositories:\n  - name: main\n    path: {tmp_path / 'repo'}\n"
        "    default: true\n"
    )
    return {"root": tmp_path, "lab_dir": tmp_path / "lab", "config": config}


def hvtui(estate: dict, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "hvtui", "--config", str(estate["config"]), "--lab-dir", str(estate["lab_dir"]), *args]
    return subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300)


def test_cli_offers_the_points_of_an_earlier_id_marked_and_never_builds_on_them(estate: dict) -> None:
    old_id = build_host(estate["lab_dir"])
    first = hvtui(estate, "backup", "sql01", "--json")
    assert first.returncode == 0, first.stderr
    old_point = json.loads(first.stdout)["point_id"]
    new_id = build_host(estate["lab_dir"])
    assert new_id != old_id

    # points: the old point, marked with the earlier id, and what that means.
    listed = hvtui(estate, "points", "sql01")
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if old_point in line)
    assert f"same name, earlier VM id {old_id}" in row
    assert f"VM sql01 (id {new_id}) has no restore point under its id" in listed.stdout
    doc = json.loads(hvtui(estate, "points", "sql01", "--json").stdout)
    assert [(p["id"], p["note"]) for p in doc["points"]] == [(old_point, f"same name, earlier VM id {old_id}")]
    assert doc["same_name_earlier_ids"] == [old_id]

    # restore: offered (the latest of the earlier id), said to be of the earlier id.
    out_dir = estate["root"] / "restored"
    restored = hvtui(estate, "restore", "sql01", "--to", str(out_dir), "--yes")
    assert restored.returncode == 0, restored.stderr
    assert f"Point {old_point} is of sql01 under an earlier VM id (same name, earlier VM id {old_id}" in restored.stdout
    assert f"the VM now has id {new_id}" in restored.stdout
    # Over the VM that has the name now: refused, it is not (provably) the same VM.
    in_place = hvtui(estate, "restore", "sql01", "--in-place", "--yes")
    assert in_place.returncode != 0 and "restore it as a new VM" in in_place.stderr

    # backup in auto mode: a full, never an incremental on the earlier id's point, and says why.
    second = hvtui(estate, "backup", "sql01", "--json")
    assert second.returncode == 0, second.stderr
    result = json.loads(second.stdout)
    assert result["mode"] == "full" and result["parent"] is None and result["vm_id"] == new_id
    assert any(f"earlier VM id {old_id}" in w and "not built on" in w for w in result["warnings"])
    third = json.loads(hvtui(estate, "backup", "sql01", "--json").stdout)
    assert third["mode"] == "incremental" and third["parent"] == result["point_id"]  # its own id's point

    # Id first: now the VM has points of its own, those are listed; the earlier ones are named.
    listed = hvtui(estate, "points", "sql01")
    assert old_point not in listed.stdout.replace(f"same name, earlier VM id {old_id}", "")
    assert result["point_id"] in listed.stdout and third["point_id"] in listed.stdout
    assert f"Not listed: 1 point of the same name, earlier VM id {old_id}" in listed.stdout
    # --point still restores the earlier one on purpose, marked.
    again = hvtui(estate, "restore", "sql01", "--point", old_point, "--to", str(out_dir / "again"), "--yes")
    assert again.returncode == 0, again.stderr
    assert f"same name, earlier VM id {old_id}" in again.stdout
    # And by the old id, as before.
    assert old_point in hvtui(estate, "points", old_id).stdout


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_detail_after_a_lab_reset_offers_the_points_of_the_earlier_id(
    fresh_demo_lab: Path, paths, size: tuple[int, int]
) -> None:
    clock = FixedClock()
    core = make_core(fresh_demo_lab, paths, clock=clock)
    old = next(vm for vm in core.inventory.refresh().vms if vm.name == "test01")
    point = core.backups.backup(old.host, old.id, "full").point_id
    reset_lab(fresh_demo_lab, clock)  # the rebuilt VMs get new ids
    core = make_core(fresh_demo_lab, paths, clock=clock)
    new = next(vm for vm in core.inventory.refresh().vms if vm.name == "test01")
    assert new.id != old.id and new.host == old.host
    app = make_app(core)
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        app.open_vm(new.host, new.id)
        for _ in range(200):
            if isinstance(app.screen, VmDetailScreen) and app.screen.points_loaded:
                break
            await pilot.pause(0.02)
        await settle(pilot)
        detail = app.screen
        assert isinstance(detail, VmDetailScreen)
        assert [p.id for p in detail.points] == [point]
        text = " ".join(screen_text(app).split())
        assert "none under this VM's id; 1 point of the same name, earlier VM id" in text
        assert "the same VM?" in text
        row = next(line for line in screen_text(app).splitlines() if point in line)
        assert "(earlier id)" in row
        # Offered for restore: as a new VM or to a folder (in place is not this VM).
        await pilot.press("tab")
        await pilot.press("t")
        for _ in range(200):
            if isinstance(app.screen, RestoreDialog):
                break
            await pilot.pause(0.02)
        assert isinstance(app.screen, RestoreDialog)
        assert app.screen.point.id == point


async def test_detail_names_the_earlier_ids_points_once_the_vm_has_its_own(fresh_demo_lab: Path, paths) -> None:
    clock = FixedClock()
    core = make_core(fresh_demo_lab, paths, clock=clock)
    old = next(vm for vm in core.inventory.refresh().vms if vm.name == "test01")
    earlier = core.backups.backup(old.host, old.id, "full").point_id
    reset_lab(fresh_demo_lab, clock)
    core = make_core(fresh_demo_lab, paths, clock=clock)
    new = next(vm for vm in core.inventory.refresh().vms if vm.name == "test01")
    clock.advance(seconds=60)
    result = core.backups.backup(new.host, new.id)  # auto: a full, not built on the earlier id's point
    assert result.mode == "full" and result.parent is None
    assert any(f"earlier VM id {old.id}" in w for w in result.warnings)
    app = make_app(core)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        app.open_vm(new.host, new.id)
        for _ in range(200):
            if isinstance(app.screen, VmDetailScreen) and app.screen.points_loaded:
                break
            await pilot.pause(0.02)
        await settle(pilot)
        detail = app.screen
        assert isinstance(detail, VmDetailScreen)
        assert [p.id for p in detail.points] == [result.point_id]  # id first
        text = " ".join(screen_text(app).split())
        assert f"Also 1 point of the same name, earlier VM id {old.id}: not built on" in text
        assert earlier not in text
