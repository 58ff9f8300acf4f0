"""``policy:`` as read against the models -> ``PolicyConfig``: overrides merged onto the
defaults, warn at most crit, exemptions that match something, and policy names that
exist among the configured hosts."""

from __future__ import annotations

from dataclasses import replace

from msgspec import UNSET

from hvtui.config.document import Document, Located, child_path
from hvtui.config.errors import did_you_mean
from hvtui.config.models import ExemptionModel, ThresholdsModel
from hvtui.config.settings import Exemption, HostConfig, PolicyConfig, Thresholds
from hvtui.config.units import format_duration
from hvtui.config.walk import Read, duration_seconds, size_bytes

_PAIRS = (
    ("checkpoint_age", "checkpoint_age_warn", "checkpoint_age_crit", duration_seconds),
    ("recovery_checkpoint_age", "recovery_age_warn", "recovery_age_crit", duration_seconds),
    ("change_window_age", "change_window_warn", "change_window_crit", duration_seconds),
    ("backup_overdue", "backup_overdue_warn", "backup_overdue_crit", duration_seconds),
    ("no_offsite_copy", "no_offsite_copy_warn", "no_offsite_copy_crit", duration_seconds),
    ("chain_depth", "depth_warn", "depth_crit", int),
    ("checkpoint_count", "count_warn", "count_crit", int),
)


def convert_policy(doc: Document, policy: Read | None) -> PolicyConfig:
    """The policy; parts with mistakes are left at their defaults (the mistakes are reported)."""
    if policy is None or not isinstance(policy.data, dict):
        return PolicyConfig()
    defaults_read = _thresholds_part(policy)
    defaults = Thresholds()
    if defaults_read is not None:
        defaults = _thresholds(doc, policy, ThresholdsModel(**defaults_read), Thresholds())
    groups: dict[str, Thresholds] = {}
    vms: dict[str, Thresholds] = {}
    for key, into in (("groups", groups), ("vms", vms)):
        section = policy.keys.get(key)
        if section is None or defaults_read is None:
            continue
        for name, entry in section.keys.items():
            if entry.model is not None:
                into[name] = _thresholds(doc, entry, entry.model, defaults)
    exemptions: list[Exemption] = []
    if "exempt" in policy.keys:
        for item in policy.keys["exempt"].items:
            if item.model is not None:
                exemptions.append(_exemption(doc, item, item.model))
    return PolicyConfig(defaults=defaults, groups=groups, vms=vms, exemptions=tuple(exemptions))


def _thresholds_part(policy: Read) -> dict[str, object] | None:
    """The policy's own thresholds as model fields, or None when one of them has a mistake."""
    part: dict[str, object] = {}
    for key in ThresholdsModel.__struct_fields__:
        entry = policy.keys.get(key)
        if entry is None:
            continue
        if not entry.ok:
            return None
        part[key] = entry.model if entry.model is not None else entry.data
    return part


def _thresholds(doc: Document, owner: Read, model: ThresholdsModel, base: Thresholds) -> Thresholds:
    """``base`` with the thresholds given in ``model`` (a partial override) applied."""
    changes: dict[str, object] = {}
    for key, warn_name, crit_name, convert in _PAIRS:
        pair = getattr(model, key)
        if pair is UNSET:
            continue
        if pair.warn is not UNSET:
            changes[warn_name] = convert(pair.warn)
        if pair.crit is not UNSET:
            changes[crit_name] = convert(pair.crit)
    if model.checkpoint_count is not UNSET and model.checkpoint_count.limit is not UNSET:
        changes["count_limit"] = model.checkpoint_count.limit
    if model.differencing_size is not UNSET:
        if model.differencing_size.warn_percent is not UNSET:
            changes["differencing_warn_percent"] = float(model.differencing_size.warn_percent)
        if model.differencing_size.warn_bytes is not UNSET:
            warn_bytes = model.differencing_size.warn_bytes
            changes["differencing_warn_bytes"] = None if warn_bytes is None else size_bytes(warn_bytes)
    if model.merge_headroom is not UNSET and model.merge_headroom.min_free_percent is not UNSET:
        changes["merge_min_free_percent"] = float(model.merge_headroom.min_free_percent)
    if model.backup_age is not UNSET and model.backup_age.crit is not UNSET:
        changes["backup_max_age"] = duration_seconds(model.backup_age.crit)
    if model.checkpoint_not_backup is not UNSET and model.checkpoint_not_backup.crit is not UNSET:
        changes["not_backup_crit"] = duration_seconds(model.checkpoint_not_backup.crit)
    if model.replica_checkpoints is not UNSET:
        changes["replica_alerts"] = model.replica_checkpoints

    result = replace(base, **changes)  # type: ignore[arg-type]
    ordered = (
        ("checkpoint_age", result.checkpoint_age_warn, result.checkpoint_age_crit, format_duration),
        ("recovery_checkpoint_age", result.recovery_age_warn, result.recovery_age_crit, format_duration),
        ("change_window_age", result.change_window_warn, result.change_window_crit, format_duration),
        ("backup_overdue", result.backup_overdue_warn, result.backup_overdue_crit, format_duration),
        ("no_offsite_copy", result.no_offsite_copy_warn, result.no_offsite_copy_crit, format_duration),
        ("checkpoint_count", result.count_warn, result.count_crit, str),
        ("chain_depth", result.depth_warn, result.depth_crit, str),
    )
    for key, warn, crit, show in ordered:
        if warn > crit:
            pair = getattr(model, key)
            sets_both = pair is not UNSET and pair.warn is not UNSET and pair.crit is not UNSET
            inherited = "" if sets_both else " (the other one inherited)"
            doc.report(owner.where(key), f"warn ({show(warn)}) is above crit ({show(crit)}){inherited}; warn must be at most crit")
    return result


def _exemption(doc: Document, item: Read, model: ExemptionModel) -> Exemption:
    if model.vm is UNSET and model.checkpoint is UNSET and model.rule is UNSET:
        doc.report(item.at, "an exemption needs at least one of vm, checkpoint or rule")
    return Exemption(
        vm=model.vm if model.vm is not UNSET else "*",
        checkpoint=model.checkpoint if model.checkpoint is not UNSET else None,
        rule=model.rule if model.rule is not UNSET else None,
        reason=model.reason,
    )


def check_policy_names(doc: Document, policy: Read, hosts: tuple[HostConfig, ...]) -> None:
    """With hosts listed, a group or host named by the policy must exist: a typo would
    otherwise silently leave the defaults in force. (Lab hosts found at run time cannot
    be checked, so this applies only when the file lists hosts.)"""
    groups = sorted({host.group for host in hosts if host.group is not None})
    names = [host.name for host in hosts]
    for section in ("groups", "vms"):
        read = policy.keys.get(section)
        entries = doc.entries(read.at, "a mapping") if read is not None else None
        for key, (key_node, _value) in (entries or {}).items():
            where = Located(key_node, child_path(read.at.path, key))  # type: ignore[union-attr]
            if section == "groups" and key not in groups:
                doc.report(where, f"no host has group '{key}'{did_you_mean(key, groups, 'groups')}")
            host = key.partition("/")[0] if "/" in key else None
            if section == "vms" and host is not None and host not in names:
                doc.report(where, f"no host is named '{host}'{did_you_mean(host, names, 'hosts')}")
