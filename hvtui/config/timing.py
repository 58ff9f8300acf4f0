"""When a schedule is due: ``at: "22:00"``, ``every: 4h`` or ``cron: "0 22 * * 1-5"``, as instants.

Pure time math, below the policy (the backup-overdue rule asks when a VM was promised a
backup) and the schedule runner.  Times of day are the jump box's local wall clock in its
IANA zone (``local_zone``), through ``zoneinfo``, so daylight saving time neither skips nor
doubles a run: on the spring change a slot in the missing hour runs when the clock jumps
past it (as cron does), on the autumn change a slot in the repeated hour runs once.
``every`` counts elapsed time, not wall-clock time, so it too runs neither more nor less
often across a change.

Cron expressions are evaluated by ``cronsim`` (the parser of Healthchecks.io: maintained,
pure Python, no dependencies, walks backwards as well as forwards and follows cron's own DST
rules).  croniter was the other candidate; its maintainer announced its end in 2024, and it
now lives on under a new owner, so it was not the safer choice.
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

TIMING_KINDS = ("at", "every", "cron")
_AT_RE = re.compile(r"(\d{1,2}):(\d{2})")
# ``every`` slots are counted from this local midnight (a fixed instant), so "every: 6h" runs
# at 00:00, 06:00, ... in the zone's standard time.
_EVERY_ANCHOR = datetime(2000, 1, 1)
# Walking back over missed slots stops here: a jump box off for a year reports the latest ones.
MAX_SLOTS = 1000


class TimingError(ValueError):
    """An ``at``, ``every`` or ``cron`` value that cannot be a schedule (the message says why)."""


@dataclass(frozen=True, slots=True)
class Timing:
    """A schedule's due instants: the slots."""

    kind: str  # at | every | cron
    expression: str  # as written: "22:00", "4h", "0 22 * * 1-5"
    every_seconds: float = 0.0  # kind "every"
    cron: str = ""  # kind "at" and "cron": the cron expression evaluated

    def describe(self) -> str:
        if self.kind == "at":
            return f"daily at {self.expression}"
        if self.kind == "every":
            return f"every {self.expression}"
        return f"cron {self.expression}"

    def previous(self, now: datetime, zone: tzinfo) -> datetime:
        """The latest slot at or before ``now`` (aware, in ``zone``)."""
        if self.kind == "every":
            anchor = _EVERY_ANCHOR.replace(tzinfo=zone).astimezone(UTC)
            steps = (now.astimezone(UTC) - anchor).total_seconds() // self.every_seconds
            return (anchor + timedelta(seconds=steps * self.every_seconds)).astimezone(zone)
        # cronsim walks back strictly before its start, at minute precision.
        start = (now.astimezone(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)).astimezone(zone)
        return next(CronSim(self.cron, start, reverse=True))

    def next(self, after: datetime, zone: tzinfo) -> datetime:
        """The first slot strictly after ``after``."""
        if self.kind == "every":
            return (self.previous(after, zone).astimezone(UTC) + timedelta(seconds=self.every_seconds)).astimezone(zone)
        return next(CronSim(self.cron, after.astimezone(zone)))

    def slots_between(self, start: datetime, end: datetime, zone: tzinfo) -> list[datetime]:
        """The slots in (``start``, ``end``], oldest first; at most the latest ``MAX_SLOTS``."""
        slots: list[datetime] = []
        slot = self.previous(end, zone)
        while slot > start and len(slots) < MAX_SLOTS:
            slots.append(slot)
            slot = self.previous(_before(slot), zone)
        return slots[::-1]

    def interval_before(self, when: datetime, zone: tzinfo) -> float:
        """Seconds between the slot at or before ``when`` and the one before it: what the
        schedule promises there (a weekday cron promises three days over a weekend)."""
        last = self.previous(when, zone)
        before = self.previous(_before(last), zone)
        return (last.astimezone(UTC) - before.astimezone(UTC)).total_seconds()  # real time, not wall-clock


def _before(when: datetime) -> datetime:
    """One second before ``when`` in real time (arithmetic on a zoned datetime is wall-clock
    arithmetic, which lands in the spring gap)."""
    return when.astimezone(UTC) - timedelta(seconds=1)


def parse_timing(kind: str, value: str | float, written: str = "") -> Timing:
    """``kind`` one of ``TIMING_KINDS`` and its value (``every``: in seconds, ``written`` as the
    file gives it); ``TimingError`` says what is wrong."""
    if kind == "at":
        match = _AT_RE.fullmatch(str(value).strip())
        if match is None:
            raise TimingError(f"expected a time of day as HH:MM (24-hour clock), found {value!r}")
        hour, minute = int(match.group(1)), int(match.group(2))
        if hour > 23 or minute > 59:
            raise TimingError(f"expected a time of day from 00:00 to 23:59, found {value!r}")
        return Timing("at", f"{hour:02d}:{minute:02d}", cron=f"{minute} {hour} * * *")
    if kind == "every":
        # The loader has read the duration already (``value`` in seconds); kept as written too.
        seconds = float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
        if seconds is None or seconds < 60:
            raise TimingError(f"expected a duration of at least 1m, found {value!r}")
        return Timing("every", written or f"{seconds:g}s", every_seconds=seconds)
    if kind == "cron":
        expression = " ".join(str(value).split())
        try:
            CronSim(expression, datetime(2026, 1, 1, tzinfo=UTC))
        except CronSimError as err:
            raise TimingError(
                f"not a cron expression ({err}); expected five fields: minute hour day-of-month month day-of-week, "
                "such as '0 22 * * 1-5'"
            ) from None
        return Timing("cron", expression, cron=expression)
    raise TimingError(f"unknown timing {kind!r} (expected {', '.join(TIMING_KINDS)})")


def local_zone() -> tzinfo:
    """The jump box's time zone as an IANA zone (``TZ``, else ``/etc/localtime``), which knows its
    daylight saving rules; UTC when neither names one."""
    return _zone_named(os.environ.get("TZ", ""))


@functools.lru_cache(maxsize=4)
def _zone_named(tz_variable: str) -> tzinfo:
    name = tz_variable.lstrip(":")
    if name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    localtime = Path("/etc/localtime")
    try:
        target = str(localtime.resolve())
        if "zoneinfo/" in target:
            return ZoneInfo(target.split("zoneinfo/", 1)[1])
        with open(localtime, "rb") as fh:
            return ZoneInfo.from_file(fh, key="localtime")
    except (OSError, ZoneInfoNotFoundError, ValueError):
        return UTC
