"""A schedule run reaches its notification targets through Core's Notifier (real webhook server)."""

from __future__ import annotations

from pathlib import Path

import pytest
from notify_support import Reply, webhook_server
from schedule_support import HOST, berlin, make_core, make_lab, schedule

from hvtui.clock import FixedClock
from hvtui.config.settings import NotificationConfig, WebhookSettings
from hvtui.paths import Paths


@pytest.fixture(autouse=True)
def berlin_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Europe/Berlin")  # the schedule's 22:00 is the jump box's local time


def test_run_due_sends_one_report_per_run_to_the_schedules_targets(tmp_path: Path, paths: Paths) -> None:
    clock = FixedClock(berlin(2026, 11, 23, 21, 59))
    make_lab(tmp_path, ("vm1", "vm2"), clock)
    with webhook_server() as server:
        chat = NotificationConfig(
            name="chat", on=("success", "warning", "failure", "missed"),
            webhook=WebhookSettings(plain_url=f"http://127.0.0.1:{server.port}/hook", format="json", retries=1, timeout=5.0),
        )
        core = make_core(tmp_path, paths, (schedule(notify=("chat",)),), clock, notifications=(chat,))
        clock.advance(120)
        (report,) = core.schedules.run_due().reports
        core.close()
    assert report.event == "success" and report.notes == ()
    assert len(server.requests) == 1
    body = server.json()
    assert body["schedule"] == "nightly" and body["event"] == "success"
    assert sorted((r["host"], r["vm"], r["outcome"]) for r in body["results"]) == [(HOST, "vm1", "succeeded"), (HOST, "vm2", "succeeded")]


def test_a_failed_delivery_is_kept_with_the_run_and_never_fails_it(tmp_path: Path, paths: Paths) -> None:
    clock = FixedClock(berlin(2026, 11, 23, 21, 59))
    make_lab(tmp_path, ("vm1",), clock)
    with webhook_server() as server:
        server.script = [Reply(404)]
        chat = NotificationConfig(
            name="chat", on=("success",),
            webhook=WebhookSettings(plain_url=f"http://127.0.0.1:{server.port}/hook", format="slack", retries=1, timeout=5.0),
        )
        core = make_core(tmp_path, paths, (schedule(notify=("chat",)),), clock, notifications=(chat,))
        clock.advance(120)
        result = core.schedules.run_due()
        core.close()
    (report,) = result.reports
    assert report.event == "success" and [r.outcome for r in report.results] == ["succeeded"]
    assert len(report.notes) == 1 and "chat" in report.notes[0] and "404" in report.notes[0]
