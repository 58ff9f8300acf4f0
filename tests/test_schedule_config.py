"""Backup schedules in the config (``schedules:``): what a valid entry becomes, every mistake with
its line and a did-you-mean, warnings for selectors that select nothing; the time math of
at / every / cron in the jump box's zone across daylight saving changes; which VMs a schedule
selects and why; and the backup-overdue rule."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sprawl_support import NOW, linear_vm
from test_config import load
from test_policy import inv, rule_findings

from hvtui.config import Config, PolicyConfig
from hvtui.config.schedules import ScheduleConfig
from hvtui.config.timing import TimingError, local_zone, parse_timing
from hvtui.errors import ConfigError
from hvtui.model import Severity
from hvtui.policy import BACKUP_OVERDUE, evaluate

BERLIN = ZoneInfo("Europe/Berlin")
HOSTS = """
hosts:
  - {name: lab-hv01, kind: lab, group: production}
  - {name: lab-hv02, kind: lab}
repositories:
  - {name: local, path: repo, default: true}
  - {name: offsite, path: repo2}
"""
NIGHTLY = """
schedules:
  - name: nightly
    vms: ["lab-hv01/*", "sql*", "group:production"]
    exclude: ["*-test"]
    repository: local
    mode: differential
    full_every: 7d
    at: "22:00"
    window: 6h
    copy_to: offsite
    notify: [ops-mail, chat]
notifications:
  - {name: ops-mail, email: {to: [ops@example.com], from: hvtui@jump01, smtp: "smtp.example.com:587"}}
  - {name: chat, webhook: {url: "https://chat.example.com/hooks/x", format: slack}}
"""


def errors_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    return str(caught.value)


# -- the config ------------------------------------------------------------------------------
def test_a_full_schedule_entry_is_read_with_every_key(tmp_path: Path) -> None:
    config = load(tmp_path, HOSTS + NIGHTLY)
    (nightly,) = config.schedules
    assert nightly.name == "nightly" and config.schedule("nightly") is nightly
    assert nightly.vms == ("lab-hv01/*", "sql*", "group:production") and nightly.exclude == ("*-test",)
    assert (nightly.repository, nightly.copy_to, nightly.mode) == ("local", "offsite", "differential")
    assert nightly.full_every == 7 * 86400 and nightly.window == 6 * 3600
    assert (nightly.timing.kind, nightly.timing.expression, nightly.timing.describe()) == ("at", "22:00", "daily at 22:00")
    assert nightly.notify == ("ops-mail", "chat")
    assert nightly.line == 9
    assert config.warnings() == []


def test_defaults_and_the_window_of_a_short_interval(tmp_path: Path) -> None:
    config = load(tmp_path, HOSTS + "schedules:\n  - {name: often, vms: ['*'], every: 2h}\n  - {name: c, vms: ['*'], cron: '0 22 * * 1-5'}\n")
    often, weekdays = config.schedules
    assert (often.repository, often.mode, often.full_every, often.copy_to, often.notify) == (None, "incremental", None, None, ())
    assert often.window == 2 * 3600  # the default 6h would reach past the next run
    assert often.timing.every_seconds == 7200 and often.timing.describe() == "every 2h"
    assert weekdays.window == 6 * 3600 and weekdays.timing.describe() == "cron 0 22 * * 1-5"


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("{name: a, vms: ['*'], at: '25:00'}", ":8: schedules[0].at: expected a time of day from 00:00 to 23:59, found '25:00'"),
        ("{name: a, vms: ['*'], at: 22:00}", ':8: schedules[0].at: expected a time of day such as "22:00", found 22:00'),
        ("{name: a, vms: ['*']}", ":8: schedules[0]: a schedule needs exactly one of at:, every: or cron: (found none)"),
        ("{name: a, vms: ['*'], every: 4h, cron: '0 * * * *'}", "needs exactly one of at:, every: or cron: (found every and cron)"),
        ("{name: a, vms: ['*'], cron: '0 25 * * *'}", ":8: schedules[0].cron: not a cron expression (Bad hour); expected five fields"),
        ("{name: a, vms: ['*'], every: 30s}", ":8: schedules[0].every: expected a duration of at least 1m, found '30s'"),
        ("{name: a, vms: ['*'], at: '22:00', repository: locl}", "schedules[0].repository: no repository is named 'locl'; did you mean 'local'?"),
        ("{name: a, vms: ['*'], at: '22:00', copy_to: ofsite}", "schedules[0].copy_to: no repository is named 'ofsite'; did you mean 'offsite'?"),
        ("{name: a, vms: ['*'], at: '22:00', copy_to: local, repository: local}", "copy_to names the schedule's own repository"),
        ("{name: a, vms: ['*'], every: 1h, window: 2h}", "schedules[0].window: the window (2h) is longer than the time between two runs (1h)"),
        ("{name: a, vms: ['*'], at: '22:00', mode: incremantal}", "found 'incremantal'; did you mean 'incremental'?"),
        ("{name: a, vms: ['*'], at: '22:00', windw: 1h}", "schedules[0].windw: unknown key; did you mean 'window'?"),
        ("{name: a, at: '22:00'}", "schedules[0]: missing required key 'vms'"),
        ("{name: 'a b', vms: ['*'], at: '22:00'}", "schedules[0].name: expected a schedule name"),
        ("{name: a, vms: ['*'], at: '22:00', notify: [chat]}", ":8: schedules[0].notify: no notification is named 'chat' (notifications: lists none)"),
    ],
)
def test_each_mistake_is_named_with_its_line(tmp_path: Path, entry: str, expected: str) -> None:
    assert expected in errors_of(tmp_path, HOSTS + f"schedules:\n  - {entry}\n")


def test_notify_names_a_notification_of_the_config(tmp_path: Path) -> None:
    text = HOSTS + NIGHTLY.replace("notify: [ops-mail, chat]", "notify: [ops-mail, chta]")
    assert "schedules[0].notify: no notification is named 'chta'; did you mean 'chat'?" in errors_of(tmp_path, text)


def test_duplicate_names_and_all_mistakes_at_once(tmp_path: Path) -> None:
    text = errors_of(
        tmp_path,
        HOSTS + "schedules:\n  - {name: a, vms: ['*'], at: '22:00'}\n  - {name: a, vms: ['*'], at: '22:00'}\n"
        "  - {name: b, vms: ['*'], cron: 'x', repository: nope}\n",
    )
    assert "3 errors" in text and ":10: schedules[2].cron: not a cron expression" in text
    assert ":10: schedules[2].repository: no repository is named 'nope'" in text
    assert ":9: schedules[1].name: duplicate schedule name 'a' (first defined on line 8)" in text


def test_a_selector_that_can_select_nothing_is_a_warning_at_load(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="hvtui.config.load"):
        config = load(tmp_path, HOSTS + "schedules:\n  - {name: a, vms: ['lab-hv09/*', 'group:prodution', 'lab-hv0?/sql*'], at: '22:00'}\n")
    warnings = config.warnings()
    assert len(warnings) == 2
    assert "schedule a: selector 'lab-hv09/*' selects nothing: no host matches 'lab-hv09'; did you mean" in warnings[0]
    assert "selector 'group:prodution' selects nothing: no host has group 'prodution'; did you mean 'production'?" in warnings[1]
    assert warnings[0].endswith(tuple(f"'{h}'?" for h in ("lab-hv01", "lab-hv02")))
    assert len([r for r in caplog.records if "selects nothing" in r.getMessage()]) == 2


# -- the time math ----------------------------------------------------------------------------
def berlin(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN)


def test_at_runs_once_a_day_across_both_dst_changes() -> None:
    at = parse_timing("at", "02:30")  # inside the hour spring skips and autumn repeats
    spring = at.slots_between(berlin(2026, 3, 27, 12), berlin(2026, 3, 31, 12), BERLIN)
    assert [s.isoformat() for s in spring] == [
        "2026-03-28T02:30:00+01:00",
        "2026-03-29T03:00:00+02:00",  # 02:30 does not exist that night: run when the clock passes it
        "2026-03-30T02:30:00+02:00",
        "2026-03-31T02:30:00+02:00",
    ]
    autumn = at.slots_between(berlin(2026, 10, 24, 12), berlin(2026, 10, 27, 12), BERLIN)
    assert [s.isoformat() for s in autumn] == [
        "2026-10-25T02:30:00+02:00",  # the repeated hour: once
        "2026-10-26T02:30:00+01:00",
        "2026-10-27T02:30:00+01:00",
    ]


def test_previous_and_next_are_the_slots_around_now() -> None:
    at = parse_timing("at", "22:00")
    assert at.previous(berlin(2026, 3, 28, 22, 0), BERLIN) == berlin(2026, 3, 28, 22, 0)  # a slot is due at its minute
    assert at.previous(berlin(2026, 3, 28, 21, 59, 59), BERLIN) == berlin(2026, 3, 27, 22, 0)
    assert at.next(berlin(2026, 3, 28, 22, 0), BERLIN) == berlin(2026, 3, 29, 22, 0)
    assert at.interval_before(berlin(2026, 3, 29, 23, 0), BERLIN) == 23 * 3600  # the short day is measured as it is


def test_every_counts_elapsed_time_across_dst() -> None:
    every = parse_timing("every", 6 * 3600, "6h")
    slots = every.slots_between(berlin(2026, 3, 28, 23), berlin(2026, 3, 29, 23), BERLIN)
    gaps = {(b.astimezone(UTC) - a.astimezone(UTC)).total_seconds() for a, b in zip(slots, slots[1:], strict=False)}
    assert gaps == {6 * 3600} and len(slots) == 4
    assert slots[0] == berlin(2026, 3, 29, 0, 0)  # counted from local standard midnight


def test_cron_on_weekdays_in_local_time() -> None:
    cron = parse_timing("cron", "0 22 * * 1-5")
    slots = cron.slots_between(berlin(2026, 11, 20, 23), berlin(2026, 11, 27, 23), BERLIN)  # Fri 23:00 -> Fri
    assert [s.strftime("%a %H:%M") for s in slots] == ["Mon 22:00", "Tue 22:00", "Wed 22:00", "Thu 22:00", "Fri 22:00"]
    assert cron.interval_before(berlin(2026, 11, 23, 23), BERLIN) == 3 * 86400  # over the weekend


def test_bad_timings_say_why() -> None:
    with pytest.raises(TimingError, match="HH:MM"):
        parse_timing("at", "10pm")
    with pytest.raises(TimingError, match="five fields"):
        parse_timing("cron", "every day")


def test_local_zone_follows_tz(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Europe/Berlin")
    assert str(local_zone()) == "Europe/Berlin"
    monkeypatch.setenv("TZ", ":America/New_York")
    assert str(local_zone()) == "America/New_York"


# -- selection -------------------------------------------------------------------------------
def schedule(**kw: object) -> ScheduleConfig:
    base: dict[str, object] = {"name": "nightly", "vms": ("lab-hv01/*",), "timing": parse_timing("at", "22:00"), "window": 6 * 3600}
    return ScheduleConfig(**{**base, **kw})  # type: ignore[arg-type]


def test_selection_says_why_each_vm_is_in_or_out() -> None:
    s = schedule(vms=("lab-hv01/*", "SQL*", "group:production"), exclude=("*-test",))
    assert s.selection("lab-hv01", "web01", None).reason == "selected by 'lab-hv01/*'"
    assert s.selection("lab-hv02", "sql02", None).reason == "selected by 'SQL*'"  # case-insensitive, like Hyper-V
    assert s.selection("lab-hv03", "dc01", "Production").reason == "selected by 'group:production'"
    assert s.selection("lab-hv01", "web-test", None).reason == "selected by 'lab-hv01/*' but excluded by '*-test'"
    out = s.selection("lab-hv02", "web01", None)
    assert not out.selected and out.reason == "matches none of 'lab-hv01/*', 'SQL*', 'group:production'"
    assert s.unmatched_selectors([("lab-hv01", "web01", None)]) == ["SQL*", "group:production"]


# -- backup-overdue ---------------------------------------------------------------------------
def overdue(schedules: tuple[ScheduleConfig, ...], last: datetime | None, policy: PolicyConfig | None = None) -> list[Severity]:
    vm = linear_vm("web01", host="lab-hv01")
    findings = evaluate(inv(vm, host="lab-hv01"), policy or PolicyConfig(), lambda _vm: last, schedules=schedules)
    return [f.severity for f in rule_findings(findings, BACKUP_OVERDUE)]


def test_backup_overdue_at_its_thresholds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    daily = (schedule(window=2 * 3600),)  # NOW is 12:00 UTC: the 22:00 slot's window closed at midnight
    promised = timedelta(days=1, hours=2)  # interval + window
    assert overdue(daily, NOW - promised) == []
    assert overdue(daily, NOW - promised - timedelta(minutes=59)) == []  # within the 1h default warn
    assert overdue(daily, NOW - promised - timedelta(hours=1)) == [Severity.WARN]
    assert overdue(daily, NOW - promised - timedelta(days=1)) == [Severity.CRIT]
    assert overdue(daily, None) == [Severity.WARN]  # selected and never backed up
    assert overdue((schedule(vms=("lab-hv02/*",)),), None) == []  # not selected: not this rule's business
    assert overdue((schedule(vms=("lab-hv01/*",), exclude=("web*",)),), None) == []


def test_backup_overdue_message_and_own_thresholds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    config = load(tmp_path, HOSTS + "policy:\n  backup_overdue: {warn: 3h, crit: 2d}\n" + NIGHTLY)
    old = NOW - timedelta(days=1, hours=6, minutes=150)  # 2.5 h past interval + window
    assert overdue(config.schedules, old, config.policy) == []
    vm = linear_vm("web01", host="lab-hv01")
    (finding,) = rule_findings(
        evaluate(inv(vm, host="lab-hv01", group="production"), config.policy, lambda _vm: NOW - timedelta(days=3), schedules=config.schedules),
        BACKUP_OVERDUE,
    )
    assert finding.severity is Severity.WARN
    assert finding.message.startswith("newest restore point is 3 days old; schedule nightly (daily at 22:00, window 6 hours) promises 30 hours")
    assert "hvtui schedule show nightly" in finding.action
    errors = errors_of(tmp_path, HOSTS + "policy:\n  backup_overdue: {warn: 3d, crit: 2d}\n")
    assert "policy.backup_overdue: warn (3d) is above crit (2d)" in errors


def test_config_without_schedules_has_none(tmp_path: Path) -> None:
    assert load(tmp_path, HOSTS).schedules == () and Config.lab_default().schedules == ()
