"""The console offers `hvtui doctor` for a host shown as unreachable (issue 19 §5): `!` in the key
bar while a host is down, and a dialog with the checks, the first failure named."""

from __future__ import annotations

from pathlib import Path

from samba_support import free_port
from tui_support import SIZE, make_app, make_core, refreshed, screen_text, settle

from hvtui.config import Config, HostConfig, SecretSource, WinRMSettings
from hvtui.tui.screens.doctor import DoctorScreen
from hvtui.tui.widgets.keybar import KeyBar


def descriptions(app) -> list[str]:
    return [hint.description for hint in app.screen.query_one(KeyBar).hints]


async def wait_for_doctor(pilot) -> DoctorScreen:
    app = pilot.app
    for _ in range(100):
        await pilot.pause(0.05)
        if isinstance(app.screen, DoctorScreen) and app.screen.finished:
            await pilot.pause()
            return app.screen
    raise AssertionError("the doctor never finished")


async def test_doctor_is_offered_for_an_unreachable_host_and_names_its_first_failure(fresh_demo_lab: Path, paths, monkeypatch) -> None:
    monkeypatch.setenv("HV01_PASSWORD", "pw")
    down = WinRMSettings(
        address="127.0.0.1", port=free_port(), username="svc", password=SecretSource(env="HV01_PASSWORD"), timeout=2.0, operation_timeout=1.0
    )
    hosts = (HostConfig(name="lab-hv01", kind="lab"), HostConfig(name="hv01", kind="winrm", winrm=down))
    app = make_app(make_core(fresh_demo_lab, paths, config=Config(source=Path("test-config.yaml"), hosts=hosts)))
    async with app.run_test(size=SIZE) as pilot:
        await refreshed(pilot)
        assert "✗ hv01" in screen_text(app)
        assert "Doctor" in descriptions(app)

        await pilot.press("exclamation_mark")
        screen = await wait_for_doctor(pilot)
        text = screen_text(app)
        assert "Doctor: hv01" in text
        assert "[ok  ] address resolves" in text
        assert "[FAIL] port open" in text and "what to do:" in text
        assert "-> first failure: port open" in text
        assert "lab-hv01" not in screen.hosts  # only the host that is down

        await pilot.press("escape")
        await settle(pilot)
        assert not isinstance(app.screen, DoctorScreen)


async def test_no_doctor_while_every_host_answers(fresh_demo_lab: Path, paths) -> None:
    app = make_app(make_core(fresh_demo_lab, paths))
    async with app.run_test(size=SIZE) as pilot:
        await refreshed(pilot)
        assert "Doctor" not in descriptions(app)
        await pilot.press("exclamation_mark")
        await settle(pilot)
        assert not isinstance(app.screen, DoctorScreen)
