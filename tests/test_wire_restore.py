"""The restore operations' answers: read as the contract says, failures carried with their kind."""

from __future__ import annotations

import pytest

from hvtui.errors import HostError, NotFoundError
from hvtui.wire.restore import parse_import, parse_prepare

GUID = "4f27bc34-0d01-4057-bc93-a4c556d61644"


def test_prepare_answers_the_free_space() -> None:
    assert parse_prepare({"ok": True, "free": 879609302220}, "hv01") == 879609302220


def test_no_space_is_a_failure_of_kind_space_with_its_message() -> None:
    doc = {"ok": False, "error": "Not enough free space on D:\\", "fqid": "HvtuiKind-space", "kind": "space"}
    with pytest.raises(HostError) as info:
        parse_prepare(doc, "hv01")
    assert info.value.kind == "space"
    assert info.value.detail == "Not enough free space on D:\\"
    assert str(info.value).startswith("hv01: prepare restore: ")


@pytest.mark.parametrize("kind", ["incompatible", "state", "disk-check", "argument"])
def test_import_failure_kinds(kind: str) -> None:
    doc = {"ok": False, "error": "switch LAN missing", "fqid": f"HvtuiKind-{kind}", "kind": kind}
    with pytest.raises(HostError) as info:
        parse_import(doc, "hv01")
    assert info.value.kind == kind and "switch LAN missing" in info.value.detail


def test_not_found_kind_is_a_not_found_error() -> None:
    doc = {"ok": False, "error": "No restored VM configuration", "fqid": "HvtuiKind-not-found", "kind": "not-found"}
    with pytest.raises(NotFoundError):
        parse_import(doc, "hv01")


def test_an_unknown_kind_is_a_plain_failure() -> None:
    doc = {"ok": False, "error": "odd", "fqid": "X", "kind": "frobnicated"}
    with pytest.raises(HostError) as info:
        parse_import(doc, "hv01")
    assert info.value.kind == "failed"


def test_import_answers_the_new_id_and_the_warnings_in_any_ps51_shape() -> None:
    result = parse_import({"ok": True, "vm_id": GUID, "warnings": "Network adapter disconnected"}, "hv01")
    assert result.vm_id == GUID and result.warnings == ("Network adapter disconnected",)
    assert parse_import({"ok": True, "vm_id": GUID, "warnings": {"value": [], "Count": 0}}, "hv01").warnings == ()


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({"ok": True}, "free"),
        ({"ok": True, "free": -1}, "free"),
        ({"ok": True, "free": "lots"}, "free"),
    ],
)
def test_malformed_prepare_answers_name_the_field(doc: dict, field: str) -> None:
    with pytest.raises(HostError) as info:
        parse_prepare(doc, "hv01")
    assert info.value.kind == "protocol" and info.value.detail.startswith(field)


@pytest.mark.parametrize("vm_id", [None, "not-a-guid", 12])
def test_malformed_import_answers_name_the_field(vm_id: object) -> None:
    with pytest.raises(HostError) as info:
        parse_import({"ok": True, "vm_id": vm_id}, "hv01")
    assert info.value.kind == "protocol" and info.value.detail.startswith("vm_id")
