"""Plans of checkpoint actions: what a removal or an apply will do, before it runs.

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

from hvtui.model import Checkpoint, Volume
from hvtui.policy import Headroom, age_text, size_text


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
        details, consequences = self.describe_parts()
        return f"{details}\n{consequences}"

    def describe_parts(self) -> tuple[str, str]:
        """What goes (the checkpoints, each merge: long for a subtree) and what it means (how
        much moves, the free space, the verdict: short, and what a dialog must always show)."""
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
                f"  - {file_name(step.source)} ({size_text(step.bytes)}) into {file_name(step.target)}"
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
        details = "\n".join(lines)
        lines = []
        moves = f"about {size_text(self.bytes_to_move)} moves; the VM keeps its current state."
        if self.merges:
            lines.append(f"{len(self.merges)} merge{'s' if len(self.merges) != 1 else ''}: {moves}")
        else:
            lines.append(moves.capitalize())
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
        return details, "\n".join(lines)


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
        if cp.type == "Standard":
            lines.append(
                "The VM returns to the state it had when the checkpoint was taken: this Standard checkpoint "
                "holds its memory, so a VM that was running then comes back Saved (start it to resume)."
            )
        else:
            lines.append(
                f"The VM returns to the disks it had when the checkpoint was taken; this {cp.type} checkpoint "
                "holds no memory, so the VM is left Off."
            )
        if not checkpoint_first:
            lines.append("To keep the current state, take a checkpoint first (checkpoint first, then apply).")
        return "\n".join(lines)


def file_name(path: str) -> str:
    return path.replace("\\", "/").rsplit("/", 1)[-1]

