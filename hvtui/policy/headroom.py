"""Merge headroom: what merging a VM's differencing data may need, and whether its volume has it.

Shared by the merge-headroom rule and the checkpoint actions (which refuse a delete that
would fill the volume).
"""

from __future__ import annotations

import dataclasses

from hvtui.config import Thresholds
from hvtui.model import VM, HostFacts, Volume
from hvtui.policy.text import size_text


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
