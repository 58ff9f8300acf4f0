"""The wire contract <-> model: the documented document, and every PS 5.1 quirk the contract lists."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime

import pytest

from hvtui.errors import HostError, NotFoundError
from hvtui.hosts.base import HostSnapshot
from hvtui.model import VM, Checkpoint, Disk, HostFacts, VhdLink, Volume
from hvtui.wire import (
    format_datetime,
    parse_datetime,
    parse_inventory,
    parse_result,
    snapshot_to_wire,
    vm_to_wire,
)

HOST = "hv01"
CP_ID = "b1e0c7f2-3c1a-4d8e-9a51-0f1e2d3c4b5a"
VM_ID = "4f27bc34-0d01-4057-bc93-a4c556d61644"


def contract_document() -> dict:
    """The example document of the contract, with its elided ids filled in."""
    return {
        "ok": True,
        "host": {
            "name": "HV01",
            "os": "Windows Server 2022 Datacenter",
            "build": "20348",
            "now": "2026-11-24T17:00:00.0000000Z",
            "logical_processors": 64,
            "memory_bytes": 274877906944,
            "volumes": [{"path": "D:\\", "label": "VMs", "size": 4398046511104, "free": 879609302220}],
        },
        "vms": [
            {
                "id": VM_ID,
                "name": "sql01",
                "state": "Running",
                "status": "Operating normally",
                "cpu_usage": 12,
                "memory_assigned": 8589934592,
                "uptime_seconds": 522764,
                "heartbeat": "OkApplicationsHealthy",
                "generation": 2,
                "version": "10.0",
                "checkpoint_type": "Production",
                "is_clustered": False,
                "path": "D:\\VMs\\sql01",
                "checkpoint_path": "D:\\VMs\\sql01",
                "parent_checkpoint_id": CP_ID,
                "checkpoints": [
                    {
                        "id": CP_ID,
                        "name": "Before KB5031364",
                        "type": "Standard",
                        "created": "2026-10-15T08:12:00.0000000Z",
                        "parent_id": None,
                        "is_automatic": False,
                    }
                ],
                "disks": [
                    {
                        "controller": "SCSI",
                        "controller_number": 0,
                        "controller_location": 0,
                        "path": "D:\\VMs\\sql01\\sql01_B1E0.avhdx",
                        "chain": [
                            {
                                "path": "D:\\VMs\\sql01\\sql01_B1E0.avhdx",
                                "vhd_type": "Differencing",
                                "file_size": 9126805504,
                                "size": 136365211648,
                                "parent_path": "D:\\VMs\\sql01\\sql01.vhdx",
                            },
                            {
                                "path": "D:\\VMs\\sql01\\sql01.vhdx",
                                "vhd_type": "Dynamic",
                                "file_size": 61203283968,
                                "size": 136365211648,
                                "parent_path": None,
                            },
                        ],
                    }
                ],
                "stray_disk_files": ["D:\\VMs\\sql01\\sql01_0A7C.avhdx"],
            }
        ],
    }


def expected_vm() -> VM:
    return VM(
        host=HOST,
        id=VM_ID,
        name="sql01",
        state="Running",
        status="Operating normally",
        cpu_usage=12,
        memory_assigned=8589934592,
        uptime_seconds=522764,
        heartbeat="OkApplicationsHealthy",
        generation=2,
        version="10.0",
        checkpoint_type="Production",
        is_clustered=False,
        path="D:\\VMs\\sql01",
        checkpoint_path="D:\\VMs\\sql01",
        parent_checkpoint_id=CP_ID,
        checkpoints=(
            Checkpoint(
                id=CP_ID,
                name="Before KB5031364",
                type="Standard",
                created=datetime(2026, 10, 15, 8, 12, tzinfo=UTC),
                parent_id=None,
                is_automatic=False,
            ),
        ),
        disks=(
            Disk(
                controller="SCSI",
                controller_number=0,
                controller_location=0,
                path="D:\\VMs\\sql01\\sql01_B1E0.avhdx",
                chain=(
                    VhdLink(
                        "D:\\VMs\\sql01\\sql01_B1E0.avhdx",
                        "Differencing",
                        9126805504,
                        136365211648,
                        "D:\\VMs\\sql01\\sql01.vhdx",
                    ),
                    VhdLink("D:\\VMs\\sql01\\sql01.vhdx", "Dynamic", 61203283968, 136365211648, None),
                ),
            ),
        ),
        stray_disk_files=("D:\\VMs\\sql01\\sql01_0A7C.avhdx",),
    )


def test_contract_example_parses_into_the_model() -> None:
    snap = parse_inventory(contract_document(), HOST)
    assert snap.facts == HostFacts(
        name="HV01",
        os="Windows Server 2022 Datacenter",
        build="20348",
        now=datetime(2026, 11, 24, 17, 0, tzinfo=UTC),
        logical_processors=64,
        memory_bytes=274877906944,
        volumes=(Volume("D:\\", "VMs", 4398046511104, 879609302220),),
    )
    assert snap.vms == (expected_vm(),)


def test_rendering_gives_back_exactly_the_contract_document() -> None:
    doc = contract_document()
    assert snapshot_to_wire(parse_inventory(doc, HOST)) == doc


def test_round_trip_keeps_microseconds_and_non_ascii() -> None:
    vm = expected_vm()
    cp = Checkpoint(
        "x", "Tägliche „Sicherung“ 😀", "Recovery", datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC), None, True
    )
    vm = VM(**{**{f: getattr(vm, f) for f in VM.__slots__}, "checkpoints": (cp,), "name": "dc01 ‘quoted’"})
    snap = HostSnapshot(facts=parse_inventory(contract_document(), HOST).facts, vms=(vm,))
    doc = json.loads(json.dumps(snapshot_to_wire(snap), ensure_ascii=True))
    assert parse_inventory(doc, HOST) == snap


def test_vm_to_wire_names_the_host_only_when_asked() -> None:
    record = vm_to_wire(expected_vm())
    assert record["host"] == HOST and list(record)[0] == "host"
    assert "host" not in vm_to_wire(expected_vm(), with_host=False)
    assert record["checkpoints"][0]["created"] == "2026-10-15T08:12:00.0000000Z"


def test_times_render_like_dotnet_round_trip_format() -> None:
    when = datetime(2026, 11, 24, 18, 0, 0, 123456, tzinfo=UTC)
    assert format_datetime(when) == "2026-11-24T18:00:00.1234560Z"


# -- PS 5.1 quirks -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("/Date(1436236701491)/", datetime(2015, 7, 7, 2, 38, 21, 491000, tzinfo=UTC)),
        ("\\/Date(1436236701491)\\/", datetime(2015, 7, 7, 2, 38, 21, 491000, tzinfo=UTC)),
        # the +hhmm suffix names the writer's offset; the milliseconds are UTC already
        ("/Date(1436236701491+0200)/", datetime(2015, 7, 7, 2, 38, 21, 491000, tzinfo=UTC)),
        ("/Date(1436236701491-0500)/", datetime(2015, 7, 7, 2, 38, 21, 491000, tzinfo=UTC)),
        ("/Date(-86400000)/", datetime(1969, 12, 31, tzinfo=UTC)),
        ("/Date(+1000)/", datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC)),
        (
            {"value": "/Date(1436236701491)/", "DisplayHint": 2, "DateTime": "Tuesday, 7 July 2015 04:38:21"},
            datetime(2015, 7, 7, 2, 38, 21, 491000, tzinfo=UTC),
        ),
        ("2026-11-24T17:00:00.1234567Z", datetime(2026, 11, 24, 17, 0, 0, 123456, tzinfo=UTC)),
        ("2026-11-24T19:00:00+02:00", datetime(2026, 11, 24, 17, 0, tzinfo=UTC)),
        ("2026-11-24T12:00:00-0500", datetime(2026, 11, 24, 17, 0, tzinfo=UTC)),
        ("2026-11-24T17:00:00", datetime(2026, 11, 24, 17, 0, tzinfo=UTC)),
    ],
)
def test_date_shapes(raw: object, expected: datetime) -> None:
    assert parse_datetime(raw) == expected


@pytest.mark.parametrize("raw", ["/Date(abc)/", "yesterday", "2026-13-45T00:00:00Z", 1436236701491, None])
def test_bad_dates_are_refused(raw: object) -> None:
    with pytest.raises(ValueError, match="expected an ISO 8601 time"):
        parse_datetime(raw)


def test_date_quirk_inside_a_document() -> None:
    doc = contract_document()
    doc["host"]["now"] = "/Date(1795539600000)/"
    doc["vms"][0]["checkpoints"][0]["created"] = {"value": "/Date(1792051920000+0100)/", "DisplayHint": 2}
    snap = parse_inventory(doc, HOST)
    assert snap.facts.now == datetime(2026, 11, 24, 17, 0, tzinfo=UTC)
    assert snap.vms[0].checkpoints[0].created == datetime(2026, 10, 15, 8, 12, tzinfo=UTC)


def test_integer_enums_map_where_stable() -> None:
    doc = contract_document()
    vm = doc["vms"][0]
    vm["state"] = 2
    vm["heartbeat"] = 6
    vm["checkpoint_type"] = 3
    vm["checkpoints"][0]["type"] = 1
    vm["disks"][0]["controller"] = 1
    vm["disks"][0]["chain"][0]["vhd_type"] = 4
    vm["disks"][0]["chain"][1]["vhd_type"] = 3
    parsed = parse_inventory(doc, HOST).vms[0]
    assert (parsed.state, parsed.heartbeat, parsed.checkpoint_type) == (
        "Running",
        "OkApplicationsHealthy",
        "Production",
    )
    assert parsed.checkpoints[0].type == "Recovery"
    assert parsed.disks[0].controller == "SCSI"
    assert [link.vhd_type for link in parsed.disks[0].chain] == ["Differencing", "Dynamic"]


@pytest.mark.parametrize(
    ("state", "name"), [(3, "Off"), (6, "Saved"), (9, "Paused"), (32773, "Saving"), (32782, "ForceReboot")]
)
def test_stable_vm_states(state: int, name: str) -> None:
    doc = contract_document()
    doc["vms"][0]["state"] = state
    assert parse_inventory(doc, HOST).vms[0].state == name


@pytest.mark.parametrize("state", [0, 5, 12, 32768, 32783, 32785, 32794, -1])
def test_unstable_or_unknown_vm_state_integers_are_refused(state: int) -> None:
    doc = contract_document()
    doc["vms"][0]["state"] = state
    with pytest.raises(HostError) as info:
        parse_inventory(doc, HOST)
    err = info.value
    assert err.kind == "protocol" and err.host == HOST and err.operation == "inventory"
    assert "vms[0].state: expected a VM state name, or one of the stable integer values" in str(err)
    assert f"found the number {state}" in str(err)


def test_checkpoint_type_integer_gap_is_refused() -> None:
    doc = contract_document()
    doc["vms"][0]["checkpoints"][0]["type"] = 3  # SnapshotType has no 3
    with pytest.raises(HostError, match=r"vms\[0\]\.checkpoints\[0\]\.type: expected a checkpoint type name"):
        parse_inventory(doc, HOST)


def test_single_object_where_a_list_was_expected() -> None:
    doc = contract_document()
    vm = doc["vms"][0]
    vm["checkpoints"] = vm["checkpoints"][0]
    vm["disks"][0]["chain"] = vm["disks"][0]["chain"][1]
    vm["stray_disk_files"] = "D:\\VMs\\sql01\\sql01_0A7C.avhdx"
    doc["host"]["volumes"] = doc["host"]["volumes"][0]
    doc["vms"] = vm
    snap = parse_inventory(doc, HOST)
    assert len(snap.vms) == 1 and len(snap.vms[0].checkpoints) == 1
    assert snap.vms[0].disks[0].chain[0].path == "D:\\VMs\\sql01\\sql01.vhdx"
    assert snap.vms[0].stray_disk_files == ("D:\\VMs\\sql01\\sql01_0A7C.avhdx",)
    assert snap.facts.volumes[0].label == "VMs"


def test_empty_output_where_a_list_was_expected() -> None:
    doc = contract_document()
    vm = doc["vms"][0]
    vm["checkpoints"] = None
    vm["disks"] = ""
    del vm["stray_disk_files"]
    doc["host"]["volumes"] = None
    snap = parse_inventory(doc, HOST)
    assert snap.vms[0].checkpoints == () and snap.vms[0].disks == () and snap.vms[0].stray_disk_files == ()
    assert snap.facts.volumes == ()
    doc["vms"] = None
    assert parse_inventory(doc, HOST).vms == ()


def test_value_count_wrapper() -> None:
    doc = contract_document()
    vm = doc["vms"][0]
    vm["checkpoints"] = {"value": vm["checkpoints"], "Count": 1}
    vm["disks"][0]["chain"] = {"value": vm["disks"][0]["chain"], "Count": 2}
    doc["vms"] = {"value": [vm], "Count": 1}
    assert parse_inventory(doc, HOST).vms == (expected_vm(),)


def test_value_count_wrapper_with_wrong_count_is_refused() -> None:
    doc = contract_document()
    doc["vms"] = {"value": doc["vms"], "Count": 3}
    with pytest.raises(HostError, match=r"vms\.Count: expected 1 \(the length of value\), found the number 3"):
        parse_inventory(doc, HOST)


def test_timespan_object_for_uptime() -> None:
    doc = contract_document()
    doc["vms"][0]["uptime_seconds"] = {"Ticks": 5227641234567, "Days": 6, "TotalSeconds": 522764.1234567}
    assert parse_inventory(doc, HOST).vms[0].uptime_seconds == 522764


def test_integral_floats_and_numeric_build_are_accepted() -> None:
    doc = contract_document()
    doc["host"]["build"] = 20348
    doc["host"]["volumes"][0]["size"] = 4398046511104.0
    snap = parse_inventory(doc, HOST)
    assert snap.facts.build == "20348" and snap.facts.volumes[0].size == 4398046511104


# -- malformed documents -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["vms"][0].__setitem__("id", 7), "vms[0].id: expected a string, found the number 7"),
        (lambda d: d["vms"][0].pop("name"), "vms[0].name: expected a value, found nothing (the field is missing)"),
        (
            lambda d: d["vms"][0].__setitem__("cpu_usage", "12"),
            "vms[0].cpu_usage: expected an integer, found the text '12'",
        ),
        (lambda d: d["vms"][0].__setitem__("is_clustered", "no"), "vms[0].is_clustered: expected true or false"),
        (
            lambda d: d["vms"][0]["disks"][0]["chain"][1].__setitem__("file_size", 1.5),
            "vms[0].disks[0].chain[1].file_size: expected an integer, found the number 1.5",
        ),
        (
            lambda d: d["vms"][0]["checkpoints"][0].__setitem__("created", "soon"),
            "vms[0].checkpoints[0].created: expected an ISO 8601 time",
        ),
        (lambda d: d["host"].__setitem__("now", None), "host.now: expected an ISO 8601 time or /Date(ms)/, found null"),
        (lambda d: d.__setitem__("vms", 5), "vms[0]: expected an object, found the number 5"),
        (lambda d: d["vms"].append("sql02"), "vms[1]: expected an object, found the text 'sql02'"),
        (lambda d: d.pop("host"), "document.host: expected a value"),
        (lambda d: d.pop("ok"), "document.ok: expected true or false, found nothing (the field is missing)"),
        (lambda d: d.__setitem__("ok", "yes"), "document.ok: expected true or false, found the text 'yes'"),
        (
            lambda d: d["vms"][0].__setitem__("uptime_seconds", -3),
            "vms[0].uptime_seconds: expected a number of seconds",
        ),
    ],
)
def test_malformed_fields_name_the_field(mutate, message: str) -> None:
    doc = copy.deepcopy(contract_document())
    mutate(doc)
    with pytest.raises(HostError) as info:
        parse_inventory(doc, HOST)
    assert info.value.kind == "protocol"
    assert str(info.value).startswith(f"{HOST}: inventory: ")
    assert message in str(info.value)


@pytest.mark.parametrize("doc", [None, [], "text", 3])
def test_a_document_that_is_no_object_is_refused(doc: object) -> None:
    with pytest.raises(HostError, match="document: expected an object"):
        parse_inventory(doc, HOST)


def test_failure_document_maps_through_the_fqid() -> None:
    doc = {
        "ok": False,
        "error": "Hyper-V was unable to find a virtual machine with id 'x'.",
        "fqid": "InvalidParameter,Microsoft.HyperV.PowerShell.Commands.GetVM",
    }
    with pytest.raises(NotFoundError) as info:
        parse_inventory(doc, HOST)
    assert (
        str(info.value) == f"{HOST}: inventory: VM not found: Hyper-V was unable to find a virtual machine with id 'x'."
    )


# -- operation results ----------------------------------------------------------------------
def test_parse_result_for_each_operation() -> None:
    record = contract_document()["vms"][0]["checkpoints"][0]
    created = parse_result({"ok": True, "checkpoint": record}, HOST, "checkpoint.create")
    assert created.checkpoint == expected_vm().checkpoints[0]
    renamed = parse_result({"ok": True, "checkpoint": {**record, "name": "new"}}, HOST, "checkpoint.rename")
    assert renamed.checkpoint is not None and renamed.checkpoint.name == "new"
    assert parse_result({"ok": True, "vm_state": 3}, HOST, "checkpoint.apply").vm_state == "Off"
    assert parse_result({"ok": True, "removed": "a"}, HOST, "checkpoint.remove").removed == ("a",)
    assert parse_result(
        {"ok": True, "removed": {"value": ["a", "b"], "Count": 2}}, HOST, "checkpoint.remove"
    ).removed == ("a", "b")


def test_parse_result_refuses_a_create_without_checkpoint() -> None:
    with pytest.raises(HostError, match=r"^hv01: create checkpoint: document.checkpoint: expected a value"):
        parse_result({"ok": True}, HOST, "checkpoint.create")


def test_an_empty_heartbeat_means_none() -> None:
    doc = contract_document()
    doc["vms"][0]["heartbeat"] = ""
    assert parse_inventory(doc, HOST).vms[0].heartbeat == ""
    doc["vms"][0]["heartbeat"] = None
    assert parse_inventory(doc, HOST).vms[0].heartbeat == ""
    doc["vms"][0]["state"] = ""
    with pytest.raises(HostError, match=r"vms\[0\]\.state: expected a VM state name"):
        parse_inventory(doc, HOST)
