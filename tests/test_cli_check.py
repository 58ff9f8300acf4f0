"""`hvtui check`: Nagios/Icinga exit codes, the summary line with performance data, the
finding lines and the JSON, on crafted inventories (stub hosts) including an unreachable
host, and end to end through ``hvtui.cli.main`` on a config that cannot be read."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sprawl_support import DAY, HOUR, NOW, StubHost, host_error, linear_vm, make_core

from hvtui.cli import build_parser, main
from hvtui.config import Exemption, PolicyConfig
from hvtui.core import Core
from hvtui.paths import Paths

SUMMARY = re.compile(
    r"^HVTUI (OK|WARNING|CRITICAL|UNKNOWN) - (\d+) crit, (\d+) warn, (\d+) VMs? on (\d+) hosts?.* \| "
    r"crit=(\d+) warn=(\d+) vms=(\d+) checkpoints=(\d+) hosts_down=(\d+)$"
)


def run_check(core: Core, *argv: str) -> int:
    args = build_parser().parse_args(["check", *argv])
    return args.handler(args, core)


def healthy_host(name: str = "hv01") -> StubHost:
    return StubHost(name, [linear_vm("web01", host=name), linear_vm("db01", host=name)])


class BackedUpAnHourAgo:
    """Stands in for the backup service: every VM was backed up an hour ago, so that
    checkpoint-not-backup stays out of tests about other rules (test_sprawl_lab covers the
    real lookup)."""

    def last_backup_of(self, vm: object) -> datetime:
        return NOW - timedelta(hours=1)

    def backup_checkpoint_left(self, vm: object, checkpoint: object) -> None:
        return None  # no checkpoint here was taken by an hvtui backup


@pytest.fixture(autouse=True)
def backed_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Core, "backups", property(lambda self: BackedUpAnHourAgo()), raising=False)


def test_ok(paths: Paths, capsys: pytest.CaptureFixture[str]) -> None:
    code = run_check(make_core([healthy_host()], paths))
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert out == ["HVTUI OK - 0 crit, 0 warn, 2 VMs on 1 host | crit=0 warn=0 vms=2 checkpoints=0 hosts_down=0"]


def test_warning(paths: Paths, capsys: pytest.CaptureFixture[str]) -> None:
    host = StubHost("hv01", [linear_vm("web01", ages=(4 * DAY,)), linear_vm("db01")])
    code = run_check(make_core([host], paths))
    out = capsys.readouterr().out.splitlines()
    assert code == 1
    assert SUMMARY.match(out[0]).groups() == ("WARNING", "0", "1", "2", "1", "0", "1", "2", "1", "0")
    assert out[1].startswith("[WARN] hv01/web01 checkpoint-age: ") and "4 days" in out[1]
    assert len(out) == 2


def test_critical_lists_each_finding(paths: Paths, capsys: pytest.CaptureFixture[str]) -> None:
    host = StubHost(
        "hv01",
        [
            linear_vm("web01", ages=(30 * DAY,)),
            linear_vm("db01", ages=(HOUR * 2,), types=("Recovery",)),
            linear_vm("app01", stray=("D:\\VMs\\app01\\old.avhdx",)),
        ],
    )
    code = run_check(make_core([host], paths))
    out = capsys.readouterr().out.splitlines()
    assert code == 2
    groups = SUMMARY.match(out[0]).groups()
    assert groups[0] == "CRITICAL" and groups[1:3] == ("1", "2")
    assert out[1].startswith("[CRIT] hv01/web01 checkpoint-age")
    assert {line.split()[2].rstrip(":") for line in out[2:]} == {"recovery-checkpoint-left", "stray-disk-file"}


def test_unreachable_host_is_unknown_and_listed(paths: Paths, capsys: pytest.CaptureFixture[str]) -> None:
    down = StubHost("hv02")
    down.fail_with = host_error("hv02", "connection refused")
    warn_host = StubHost("hv01", [linear_vm("web01", ages=(4 * DAY,))])
    code = run_check(make_core([warn_host, down], paths))
    out = capsys.readouterr().out.splitlines()
    assert code == 3
    assert out[0].startswith("HVTUI UNKNOWN - ") and "not read (hv02)" in out[0] and "hosts_down=1" in out[0]
    assert any(line.startswith("[WARN] hv02 host-unreachable:") and "connection refused" in line for line in out)


def test_a_crit_is_not_masked_by_an_unreachable_host(paths: Paths, capsys: pytest.CaptureFixture[str]) -> None:
    down = StubHost("hv02")
    down.fail_with = host_error("hv02")
    crit_host = StubHost("hv01", [linear_vm("web01", ages=(30 * DAY,))])
    assert run_check(make_core([crit_host, down], paths)) == 2
    assert "hosts_down=1" in capsys.readouterr().out


def test_exempted_findings_are_listed_and_do_not_change_the_state(
    paths: Paths, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = PolicyConfig(exemptions=(Exemption(vm="web*", reason="lab template"),))
    host = StubHost("hv01", [linear_vm("web01", ages=(30 * DAY,))])
    code = run_check(make_core([host], paths, policy=policy))
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert out[0].startswith("HVTUI OK - 0 crit, 0 warn") and "1 exempt" in out[0]
    assert out[1].startswith("[OK, exempt (lab template); would be CRIT] hv01/web01 checkpoint-age")


def test_json(paths: Paths, capsys: pytest.CaptureFixture[str]) -> None:
    down = StubHost("hv02")
    down.fail_with = host_error("hv02", "timed out", kind="timeout")
    host = StubHost("hv01", [linear_vm("web01", ages=(30 * DAY,)), linear_vm("db01")])
    code = run_check(make_core([host, down], paths), "--json")
    doc = json.loads(capsys.readouterr().out)
    assert code == 2 and doc["status"] == "CRITICAL" and doc["exit_code"] == 2
    assert doc["summary"].startswith("HVTUI CRITICAL - 1 crit, 1 warn, 2 VMs on 2 hosts")
    assert doc["perfdata"] == {"crit": 1, "warn": 1, "vms": 2, "checkpoints": 1, "hosts_down": 1}
    assert {h["name"]: h["reachable"] for h in doc["hosts"]} == {"hv01": True, "hv02": False}
    first = doc["findings"][0]
    assert first["severity"] == "CRIT" and first["rule"] == "checkpoint-age" and first["vm_name"] == "web01"
    assert first["checkpoint_name"] == "web01 cp1" and first["action"] and first["age_seconds"] == 30 * DAY
    assert doc["findings"][1]["rule"] == "host-unreachable" and "timed out" in doc["findings"][1]["message"]


def test_host_and_vm_filters(paths: Paths, capsys: pytest.CaptureFixture[str]) -> None:
    one = StubHost("hv01", [linear_vm("web01", host="hv01", ages=(30 * DAY,)), linear_vm("db01", host="hv01")])
    two = StubHost("hv02", [linear_vm("app01", host="hv02", ages=(4 * DAY,))])
    core = make_core([one, two], paths)
    assert run_check(core, "--host", "hv02") == 1
    assert "1 VM on 1 host" in capsys.readouterr().out
    assert run_check(core, "--vm", "db01") == 0
    assert "1 VM on 1 host" in capsys.readouterr().out
    assert run_check(core, "--vm", "WEB01", "--json") == 2
    doc = json.loads(capsys.readouterr().out)
    assert {f["vm_name"] for f in doc["findings"]} == {"web01"}


def test_unknown_vm_is_unknown_with_close_matches(paths: Paths, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_check(make_core([healthy_host()], paths), "--vm", "web1") == 3
    out = capsys.readouterr().out
    assert out.startswith("HVTUI UNKNOWN - no VM 'web1'") and "did you mean: web01" in out


def test_pipe_in_a_name_cannot_break_the_perfdata(paths: Paths, capsys: pytest.CaptureFixture[str]) -> None:
    vm = linear_vm("a|b", ages=(4 * DAY,))
    run_check(make_core([StubHost("hv01", [vm])], paths))
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].count("|") == 1 and all("|" not in line for line in lines[1:])


def test_config_errors_exit_unknown(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "config.yaml"
    bad.write_text("hosts:\n  - name: hv01\n    kind: nonsense\n")
    assert main(["check", "--config", str(bad)]) == 3
    assert main(["inventory", "--config", str(bad)]) == 2  # other commands keep their usage code
