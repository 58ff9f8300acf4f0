"""``schedules:`` as read against the models -> ``ScheduleConfig``s, with the rules between keys:
exactly one of at / every / cron, a window shorter than the interval, repositories that exist,
unique names; and a warning (not an error) for a selector that can match no configured host."""

from __future__ import annotations

from datetime import UTC, datetime

from msgspec import UNSET

from hvtui.config.document import Document
from hvtui.config.errors import did_you_mean
from hvtui.config.schedules import GROUP_PREFIX, ScheduleConfig
from hvtui.config.settings import HOUR, HostConfig, RepositoryConfig
from hvtui.config.timing import TIMING_KINDS, TimingError, parse_timing
from hvtui.config.units import format_duration
from hvtui.config.walk import Read, duration_seconds, first_of_each_name

DEFAULT_WINDOW = 6 * HOUR


def convert_schedules(
    doc: Document,
    section: Read | None,
    repositories: tuple[RepositoryConfig, ...],
    hosts: tuple[HostConfig, ...],
    notification_names: tuple[str, ...] = (),
) -> tuple[tuple[ScheduleConfig, ...], tuple[str, ...]]:
    """The schedules without mistakes (each mistake reported to ``doc``), and the warnings.

    ``notification_names``: every name under ``notifications:`` (a schedule's ``notify:`` must
    name one of them)."""
    if section is None or not section.items:
        return (), ()
    schedules: list[ScheduleConfig] = []
    notes: list[str] = []
    repository_names = [r.name for r in repositories]
    for item in first_of_each_name(doc, section.items, "schedule"):
        if item.model is None:
            continue
        schedule = _schedule(doc, item, repository_names, list(notification_names))
        if schedule is not None:
            schedules.append(schedule)
            notes.extend(_selector_notes(doc, schedule, hosts))
    return tuple(schedules), tuple(notes)


def _schedule(doc: Document, item: Read, repository_names: list[str], notification_names: list[str]) -> ScheduleConfig | None:
    model = item.model
    given = [kind for kind in TIMING_KINDS if getattr(model, kind) is not UNSET]
    if len(given) != 1:
        what = "none" if not given else " and ".join(given)
        doc.report(item.at, f"a schedule needs exactly one of at:, every: or cron: (found {what})")
        return None
    kind = given[0]
    ok = True
    try:
        value = getattr(model, kind)
        timing = parse_timing(kind, duration_seconds(value) or 0.0, str(value)) if kind == "every" else parse_timing(kind, value)
    except TimingError as err:
        doc.report(item.where(kind), str(err))
        timing, ok = None, False
    for key in ("repository", "copy_to"):
        value = getattr(model, key)
        if value is not UNSET and value not in repository_names:
            doc.report(item.where(key), f"no repository is named '{value}'{did_you_mean(value, repository_names, 'repositories')}")
            ok = False
    for target in model.notify if model.notify is not UNSET else ():
        if target not in notification_names:
            hint = did_you_mean(target, notification_names, "notifications") if notification_names else " (notifications: lists none)"
            doc.report(item.where("notify"), f"no notification is named '{target}'{hint}")
            ok = False
    if model.copy_to is not UNSET and model.copy_to == (model.repository if model.repository is not UNSET else None):
        doc.report(item.where("copy_to"), "copy_to names the schedule's own repository; name another one")
        ok = False
    if timing is None:
        return None
    # The interval the schedule promises, measured where it is shortest in a sample week
    # (a weekday cron has 1-day gaps and a 3-day one): a window must close before the next slot.
    start = datetime(2026, 1, 5, tzinfo=UTC)
    slots = [timing.previous(start, UTC)]
    while len(slots) < 64 and (slots[-1] - start).days < 8:
        slots.append(timing.next(slots[-1], UTC))
    interval = min((b - a).total_seconds() for a, b in zip(slots, slots[1:], strict=False))
    window = duration_seconds(model.window) if model.window is not UNSET else min(DEFAULT_WINDOW, interval)
    if window is not None and window > interval:
        doc.report(
            item.where("window"),
            f"the window ({format_duration(window)}) is longer than the time between two runs ({format_duration(interval)}); "
            "a run would still be allowed to start when the next one is due",
        )
        ok = False
    if not ok:
        return None
    return ScheduleConfig(
        name=model.name,
        vms=tuple(model.vms),
        exclude=tuple(model.exclude) if model.exclude is not UNSET else (),
        timing=timing,
        window=window or interval,
        repository=model.repository if model.repository is not UNSET else None,
        mode=model.mode if model.mode is not UNSET else "incremental",
        full_every=duration_seconds(model.full_every) if model.full_every is not UNSET else None,
        copy_to=model.copy_to if model.copy_to is not UNSET else None,
        notify=tuple(model.notify) if model.notify is not UNSET else (),
        line=item.at.line,
    )


def _selector_notes(doc: Document, schedule: ScheduleConfig, hosts: tuple[HostConfig, ...]) -> list[str]:
    """With hosts listed, a ``host/...`` selector naming no host or a ``group:`` no host has
    selects nothing: said at load (which VMs exist is known only when hosts are asked)."""
    if not hosts:
        return []
    names = [host.name for host in hosts]
    groups = sorted({host.group for host in hosts if host.group is not None})
    notes = []
    for selector in schedule.vms:
        where = f"{doc.file}:{schedule.line}: schedule {schedule.name}"
        if selector.casefold().startswith(GROUP_PREFIX):
            group = selector[len(GROUP_PREFIX) :].strip()
            if group.casefold() not in {g.casefold() for g in groups}:
                notes.append(f"{where}: selector '{selector}' selects nothing: no host has group '{group}'{did_you_mean(group, groups, 'groups')}")
        elif "/" in selector:
            from fnmatch import fnmatchcase

            pattern = selector.split("/", 1)[0].casefold()
            if not any(fnmatchcase(name.casefold(), pattern) for name in names):
                host = selector.split("/", 1)[0]
                notes.append(f"{where}: selector '{selector}' selects nothing: no host matches '{host}'{did_you_mean(host, names, 'hosts')}")
    return notes
