"""The console shows a notification that could not be sent (a schedule run sends from another
process): a mark in the header while its last message failed, and a toast with the reason once
per failed message; a later message that goes through clears the mark."""

from __future__ import annotations

from pathlib import Path

from notify_support import sample_report
from tui_support import SIZE, make_app, make_core, refreshed, screen_text, settle

from hvtui.notify.state import DeliveryState
from hvtui.paths import Paths


def flat(text: str) -> str:
    """Screen text with the toasts' line breaks and borders folded away."""
    return " ".join(text.replace("▌", " ").replace("▐", " ").split())


REASON = "notification ops-mail (email): SMTP server smtp.example.com:587 rejected the log-on of 'hvtui' (AUTH): 535 5.7.8"


async def test_a_failed_notification_is_marked_in_the_header_and_told_once(fresh_demo_lab: Path, paths: Paths) -> None:
    state = DeliveryState(paths.notification_state)
    state.record("ops-mail", sample_report(), REASON)
    app = make_app(make_core(fresh_demo_lab, paths))
    async with app.run_test(size=SIZE, notifications=True) as pilot:  # toasts drawn, as in the console
        await settle(pilot)
        screen = screen_text(app)
        assert "notify failed: ops-mail" in screen.splitlines()[0], screen.splitlines()[0]
        await pilot.pause()
        screen = flat(screen_text(app))
        assert "Notification ops-mail not sent" in screen and "rejected the log-on of 'hvtui'" in screen
        assert len(app._notifications) == 1

        await refreshed(pilot)  # the same failure: the mark stays, no second toast
        assert "notify failed: ops-mail" in screen_text(app).splitlines()[0]
        assert len(app._notifications) == 1

        state.record("chat", sample_report(), "notification chat (webhook): webhook https://chat.example.com:443 answered HTTP 500")
        await refreshed(pilot)
        assert "notify failed: 2 targets" in screen_text(app).splitlines()[0]
        assert [n.title for n in app._notifications] == ["Notification ops-mail not sent", "Notification chat not sent"]

        state.record("ops-mail", sample_report(), None)
        state.record("chat", sample_report(), None)
        await refreshed(pilot)
        assert "notify failed" not in screen_text(app).splitlines()[0]


async def test_no_mark_without_a_failure(fresh_demo_lab: Path, paths: Paths) -> None:
    DeliveryState(paths.notification_state).record("ops-mail", sample_report(), None)
    app = make_app(make_core(fresh_demo_lab, paths))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert "notify failed" not in screen_text(app)
        assert len(app._notifications) == 0
