"""Checkpoint operations over WinRM whose outcome is more than "done": a merge the host is
still running after a removal, and a create that was abandoned after switching the VM's
checkpoint type.  Real pywinrm against the loopback server, through the core and the CLI
where the user sees the result."""

from __future__ import annotations

import pytest
from wsman_server import (
    PASSWORD_ENV,
    Answer,
    MemoryBackend,
    WSManServer,
    document_answer,
    failure_answer,
    make_winrm_host,
    server,
)

from hvtui.cli import build_parser
from hvtui.config import Config, HostConfig, SecretSource, WinRMSettings
from hvtui.core import Core
from hvtui.errors import HostError
from hvtui.hosts.base import RemoveOutcome
from hvtui.hosts.winrm.host import create_switches_type
from hvtui.paths import Paths

HOST = "hv-real"

__all__ = ["server"]  # the loopback server fixture, shared from wsman_server


@pytest.fixture
def backend() -> MemoryBackend:
    estate = MemoryBackend(host_name="HV-REAL")
    estate.add_vm("web01")
    return estate


def web_id(backend: MemoryBackend) -> str:
    return next(vm_id for vm_id, vm in backend.vms.items() if vm["name"] == "web01")


def winrm_core(server: WSManServer, paths: Paths, **settings: float) -> Core:
    """A core whose one host is a WinRM host talking to the loopback server."""
    winrm = WinRMSettings(
        address="127.0.0.1", port=server.port, scheme="http", transport="basic", username="hvtui",
        password=SecretSource(env=PASSWORD_ENV), timeout=5.0, operation_timeout=1.0,
    )  # fmt: skip
    config = Config(source=None, hosts=(HostConfig(name=HOST, kind="winrm", winrm=winrm),))
    return Core(config, paths, hosts={HOST: make_winrm_host(server.port, HOST, **settings)})


def cli(core: Core, *argv: str) -> int:
    args = build_parser().parse_args(["checkpoint", *argv])
    return args.handler(args, core)


# -- a merge that goes on after the removal ------------------------------------------------------------
def test_remove_returns_what_the_host_said_about_the_merge(server: WSManServer, backend: MemoryBackend) -> None:
    host = make_winrm_host(server.port)
    vm = web_id(backend)
    first = host.create_checkpoint(vm, "first", "Standard")
    second = host.create_checkpoint(vm, "second", "Standard")
    assert host.remove_checkpoint(vm, first.id) == RemoveOutcome(removed=(first.id,), merge_pending=False)
    backend.merge_pending = True
    events: list = []
    outcome = host.remove_checkpoint(vm, second.id, progress=events.append)
    assert outcome == RemoveOutcome(removed=(second.id,), merge_pending=True)
    assert events[-1].message == f"removed 1 checkpoint(s) on {host.name}; the merge continues on the host"
    host.close()


@pytest.mark.parametrize("pending", [True, False], ids=["merge-pending", "merged"])
def test_the_cli_and_the_audit_say_whether_the_merge_is_still_running(
    server: WSManServer, backend: MemoryBackend, paths: Paths, capsys: pytest.CaptureFixture[str], pending: bool
) -> None:
    core = winrm_core(server, paths)
    setup = make_winrm_host(server.port)
    setup.create_checkpoint(web_id(backend), "before patch", "Standard")
    setup.close()
    backend.merge_pending = pending

    assert cli(core, "remove", "--host", HOST, "--vm", "web01", "--checkpoint", "before patch", "--yes") == 0
    last_line = capsys.readouterr().out.strip().splitlines()[-1]
    if pending:
        assert last_line == (
            f"Deleted checkpoint 'before patch' of VM 'web01' on {HOST!r}; "
            "the merge continues on the host; the chain shrinks when it is done."
        )
    else:
        assert last_line.startswith(f"Deleted checkpoint 'before patch' of VM 'web01' on {HOST!r}; ")
        assert last_line.endswith(" merged.")
    entry = core.audit.read()[-1]
    assert (entry["action"], entry["result"], entry["args"]["merge_pending"]) == ("checkpoint.remove", "ok", pending)
    core.host(HOST).close()


def test_the_plan_the_core_returns_carries_the_pending_merge(
    server: WSManServer, backend: MemoryBackend, paths: Paths
) -> None:
    """What the console's 'done' message reads: ``Actions.remove(...).merge_pending``."""
    core = winrm_core(server, paths)
    vm = web_id(backend)
    cp = core.actions.create(HOST, vm, "to delete", "Standard")
    backend.merge_pending = True
    plan = core.actions.remove(HOST, vm, cp.id)
    assert plan.merge_pending is True and [c.id for c in plan.checkpoints] == [cp.id]
    core.host(HOST).close()


def test_a_merge_pending_that_is_not_a_boolean_is_a_protocol_error(server: WSManServer, backend: MemoryBackend) -> None:
    host = make_winrm_host(server.port, "hv")
    cp = host.create_checkpoint(web_id(backend), "x", "Standard")
    server.faults.respond = lambda op, args: document_answer({"ok": True, "removed": [cp.id], "merge_pending": "yes"})
    with pytest.raises(HostError) as info:
        host.remove_checkpoint(web_id(backend), cp.id)
    assert info.value.kind == "protocol"
    assert str(info.value) == "hv: remove checkpoint: merge_pending: expected true or false, found the text 'yes'"
    host.close()


# -- a create cut off after switching the VM's checkpoint type --------------------------------------------
def test_create_has_the_long_deadline(server: WSManServer, backend: MemoryBackend) -> None:
    # Slower than the short deadline, well within the long one: a Standard checkpoint saves the
    # memory and a Production one waits for VSS, both slow on a big VM.
    server.faults.op_delay["checkpoint.create"] = 2.0
    host = make_winrm_host(server.port, timeout=1.2, operation_timeout=1.0, long_timeout=10.0)
    created = host.create_checkpoint(web_id(backend), "slow", "Standard")
    assert created.name == "slow"
    assert backend.vms[web_id(backend)]["checkpoint_type"] == "Production"
    host.close()


def test_an_abandoned_create_puts_the_checkpoint_type_back(server: WSManServer, backend: MemoryBackend) -> None:
    vm = web_id(backend)
    backend.hang_creates_after_switch = True  # Set-VM -CheckpointType Standard ran; the finally never will
    host = make_winrm_host(server.port, "hv", timeout=5.0, operation_timeout=1.0, long_timeout=1.5)
    with pytest.raises(HostError) as info:
        host.create_checkpoint(vm, "big VM", "Standard")
    assert info.value.kind == "timeout"
    assert str(info.value) == (
        "hv: create checkpoint: no answer before our deadline (1.5s for this call): the host is unreachable or "
        "overloaded; the VM's checkpoint type, switched to Standard for this checkpoint, was put back to Production"
    )
    assert backend.vms[vm]["checkpoint_type"] == "Production"
    read, create, restore = server.commands
    assert (read.op, create.op, restore.op) == ("checkpoint.type", "checkpoint.create", "checkpoint.type")
    assert read.arguments is not None and read.arguments["restore_to"] is None  # only reads
    assert create.arguments is not None and create.arguments["expected_type"] == "Production"
    assert restore.arguments is not None
    assert (restore.arguments["restore_from"], restore.arguments["restore_to"]) == ("Standard", "Production")
    assert 0 < restore.arguments["wait_seconds"] < 5.0  # retries Set-VM within its own call's deadline
    host.close()


def test_a_failed_type_restore_is_in_the_error(server: WSManServer, backend: MemoryBackend) -> None:
    vm = web_id(backend)
    backend.vms[vm]["checkpoint_type"] = "Standard"
    backend.hang_creates_after_switch = True
    backend.refuse_type_restore = "The operation cannot be performed while the object is in its current state."
    host = make_winrm_host(server.port, "hv", long_timeout=1.5)
    with pytest.raises(HostError) as info:
        host.create_checkpoint(vm, "app-consistent", "Production")
    assert info.value.kind == "timeout"
    assert str(info.value).endswith(
        "; the VM's checkpoint type may still be Production (switched for this checkpoint): putting it back to "
        "Standard failed: The operation cannot be performed while the object is in its current state. "
        "[InvalidState,Microsoft.HyperV.PowerShell.Commands.SetVM]; set it back with Set-VM -CheckpointType Standard"
    )
    assert backend.vms[vm]["checkpoint_type"] == "Production"  # as the host really left it
    host.close()


@pytest.mark.parametrize(
    ("vm_type", "create_answer", "kind"),
    [
        ("Standard", Answer(b"", hang=True), "timeout"),  # cut off, but the type was already right
        ("Production", failure_answer("Checkpoint-VM failed: disk full", "HvtuiDiskFull"), "failed"),  # finally ran
    ],
    ids=["nothing-switched", "script-ended"],
)
def test_no_restore_when_nothing_can_be_left_switched(
    server: WSManServer, backend: MemoryBackend, vm_type: str, create_answer: Answer, kind: str
) -> None:
    vm = web_id(backend)
    backend.vms[vm]["checkpoint_type"] = vm_type
    server.faults.respond = lambda op, args: create_answer if op == "checkpoint.create" else None
    host = make_winrm_host(server.port, "hv", long_timeout=1.5)
    with pytest.raises(HostError) as info:
        host.create_checkpoint(vm, "x", "Standard")
    assert info.value.kind == kind and "checkpoint type" not in str(info.value)
    assert server.ops() == ["checkpoint.type", "checkpoint.create"]
    host.close()


def test_a_recovery_checkpoint_needs_no_type_read(server: WSManServer, backend: MemoryBackend) -> None:
    host = make_winrm_host(server.port)
    assert host.create_checkpoint(web_id(backend), "backup", "Recovery").type == "Recovery"
    assert server.ops() == ["checkpoint.create"]
    host.close()


@pytest.mark.parametrize(
    ("vm_type", "wanted", "switches"),
    [
        ("Production", "Standard", True),
        ("Standard", "Production", True),
        ("ProductionOnly", "Standard", True),
        ("ProductionOnly", "Production", False),
        ("Standard", "Standard", False),
        ("Disabled", "Standard", False),  # refused before any switch
        (None, "Standard", False),  # a host without the setting
        ("Production", "Recovery", False),
    ],
)
def test_the_client_knows_when_the_script_switches_the_type(vm_type: str | None, wanted: str, switches: bool) -> None:
    assert create_switches_type(vm_type, wanted) is switches


async def test_the_console_says_the_merge_continues_when_the_host_is_still_merging(
    server: WSManServer, backend: MemoryBackend, paths: Paths
) -> None:
    from tui_support import screen_text, settle

    from hvtui.tui.app import HvtuiApp
    from hvtui.tui.screens.dialogs import ChoiceDialog

    core = winrm_core(server, paths)
    vm = web_id(backend)
    for name in ("kept", "pending"):
        core.actions.create(HOST, vm, name, "Standard")
    app = HvtuiApp(core, poll_automatically=False)
    async with app.run_test(size=(110, 32), notifications=True) as pilot:
        await settle(pilot)
        checkpoints = {cp.name: cp.id for cp in app.snapshot.inventory.vm(HOST, vm).checkpoints}
        # Remove-VMSnapshot returned while Hyper-V still merges: not "merged".
        backend.merge_pending = True
        app.start_delete(HOST, vm, checkpoints["pending"])
        await settle(pilot)
        assert isinstance(app.screen, ChoiceDialog)
        await pilot.press("tab", "enter")  # "Delete" (the focus starts on No)
        await settle(pilot)
        text = " ".join(screen_text(app).replace("▌", " ").split())  # the toast wraps, with its border
        assert "the merge continues on the host; the chain shrinks when it is done" in text
        assert "merged" not in text
    core.host(HOST).close()
