"""`hvtui repo migrate` as the operator meets it (in-process CLI, real lab, real files): refused
read-only and without a confirmation, audited, then a format-1 repository becomes format 2 and
every point restores as before; `repo list` says which repositories are still format 1."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from tui_support import make_app, make_core, screen_text, settle

from hvtui.audit import AuditLog
from hvtui.clock import FixedClock
from hvtui.engine.repository import Repository
from hvtui.tui.screens.vm_detail import VmDetailScreen

sys.path.insert(0, str(Path(__file__).parent))
from test_backup_integrity import backup, estate, hvtui, lab_host  # noqa: E402, F401 - estate is a fixture


def audit_of(estate: dict, action: str) -> list[dict]:  # noqa: F811
    return [e for e in AuditLog(estate["paths"].audit_log).read() if e["action"] == action]


@pytest.mark.parametrize("estate", [1], indirect=True)  # the config entry says `format: 1`
def test_repo_migrate_converts_a_v1_repository_with_a_confirmation_and_an_audit_entry(
    estate: dict, capsys: pytest.CaptureFixture[str], tmp_path: Path  # noqa: F811
) -> None:
    first = backup(estate, capsys, "--mode", "full")["point_id"]
    lab_host(estate).write_guest_data(estate["vm_id"], 0, 0, b"changed after the first point " * 1000)
    second = backup(estate, capsys)["point_id"]
    before = {}
    for point in (first, second):
        code, _, err = hvtui(estate, capsys, "restore", "app01", "--point", point, "--to", str(tmp_path / f"v1-{point}"), "--yes")
        assert code == 0, err
        before[point] = {p.name: p.read_bytes() for p in (tmp_path / f"v1-{point}").rglob("*") if p.is_file()}

    code, out, _ = hvtui(estate, capsys, "repo", "list")
    assert code == 0 and "format 1 (`hvtui repo migrate main` converts it to format 2)" in out

    code, _, err = hvtui(estate, capsys, "--read-only", "repo", "migrate", "main", "--yes")
    assert code == 4 and "read-only" in err
    code, _, err = hvtui(estate, capsys, "repo", "migrate", "main")  # no terminal to ask on
    assert code == 4 and "--yes" in err
    assert [e["result"] for e in audit_of(estate, "repo.migrate")] == ["refused", "refused"]
    assert Repository.open(estate["repo"]).version == 1

    code, out, err = hvtui(estate, capsys, "repo", "migrate", "main", "--yes", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["plan"]["state"] == "copy" and doc["plan"]["points"] == 2
    assert doc["result"]["switched"] and doc["result"]["chunk_files_deleted"] == doc["plan"]["chunk_files"]
    entry = audit_of(estate, "repo.migrate")[-1]
    assert entry["result"] == "ok" and entry["args"]["chunks_copied"] == doc["result"]["chunks_copied"]
    assert Repository.open(estate["repo"]).version == 2

    code, out, _ = hvtui(estate, capsys, "repo", "info", "main")
    assert code == 0 and "format 2" in out and "repo migrate" not in out
    code, out, _ = hvtui(estate, capsys, "points", "--json")
    assert code == 0 and [p["id"] for p in json.loads(out)["points"]] == [first, second]
    for point in (first, second):
        code, _, err = hvtui(estate, capsys, "restore", "app01", "--point", point, "--to", str(tmp_path / f"v2-{point}"), "--yes")
        assert code == 0, err
        after = {p.name: p.read_bytes() for p in (tmp_path / f"v2-{point}").rglob("*") if p.is_file()}
        assert after == before[point]
    code, out, err = hvtui(estate, capsys, "verify")
    assert code == 0, out + err
    assert backup(estate, capsys)["mode"] == "incremental"  # the migrated repository takes new backups
    code, out, _ = hvtui(estate, capsys, "repo", "migrate", "main", "--yes")
    assert code == 0 and "already format 2" in out


async def open_detail(app, pilot, vm) -> VmDetailScreen:  # noqa: ANN001
    app.open_vm(vm.host, vm.id)
    for _ in range(300):
        if isinstance(app.screen, VmDetailScreen) and app.screen.points_loaded:
            break
        await pilot.pause(0.02)
    await settle(pilot)
    assert isinstance(app.screen, VmDetailScreen) and app.screen.points_loaded
    return app.screen


async def test_the_console_says_when_a_vms_points_are_in_a_format_1_repository(fresh_demo_lab: Path, paths) -> None:  # noqa: ANN001
    core = make_core(fresh_demo_lab, paths, clock=FixedClock())
    vm = next(vm for vm in core.inventory.refresh().vms if vm.name == "test01")
    name = core.backups.repository_config(None).name
    Repository.open(core.backups.repository_config(None).path, name, create=True, version=1)  # as an older hvtui made it
    point = core.backups.backup(vm.host, vm.id, "full").point_id
    notice = f"Repository {name} is still format 1: `hvtui repo migrate {name}` converts it to format 2"
    app = make_app(core)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        detail = await open_detail(app, pilot, vm)
        assert [p.id for p in detail.points] == [point]
        assert notice in " ".join(screen_text(app).split())
        app.pop_screen()
        await settle(pilot)
        core.migrations.migrate(name)
        detail = await open_detail(app, pilot, vm)
        assert [p.id for p in detail.points] == [point]
        text = " ".join(screen_text(app).split())
        assert "Restore points (1)" in text and "still format 1" not in text
