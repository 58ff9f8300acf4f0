"""WinRMHost end to end: real pywinrm against the loopback WS-Management server.

Covers the calling convention (one Command per call, data only in the JSON arguments),
checkpoint operations, shell reuse and recycling, and the tolerated oddities of real hosts
(CLIXML progress on standard error, output over many Receives, busy Sends, Receive
time-outs while the answer is not ready).
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from wsman_server import (
    MemoryBackend,
    WSManServer,
    make_winrm_host,
    server,
)

from hvtui.hosts.winrm.encoding import bootstrap_command
from hvtui.hosts.winrm.operations import full_script
from hvtui.wire import parse_inventory

HOSTILE_NAMES = [
    "it's",
    'say "hi"',
    "‘left’ ‚low‛ quotes",  # U+2018..U+201B: PowerShell quotes too
    "“double” „low“",
    "$(Remove-VM -Name * -Force)",
    "${env:USERNAME}",
    "`$x`n back`ticks`",
    "a; Stop-Computer -Force; b",
    "line one\nline two\r\nline three",
    "@'\nhere-string\n'@",
    "tab\there | pipe & amp < > %TEMP% ^caret",
    "Ünïcödé Ελληνικά 日本語 😀 עברית",
    "x" * 5000,
    "\\\\server\\share\\..\\..\\windows",
    "' + (Get-Date) + '",
]

__all__ = ["server"]  # the loopback server fixture, shared from wsman_server


@pytest.fixture
def backend() -> MemoryBackend:
    estate = MemoryBackend(host_name="HV-MEM")
    estate.add_vm("web01")
    estate.add_vm("sql01", state="Off")
    return estate


def vm_id(backend: MemoryBackend, name: str) -> str:
    return next(vm_id for vm_id, vm in backend.vms.items() if vm["name"] == name)


def test_inventory_reads_the_estate(server: WSManServer, backend: MemoryBackend) -> None:
    host = make_winrm_host(server.port, "hv-mem")
    snapshot = host.inventory(5.0)
    expected = parse_inventory({"ok": True, "host": backend.facts, "vms": list(backend.vms.values())}, "hv-mem")
    assert snapshot == expected
    assert [vm.name for vm in snapshot.vms] == ["web01", "sql01"]
    assert all(vm.host == "hv-mem" for vm in snapshot.vms)
    host.close()


def test_one_call_is_one_command_with_the_wire_sequence(server: WSManServer) -> None:
    host = make_winrm_host(server.port)
    host.inventory(5.0)
    assert server.actions == ["Create", "Command", "Send", "Receive", "Signal"]
    assert len(server.commands) == 1
    command = server.commands[0]
    assert command.command_line == bootstrap_command()
    assert command.script == full_script("inventory")
    assert command.arguments == {"op": "inventory", "v": 1}
    assert command.signalled
    host.close()
    assert server.actions[-1] == "Delete" and server.shells == {}


def test_the_shell_is_reused_across_calls(server: WSManServer) -> None:
    host = make_winrm_host(server.port)
    for _ in range(4):
        host.inventory(5.0)
    assert server.shells_created == 1
    assert len({c.shell_id for c in server.commands}) == 1
    assert server.ops() == ["inventory"] * 4
    host.close()


def test_the_shell_is_recycled_after_commands_per_shell(server: WSManServer) -> None:
    host = make_winrm_host(server.port, commands_per_shell=3)
    for _ in range(7):
        host.inventory(5.0)
    per_shell: dict[str, int] = {}
    for command in server.commands:
        per_shell[command.shell_id] = per_shell.get(command.shell_id, 0) + 1
    assert sorted(per_shell.values()) == [1, 3, 3]
    assert server.shells_created == 3
    assert server.shells_deleted == 2  # the two full shells were closed, not leaked
    host.close()
    assert server.shells_deleted == 3


def test_a_quota_fault_recycles_the_shell_and_the_call_succeeds(server: WSManServer) -> None:
    server.faults.quota_after = 2  # like WinRS, which never gives operations back
    host = make_winrm_host(server.port)
    for _ in range(5):
        assert len(host.inventory(5.0).vms) == 2
    assert server.quota_faults == 2
    assert server.shells_created == 3
    assert server.ops() == ["inventory"] * 5
    host.close()


def test_a_shell_the_host_dropped_is_replaced(server: WSManServer) -> None:
    host = make_winrm_host(server.port)
    host.inventory(5.0)
    with server.lock:
        server.shells.clear()  # the host's IdleTimeout / MaxShellRunTime ended the shell
    assert len(host.inventory(5.0).vms) == 2
    assert server.shells_created == 2 and len(server.commands) == 2
    host.close()


def test_a_busy_send_is_retried(server: WSManServer) -> None:
    server.faults.busy_sends = 2
    host = make_winrm_host(server.port)
    assert len(host.inventory(5.0).vms) == 2
    assert server.busy_faults == 2
    host.close()


def test_receive_time_outs_are_retried_until_the_answer_is_ready(server: WSManServer) -> None:
    server.faults.delay = 1.3  # longer than the 1 s OperationTimeout: at least one TimedOut fault
    host = make_winrm_host(server.port, timeout=10.0, operation_timeout=1.0)
    assert len(host.inventory(10.0).vms) == 2
    assert server.actions.count("Receive") >= 2
    host.close()


def test_output_over_many_receives_is_joined(server: WSManServer) -> None:
    server.faults.chunk_size = 97
    host = make_winrm_host(server.port)
    assert len(host.inventory(5.0).vms) == 2
    assert server.actions.count("Receive") > 5
    host.close()


def test_clixml_progress_on_stderr_with_exit_code_zero_is_success(server: WSManServer) -> None:
    server.faults.clixml_progress = True
    host = make_winrm_host(server.port)
    assert len(host.inventory(5.0).vms) == 2
    host.close()


def test_checkpoint_operations(server: WSManServer, backend: MemoryBackend) -> None:
    host = make_winrm_host(server.port)
    web = vm_id(backend, "web01")
    first = host.create_checkpoint(web, "before patch", "Production")
    second = host.create_checkpoint(web, None, "Standard")
    third = host.create_checkpoint(web, "third", "Recovery")
    assert (first.name, first.type, first.parent_id) == ("before patch", "Production", None)
    assert second.name.startswith("web01 - (") and second.parent_id == first.id
    assert third.type == "Recovery" and third.parent_id == second.id

    host.rename_checkpoint(web, first.id, "renamed")
    host.apply_checkpoint(web, first.id)
    vm = next(v for v in host.inventory(5.0).vms if v.id == web)
    assert vm.checkpoint(first.id).name == "renamed"  # type: ignore[union-attr]
    assert vm.parent_checkpoint_id == first.id and vm.state == "Off"

    host.remove_checkpoint(web, second.id, subtree=True)
    vm = next(v for v in host.inventory(5.0).vms if v.id == web)
    assert [cp.id for cp in vm.checkpoints] == [first.id]
    removes = server.commands_for("checkpoint.remove")
    assert removes[0].arguments is not None
    assert removes[0].arguments["subtree"] is True and removes[0].arguments["checkpoint_id"] == second.id
    # Standard and Production read the VM's checkpoint type first; Recovery never switches it.
    assert server.ops() == [
        "checkpoint.type", "checkpoint.create", "checkpoint.type", "checkpoint.create", "checkpoint.create",
        "checkpoint.rename", "checkpoint.apply", "inventory", "checkpoint.remove", "inventory",
    ]  # fmt: skip
    host.close()


def test_each_operation_sends_its_own_template_and_only_the_documented_arguments(
    server: WSManServer, backend: MemoryBackend
) -> None:
    host = make_winrm_host(server.port)
    web = vm_id(backend, "web01")
    cp = host.create_checkpoint(web, "a", "Standard")
    host.rename_checkpoint(web, cp.id, "b")
    host.apply_checkpoint(web, cp.id)
    host.remove_checkpoint(web, cp.id)
    expected_keys = {
        "checkpoint.type": {"op", "v", "vm_id", "restore_from", "restore_to", "wait_seconds"},
        "checkpoint.create": {"op", "v", "vm_id", "name", "checkpoint_type", "expected_type"},
        "checkpoint.rename": {"op", "v", "vm_id", "checkpoint_id", "new_name"},
        "checkpoint.apply": {"op", "v", "vm_id", "checkpoint_id"},
        "checkpoint.remove": {"op", "v", "vm_id", "checkpoint_id", "subtree", "wait_seconds"},
    }
    sent = [command.op for command in server.commands]
    # Every operation was sent: a loop over no recorded command would pass whatever the templates.
    assert set(sent) == set(expected_keys), sent
    for command in server.commands:
        assert command.arguments is not None and command.op is not None
        assert set(command.arguments) == expected_keys[command.op]
        assert command.script == full_script(command.op)
        # every argument the template reads is one the host sends, and the other way round
        used = set(__import__("re").findall(r"\$HvtuiArgs\.(\w+)", command.script))
        assert used == expected_keys[command.op] - {"op", "v"}
    host.close()


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=lambda n: repr(n[:20]))
def test_hostile_names_travel_only_inside_the_json(server: WSManServer, backend: MemoryBackend, name: str) -> None:
    hostile_vm = backend.add_vm(name)
    host = make_winrm_host(server.port)
    created = host.create_checkpoint(hostile_vm, name, "Standard")
    assert created.name == name
    host.rename_checkpoint(hostile_vm, created.id, name + " (2)")
    vm = next(v for v in host.inventory(5.0).vms if v.id == hostile_vm)
    assert vm.name == name
    assert vm.checkpoints[0].name == name + " (2)"
    assert vm.disks[0].path == f"D:\\VMs\\{name}\\{name}.vhdx"

    for command in server.commands:
        assert command.script is not None and command.arguments_json is not None
        assert name not in command.script and name not in command.command_line
        assert command.script == full_script(command.op or "")
        assert command.arguments_json.isascii()  # \\u-escaped: no code page can garble it
    assert server.ops()[:3] == ["checkpoint.type", "checkpoint.create", "checkpoint.rename"]
    create, rename = server.commands[1], server.commands[2]
    assert json.loads(create.arguments_json or "")["name"] == name
    assert json.loads(rename.arguments_json or "")["new_name"] == name + " (2)"
    host.close()


def test_calls_from_many_threads_share_at_most_two_shells(server: WSManServer) -> None:
    server.faults.delay = 0.05
    host = make_winrm_host(server.port, max_shells=2)
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(lambda _: host.inventory(10.0), range(12)))
    assert all(len(snapshot.vms) == 2 for snapshot in results)
    assert len(server.commands) == 12
    assert server.shells_created <= 2
    host.close()
    assert server.shells == {}


def test_a_long_operation_does_not_block_inventory(server: WSManServer, backend: MemoryBackend) -> None:
    web = vm_id(backend, "web01")
    setup = make_winrm_host(server.port)
    cp_id = setup.create_checkpoint(web, "x", "Standard").id
    setup.close()
    released = threading.Event()
    merging = threading.Event()

    def slow_remove(op: str, args: dict):
        if op == "checkpoint.remove":
            merging.set()
            released.wait(10)
        return None

    server.faults.respond = slow_remove
    host = make_winrm_host(server.port)
    with ThreadPoolExecutor(max_workers=1) as pool:
        removal = pool.submit(host.remove_checkpoint, web, cp_id)
        assert merging.wait(5)
        assert len(host.inventory(5.0).vms) == 2  # a second shell answers meanwhile
        released.set()
        removal.result(timeout=10)
    assert server.shells_created == 3  # one for the setup, two for the concurrent calls
    host.close()
