"""A disk Get-VHD cannot read: the inventory template never calls the VM's own disk stray, and
the disk comes back with an empty (or short) chain and an ``error`` the policy and console can
show.  The template is checked statically (tree-sitter: no PowerShell here); the answer's shape
goes through real pywinrm and the loopback server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import tree_sitter_powershell
from tree_sitter import Language, Node, Parser
from wsman_server import MemoryBackend, WSManServer, make_winrm_host, server

from hvtui.hosts.base import HostSnapshot
from hvtui.hosts.winrm.encoding import script_text
from hvtui.model import VM, Disk, VhdLink
from hvtui.wire import parse_inventory, snapshot_to_wire

_parser = Parser(Language(tree_sitter_powershell.language()))
INVENTORY = script_text("inventory")

__all__ = ["server"]  # the loopback server fixture, shared from wsman_server


def _nodes(root: Node, kind: str) -> Iterator[Node]:
    stack = [root]
    while stack:
        node = stack.pop()
        if node.type == kind:
            yield node
        stack.extend(node.children)


def _text(node: Node) -> str:
    return (node.text or b"").decode("utf-8")


def drive_loop(header: str) -> Node:
    """The ``foreach ($drive in <header>)`` loop of the inventory template."""
    tree = _parser.parse(INVENTORY.encode("utf-8"))
    loops = [
        node
        for node in _nodes(tree.root_node, "foreach_statement")
        if any(child.type == "pipeline" and _text(child) == header for child in node.children)
    ]
    assert len(loops) == 1, header
    return loops[0]


def statements_outside_inner_loops(loop: Node, text: str) -> list[Node]:
    """Statements reading exactly ``text`` in ``loop``'s body, not inside a nested foreach."""
    found = []
    for node in _nodes(loop, "pipeline"):
        if _text(node) != text:
            continue
        parent = node.parent
        while parent is not None and parent != loop and parent.type != "foreach_statement":
            parent = parent.parent
        if parent == loop:
            found.append(node)
    return found


@pytest.mark.parametrize(
    "header", ["@(Hyper-V\\Get-VMHardDiskDrive -VM $vm)", "@($snapshot.HardDrives)"], ids=["vm", "checkpoint"]
)
def test_an_attached_disk_is_known_whether_or_not_its_chain_could_be_read(header: str) -> None:
    # Before the fix only the links of the chain were known: an unreadable disk, with an empty
    # chain, was then listed as a stray file of its own VM.
    loop = drive_loop(header)
    assert statements_outside_inner_loops(loop, "$known[$drive.Path.ToLowerInvariant()] = $true")
    assert "Get-HvtuiChainBreak -Path $drive.Path -Chain $chain" in _text(loop)


def test_a_parent_named_by_a_readable_link_is_known_too() -> None:
    # An unreadable parent ends the chain at the link naming it: that file is no stray either.
    for header in ("@(Hyper-V\\Get-VMHardDiskDrive -VM $vm)", "@($snapshot.HardDrives)"):
        assert "$known[$link.parent_path.ToLowerInvariant()] = $true" in _text(drive_loop(header))


def test_the_disk_record_carries_the_get_vhd_failure() -> None:
    loop = _text(drive_loop("@(Hyper-V\\Get-VMHardDiskDrive -VM $vm)"))
    assert "error = $diskError" in loop
    assert "$vhdErrors[$key] = [string]$_.Exception.Message" in INVENTORY  # the chain walk keeps why


def test_no_file_is_called_stray_in_a_folder_where_a_chain_broke() -> None:
    # The unreadable file's parents are unknown and may lie beside it.
    tree = _parser.parse(INVENTORY.encode("utf-8"))
    (folder_loop,) = [
        node
        for node in _nodes(tree.root_node, "foreach_statement")
        if any(child.type == "variable" and _text(child) == "$folder" for child in node.children)
    ]
    body = _text(folder_loop)
    assert body.index("$unsure.ContainsKey($folder.TrimEnd('\\').ToLowerInvariant())") < body.index("Get-ChildItem")
    assert INVENTORY.count("$unsure[$brokenFolder.TrimEnd('\\').ToLowerInvariant()] = $true") == 2


# -- the answer, through the loopback server -------------------------------------------------------------
UNREADABLE = (
    "Get-VHD cannot read D:\\VMs\\web01\\web01.vhdx: The process cannot access the file because it is being "
    "used by another process. (stray disk files in D:\\VMs\\web01 are not listed until it can)"
)


@pytest.fixture
def backend() -> MemoryBackend:
    estate = MemoryBackend(host_name="HV-REAL")
    vm_id = estate.add_vm("web01")
    disk = estate.vms[vm_id]["disks"][0]
    disk["chain"] = []  # what the template answers when Get-VHD fails on the attached disk
    disk["error"] = UNREADABLE
    estate.add_vm("db01")  # a healthy neighbour: no error field at all, as before
    return estate


@pytest.mark.parametrize("ps51", [False, True], ids=["contract", "ps51-shapes"])
def test_an_unreadable_disk_comes_back_with_its_error_and_no_stray(server: WSManServer, ps51: bool) -> None:
    server.faults.ps51 = ps51  # the empty chain then arrives as null
    host = make_winrm_host(server.port, "hv")
    web, db = host.inventory(5.0).vms
    assert web.disks == (Disk("SCSI", 0, 0, "D:\\VMs\\web01\\web01.vhdx", chain=(), error=UNREADABLE),)
    assert web.stray_disk_files == ()
    assert db.disks[0].error is None and len(db.disks[0].chain) == 1
    host.close()


def test_a_disk_error_renders_back_only_where_there_is_one(server: WSManServer, backend: MemoryBackend) -> None:
    host = make_winrm_host(server.port, "hv")
    snapshot = host.inventory(5.0)
    host.close()
    doc = snapshot_to_wire(snapshot)
    web_disk, db_disk = doc["vms"][0]["disks"][0], doc["vms"][1]["disks"][0]
    assert web_disk["error"] == UNREADABLE and web_disk["chain"] == []
    assert "error" not in db_disk  # healthy disks keep exactly the contract's record
    assert parse_inventory(doc, "hv") == snapshot


def test_a_short_chain_keeps_its_links_and_its_error() -> None:
    # Get-VHD read the differencing file but not its parent: one link, and the error.
    link = VhdLink("D:\\VMs\\a\\a_1.avhdx", "Differencing", 5, 10, "D:\\VMs\\a\\a.vhdx")
    disk = Disk("SCSI", 0, 0, link.path, (link,), error="Get-VHD cannot read D:\\VMs\\a\\a.vhdx: denied")
    facts = parse_inventory({"ok": True, "host": MemoryBackend().facts, "vms": []}, "hv").facts
    snapshot = HostSnapshot(facts=facts, vms=(VM(host="hv", id="a", name="a", state="Off", disks=(disk,)),))
    assert parse_inventory(snapshot_to_wire(snapshot), "hv") == snapshot
