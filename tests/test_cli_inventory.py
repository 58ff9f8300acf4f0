"""`hvtui inventory` and `hvtui audit` on crafted estates: the table, the JSON (wire
field names, each VM naming its host, unreachable and stale hosts listed with their
error), and the audit log printout with a damaged line."""

from __future__ import annotations

import json
import re

import pytest
from sprawl_support import DAY, HOUR, MiB, StubHost, host_error, linear_vm, make_core

from hvtui.cli import build_parser
from hvtui.core import Core
from hvtui.paths import Paths


def run(core: Core, *argv: str) -> int:
    args = build_parser().parse_args(list(argv))
    return args.handler(args, core)


@pytest.fixture
def estate(paths: Paths):
    hv01 = StubHost(
        "hv01",
        [
            linear_vm("web01", host="hv01", ages=(12 * DAY, 2 * DAY), diff_sizes=(300 * MiB, 20 * MiB)),
            linear_vm("db01", host="hv01", state="Off"),
        ],
    )
    hv02 = StubHost("hv02", [linear_vm("app01", host="hv02", ages=(HOUR,))])
    hv03 = StubHost("hv03")
    hv03.fail_with = host_error("hv03", "connection refused")
    return make_core([hv01, hv02, hv03], paths), hv01, hv02, hv03


def test_table(estate, capsys) -> None:
    core, *_ = estate
    assert run(core, "inventory") == 1  # a host could not be read
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["HOST", "VM", "STATE", "UPTIME", "CKPTS", "OLDEST", "DEPTH", "DIFF"]
    rows = {line.split()[1]: line for line in lines[1:4]}
    assert set(rows) == {"web01", "db01", "app01"}
    web = rows["web01"]
    # uptime, checkpoints, oldest, depth, differencing bytes
    assert re.search(r"Running\s+1 hour\s+2\s+12 days\s+2\s+320\.0 MiB$", web), web
    assert "2 of 3 hosts read, 3 VMs." in lines
    assert any(line.startswith("hv03: NOT READ:") and "connection refused" in line for line in lines)


def test_stale_rows_are_marked(estate, capsys) -> None:
    core, hv01, *_ = estate
    core.inventory.refresh()
    hv01.fail_with = host_error("hv01", "timed out", kind="timeout")
    run(core, "inventory", "--host", "hv01")
    out = capsys.readouterr().out
    assert "hv01*" in out and "rows marked * show data from" in out and "timed out" in out


def test_json_keeps_the_wire_names_and_lists_unreachable_hosts(estate, capsys) -> None:
    core, hv01, _hv02, _hv03 = estate
    assert run(core, "inventory", "--json") == 1
    doc = json.loads(capsys.readouterr().out)
    hosts = {h["name"]: h for h in doc["hosts"]}
    assert hosts["hv03"]["reachable"] is False and "connection refused" in hosts["hv03"]["error"]
    assert hosts["hv03"]["facts"] is None and hosts["hv03"]["vm_count"] == 0
    assert hosts["hv01"]["facts"]["volumes"][1]["path"] == "D:\\" and hosts["hv01"]["group"] is None
    web = next(v for v in doc["vms"] if v["name"] == "web01")
    source = next(vm for vm in hv01.vms.values() if vm.name == "web01")
    assert web["host"] == "hv01" and web["id"] == source.id and web["state"] == "Running"
    assert [c["name"] for c in web["checkpoints"]] == ["web01 cp1", "web01 cp2"]
    assert web["checkpoints"][0]["created"].endswith("Z")
    assert [link["vhd_type"] for link in web["disks"][0]["chain"]] == ["Differencing", "Differencing", "Dynamic"]
    assert web["parent_checkpoint_id"] == source.parent_checkpoint_id and web["stale"] is False


def test_json_for_one_host(estate, capsys) -> None:
    core, *_ = estate
    assert run(core, "inventory", "--json", "--host", "hv02") == 0
    doc = json.loads(capsys.readouterr().out)
    assert [h["name"] for h in doc["hosts"]] == ["hv02"] and [v["name"] for v in doc["vms"]] == ["app01"]


# -- hvtui audit -----------------------------------------------------------------------------------
def test_audit_printout_and_damaged_line(paths: Paths, capsys) -> None:
    core = make_core([StubHost("hv01")], paths)
    core.audit.record("checkpoint.create", "hv01", "web01", {"name": "before patch"}, "ok", 0.25)
    core.audit.record("checkpoint.remove", "hv01", "web01", {"subtree": True}, "failed", 3.5, error="hv01: merge failed")
    with paths.audit_log.open("ab") as handle:
        handle.write(b'{"torn')
    assert run(core, "audit") == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert len(lines) == 3
    assert lines[1].split()[2:7] == ["checkpoint.create", "hv01", "web01", "ok", "0.2"]
    assert "name='before patch'" in lines[1]
    assert "error: hv01: merge failed" in lines[2] and "subtree=True" in lines[2]
    assert "last line is damaged" in captured.err

    assert run(core, "audit", "--json", "--limit", "1") == 0
    (entry,) = json.loads(capsys.readouterr().out)
    assert entry["action"] == "checkpoint.remove" and entry["error"] == "hv01: merge failed"


def test_audit_empty(paths: Paths, capsys) -> None:
    assert run(make_core([StubHost("hv01")], paths), "audit") == 0
    assert "The audit log is empty" in capsys.readouterr().out
