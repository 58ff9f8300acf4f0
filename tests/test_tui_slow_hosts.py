"""The console with one host that never answers, beside the demo lab hosts.

The lab's VMs must be painted while the console still waits on the hung host (first paint
included), the hung host flagged as waiting (then as timed out), and a checkpoint created on
a lab VM must show while the full refresh still waits.  The hung host's deadline is 60 s and
every assertion is made while it hangs; it is released at the end.  No timing is asserted:
the tests wait for the screen by rounds of ``pilot.pause`` and check what the console shows
at that moment.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from sprawl_support import StubHost, linear_vm, release
from textual.pilot import Pilot
from tui_support import SIZE, screen_text
from wsman_server import PASSWORD_ENV, BlackholeServer

from hvtui.clock import FixedClock
from hvtui.config import Config, HostConfig, SecretSource, UIConfig, WinRMSettings
from hvtui.core import Core
from hvtui.hosts.base import Host
from hvtui.hosts.lab.estate import lab_host_names
from hvtui.hosts.lab.host import LabHost
from hvtui.model import Severity
from hvtui.paths import Paths
from hvtui.tui.app import HvtuiApp
from hvtui.tui.screens.dialogs import CreateCheckpointDialog
from hvtui.tui.screens.vms import VmsScreen

__all__ = ["release"]  # fixture used below, shared from sprawl_support

HUNG = "hv-hang"
DEADLINE = 60.0  # the hung host's: never reached while a test runs


def console_core(lab: Path, paths: Paths, hung: Host, hung_config: HostConfig, clock: FixedClock) -> Core:
    """The demo lab's hosts and ``hung``, in that order, as the console's config lists them."""
    names = lab_host_names(lab)
    hosts: dict[str, Host] = {name: LabHost.open(lab / name, name=name, clock=clock) for name in names}
    hosts[HUNG] = hung
    config = Config(
        source=None,
        hosts=(*(HostConfig(name=name, kind="lab") for name in names), hung_config),
        ui=UIConfig(refresh_seconds=3600),  # the tests refresh by call, never by the clock
    )
    return Core(config, paths, clock=clock, lab_dir=lab, hosts=hosts)


def stub_hung(release: threading.Event) -> tuple[StubHost, HostConfig]:
    hung = StubHost(HUNG, [linear_vm("file01", host=HUNG)], kind="winrm")
    hung.hang = release
    settings = WinRMSettings(address="192.0.2.1", timeout=DEADLINE)  # only its deadline is used
    return hung, HostConfig(name=HUNG, kind="winrm", winrm=settings)


def lab_vm_names(core: Core) -> list[str]:
    return sorted(vm.name for name, host in core.hosts.items() if name != HUNG for vm in host.inventory(10).vms)


def shown_names(app: HvtuiApp) -> list[str]:
    screen = app.screen
    if not isinstance(screen, VmsScreen):
        return []
    return sorted(screen.table.plain_row(key)["name"] for key in screen.table.keys)


async def until(pilot: Pilot, condition: Callable[[], bool], rounds: int = 500) -> None:
    """Let the console work until ``condition`` holds (bounded; asserts nothing about time)."""
    for _ in range(rounds):
        if condition():
            return
        await pilot.pause(0.02)
    raise AssertionError("the console never got there")


def header(app: HvtuiApp) -> str:
    return screen_text(app).splitlines()[0]


async def test_lab_vms_are_painted_while_a_winrm_host_never_answers(
    shared_demo_lab: Path, paths: Paths, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reviewer's reproduction: a WinRM host whose listener accepts and never answers."""
    from hvtui.hosts.winrm.host import WinRMHost

    monkeypatch.setenv(PASSWORD_ENV, "s3cret!")
    with BlackholeServer() as hole:
        settings = WinRMSettings(
            address="127.0.0.1", port=hole.port, scheme="http", transport="basic", username="hvtui",
            password=SecretSource(env=PASSWORD_ENV), timeout=DEADLINE, operation_timeout=1.0,
        )  # fmt: skip
        hung_config = HostConfig(name=HUNG, kind="winrm", winrm=settings)
        hung = WinRMHost(hung_config, allow_basic_over_http_for_tests=True)
        core = console_core(shared_demo_lab, paths, hung, hung_config, FixedClock())
        expected = lab_vm_names(core)
        app = HvtuiApp(core)
        async with app.run_test(size=SIZE) as pilot:
            alert = f"⧗ {HUNG}: waiting for an answer (gives up after 60 s) — no data"
            await until(pilot, lambda: shown_names(app) == expected and alert in screen_text(app))
            # Painted while the first refresh still waits on the hung host.
            assert app.is_polling and hole.connections >= 1
            assert "loading inventory" not in header(app)
            assert "hosts 3/4 (1 waiting)" in header(app)  # late, not down
            hole.stop()  # the host "answers" now (its connection drops): let the refresh end


async def test_hung_host_is_flagged_waiting_and_the_header_tells_the_newest_data_age(
    fresh_demo_lab: Path, paths: Paths, release: threading.Event
) -> None:
    hung, hung_config = stub_hung(release)
    hung.hang = None  # it answers the first time
    clock = FixedClock()
    core = console_core(fresh_demo_lab, paths, hung, hung_config, clock)
    core.inventory.waiting_after = 0.0  # flag it at once (the console waits WAITING_AFTER s)
    app = HvtuiApp(core)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: not app.is_polling and app.snapshot is not None)
        assert "hosts 4/4" in header(app) and "0s ago" in header(app)
        first = app.snapshot_version

        clock.advance(120)  # two minutes later the hung host stops answering
        hung.hang = release
        app.request_refresh()
        stale_row = next(vm.key for vm in app.snapshot.inventory.host(HUNG).vms)

        alert = f"⧗ {HUNG}: waiting for an answer (gives up after 60 s) — showing stale data"
        await until(pilot, lambda: app.snapshot_version > first and alert in screen_text(app))
        assert app.is_polling  # still waiting on the hung host
        text = screen_text(app)
        table = app.screen.table
        assert table.plain_row(stale_row)["name"] == "file01"
        assert f"{HUNG} (stale)" in text  # its VM stays listed, marked stale
        # "N s ago" is the age of the newest data: the lab hosts answered just now.  The
        # hung host's data is two minutes old, and flagged above.
        assert "0s ago" in header(app) and "hosts 3/4 (1 waiting)" in header(app)
        assert hung.inventory_calls == 2
        release.set()
        await until(pilot, lambda: not app.is_polling)
        # The next poll is due an interval after this one started, not after it ended:
        # the lab hosts' data must not age by the time the hung host held the poll.
        assert app._next_poll_in < app.refresh_interval


async def test_a_late_host_is_waiting_then_down_once_its_deadline_passes(
    shared_demo_lab: Path, paths: Paths, release: threading.Event
) -> None:
    hung, _config = stub_hung(release)
    short = HostConfig(name=HUNG, kind="winrm", winrm=WinRMSettings(address="192.0.2.1", timeout=4.0))
    app = HvtuiApp(console_core(shared_demo_lab, paths, hung, short, FixedClock()))
    async with app.run_test(size=SIZE) as pilot:
        waiting = f"⧗ {HUNG}: waiting for an answer (gives up after 4 s) — no data"
        await until(pilot, lambda: waiting in screen_text(app))
        assert "hosts 3/4 (1 waiting)" in header(app) and "down" not in header(app)
        assert not [f for f in app.snapshot.findings if f.host == HUNG]  # late is not unreadable, yet

        down = f"✗ {HUNG}: no answer within 4 s (timeout) — no data"
        await until(pilot, lambda: down in screen_text(app))
        assert "hosts 3/4 (1 down)" in header(app) and "waiting" not in header(app)
        assert [f.rule for f in app.snapshot.findings if f.host == HUNG] == ["host-unreachable"]


async def test_checkpoint_created_on_a_lab_vm_shows_while_a_host_hangs(
    fresh_demo_lab: Path, paths: Paths, release: threading.Event
) -> None:
    hung, hung_config = stub_hung(release)
    core = console_core(fresh_demo_lab, paths, hung, hung_config, FixedClock())
    expected = lab_vm_names(core)
    app = HvtuiApp(core)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await until(pilot, lambda: shown_names(app) == expected)
        vm = next(vm for vm in app.snapshot.inventory.vms if vm.name == "test01")
        before = vm.checkpoint_count
        await pilot.press("slash", *"test01", "enter")  # the list narrowed to test01, selected
        await until(pilot, lambda: shown_names(app) == ["test01"])
        await pilot.press("c")
        await until(pilot, lambda: isinstance(app.screen, CreateCheckpointDialog))
        app.screen.query_one("#cp-name").value = "while hung"
        await pilot.press("enter")

        def count_shown() -> str:
            return app.screen.table.plain_row(vm.key)["checkpoints"] if isinstance(app.screen, VmsScreen) else ""

        await until(pilot, lambda: count_shown() == str(before + 1))
        # Shown while the full refresh still waits on the hung host, on which nothing was stacked.
        assert app.is_polling and hung.inventory_calls == 1
        shown = app.snapshot.inventory.vm(vm.host, vm.id)
        assert [cp.name for cp in shown.checkpoints if cp.name == "while hung"] == ["while hung"]
        await until(pilot, lambda: "Checkpoint 'while hung'" in screen_text(app))  # the "created" toast
        assert app.is_polling
        release.set()


async def test_a_host_refresh_does_not_wait_for_one_of_a_hung_host(
    fresh_demo_lab: Path, paths: Paths, release: threading.Event
) -> None:
    hung, hung_config = stub_hung(release)
    core = console_core(fresh_demo_lab, paths, hung, hung_config, FixedClock())
    expected = lab_vm_names(core)
    app = HvtuiApp(core)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: shown_names(app) == expected)
        app.request_refresh([HUNG])  # e.g. after an action on the hung host: waits on it
        app.request_refresh([HUNG])  # again: queued behind that one, never beside it
        polls = [w for w in app.workers if w.group == "poll" and not w.is_finished]
        assert len(polls) == 2  # the full refresh and one refresh of the hung host

        vm = next(vm for vm in app.snapshot.inventory.vms if vm.name == "test01")
        await asyncio.to_thread(core.actions.create, vm.host, vm.id, "beside a hung one")
        app.request_refresh([vm.host])

        def count_shown() -> str:
            return app.screen.table.plain_row(vm.key)["checkpoints"] if isinstance(app.screen, VmsScreen) else ""

        await until(pilot, lambda: count_shown() == str(vm.checkpoint_count + 1))
        assert hung.inventory_calls == 1  # nothing stacked on the hung host
        assert app.is_polling and sum(1 for w in app.workers if w.group == "poll" and not w.is_finished) == 2
        release.set()


async def test_a_slow_hosts_first_answer_raises_no_new_critical_toast(
    fresh_demo_lab: Path, paths: Paths, release: threading.Event
) -> None:
    """Its findings are not new: they were simply not known yet (a 30-day-old checkpoint)."""
    hung, hung_config = stub_hung(release)
    old = linear_vm("old-cp01", host=HUNG, ages=(30 * 86400,))
    hung.vms = {old.id: old}
    core = console_core(fresh_demo_lab, paths, hung, hung_config, FixedClock())
    expected = lab_vm_names(core)
    app = HvtuiApp(core)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await until(pilot, lambda: shown_names(app) == expected)  # painted without the hung host
        release.set()
        await until(pilot, lambda: shown_names(app) == sorted([*expected, "old-cp01"]) and not app.is_polling)
        assert any(f.host == HUNG and f.severity == Severity.CRIT for f in app.snapshot.findings)
        for _ in range(5):
            await pilot.pause()
        assert "critical finding" not in screen_text(app).lower()


async def test_the_other_hosts_are_polled_on_their_interval_while_a_host_hangs(
    paths: Paths, release: threading.Event
) -> None:
    """Reviewer: "every later refresh takes ~35 s".  Each poll waits on the hung host one
    refresh interval at most; the next one reads the other hosts again and reuses the hung
    call."""
    fast = StubHost("hv-fast", [linear_vm("web01", host="hv-fast")])
    hung, hung_config = stub_hung(release)
    config = Config(
        source=None,
        hosts=(HostConfig(name=fast.name, kind="lab"), hung_config),
        ui=UIConfig(refresh_seconds=1),  # automatic polls, as fast as the console allows
    )
    core = Core(config, paths, clock=FixedClock(), hosts={fast.name: fast, HUNG: hung})
    app = HvtuiApp(core)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: shown_names(app) == ["web01"])
        added = linear_vm("added-later", host=fast.name)  # changed on the host, not through hvtui
        with fast._lock:
            fast.vms[added.id] = added
        await until(pilot, lambda: shown_names(app) == ["added-later", "web01"], rounds=1500)
        assert hung.inventory_calls == 1 and fast.inventory_calls >= 2  # the hung call reused, not stacked
        assert f"⧗ {HUNG}: waiting for an answer (gives up after 60 s) — no data" in screen_text(app)
        release.set()
