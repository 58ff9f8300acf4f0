"""Removing checkpoints on a lab host: planning the merges, running them, committing them.

A removal is planned (``plan_removal``) into a journal of idempotent steps kept in the VM's
record, run (``run_journal``) without the host lock, then committed (``finish_journal``).
A process that dies while merging leaves the journal; the next one to take the host lock
re-runs it (``LabStore`` recovery).
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

from hvtui.events import Progress, ProgressCallback
from hvtui.hosts.lab import disk as vdisk
from hvtui.hosts.lab.state import ChangeLog


def plan_removal(vm: dict[str, Any], folder: Path, remove: set[str]) -> dict[str, Any]:
    """Plan the merges that remove checkpoints ``remove`` without changing any state.

    Every checkpoint froze one file per disk.  After dropping the removed checkpoints,
    the files still needed ("anchors") are the VM's current files and the frozen files
    of the remaining checkpoints.  For each file a removed checkpoint froze:

    - no child left (its branch was discarded by an apply, or the whole subtree goes):
      delete it;
    - exactly one child: merge the child INTO it (the child's blocks overwrite the
      parent's, Hyper-V's direction: "the .avhdx is merged into its parent"), re-parent
      the grandchildren, point whoever used the child (the running VM or a checkpoint)
      at the merged file, delete the child.  Cost: the child's data.
    - several children (a checkpoint with branches): merge it into EACH child (only the
      blocks a child lacks, since the child's own are newer), re-parent the children to
      its parent, delete it.  A base disk with several children stays as it is.

    Each step keeps every anchor's logical disk identical, and each step is idempotent,
    so a crashed merge can simply be re-run.
    """
    files = {name: dict(meta) for name, meta in vm["files"].items()}
    remaining = [dict(cp, files=list(cp["files"])) for cp in vm["checkpoints"] if cp["id"] not in remove]
    by_id = {cp["id"]: cp for cp in vm["checkpoints"]}
    # Re-parent remaining checkpoints to their nearest remaining ancestor.
    for cp in remaining:
        parent = cp.get("parent_id")
        while parent is not None and parent in remove:
            parent = by_id[parent].get("parent_id")
        cp["parent_id"] = parent
    pcp = vm.get("parent_checkpoint_id")
    while pcp is not None and pcp in remove:
        pcp = by_id[pcp].get("parent_id")
    current = [d["current"] for d in vm["disks"]]
    candidates = {name for cid in remove for name in by_id[cid]["files"]}

    # Blocks present per file, to cost the plan and simulate fills exactly.
    blocks: dict[str, set[int]] = {}

    def present(name: str) -> set[int]:
        if name not in blocks:
            with vdisk.DiskFile(folder / name) as f:
                blocks[name] = set(f.present_blocks())
        return blocks[name]

    block_size = vdisk.BLOCK_SIZE
    steps: list[list[Any]] = []
    copy_bytes = 0
    allocate = 0

    def anchored(name: str) -> bool:
        return name in current or any(name in cp["files"] for cp in remaining)

    def children(name: str) -> list[str]:
        return sorted(child for child, meta in files.items() if meta["parent"] == name)

    def repoint(old: str, new: str) -> None:
        for i, name in enumerate(current):
            if name == old:
                current[i] = new
        for cp in remaining:
            cp["files"] = [new if name == old else name for name in cp["files"]]

    changed = True
    while changed:
        changed = False
        for name in sorted(candidates):
            if name not in files or anchored(name):
                candidates.discard(name)
                changed = True
                break
            kids = children(name)
            if not kids:
                steps.append(["delete", name])
                del files[name]
                candidates.discard(name)
                changed = True
                break
            if len(kids) == 1:
                kid = kids[0]
                src, dst = present(kid), present(name)
                copy_bytes += len(src) * block_size
                allocate += len(src - dst) * block_size
                blocks[name] = dst | src
                steps.append(["merge", kid, name, "overwrite"])
                for grandchild in children(kid):
                    steps.append(["set_parent", grandchild, name])
                    files[grandchild]["parent"] = name
                steps.append(["delete", kid])
                del files[kid]
                repoint(kid, name)
                candidates.discard(kid)
                changed = True
                break
            if files[name]["parent"] is None:
                candidates.discard(name)  # a base disk shared by branches stays
                changed = True
                break
            grand = files[name]["parent"]
            for kid in kids:
                src, dst = present(name), present(kid)
                copy_bytes += len(src - dst) * block_size
                allocate += len(src - dst) * block_size
                blocks[kid] = dst | src
                steps.append(["merge", name, kid, "fill"])
                steps.append(["set_parent", kid, grand])
                files[kid]["parent"] = grand
            steps.append(["delete", name])
            del files[name]
            candidates.discard(name)
            changed = True
            break
    disks = [dict(d, current=current[i]) for i, d in enumerate(vm["disks"])]
    return {
        "op": "remove",
        "removed": sorted(remove),
        "steps": steps,
        "copy": copy_bytes,
        "allocate": allocate,
        "final": {
            "checkpoints": remaining,
            "parent_checkpoint_id": pcp,
            "disks": disks,
            "files": files,
        },
    }


def run_journal(
    root: Path, folder: Path, vm: dict[str, Any], journal: dict[str, Any], progress: ProgressCallback | None
) -> None:
    """Run a removal's steps on the files in ``folder`` (``root`` is the host's, for the change logs)."""
    identities = {name: meta["identity"] for name, meta in vm["files"].items()}
    total = int(journal.get("copy", 0))
    done = 0
    last_report = 0.0

    def report(current: str | None, force: bool = False) -> None:
        nonlocal last_report
        if progress is None:
            return
        now = time.monotonic()
        if force or now - last_report >= 0.1:
            last_report = now
            progress(Progress(phase="merge", message="merging disks", current=current, done=done, total=total))

    report(None, force=True)
    for step in journal["steps"]:
        kind = step[0]
        if kind == "merge":
            _, src_name, dst_name, mode = step
            if not (folder / src_name).exists():
                continue  # done before a crash: the source is deleted only after its merge
            tracker = ChangeLog(root, identities.get(dst_name, "unknown"))
            seq = tracker.begin()
            with vdisk.DiskFile(folder / src_name) as src, vdisk.DiskFile(folder / dst_name, writable=True) as dst:

                def on_block(nbytes: int, _current: str = dst_name) -> None:
                    nonlocal done
                    done += nbytes
                    report(_current)

                vdisk.merge_into(src, dst, mode, on_block)
                # Virtual ranges, block by block: a superset where a fill copied only some sectors.
                ranges = [(index * src.block_size, src.block_size) for index in src.present_blocks()]
            tracker.commit(seq, vdisk.coalesce(ranges))
        elif kind == "set_parent":
            _, name, parent = step
            if not (folder / name).exists():
                continue
            tracker = ChangeLog(root, identities.get(name, "unknown"))
            seq = tracker.begin()
            with vdisk.DiskFile(folder / name, writable=True) as f:
                f.set_parent(parent)
                f.fsync()
            tracker.commit(seq, [])  # metadata only: no virtual byte changed (a backup always re-reads metadata)
        elif kind == "delete":
            _, name = step
            with contextlib.suppress(FileNotFoundError):
                (folder / name).unlink()
            if name in identities:
                ChangeLog(root, identities[name]).delete()
    report(None, force=True)


def finish_journal(vm: dict[str, Any]) -> None:
    """Commit a run journal to the VM's record (the caller writes the VM's configuration)."""
    final = vm["journal"]["final"]
    vm["files"] = final["files"]
    vm["disks"] = final["disks"]
    # The records were already replaced in phase 1 (and may have been renamed since):
    # only their frozen files moved.
    frozen = {cp["id"]: cp["files"] for cp in final["checkpoints"]}
    for cp in vm["checkpoints"]:
        if cp["id"] in frozen:
            cp["files"] = frozen[cp["id"]]
    vm["journal"] = None

