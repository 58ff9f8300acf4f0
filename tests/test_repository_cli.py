"""A damaged repository as the operator meets it on the CLI (in-process, real lab, real files):
a lost or damaged config.json is named as damage, and `hvtui repair-repository` rebuilds it."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hvtui.audit import AuditLog
from hvtui.engine.fsutil import hostname
from hvtui.engine.repository import Repository

sys.path.insert(0, str(Path(__file__).parent))
from test_backup_integrity import backup, estate, hvtui  # noqa: E402, F401 - estate is a fixture


def audit_of(estate: dict, action: str) -> list[dict]:  # noqa: F811
    return [e for e in AuditLog(estate["paths"].audit_log).read() if e["action"] == action]


@pytest.mark.parametrize("damage", ["missing", "garbage"])
def test_a_repository_that_lost_its_config_is_damaged_and_repair_rebuilds_it(
    estate: dict, capsys: pytest.CaptureFixture[str], damage: str  # noqa: F811
) -> None:
    points = [backup(estate, capsys, "--mode", "full")["point_id"] for _ in range(3)]
    chunk_size = Repository.open(estate["repo"]).chunk_size
    config = estate["repo"] / "config.json"
    if damage == "missing":
        config.unlink()
    else:
        config.write_text('{"format": "hvtui-repo')

    code, out, err = hvtui(estate, capsys, "points")
    assert code == 3 and "No restore points" not in out
    assert "damaged" in err and "3 restore point manifest(s)" in err and "hvtui repair-repository" in err
    code, out, _ = hvtui(estate, capsys, "points", "--json")
    doc = json.loads(out)
    assert code == 3 and doc["ok"] is False and doc["exit_code"] == 3 and doc["unreadable"][0]["repository"] == "main"
    code, out, err = hvtui(estate, capsys, "verify")
    assert code == 3 and "does not exist" not in err and "hvtui repair-repository" in err
    code, _, err = hvtui(estate, capsys, "backup", "app01")
    assert code != 0 and "repair-repository" in err
    assert sorted(p.name for p in (estate["repo"] / "points").iterdir()) == sorted(f"{p}.json" for p in points)

    # The repair is a change: refused read-only, refused without a confirmation, audited.
    code, _, err = hvtui(estate, capsys, "--read-only", "repair-repository", "--yes")
    assert code == 4 and "read-only" in err
    code, _, err = hvtui(estate, capsys, "repair-repository")  # no terminal to ask on
    assert code == 4 and "--yes" in err
    assert not (config.exists() and damage == "missing")
    assert [e["result"] for e in audit_of(estate, "repair-repository")] == ["refused", "refused"]

    code, out, err = hvtui(estate, capsys, "repair-repository", "--yes", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["chunk_size"] == chunk_size and doc["manifests"] == 3 and doc["chunks"] > 0
    if damage == "garbage":
        assert doc["kept_as"] and (estate["repo"] / doc["kept_as"]).read_text() == '{"format": "hvtui-repo'
    else:
        assert doc["kept_as"] is None
    assert audit_of(estate, "repair-repository")[-1]["result"] == "ok"

    code, out, _ = hvtui(estate, capsys, "points", "--json")
    assert code == 0 and [p["id"] for p in json.loads(out)["points"]] == points
    code, out, err = hvtui(estate, capsys, "verify")
    assert code == 0, out + err
    assert backup(estate, capsys)["mode"] == "incremental"  # the repaired repository takes new backups
    code, _, err = hvtui(estate, capsys, "repair-repository", "--yes")
    assert code == 1 and "nothing to repair" in err


def test_a_cleared_stale_lock_is_named_on_the_command_line(
    estate: dict, capsys: pytest.CaptureFixture[str]  # noqa: F811
) -> None:
    backup(estate, capsys)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (estate["repo"] / "locks" / "aaaaaaaaaaaaaaaa.json").write_text(
        json.dumps(
            {"id": "aaaaaaaaaaaaaaaa", "kind": "shared", "operation": "backup", "detail": "lab-a/app01",
             "pid": dead.pid, "hostname": hostname(), "boot_id": None, "process_start": None,
             "created": time.time() - 600, "refreshed": time.time() - 600}
        )
    )  # fmt: skip
    code, _, err = hvtui(estate, capsys, "verify", "--quick")
    assert code == 0
    assert f"cleared the stale lock of backup lab-a/app01 (pid {dead.pid} on {hostname()}, taken 10 min ago" in err
