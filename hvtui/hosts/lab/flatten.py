"""Flatten a restored lab VM: one disk file per drive, no checkpoints.

A backup keeps the VM's checkpoint tree (the frozen chain and its checkpoints), but an
admin restoring a VM as a copy or into a folder wants the VM as it was, not its weeks-old
checkpoints: each drive's chain is merged into one file named after its base disk, the
differencing files are removed and the configuration lists no checkpoints.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from hvtui.errors import RefusedError
from hvtui.files import atomic_write
from hvtui.hosts.lab import disk as vdisk


def chain_of(config: dict[str, Any], top: str) -> list[str]:
    """The files of the chain from ``top`` down to its base, per the configuration."""
    out: list[str] = []
    name: str | None = top
    while name is not None and name not in out:
        out.append(name)
        name = config["files"].get(name, {}).get("parent")
    return out


def old_format_disks(config: dict[str, Any], folder: Path) -> list[str]:
    """The restored disk files in the lab's own format from before it wrote VHDX."""
    return sorted(name for name in config.get("files") or {} if vdisk.is_old_lab_disk(folder / name))


def old_format_message(names: list[str]) -> str:
    """What a point taken from a pre-VHDX lab holds, and what to do with it."""
    return (
        f"this restore point was taken from a lab built before the lab wrote VHDX: {', '.join(names)} "
        f"{'is' if len(names) == 1 else 'are'} in the lab's old disk format, which the lab can no longer "
        "register or flatten and no VHDX tool reads. Restore the point to a folder keeping its files as they "
        "were backed up (`hvtui restore VM --point ID --to DIR --keep-checkpoints`; in the console: a folder, "
        "with \"keep the point's checkpoints\" ticked), or back the VM up again from the rebuilt lab and "
        "restore that point"
    )


def needs_flattening(config: dict[str, Any]) -> bool:
    files = config.get("files") or {}
    return bool(config.get("checkpoints")) or any(meta.get("parent") for meta in files.values())


def flatten_restored(config: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Merge each drive's chain staged in ``folder`` into its base file; return the new config.

    The VM configuration file, when it was restored too, is rewritten to match.
    """
    if not needs_flattening(config):
        return config
    old = old_format_disks(config, folder)
    if old:
        raise RefusedError(old_format_message(old))
    flat = dict(config)
    files: dict[str, dict[str, Any]] = {}
    disks: list[dict[str, Any]] = []
    remove: set[str] = set()
    for d in config["disks"]:
        chain = chain_of(config, d["current"])
        base = chain[-1]
        tmp = folder / f"{base}.flatten.tmp"
        with vdisk.DiskChain.open(folder / d["current"]) as source:
            vdisk.create_disk(tmp, source.virtual_size, block_size=source.block_size, fsync=False)
            zero = bytes(source.block_size)
            with vdisk.DiskFile(tmp, writable=True) as out:
                present: set[int] = set()
                for f in source.files:
                    present.update(f.present_blocks())
                for index in sorted(present):
                    data = source.read_block(index)
                    if data != zero:  # a hole reads as zeros: nothing to store
                        out.write_block(index, data)
                out.fsync()
            size = source.virtual_size
        os.replace(tmp, folder / base)
        remove.update(chain[:-1])
        files[base] = {"parent": None, "size": size}
        disks.append(dict(d, current=base))
    for name in remove - set(files):
        (folder / name).unlink(missing_ok=True)
    flat.update(files=files, disks=disks, checkpoints=[], parent_checkpoint_id=None)
    config_file = config.get("config_file")
    if isinstance(config_file, str) and (folder / config_file).is_file():
        atomic_write(folder / config_file, json.dumps(flat, indent=1, sort_keys=True).encode("utf-8"))
    return flat
