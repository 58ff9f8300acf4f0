"""The sprawl policy: an inventory in, findings out.

``evaluate`` is a pure function of the inventory, the policy config and an optional
"when was this VM last backed up" lookup.  Ages are measured against each host's own
clock (``HostFacts.now``), so a skewed jump-box clock does not distort them.

Boundaries (the tests pin these): ages fire *at* their threshold (``age >= warn``);
counts, depths and sizes fire *above* theirs (``count > warn``), except the platform
limit, which fires at ``count >= count_limit``.

Unreachable hosts give a ``host-unreachable`` finding with severity WARN: the console
counts it like any other warning and ``hvtui check`` turns it into the UNKNOWN state
(exit 3) unless a real CRIT is present elsewhere, which must never be masked.

Exemptions keep the finding but report it with severity OK, the reason in
``exempt_reason`` and the severity it would have had in ``data["exempt_severity"]``;
they are left out of ``summary`` and ``worst_by_vm`` counts of problems.  A
checkpoint-name pattern only exempts findings that name a checkpoint; an unreachable host
is only exempted by an exemption naming ``host-unreachable`` (its vm glob is matched
against the host name, so ``vm: "hv02/*"`` or ``vm: hv02`` both work).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import functools
import logging
import re
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import humanize

from hvtui.config import DAY, HOUR, Exemption, PolicyConfig, Thresholds
from hvtui.errors import HvtuiError
from hvtui.model import (
    REPLICA_CHECKPOINT_TYPES,
    USER_CHECKPOINT_TYPES,
    VM,
    Checkpoint,
    Finding,
    HostFacts,
    HostInventory,
    Inventory,
    Severity,
    Volume,
)

# Rule ids, as shown to users and used in the config's exemptions.
CHECKPOINT_AGE = "checkpoint-age"
RECOVERY_LEFT = "recovery-checkpoint-left"
CHECKPOINT_COUNT = "checkpoint-count"
CHAIN_DEPTH = "chain-depth"
DIFFERENCING_SIZE = "differencing-size"
MERGE_HEADROOM = "merge-headroom"
RUNNING_ON_AVHDX = "running-on-avhdx"
STRAY_DISK_FILE = "stray-disk-file"
DISK_UNREADABLE = "disk-unreadable"
CHECKPOINT_NOT_BACKUP = "checkpoint-not-backup"
HOST_UNREACHABLE = "host-unreachable"

log = logging.getLogger(__name__)

RULES = (
    CHECKPOINT_AGE,
    RECOVERY_LEFT,
    CHECKPOINT_COUNT,
    CHAIN_DEPTH,
    DIFFERENCING_SIZE,
    MERGE_HEADROOM,
    RUNNING_ON_AVHDX,
    STRAY_DISK_FILE,
    DISK_UNREADABLE,
    CHECKPOINT_NOT_BACKUP,
    HOST_UNREACHABLE,
)

LastBackup = Callable[[VM], datetime | None]


# -- formatting helpers ------------------------------------------------------------------
def size_text(num_bytes: int | float) -> str:
    return humanize.naturalsize(num_bytes, binary=True)


def age_text(seconds: float) -> str:
    return _age_text(round(max(0.0, seconds)))


@functools.lru_cache(maxsize=4096)
def _age_text(seconds: int) -> str:
    """Exact enough to compare with a threshold: "47 hours", "23 days", "1 year, 35 days".

    ``naturaldelta``'s words alone are too fuzzy here: 23 days read "a month" and 47 hours
    "a day" (next to "crit at 2 days").  Hours below two days, then whole days.
    Cached: thresholds and many ages repeat across thousands of findings.
    """
    delta = timedelta(seconds=seconds)
    if seconds < 60:
        return humanize.precisedelta(delta, minimum_unit="seconds", format="%0.0f")
    if seconds < HOUR:
        return humanize.precisedelta(delta, minimum_unit="minutes", format="%0.0f")
    if seconds < 2 * DAY:
        return humanize.precisedelta(delta, minimum_unit="hours", suppress=["days"], format="%0.0f")
    return humanize.naturaldelta(delta, months=False)


def _aware(when: datetime) -> datetime:
    # Naive times are taken as UTC (the wire contract sends UTC everywhere).
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def age_seconds(now: datetime, then: datetime) -> float:
    """Seconds from ``then`` to ``now``; never negative (a clock skew is not an age)."""
    return max(0.0, (_aware(now) - _aware(then)).total_seconds())


# -- merge headroom (shared with the checkpoint actions) ----------------------------------
@dataclasses.dataclass(frozen=True, slots=True)
class Headroom:
    need: int  # bytes the merge may need
    volume: Volume | None
    margin: int  # bytes that must stay free after the merge

    @property
    def known(self) -> bool:
        return self.volume is not None

    @property
    def slack(self) -> int:
        """Bytes left above the margin after the merge (negative: not enough room)."""
        if self.volume is None:
            return 0
        return self.volume.free - self.margin - self.need

    @property
    def ok(self) -> bool:
        # Unknown volume: nothing to say, so no refusal on a guess.
        return self.volume is None or self.slack >= 0

    def text(self) -> str:
        if self.volume is None:
            return f"up to {size_text(self.need)} may move; the volume's free space is unknown"
        return (
            f"up to {size_text(self.need)} may move; {self.volume.path} has {size_text(self.volume.free)} free "
            f"of {size_text(self.volume.size)} and must keep {size_text(self.margin)}"
        )


def headroom(need: int, volume: Volume | None, thresholds: Thresholds) -> Headroom:
    margin = int(volume.size * thresholds.merge_min_free_percent / 100.0) if volume is not None else 0
    return Headroom(need=need, volume=volume, margin=margin)


def merge_needs_by_volume(vm: VM, facts: HostFacts) -> list[Headroom]:
    """What merging away all of the VM's differencing data would need, per volume.

    Estimate: a merge writes each differencing file's blocks into its parent, and the
    child is only deleted once the merge is done, so the parent can grow by up to the
    child's stored bytes while both exist.  Summing every differencing file of the VM on
    a volume is therefore an upper bound (a merge into a fixed base needs less), which is
    the safe side for a rule whose purpose is to stop a merge from filling a volume.
    The thresholds are applied by the caller.
    """
    per_volume: dict[str, tuple[Volume | None, int]] = {}
    for disk in vm.disks:
        for link in disk.chain:
            if link.vhd_type != "Differencing":
                continue
            volume = facts.volume_for(link.path) or facts.volume_for(vm.path)
            key = volume.path if volume is not None else ""
            _, total = per_volume.get(key, (volume, 0))
            per_volume[key] = (volume, total + link.file_size)
    return [Headroom(need=total, volume=volume, margin=0) for volume, total in per_volume.values()]


# -- exemptions ----------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, slots=True)
class _Matcher:
    """An exemption with its globs compiled once per evaluation (thousands of findings)."""

    exemption: Exemption
    vm: re.Pattern[str]
    checkpoint: re.Pattern[str] | None

    @classmethod
    def compile(cls, exemption: Exemption) -> _Matcher:
        def glob(pattern: str) -> re.Pattern[str]:
            return re.compile(fnmatch.translate(pattern), re.IGNORECASE | re.DOTALL)

        checkpoint = glob(exemption.checkpoint) if exemption.checkpoint is not None else None
        return cls(exemption, glob(exemption.vm), checkpoint)

    def matches(self, finding: Finding, checkpoint: Checkpoint | None) -> bool:
        rule = self.exemption.rule
        if rule is not None and rule != finding.rule:
            return False
        if finding.vm_name is None:
            # A host-level finding (an unreachable host) is only silenced by an exemption
            # naming its rule; its vm glob is matched against "host" and "host/".
            if rule != finding.rule:
                return False
            names: tuple[str, ...] = (finding.host, f"{finding.host}/")
        else:
            names = (f"{finding.host}/{finding.vm_name}", finding.vm_name, f"{finding.host}/{finding.vm_id}")
        if not any(self.vm.match(name) for name in names):
            return False
        if self.checkpoint is not None:
            return checkpoint is not None and self.checkpoint.match(checkpoint.name) is not None
        return True


def _apply_exemption(finding: Finding, checkpoint: Checkpoint | None, matchers: Iterable[_Matcher]) -> Finding:
    if finding.severity == Severity.OK:
        return finding
    for matcher in matchers:
        if matcher.matches(finding, checkpoint):
            data = dict(finding.data)
            data["exempt_severity"] = finding.severity.label
            reason = matcher.exemption.reason or "exempted by the policy"
            return dataclasses.replace(finding, severity=Severity.OK, exempt_reason=reason, data=data)
    return finding


# -- the rules -------------------------------------------------------------------------------
class _VMRules:
    """Evaluates one VM; keeps the shared context in one place."""

    def __init__(self, vm: VM, host: HostInventory, facts: HostFacts, thresholds: Thresholds, stale: bool) -> None:
        self.vm = vm
        self.host = host
        self.facts = facts
        self.t = thresholds
        self.stale = stale
        self.out: list[tuple[Finding, Checkpoint | None]] = []
        self._oldest_age: float | None = None
        if thresholds.replica_alerts:
            self.sprawl_checkpoints = list(vm.checkpoints)
        else:
            self.sprawl_checkpoints = [cp for cp in vm.checkpoints if cp.type not in REPLICA_CHECKPOINT_TYPES]

    def add(
        self,
        severity: Severity,
        rule: str,
        message: str,
        action: str,
        *,
        checkpoint: Checkpoint | None = None,
        file: str | None = None,
        age: float | None = None,
        **data: float | int | str,
    ) -> None:
        if self.stale:
            message += " (stale data: host unreachable)"
        if checkpoint is not None:
            data.setdefault("checkpoint_name", checkpoint.name)
            data.setdefault("checkpoint_type", checkpoint.type)
        finding = Finding(
            severity=severity,
            rule=rule,
            host=self.vm.host,
            vm_id=self.vm.id,
            vm_name=self.vm.name,
            message=message,
            action=action,
            checkpoint_id=checkpoint.id if checkpoint is not None else None,
            file=file,
            age_seconds=age,
            data=data,
        )
        self.out.append((finding, checkpoint))

    def run(self, last_backup: LastBackup | None) -> list[tuple[Finding, Checkpoint | None]]:
        self.checkpoint_ages()
        self.checkpoint_count()
        # Replica-only VMs (a replica server's copies) have chains Hyper-V Replica manages.
        has_sprawl = bool(self.sprawl_checkpoints)
        if has_sprawl:
            self.chain_depth()
            self.differencing_size()
            self.merge_headroom()
            self.checkpoint_not_backup(last_backup)
        self.running_on_avhdx()
        self.stray_files()
        self.unreadable_disks()
        return self.out

    @property
    def oldest_age(self) -> float | None:
        if not self.sprawl_checkpoints:
            return None
        if self._oldest_age is None:
            self._oldest_age = max(age_seconds(self.facts.now, cp.created) for cp in self.sprawl_checkpoints)
        return self._oldest_age

    def checkpoint_ages(self) -> None:
        t = self.t
        for cp in self.vm.checkpoints:
            age = age_seconds(self.facts.now, cp.created)
            if cp.type == "Recovery":
                warn, crit, rule = t.recovery_age_warn, t.recovery_age_crit, RECOVERY_LEFT
            elif cp.type in USER_CHECKPOINT_TYPES or cp.type in REPLICA_CHECKPOINT_TYPES and t.replica_alerts:
                warn, crit, rule = t.checkpoint_age_warn, t.checkpoint_age_crit, CHECKPOINT_AGE
            else:
                continue
            if age >= crit:
                severity, limit = Severity.CRIT, f"crit at {age_text(crit)}"
            elif age >= warn:
                severity, limit = Severity.WARN, f"warn at {age_text(warn)}"
            else:
                continue
            if rule == RECOVERY_LEFT:
                message = f"Recovery checkpoint {cp.name!r} left behind for {age_text(age)} ({limit}): a backup died"
                action = (
                    "Make sure no backup job is running on this VM, then delete the Recovery checkpoint "
                    "(it merges back; Hyper-V Manager offers no Delete for it)"
                )
            else:
                message = f"{cp.type} checkpoint {cp.name!r} is {age_text(age)} old ({limit})"
                action = (
                    "Delete it once nobody needs it: a checkpoint is not a backup, and the chain grows while it exists"
                )
            self.add(severity, rule, message, action, checkpoint=cp, age=age)

    def checkpoint_count(self) -> None:
        t = self.t
        counted = len(self.sprawl_checkpoints)
        total = len(self.vm.checkpoints)  # the platform limit counts every checkpoint
        if total >= t.count_limit:
            severity, limit = Severity.CRIT, f"Hyper-V stops at 50; crit at {t.count_limit}"
            shown = total
        elif counted > t.count_crit:
            severity, limit, shown = Severity.CRIT, f"crit above {t.count_crit}", counted
        elif counted > t.count_warn:
            severity, limit, shown = Severity.WARN, f"warn above {t.count_warn}", counted
        else:
            return
        self.add(
            severity,
            CHECKPOINT_COUNT,
            f"{shown} checkpoints ({limit})",
            "Delete the checkpoints nobody needs, oldest first (delete a subtree to merge a whole branch)",
            age=self.oldest_age,
            count=shown,
        )

    def chain_depth(self) -> None:
        t = self.t
        for disk in self.vm.disks:
            depth = disk.depth
            if depth > t.depth_crit:
                severity, limit = Severity.CRIT, f"crit above {t.depth_crit}"
            elif depth > t.depth_warn:
                severity, limit = Severity.WARN, f"warn above {t.depth_warn}"
            else:
                continue
            base = disk.base.path if disk.base is not None else disk.path
            self.add(
                severity,
                CHAIN_DEPTH,
                f"disk {_file_name(base)} runs through {depth} differencing files ({limit})",
                "Delete old checkpoints so the chain merges; every read walks the whole chain",
                file=disk.path,
                age=self.oldest_age,
                depth=depth,
            )

    def differencing_size(self) -> None:
        t = self.t
        diff = self.vm.differencing_bytes
        if diff <= 0:
            return
        base = self.vm.base_virtual_bytes
        percent = 100.0 * diff / base if base > 0 else None
        over_percent = percent is not None and percent > t.differencing_warn_percent
        over_bytes = t.differencing_warn_bytes is not None and diff > t.differencing_warn_bytes
        if not (over_percent or over_bytes):
            return
        if percent is not None:
            message = (
                f"differencing disks hold {size_text(diff)}, {percent:.0f}% of the base disks' "
                f"{size_text(base)} virtual size"
            )
        else:
            message = f"differencing disks hold {size_text(diff)}"
        limits = [f"warn above {t.differencing_warn_percent:g}%"] if over_percent else []
        if over_bytes:
            limits.append(f"warn above {size_text(t.differencing_warn_bytes or 0)}")
        message += f" ({', '.join(limits)})"
        self.add(
            Severity.WARN,
            DIFFERENCING_SIZE,
            message,
            "Delete checkpoints to merge the differencing data back while the volume still has room",
            age=self.oldest_age,
            bytes=diff,
            percent=round(percent, 1) if percent is not None else -1,
        )

    def merge_headroom(self) -> None:
        for need in merge_needs_by_volume(self.vm, self.facts):
            room = headroom(need.need, need.volume, self.t)
            if room.ok or room.volume is None:
                continue
            volume = room.volume
            self.add(
                Severity.CRIT,
                MERGE_HEADROOM,
                f"merging needs up to {size_text(room.need)} but {volume.path} has {size_text(volume.free)} free "
                f"and must keep {size_text(room.margin)} ({self.t.merge_min_free_percent:g}%)",
                f"Free space on {volume.path} (or move storage) before deleting checkpoints: "
                "a merge that fills the volume pauses every VM on it",
                file=volume.path,
                age=self.oldest_age,
                need=room.need,
                free=volume.free,
                margin=room.margin,
            )

    def running_on_avhdx(self) -> None:
        if self.vm.checkpoints:
            return
        for disk in self.vm.disks:
            current = disk.chain[0] if disk.chain else None
            differencing = (current is not None and current.vhd_type == "Differencing") or disk.path.lower().endswith(
                ".avhdx"
            )
            if not differencing:
                continue
            self.add(
                Severity.CRIT,
                RUNNING_ON_AVHDX,
                f"runs on differencing disk {_file_name(disk.path)} but has no checkpoint: a merge failed",
                "Check the host's VMMS log (event 19100 without 19080); plan a merge of the chain with the VM off",
                file=disk.path,
                depth=disk.depth,
            )

    def stray_files(self) -> None:
        for path in self.vm.stray_disk_files:
            self.add(
                Severity.WARN,
                STRAY_DISK_FILE,
                f"{_file_name(path)} lies in the VM's folder but belongs to no disk chain",
                "Confirm no VM or backup uses it (Inspect Disk / Get-VHD), then archive or delete it",
                file=path,
            )

    def unreadable_disks(self) -> None:
        # The host could not read a disk file (Get-VHD failed): its chain, sizes and the stray
        # files beside it are unknown, so the other rules may be silent about this VM.
        for disk in self.vm.disks:
            if disk.error is not None:
                self.add(
                    Severity.WARN,
                    DISK_UNREADABLE,
                    f"{_file_name(disk.path)}: {disk.error}",
                    "Check the file on the host (Get-VHD, Inspect Disk): a locked, moved or damaged disk file",
                    file=disk.path,
                )

    def checkpoint_not_backup(self, last_backup: LastBackup | None) -> None:
        # A Recovery checkpoint is a backup's own (one running now, or one that died: the
        # recovery-left rule reports that), not a sign that checkpoints stand in for backups.
        kept = [cp for cp in self.sprawl_checkpoints if cp.type != "Recovery"]
        if not kept:
            return
        when = last_backup(self.vm) if last_backup is not None else None
        count = len(kept)
        has = f"has {count} checkpoint{'s' if count != 1 else ''}"
        limit = age_text(self.t.backup_max_age)
        if when is None:
            message = f"{has} and no backup known (a checkpoint is not a backup)"
            age = max(age_seconds(self.facts.now, cp.created) for cp in kept)
            since = -1.0
        else:
            since = age_seconds(self.facts.now, when)
            if since < self.t.backup_max_age:
                return
            message = (
                f"{has} and its last backup is {age_text(since)} old (crit after {limit}; a checkpoint is not a backup)"
            )
            age = since
        self.add(
            Severity.CRIT,
            CHECKPOINT_NOT_BACKUP,
            message,
            "Back the VM up; do not rely on checkpoints to restore it",
            age=age,
            backup_age_s=since,
        )


def _file_name(path: str) -> str:
    return path.replace("\\", "/").rsplit("/", 1)[-1]


def _host_findings(host: HostInventory) -> list[Finding]:
    if host.error is None or host.waiting:  # late is not unreadable (yet): the header counts it waiting
        return []
    if host.stale and host.refreshed_at is not None:
        since = f"; showing data from {host.refreshed_at.isoformat(timespec='seconds')}"
    else:
        since = "; no data"
    return [
        Finding(
            severity=Severity.WARN,
            rule=HOST_UNREACHABLE,
            host=host.name,
            vm_id=None,
            vm_name=None,
            message=f"cannot be read: {host.error}{since}",
            action="Check the host is up, reachable and that the credentials work (hvtui info, then the host itself)",
        )
    ]


def evaluate(
    inventory: Inventory,
    policy: PolicyConfig,
    last_backup: LastBackup | None = None,
) -> list[Finding]:
    """All findings for the inventory, sorted by ``sort_findings``."""
    findings: list[Finding] = []
    matchers = [_Matcher.compile(exemption) for exemption in policy.exemptions]
    for host in inventory.hosts:
        findings.extend(_apply_exemption(finding, None, matchers) for finding in _host_findings(host))
        if host.facts is None:
            continue
        stale = host.error is not None
        for vm in host.vms:
            thresholds = policy.thresholds_for(host.name, vm.name, host.group)
            for finding, checkpoint in _VMRules(vm, host, host.facts, thresholds, stale).run(last_backup):
                findings.append(_apply_exemption(finding, checkpoint, matchers))
    return sort_findings(findings)


# -- views over findings ----------------------------------------------------------------------
def is_problem(finding: Finding) -> bool:
    """A finding that counts: not OK, not exempted."""
    return finding.exempt_reason is None and finding.severity > Severity.OK


def sort_findings(findings: Iterable[Finding]) -> list[Finding]:
    """Severity (worst first), then age (oldest first), then host, VM and rule for a stable order."""
    return sorted(
        findings,
        key=lambda f: (
            -int(f.severity),
            -(f.age_seconds or 0.0),
            f.host,
            f.vm_name or "",
            f.rule,
            f.checkpoint_id or "",
            f.file or "",
        ),
    )


def summary(findings: Iterable[Finding]) -> tuple[int, int]:
    """(crit, warn) counts, exempted findings left out."""
    crit = warn = 0
    for finding in findings:
        if not is_problem(finding):
            continue
        if finding.severity == Severity.CRIT:
            crit += 1
        elif finding.severity == Severity.WARN:
            warn += 1
    return crit, warn


def vm_key(host: str, vm_id: str) -> str:
    """Same form as ``VM.key``."""
    return f"{host}/{vm_id}"


def worst_by_vm(findings: Iterable[Finding]) -> dict[str, Severity]:
    """Worst severity per ``VM.key`` (exempted findings count as OK); VMs without findings are absent."""
    worst: dict[str, Severity] = {}
    for finding in findings:
        if finding.vm_id is None:
            continue
        key = vm_key(finding.host, finding.vm_id)
        severity = finding.severity if finding.exempt_reason is None else Severity.OK
        if key not in worst or severity > worst[key]:
            worst[key] = severity
    return worst


def last_backup_lookup(core: Any) -> LastBackup | None:
    """The engine's "last successful backup" lookup (``core.backups.last_backup``).

    Imported lazily: without the backup service, None (no backup known for any VM, so
    every VM with checkpoints raises checkpoint-not-backup, as issue 3 asks).
    """
    try:
        backups = core.backups
    except (ImportError, AttributeError):
        return None
    lookup = getattr(backups, "last_backup", None)
    if lookup is None:
        return None

    def last(vm: VM) -> datetime | None:
        try:
            return lookup(vm.host, vm.id)
        except HvtuiError as err:
            # An unreadable repository must not break the check: "no backup known" is the
            # conservative answer (it raises checkpoint-not-backup), and the log says why.
            log.warning("last backup of %s/%s unknown: %s", vm.host, vm.name, err)
            return None

    return last
