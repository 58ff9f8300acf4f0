"""Checkpoint actions, made safe: plans that say what will happen, read-only refusal in
the core, the merge-headroom safety rule, and an audit entry for every attempt.

The console and the CLI both call these (from worker threads: everything blocks).
Plans are computed from the latest inventory (read first when it lacks the host or VM).

How a plan maps checkpoints to files: Hyper-V freezes the current disk file when it
takes a checkpoint and starts a new differencing file for later writes.  So along the
VM's current branch (its parent checkpoint up to the root, nearest first), the file
created at the i-th checkpoint is ``chain[i]`` of each disk, and the checkpoint's own
frozen state ends at ``chain[i + 1]``.  Deleting that checkpoint merges ``chain[i]``
into ``chain[i + 1]``.  When the chain depth does not match the branch (a failed merge,
files of another branch), the plan says it is an estimate and assumes every
differencing byte of the VM may move: the safe side for a headroom check.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from hvtui.errors import HvtuiError, NotFoundError, ReadOnlyError, RefusedError, UsageError
from hvtui.events import CancelToken, ProgressCallback
from hvtui.model import VM, Checkpoint, HostFacts, Volume
from hvtui.policy import Headroom, age_seconds, age_text, headroom, size_text

if TYPE_CHECKING:
    from hvtui.audit import AuditLog
    from hvtui.config import Thresholds
    from hvtui.core import Core

log = logging.getLogger(__name__)

CREATABLE_TYPES = ("Standard", "Production")
MAX_NAME_LENGTH = 100  # Hyper-V Manager accepts 1-100 characters
HYPERV_CHECKPOINT_LIMIT = 50


@dataclasses.dataclass(frozen=True, slots=True)
class MergeStep:
    source: str  # the differencing file merged away
    target: str  # the file it merges into
    bytes: int  # stored bytes of the source: what moves


@dataclasses.dataclass(frozen=True, slots=True)
class RemovePlan:
    host: str
    vm_id: str
    vm_name: str
    vm_state: str
    checkpoint: Checkpoint  # the one asked for
    subtree: bool
    checkpoints: tuple[Checkpoint, ...]  # everything that goes, parents first
    merges: tuple[MergeStep, ...]
    bytes_to_move: int
    exact: bool  # False: the checkpoint-to-file mapping is an estimate (see the module doc)
    other_branch: tuple[Checkpoint, ...]  # checkpoints that go whose files are not in the current chain
    headrooms: tuple[Headroom, ...]  # one per volume the merge writes to
    margin_percent: float
    # Set on the plan ``remove`` returns: the host was still merging when the call ended, so
    # the chain shrinks (and the space comes back) only later; the next inventory shows it.
    merge_pending: bool = False

    @property
    def headroom_ok(self) -> bool:
        return all(room.ok for room in self.headrooms)

    @property
    def volume(self) -> Volume | None:
        """The volume with the least room after the merge."""
        tightest: Headroom | None = None
        for room in self.headrooms:
            if room.volume is None:
                continue
            if tightest is None or room.slack < tightest.slack:
                tightest = room
        return tightest.volume if tightest is not None else None

    @property
    def volume_free(self) -> int | None:
        volume = self.volume
        return volume.free if volume is not None else None

    def refusal(self, force: bool = False) -> str | None:
        """Why the core refuses this deletion (merge-headroom), or None."""
        if self.headroom_ok or force:
            return None
        short = [room for room in self.headrooms if not room.ok]
        return (
            f"deleting checkpoint {self.checkpoint.name!r} of {self.vm_name!r} on {self.host!r}: "
            + "; ".join(room.text() for room in short)
            + " (merge-headroom; force it only if you know the space will be there)"
        )

    def describe(self) -> str:
        what = "checkpoint subtree" if self.subtree and len(self.checkpoints) > 1 else "checkpoint"
        lines = [f"Delete {what} {self.checkpoint.name!r} of VM {self.vm_name!r} on host {self.host!r}."]
        if len(self.checkpoints) > 1:
            lines.append(f"{len(self.checkpoints)} checkpoints go:")
            lines.extend(f"  - {cp.name!r} ({cp.type}, id {cp.id})" for cp in self.checkpoints)
        else:
            lines.append(f"Checkpoint id {self.checkpoint.id}, {self.checkpoint.type}.")
        if self.merges:
            lines.append("Differencing data merges:")
            lines.extend(
                f"  - {_file_name(step.source)} ({size_text(step.bytes)}) into {_file_name(step.target)}"
                for step in self.merges
            )
        if not self.exact:
            lines.append(
                "hvtui cannot map these checkpoints to files exactly (the chain does not match the checkpoint "
                "tree); the figures assume every differencing byte of the VM may move."
            )
        if self.other_branch:
            lines.append(
                f"{len(self.other_branch)} of them lie on another branch; their files are not in the VM's current "
                "chain and are merged or deleted by the host (sizes not in the inventory)."
            )
        lines.append(f"About {size_text(self.bytes_to_move)} moves; the VM keeps its current state.")
        for room in self.headrooms:
            if room.volume is None:
                lines.append("The volume's free space is unknown.")
                continue
            verdict = "enough room" if room.ok else "NOT ENOUGH ROOM"
            lines.append(
                f"Volume {room.volume.path}: {size_text(room.volume.free)} free, the merge may need "
                f"{size_text(room.need)} and {size_text(room.margin)} ({self.margin_percent:g}%) must stay free: {verdict}."
            )
        if not self.headroom_ok:
            lines.append("Refused unless forced: a merge that fills the volume pauses every VM on it.")
        lines.append("This cannot be undone.")
        return "\n".join(lines)


@dataclasses.dataclass(frozen=True, slots=True)
class ApplyPlan:
    host: str
    vm_id: str
    vm_name: str
    vm_state: str
    checkpoint: Checkpoint
    age_seconds: float
    current_checkpoint: Checkpoint | None  # what the VM runs from now
    bytes_lost: int  # differencing data written since the current checkpoint
    checkpoint_first_name: str  # the name "checkpoint first" would use

    def describe(self, checkpoint_first: bool = False) -> str:
        cp = self.checkpoint
        lines = [
            f"Apply checkpoint {cp.name!r} ({cp.type}, id {cp.id}, created "
            f"{cp.created.isoformat(timespec='seconds')}, {age_text(self.age_seconds)} ago) "
            f"to VM {self.vm_name!r} on host {self.host!r} (now {self.vm_state})."
        ]
        since = f"since checkpoint {self.current_checkpoint.name!r}" if self.current_checkpoint else "now"
        if checkpoint_first:
            lines.append(
                f"First a new checkpoint {self.checkpoint_first_name!r} keeps the VM's current state; "
                f"then the VM returns to {cp.name!r}."
            )
        else:
            lines.append(
                f"The VM's current state is LOST: everything it did {since} "
                f"({size_text(self.bytes_lost)} of differencing data) is discarded."
            )
        lines.append(
            "The VM returns to the state it had when the checkpoint was taken (a Production checkpoint leaves it Off)."
        )
        if not checkpoint_first:
            lines.append("To keep the current state, take a checkpoint first (checkpoint first, then apply).")
        return "\n".join(lines)


def _file_name(path: str) -> str:
    return path.replace("\\", "/").rsplit("/", 1)[-1]


def validate_checkpoint_name(name: str) -> str:
    """A checkpoint name as Hyper-V accepts it: 1-100 characters, no control characters."""
    cleaned = name.strip()
    if not cleaned:
        raise UsageError("a checkpoint name cannot be empty")
    if len(cleaned) > MAX_NAME_LENGTH:
        raise UsageError(f"a checkpoint name has at most {MAX_NAME_LENGTH} characters ({len(cleaned)} given)")
    if any(unicodedata.category(ch) == "Cc" for ch in cleaned):
        raise UsageError("a checkpoint name cannot contain control characters")
    return cleaned


def normalise_checkpoint_type(checkpoint_type: str) -> str:
    for known in CREATABLE_TYPES:
        if checkpoint_type.casefold() == known.casefold():
            return known
    raise UsageError(f"checkpoint type must be one of {', '.join(CREATABLE_TYPES)} (got {checkpoint_type!r})")


def find_checkpoint(vm: VM, name_or_id: str) -> Checkpoint:
    """A checkpoint of ``vm`` by id or name; ambiguous names list the ids to choose from."""
    wanted = name_or_id.strip()
    for cp in vm.checkpoints:
        if cp.id.casefold() == wanted.casefold():
            return cp
    matches = [cp for cp in vm.checkpoints if cp.name == wanted] or [
        cp for cp in vm.checkpoints if cp.name.casefold() == wanted.casefold()
    ]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        ids = "; ".join(f"{cp.id} ({cp.type}, created {cp.created.isoformat(timespec='seconds')})" for cp in matches)
        raise UsageError(f"{len(matches)} checkpoints of VM {vm.name!r} are named {wanted!r}: {ids}; pass the id")
    names = [cp.name for cp in vm.checkpoints]
    known = ", ".join(repr(n) for n in names[:10]) or "none"
    raise UsageError(f"{vm.host}: VM {vm.name!r} has no checkpoint {wanted!r} (it has: {known})")


class CheckpointActions:
    def __init__(self, core: Core) -> None:
        self._core = core
        # Hosts changed through us since their last read: the next plan reads them again
        # rather than trusting a chain we know has moved.
        self._changed_hosts: set[str] = set()
        self._changed_lock = threading.Lock()

    @property
    def audit(self) -> AuditLog:
        return self._core.audit

    # -- read-only ---------------------------------------------------------------------------
    def read_only_reason(self, host: str) -> str | None:
        """Why changes to ``host`` are refused, or None when they are allowed."""
        if self._core.read_only:
            return "hvtui runs read-only (--read-only or read_only in the config)"
        if self._core.host(host).read_only:
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
        self._core.host(host)  # unknown host: ConfigError naming the configured ones
        with self._changed_lock:
            changed = host in self._changed_hosts
            self._changed_hosts.discard(host)
        vm = None if changed else self._core.inventory.latest.vm(host, vm_id)
        if vm is None or (checkpoint_id is not None and vm.checkpoint(checkpoint_id) is None):
            vm = self._core.inventory.refresh([host]).vm(host, vm_id)
        if vm is None:
            host_inv = self._core.inventory.latest.host(host)
            if host_inv is not None and host_inv.error is not None and host_inv.facts is None:
                raise HvtuiError(f"host {host!r} cannot be read: {host_inv.error}")
            raise NotFoundError(host, "find VM", f"no VM with id {vm_id}")
        return vm

    def _vm_label(self, host: str, vm_id: str) -> str:
        """The VM's name for the audit entry from the start (the inventory already read), so
        that a refused or failed attempt is found by the VM's name like a successful one."""
        vm = self._core.inventory.latest.vm(host, vm_id)
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
        host_inv = self._core.inventory.latest.host(vm.host)
        group = host_inv.group if host_inv is not None else None
        return self._core.config.policy.thresholds_for(vm.host, vm.name, group)

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
            volume = facts.volume_for(vm.path) if facts else None
            per_volume = {"": (volume, bytes_to_move)}
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
        host_inv = self._core.inventory.latest.host(host)
        return host_inv.facts if host_inv is not None else None

    def plan_apply(self, host: str, vm_id: str, checkpoint_id: str) -> ApplyPlan:
        vm = self._vm(host, vm_id, checkpoint_id)
        cp = self._checkpoint(vm, checkpoint_id)
        facts = self._facts(host)
        now = facts.now if facts is not None else self._core.clock.now()
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
        stamp = self._core.clock.now().astimezone().strftime("%Y-%m-%d %H:%M:%S")
        name = f"Before applying {cp.name} ({stamp})"
        return name[:MAX_NAME_LENGTH]

    # -- changes -------------------------------------------------------------------------------
    def create(self, host: str, vm_id: str, name: str | None = None, type: str = "Standard") -> Checkpoint:  # noqa: A002
        args: dict = {"vm_id": vm_id, "name": name, "type": type}
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
                created = self._core.host(host).create_checkpoint(vm.id, clean_name, checkpoint_type)
            entry.args.update(checkpoint_id=created.id, name=created.name)
            return created

    def apply(
        self,
        host: str,
        vm_id: str,
        checkpoint_id: str,
        checkpoint_first: bool = False,
        progress: ProgressCallback | None = None,
    ) -> Checkpoint | None:
        """Apply a checkpoint; returns the checkpoint taken first, if asked for one."""
        args: dict = {"vm_id": vm_id, "checkpoint_id": checkpoint_id, "checkpoint_first": checkpoint_first}
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
                self._core.host(host).apply_checkpoint(vm.id, cp.id, progress=progress)
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
    ) -> RemovePlan:
        """Delete a checkpoint (or its subtree); refused when the merge headroom is short,
        unless ``force``.  Returns the plan it carried out, with ``merge_pending`` set
        when the host is still merging."""
        args: dict = {"vm_id": vm_id, "checkpoint_id": checkpoint_id, "subtree": subtree, "force": force}
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
                outcome = self._core.host(host).remove_checkpoint(
                    plan.vm_id, plan.checkpoint.id, subtree=subtree, progress=progress, cancel=cancel
                )
            # None: the backend returned once the merge was done (the lab does).
            merge_pending = outcome is not None and outcome.merge_pending
            entry.args["merge_pending"] = merge_pending
            return dataclasses.replace(plan, merge_pending=merge_pending)

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
                self._core.host(host).rename_checkpoint(vm.id, cp.id, clean)


def vm_checkpoint_type(vm: VM) -> str:
    """The checkpoint type to take for ``vm``: its configured one where creatable, else Standard."""
    kind = vm.checkpoint_type
    if kind in ("Production", "ProductionOnly"):
        return "Production"
    return "Standard"
