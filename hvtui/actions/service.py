"""Checkpoint actions, made safe: plans that say what will happen, read-only refusal in
the services, the merge-headroom safety rule, and an audit entry for every attempt.

The console and the CLI both call these (from worker threads: everything blocks).
Plans are computed from the latest inventory (read first when it lacks the host or VM);
how a plan maps checkpoints to files is told in ``plans``.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Protocol

from hvtui.actions.names import (
    MAX_NAME_LENGTH,
    normalise_checkpoint_type,
    validate_checkpoint_name,
    vm_checkpoint_type,
)
from hvtui.actions.plans import ApplyPlan, MergeStep, RemovePlan
from hvtui.clock import Clock
from hvtui.errors import HvtuiError, NotFoundError, ReadOnlyError, RefusedError
from hvtui.events import CancelToken, ProgressCallback
from hvtui.hosts.base import BACKUP_LABEL_PREFIX, Host
from hvtui.inventory import InventoryService
from hvtui.model import VM, Checkpoint, HostFacts, Volume
from hvtui.policy import age_seconds, headroom, merge_needs_by_volume

if TYPE_CHECKING:
    from hvtui.audit import AuditLog
    from hvtui.config import PolicyConfig, Thresholds

log = logging.getLogger(__name__)

HYPERV_CHECKPOINT_LIMIT = 50


class HostLookup(Protocol):
    """The configured hosts (``hvtui.hosts.registry.HostRegistry``)."""

    def host(self, name: str) -> Host: ...


class CheckpointActions:
    def __init__(
        self,
        hosts: HostLookup,
        inventory: InventoryService,
        audit: AuditLog,
        clock: Clock,
        policy: PolicyConfig,
        *,
        read_only: bool = False,
    ) -> None:
        """``read_only``: the whole console runs read-only (a host may also be, in its settings)."""
        self._hosts = hosts
        self._inventory = inventory
        self._audit = audit
        self._clock = clock
        self._policy = policy
        self._read_only = read_only
        # Hosts changed through us since their last read: the next plan reads them again
        # rather than trusting a chain we know has moved.
        self._changed_hosts: set[str] = set()
        self._changed_lock = threading.Lock()

    @property
    def audit(self) -> AuditLog:
        return self._audit

    # -- read-only ---------------------------------------------------------------------------
    def read_only_reason(self, host: str) -> str | None:
        """Why changes to ``host`` are refused, or None when they are allowed."""
        if self._read_only:
            return "hvtui runs read-only (--read-only or read_only in the config)"
        if self._hosts.host(host).read_only:
            return f"host {host!r} is read-only in the config"
        return None

    def require_writable(self, action: str, host: str, vm: str | None = None, args: dict | None = None) -> None:
        """Raise ``ReadOnlyError`` (and audit the refusal) when ``host`` may not be changed."""
        reason = self.read_only_reason(host)
        if reason is not None:
            self.audit.record(action, host, vm, dict(args or {}), "refused", 0.0, f"read-only: {reason}")
            raise ReadOnlyError(f"{action} on {host!r} refused: {reason}")

    def _check_writable(self, action: str, host: str) -> None:
        reason = self.read_only_reason(host)
        if reason is not None:
            raise ReadOnlyError(f"{action} on {host!r} refused: {reason}")

    # -- lookups -------------------------------------------------------------------------------
    def _vm(self, host: str, vm_id: str, checkpoint_id: str | None = None) -> VM:
        """The VM from the latest inventory; the host is read again when it was changed
        since, or when the VM (or the checkpoint asked for) is not in it yet."""
        self._hosts.host(host)  # unknown host: ConfigError naming the configured ones
        with self._changed_lock:
            changed = host in self._changed_hosts
            self._changed_hosts.discard(host)
        vm = None if changed else self._inventory.latest.vm(host, vm_id)
        if vm is None or (checkpoint_id is not None and vm.checkpoint(checkpoint_id) is None):
            vm = self._inventory.refresh([host]).vm(host, vm_id)
        if vm is None:
            host_inv = self._inventory.latest.host(host)
            if host_inv is not None and host_inv.error is not None and host_inv.facts is None:
                raise HvtuiError(f"host {host!r} cannot be read: {host_inv.error}")
            raise NotFoundError(host, "find VM", f"no VM with id {vm_id}")
        return vm

    def _vm_label(self, host: str, vm_id: str) -> str:
        """The VM's name for the audit entry from the start (the inventory already read), so
        that a refused or failed attempt is found by the VM's name like a successful one."""
        vm = self._inventory.latest.vm(host, vm_id)
        return vm.name if vm is not None else vm_id

    @contextmanager
    def _changing(self, host: str) -> Iterator[None]:
        # Marked also when the call fails: a failed merge may have changed the chain.
        try:
            yield
        finally:
            with self._changed_lock:
                self._changed_hosts.add(host)

    @staticmethod
    def _checkpoint(vm: VM, checkpoint_id: str) -> Checkpoint:
        cp = vm.checkpoint(checkpoint_id)
        if cp is None:
            raise NotFoundError(vm.host, "find checkpoint", f"VM {vm.name!r} has no checkpoint with id {checkpoint_id}")
        return cp

    def _thresholds(self, vm: VM) -> Thresholds:
        host_inv = self._inventory.latest.host(vm.host)
        group = host_inv.group if host_inv is not None else None
        return self._policy.thresholds_for(vm.host, vm.name, group)

    # -- plans -------------------------------------------------------------------------------
    def plan_remove(self, host: str, vm_id: str, checkpoint_id: str, subtree: bool = False) -> RemovePlan:
        vm = self._vm(host, vm_id, checkpoint_id)
        target = self._checkpoint(vm, checkpoint_id)
        going = vm.subtree(target.id) if subtree else [target]
        going_ids = {cp.id for cp in going}
        branch = vm.current_branch()
        branch_ids = [cp.id for cp in branch]
        on_branch = [i for i, cp_id in enumerate(branch_ids) if cp_id in going_ids]
        other_branch = tuple(cp for cp in going if cp.id not in branch_ids)

        merges: list[MergeStep] = []
        exact = True
        for disk in vm.disks:
            chain = disk.chain
            if not on_branch:
                continue
            mappable = disk.depth == len(branch) and all(
                link.vhd_type == "Differencing" for link in chain[: len(branch)]
            )
            if not mappable:
                exact = False
                continue
            if subtree:
                # The whole current branch below the deepest removed checkpoint merges down
                # into that checkpoint's own frozen file.
                deepest = max(on_branch)
                for i in range(deepest + 1):
                    merges.append(MergeStep(chain[i].path, chain[deepest + 1].path, chain[i].file_size))
            else:
                i = on_branch[0]
                merges.append(MergeStep(chain[i].path, chain[i + 1].path, chain[i].file_size))
            # A checkpoint with several children keeps its frozen file for the others;
            # Hyper-V then merges differently, so the mapping is only an estimate.
            if not subtree and len(vm.children_of(branch[on_branch[0]].id)) > 1:
                exact = False

        facts = self._facts(host)
        thresholds = self._thresholds(vm)
        if exact:
            bytes_to_move = sum(step.bytes for step in merges)
            per_volume: dict[str, tuple[Volume | None, int]] = {}
            for step in merges:
                volume = (facts.volume_for(step.target) or facts.volume_for(vm.path)) if facts else None
                key = volume.path if volume else ""
                per_volume[key] = (volume, per_volume.get(key, (volume, 0))[1] + step.bytes)
        else:
            merges = []  # a partial list would mislead: the text says it is an estimate
            bytes_to_move = vm.differencing_bytes
            # Measured where the differencing files are (a checkpoint path may be on another
            # volume than the VM's folder), not on the folder's volume.
            needs = merge_needs_by_volume(vm, facts) if facts else []
            per_volume = {room.volume.path if room.volume else "": (room.volume, room.need) for room in needs}
            if not needs:
                per_volume = {"": (facts.volume_for(vm.path) if facts else None, bytes_to_move)}
        headrooms = tuple(headroom(need, volume, thresholds) for volume, need in per_volume.values() if need > 0)
        return RemovePlan(
            host=host,
            vm_id=vm.id,
            vm_name=vm.name,
            vm_state=vm.state,
            checkpoint=target,
            subtree=subtree,
            checkpoints=tuple(going),
            merges=tuple(merges),
            bytes_to_move=bytes_to_move,
            exact=exact,
            other_branch=other_branch,
            headrooms=headrooms,
            margin_percent=thresholds.merge_min_free_percent,
        )

    def _facts(self, host: str) -> HostFacts | None:
        host_inv = self._inventory.latest.host(host)
        return host_inv.facts if host_inv is not None else None

    def plan_apply(self, host: str, vm_id: str, checkpoint_id: str) -> ApplyPlan:
        vm = self._vm(host, vm_id, checkpoint_id)
        cp = self._checkpoint(vm, checkpoint_id)
        facts = self._facts(host)
        now = facts.now if facts is not None else self._clock.now()
        current = vm.checkpoint(vm.parent_checkpoint_id) if vm.parent_checkpoint_id else None
        lost = sum(
            disk.chain[0].file_size for disk in vm.disks if disk.chain and disk.chain[0].vhd_type == "Differencing"
        )
        return ApplyPlan(
            host=host,
            vm_id=vm.id,
            vm_name=vm.name,
            vm_state=vm.state,
            checkpoint=cp,
            age_seconds=age_seconds(now, cp.created),
            current_checkpoint=current,
            bytes_lost=lost,
            checkpoint_first_name=self._checkpoint_first_name(vm, cp),
        )

    def _checkpoint_first_name(self, vm: VM, cp: Checkpoint) -> str:
        stamp = self._clock.now().astimezone().strftime("%Y-%m-%d %H:%M:%S")
        name = f"Before applying {cp.name} ({stamp})"
        return name[:MAX_NAME_LENGTH]

    # -- changes -------------------------------------------------------------------------------
    def create(
        self,
        host: str,
        vm_id: str,
        name: str | None = None,
        type: str = "Standard",  # noqa: A002
        context: dict | None = None,
    ) -> Checkpoint:
        """``context``: extra audit arguments naming why (a change window's name)."""
        args: dict = {"vm_id": vm_id, "name": name, "type": type, **(context or {})}
        with self.audit.action("checkpoint.create", host, self._vm_label(host, vm_id), args) as entry:
            self._check_writable("create a checkpoint", host)
            checkpoint_type = normalise_checkpoint_type(type)
            clean_name = validate_checkpoint_name(name) if name is not None else None
            vm = self._vm(host, vm_id)
            entry.vm = vm.name
            if vm.checkpoint_count >= HYPERV_CHECKPOINT_LIMIT:
                raise RefusedError(
                    f"VM {vm.name!r} on {host!r} already has {vm.checkpoint_count} checkpoints; "
                    f"Hyper-V allows at most {HYPERV_CHECKPOINT_LIMIT}"
                )
            with self._changing(host):
                created = self._hosts.host(host).create_checkpoint(vm.id, clean_name, checkpoint_type)
            entry.args.update(checkpoint_id=created.id, name=created.name)
            return created

    def apply(
        self,
        host: str,
        vm_id: str,
        checkpoint_id: str,
        checkpoint_first: bool = False,
        progress: ProgressCallback | None = None,
        context: dict | None = None,
    ) -> Checkpoint | None:
        """Apply a checkpoint; returns the checkpoint taken first, if asked for one."""
        args: dict = {"vm_id": vm_id, "checkpoint_id": checkpoint_id, "checkpoint_first": checkpoint_first, **(context or {})}
        with self.audit.action("checkpoint.apply", host, self._vm_label(host, vm_id), args) as entry:
            self._check_writable("apply a checkpoint", host)
            vm = self._vm(host, vm_id, checkpoint_id)
            cp = self._checkpoint(vm, checkpoint_id)
            entry.vm = vm.name
            entry.args["checkpoint_name"] = cp.name
            saved: Checkpoint | None = None
            if checkpoint_first:
                saved = self.create(host, vm.id, self._checkpoint_first_name(vm, cp), vm_checkpoint_type(vm))
                entry.args["saved_checkpoint_id"] = saved.id
            with self._changing(host):
                self._hosts.host(host).apply_checkpoint(vm.id, cp.id, progress=progress)
            return saved

    def remove(
        self,
        host: str,
        vm_id: str,
        checkpoint_id: str,
        subtree: bool = False,
        force: bool = False,
        progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
        context: dict | None = None,
    ) -> RemovePlan:
        """Delete a checkpoint (or its subtree); refused when the merge headroom is short,
        unless ``force``.  Returns the plan it carried out, with ``merge_pending`` set
        when the host is still merging."""
        args: dict = {"vm_id": vm_id, "checkpoint_id": checkpoint_id, "subtree": subtree, "force": force, **(context or {})}
        with self.audit.action("checkpoint.remove", host, self._vm_label(host, vm_id), args) as entry:
            self._check_writable("delete a checkpoint", host)
            plan = self.plan_remove(host, vm_id, checkpoint_id, subtree)
            entry.vm = plan.vm_name
            entry.args.update(
                checkpoint_name=plan.checkpoint.name,
                removed=[cp.id for cp in plan.checkpoints],
                bytes_to_move=plan.bytes_to_move,
            )
            refusal = plan.refusal(force)
            if refusal is not None:
                raise RefusedError(refusal)
            if not plan.headroom_ok:
                entry.args["headroom_overridden"] = True
                log.warning("merge headroom overridden for %s/%s", host, plan.vm_name)
            with self._changing(host):
                target = self._hosts.host(host)
                cp = plan.checkpoint
                if not subtree and cp.type == "Recovery" and cp.name.startswith(BACKUP_LABEL_PREFIX):
                    # A WinRM backup's own checkpoint: released as its backup would have (backup.end failed).
                    target.release_backup_checkpoint(plan.vm_id, cp.id)
                    outcome = None
                else:
                    outcome = target.remove_checkpoint(plan.vm_id, cp.id, subtree=subtree, progress=progress, cancel=cancel)
            # None: the backend returned once the merge was done (the lab does).
            merge_pending = outcome is not None and outcome.merge_pending
            entry.args["merge_pending"] = merge_pending
            return dataclasses.replace(plan, merge_pending=merge_pending)

    def start(self, host: str, vm_id: str, context: dict | None = None) -> None:
        """Start (or resume) a VM; ``context`` as for ``create``. A host that cannot start VMs
        raises HostError kind ``unsupported`` (audited as failed)."""
        args: dict = {"vm_id": vm_id, **(context or {})}
        with self.audit.action("vm.start", host, self._vm_label(host, vm_id), args) as entry:
            self._check_writable("start a VM", host)
            vm = self._vm(host, vm_id)
            entry.vm = vm.name
            entry.args["state_before"] = vm.state
            with self._changing(host):
                self._hosts.host(host).start_vm(vm.id)

    def rename(self, host: str, vm_id: str, checkpoint_id: str, new_name: str) -> None:
        args: dict = {"vm_id": vm_id, "checkpoint_id": checkpoint_id, "new_name": new_name}
        with self.audit.action("checkpoint.rename", host, self._vm_label(host, vm_id), args) as entry:
            self._check_writable("rename a checkpoint", host)
            clean = validate_checkpoint_name(new_name)
            vm = self._vm(host, vm_id, checkpoint_id)
            cp = self._checkpoint(vm, checkpoint_id)
            entry.vm = vm.name
            entry.args["old_name"] = cp.name
            with self._changing(host):
                self._hosts.host(host).rename_checkpoint(vm.id, cp.id, clean)

