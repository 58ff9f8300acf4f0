"""The backup operations' answers: the contract's examples, PS 5.1 shapes, failure kinds, clear errors."""

from __future__ import annotations

import copy

import pytest

from hvtui.errors import HostError, NotFoundError
from hvtui.wire.backup import parse_begin, parse_changes, parse_end, parse_leftovers

BEGIN = {
    "ok": True,
    "checkpoint_id": "2b1f0d5e-0000-4000-8000-000000000001",
    "consistency": "application",
    "warnings": [],
    "vm": {
        "id": "4f27a1c0-0000-4000-8000-000000000002",
        "name": "sql01",
        "generation": 2,
        "version": "10.0",
        "state": "Running",
        "config_path": "D:\\VMs\\sql01\\Virtual Machines\\4F27.vmcx",
    },
    "files": [
        {"role": "disk", "path": "D:\\VMs\\sql01\\sql01.vhdx", "size": 61203283968,
         "mtime": "2026-11-24T17:00:00.0000000Z", "disk_id": "ABC", "format": "VHDX", "vhd_type": "Dynamic",
         "virtual_size": 136365211648, "block_size": 33554432, "logical_sector_size": 512, "parent_path": None,
         "controller": "SCSI", "controller_number": 0, "controller_location": 0},
        {"role": "config", "path": "D:\\VMs\\sql01\\Virtual Machines\\4F27.vmcx", "size": 81920,
         "mtime": "2026-11-24T17:00:00.0000000Z"},
    ],
    "reference_points": [
        {"id": "rp-1", "created": "2026-11-23T17:00:00Z", "rct": {"D:\\VMs\\sql01\\sql01.vhdx": "rctX:1:2"}}
    ],
}  # fmt: skip


def test_the_contract_example_of_begin_parses() -> None:
    answer = parse_begin(BEGIN, "hv01")
    assert answer.checkpoint_id == BEGIN["checkpoint_id"]
    assert answer.consistency == "application"
    assert answer.vm.name == "sql01" and answer.vm.config_path.endswith(".vmcx")
    disk, config = answer.files
    assert (disk.role, disk.virtual_size, disk.block_size, disk.disk_id) == ("disk", 136365211648, 33554432, "ABC")
    assert config.role == "config" and config.virtual_size is None and config.size == 81920
    assert answer.reference_points[0].rct == {"D:\\VMs\\sql01\\sql01.vhdx": "rctX:1:2"}


def test_begin_in_ps51_shapes() -> None:
    doc = copy.deepcopy(BEGIN)
    doc["warnings"] = ""  # an empty array comes out as nothing
    doc["files"] = {"value": doc["files"], "Count": 2}
    doc["reference_points"] = doc["reference_points"][0]  # one item unrolled
    doc["files"]["value"][0]["mtime"] = "/Date(1795539600000)/"
    doc["files"]["value"][0]["vhd_type"] = 3  # Dynamic as an integer
    doc["vm"]["state"] = 2  # Running
    answer = parse_begin(doc, "hv01")
    assert answer.warnings == ()
    assert len(answer.files) == 2 and answer.files[0].vhd_type == "Dynamic"
    assert answer.files[0].mtime is not None and answer.files[0].mtime.year == 2026
    assert answer.vm.state == "Running"
    assert answer.reference_points[0].id == "rp-1"


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d.pop("checkpoint_id"), "document.checkpoint_id"),
        (lambda d: d["files"][0].pop("virtual_size"), "files[0].virtual_size"),
        (lambda d: d["files"][1].update(role="log"), "files[1].role"),
        (lambda d: d["files"][0].update(size=-1), "files[0].size"),
        (lambda d: d.update(consistency="maybe"), "consistency"),
        (lambda d: d["reference_points"][0].update(rct=["x"]), "reference_points[0].rct"),
        (lambda d: d.update(files=[]), "files"),
    ],
)
def test_a_malformed_begin_names_host_operation_and_field(mutate, field: str) -> None:
    doc = copy.deepcopy(BEGIN)
    mutate(doc)
    with pytest.raises(HostError) as caught:
        parse_begin(doc, "hv01")
    assert caught.value.kind == "protocol"
    assert caught.value.host == "hv01" and caught.value.operation == "backup.begin"
    assert caught.value.detail.startswith(f"{field}:")


@pytest.mark.parametrize("kind", ["rct-invalid", "busy", "consistency", "state", "argument"])
def test_failure_kinds_callers_act_on_are_kept(kind: str) -> None:
    doc = {"ok": False, "error": "it went wrong", "fqid": f"HvtuiKind-{kind}", "kind": kind}
    with pytest.raises(HostError) as caught:
        parse_changes(doc, "hv01", 0, 1 << 30)
    assert caught.value.kind == kind and "it went wrong" in caught.value.detail


def test_not_found_and_unknown_kinds() -> None:
    with pytest.raises(NotFoundError):
        parse_end({"ok": False, "error": "no VM", "fqid": "HvtuiKind-not-found", "kind": "not-found"}, "hv01", "failed")
    with pytest.raises(HostError) as caught:
        parse_end({"ok": False, "error": "odd", "fqid": "Whatever", "kind": "new-kind"}, "hv01", "failed")
    assert caught.value.kind == "failed" and "odd" in caught.value.detail


def test_changes_within_the_window() -> None:
    answer = parse_changes({"ok": True, "ranges": [[4096, 512], [8192, 4096]], "processed": 65536}, "hv01", 0, 65536)
    assert answer.ranges == ((4096, 512), (8192, 4096)) and answer.processed == 65536
    empty = parse_changes({"ok": True, "ranges": "", "processed": 1 << 30}, "hv01", 1 << 30, 1 << 30)
    assert empty.ranges == ()


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({"ok": True, "ranges": [[70000, 10]], "processed": 65536}, "ranges[0]"),
        ({"ok": True, "ranges": [[0, 10, 3]], "processed": 65536}, "ranges[0]"),
        ({"ok": True, "ranges": [], "processed": 0}, "processed"),
        ({"ok": True, "ranges": [], "processed": 70000}, "processed"),
        ({"ok": True, "ranges": []}, "document.processed"),
    ],
)
def test_changes_outside_the_window_or_without_progress_are_refused(doc: dict, field: str) -> None:
    with pytest.raises(HostError) as caught:
        parse_changes(doc, "hv01", 0, 65536)
    assert caught.value.kind == "protocol" and caught.value.detail.startswith(f"{field}:")


def test_end_answers() -> None:
    ok = parse_end({"ok": True, "reference_point_id": "rp-2", "rct": {"D:\\a.vhdx": "rct:9"}, "retired": "rp-1"},
                   "hv01", "success")  # fmt: skip
    assert ok.reference_point_id == "rp-2" and ok.rct == {"D:\\a.vhdx": "rct:9"} and ok.retired == ("rp-1",)
    assert parse_end({"ok": True, "removed": True}, "hv01", "failed").removed
    assert parse_end({"ok": True, "already_gone": True}, "hv01", "success").already_gone
    with pytest.raises(HostError) as caught:
        parse_end({"ok": True, "rct": {}}, "hv01", "success")
    assert caught.value.detail.startswith("document.reference_point_id:")


def test_leftovers() -> None:
    doc = {
        "ok": True,
        "checkpoints": {"vm_id": "v1", "vm_name": "web 'x'", "checkpoint_id": "c1", "name": "hvtui backup j1",
                        "created": "/Date(1795539600000)/"},
        "reference_points": None,
    }  # fmt: skip
    answer = parse_leftovers(doc, "hv01")
    assert [c.name for c in answer.checkpoints] == ["hvtui backup j1"] and answer.reference_points == ()
    with pytest.raises(HostError) as caught:
        parse_leftovers({"ok": True, "checkpoints": [{"vm_id": "v1"}]}, "hv01")
    assert caught.value.detail.startswith("checkpoints[0].checkpoint_id:")
