"""`hvtui change ...` through ``hvtui.cli.main`` on a real lab estate (and once in a real
subprocess): exit codes, --json, confirmations naming every VM and what is lost, --yes,
refusals without a terminal and in read-only mode, audit entries carrying the window's name."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from changes_support import build_estate, checkpoint_names, config_text

from hvtui.audit import AuditLog
from hvtui.cli import main
from hvtui.paths import Paths

NAME = "pre-patch-KB5031364"


class Terminal(io.StringIO):
    """Standard input that claims to be a terminal, with the user's answer queued."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
def estate(tmp_path: Path) -> tuple[Path, dict[str, tuple[str, str]]]:
    vms = build_estate(tmp_path)
    config = tmp_path / "config.yaml"
    config.write_text(config_text(tmp_path))
    return config, vms


def change(config: Path, *argv: str) -> int:
    return main(["--config", str(config), "change", *argv])


def window_audit(paths: Paths) -> list[tuple[str, str | None, str]]:
    return [(e["action"], e["vm"], e["result"]) for e in AuditLog(paths.audit_log).read() if e["args"].get("window") == NAME]


def test_open_list_show_and_a_real_subprocess_sees_the_window(estate, tmp_path: Path, paths: Paths, capsys) -> None:
    config, vms = estate
    assert change(config, "open", NAME, "--vm", "web1", "--vm", "app1", "--ticket", "CHG-7", "--type", "production") == 0
    out = capsys.readouterr().out
    assert "ok       lab-a/web1: checkpoint 'pre-patch-KB5031364'" in out
    assert f"window {NAME} (ticket CHG-7): checkpointed 2 of 2 VMs." in out
    assert checkpoint_names(tmp_path, *vms["app1"]) == [NAME]

    assert change(config, "list") == 0
    listed = capsys.readouterr().out
    assert f"{NAME}  ticket CHG-7  2 VMs  Production" in listed and "open, 2 of 2 VMs hold a checkpoint" in listed
    assert change(config, "show", NAME) == 0
    shown = capsys.readouterr().out
    assert "lab-b/app1: open (checkpoint " in shown and "remaining: roll back, promote or discard" in shown

    # Another process (the console, cron) reads the same windows.
    result = subprocess.run(
        [sys.executable, "-m", "hvtui", "--config", str(config), "change", "list", "--json"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (window,) = json.loads(result.stdout)["windows"]
    assert window["name"] == NAME and window["open"] and window["ticket"] == "CHG-7"
    assert sorted(vm["vm_name"] for vm in window["vms"]) == ["app1", "web1"]


def test_closing_steps_ask_and_are_refused_without_a_terminal(estate, tmp_path: Path, paths: Paths, monkeypatch, capsys) -> None:
    config, vms = estate
    assert change(config, "open", NAME, "--host", "lab-a") == 0
    capsys.readouterr()

    assert change(config, "rollback", NAME, "--vm", "web1") == 4  # no terminal, no --yes
    captured = capsys.readouterr()
    assert f"Roll back 1 VM of window {NAME} to its checkpoint {NAME!r}. Each VM's state since is LOST:" in captured.out
    assert "lab-a/web1: now Off;" in captured.out and "--yes" in captured.err

    monkeypatch.setattr("sys.stdin", Terminal("\n"))  # the user just presses enter: No
    assert change(config, "discard", NAME) == 1
    out = capsys.readouterr().out
    for name in ("web1", "web2", "sql1"):
        assert f"lab-a/{name}: about " in out
    assert "WITHOUT a backup" in out and "Not confirmed: nothing changed." in out
    assert all(checkpoint_names(tmp_path, *vms[n]) == [NAME] for n in ("web1", "web2", "sql1"))
    audit = window_audit(paths)
    assert audit[-4] == ("change.rollback", "web1", "refused")
    assert sorted(audit[-3:]) == [("change.discard", n, "declined") for n in ("sql1", "web1", "web2")]

    assert change(config, "--read-only", "discard", NAME, "--yes") == 4
    assert "refused: discard of window" in capsys.readouterr().err
    assert sorted(window_audit(paths)[-3:]) == [("change.discard", n, "refused") for n in ("sql1", "web1", "web2")]
    assert all(checkpoint_names(tmp_path, *vms[n]) == [NAME] for n in ("web1", "web2", "sql1"))


def test_rollback_then_promote_with_json(estate, tmp_path: Path, paths: Paths, capsys) -> None:
    config, vms = estate
    assert change(config, "open", NAME, "--vm", "web1", "--vm", "web2", "--vm", "app2") == 0
    assert change(config, "rollback", NAME, "--vm", "web1", "--yes") == 0
    assert "ok       lab-a/web1: rolled back" in capsys.readouterr().out

    assert change(config, "promote", NAME, "--vm", "web2", "--vm", "lab-b/app2", "--yes", "--json") == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert doc["ok"] and doc["exit_code"] == 0
    assert [(o["vm"], o["ok"]) for o in doc["outcomes"]] == [("web2", True), ("app2", True)]
    assert "Promote 2 VMs of window" in captured.err  # the plan, kept off the JSON on stdout
    states = {vm["vm_name"]: vm["state"] for vm in doc["window"]["vms"]}
    assert states == {"web1": "rolled back", "web2": "promoted", "app2": "promoted"}
    assert checkpoint_names(tmp_path, *vms["web2"]) == [] and checkpoint_names(tmp_path, *vms["web1"]) == [NAME]
    audit = window_audit(paths)
    assert ("change.promote", "web2", "ok") in audit and ("checkpoint.remove", "app2", "ok") in audit


def test_a_failed_backup_exits_1_and_keeps_the_checkpoint(estate, tmp_path: Path, paths: Paths, capsys) -> None:
    config, vms = estate
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x\n")
    config.write_text(config_text(tmp_path).replace(str(tmp_path / "repo"), str(blocker / "repo")))
    assert change(config, "open", NAME, "--vm", "web1") == 0
    assert change(config, "promote", NAME, "--yes") == 1
    captured = capsys.readouterr()
    assert "FAILED   lab-a/web1: backup failed, checkpoint kept:" in captured.out
    assert checkpoint_names(tmp_path, *vms["web1"]) == [NAME]


def test_usage_errors(estate, capsys) -> None:
    config, _ = estate
    assert change(config, "show", "nope") == 2
    assert "no change window named 'nope'" in capsys.readouterr().err
    assert change(config, "open", NAME) == 2
    assert "name the VMs" in capsys.readouterr().err
    assert change(config, "open", NAME, "--group", "none-such") == 2
    capsys.readouterr()
    assert change(config, "list", "--json") == 0
    assert json.loads(capsys.readouterr().out) == {"ok": True, "windows": []}


def test_check_reports_the_open_window_instead_of_checkpoint_age_until_it_is_closed(estate, tmp_path: Path, paths: Paths, capsys) -> None:
    from datetime import UTC, datetime, timedelta

    from changes_support import lab

    config, vms = estate
    assert change(config, "open", NAME, "--vm", "web1", "--vm", "app1", "--ticket", "CHG-7") == 0
    three_days_ago = datetime.now(UTC) - timedelta(days=3, minutes=1)
    for name in ("web1", "app1"):
        host, vm_id = vms[name]
        (cp,) = lab(tmp_path, host).vm(vm_id).checkpoints
        lab(tmp_path, host).backdate_checkpoint(vm_id, cp.id, three_days_ago)
    capsys.readouterr()

    def findings() -> list[dict]:
        capsys.readouterr()  # the previous step's output
        main(["--config", str(config), "check", "--json"])
        return [f for f in json.loads(capsys.readouterr().out)["findings"] if f["rule"] in ("change-window-open", "checkpoint-age")]

    both = sorted("/".join(vms[name]) for name in ("web1", "app1"))
    # ONE finding for the window (not one per VM), naming both VMs, on both hosts.
    (opened,) = findings()
    assert (opened["rule"], opened["vm_name"], opened["severity"], opened["vm_keys"]) == ("change-window-open", None, "WARN", both)
    assert opened["host"] == ", ".join(sorted({vms["web1"][0], vms["app1"][0]}))
    assert opened["message"] == f"window {NAME} (ticket CHG-7): 2 VMs, 3 days open (warn at 2 days)"
    main(["--config", str(config), "check"])
    lines = [line for line in capsys.readouterr().out.splitlines() if "change-window-open" in line]
    assert lines == [f"[WARN] {opened['host']} change-window-open: {opened['message']}"]

    assert change(config, "rollback", NAME, "--vm", "app1", "--yes") == 0  # still held: still open
    assert [(f["rule"], f["vm_keys"]) for f in findings()] == [("change-window-open", both)]
    assert change(config, "discard", NAME, "--vm", "web1", "--yes") == 0
    # A window down to one VM names that VM (enter opens it in the findings view).
    assert [(f["rule"], f["vm_name"]) for f in findings()] == [("change-window-open", "app1")]
    assert change(config, "discard", NAME, "--yes") == 0
    assert findings() == []


def test_open_on_a_group_and_on_a_host(estate, tmp_path: Path, capsys) -> None:
    config, vms = estate
    config.write_text(config_text(tmp_path).replace("  - name: lab-b\n    kind: lab\n", "  - name: lab-b\n    kind: lab\n    group: prod\n"))
    assert change(config, "open", NAME, "--group", "prod", "--json") == 0
    doc = json.loads(capsys.readouterr().out)
    assert sorted(o["vm"] for o in doc["outcomes"]) == ["app1", "app2"] and doc["exit_code"] == 0
    assert checkpoint_names(tmp_path, *vms["app2"]) == [NAME] and checkpoint_names(tmp_path, *vms["web1"]) == []
    assert change(config, "open", "second", "--host", "lab-a", "--vm", "sql1") == 0
    assert checkpoint_names(tmp_path, *vms["sql1"]) == ["second"] and checkpoint_names(tmp_path, *vms["web2"]) == []
