"""The whole lab: building a lab directory from a profile, its status, reset, and leftovers.

A lab directory holds ``lab.json`` (profile, seed, creation time) and one directory per
lab host.  A lab is built into a sibling temp directory and swapped in (``profiles`` holds
the estates); a build killed midway leaves ``.lab.new-*``/``.lab.old-*`` beside it, which
the next look at the lab clears.  ``lab_host_names`` lives in ``state`` (a lab host names
its siblings too) and is importable from here.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import humanize

from hvtui.clock import Clock
from hvtui.errors import HvtuiError, RefusedError
from hvtui.files import atomic_write
from hvtui.hosts.lab.profiles import MIB, PROFILE_BUILDERS, PROFILES
from hvtui.hosts.lab.records import iso
from hvtui.hosts.lab.state import STATE_FILE, FileLock, is_old_format_host, lab_host_names, old_format_message

log = logging.getLogger(__name__)

LAB_FILE = "lab.json"
LAB_FORMAT = 2  # 2: VM disks are genuine VHDX (see state.STATE_FORMAT)
DEFAULT_SEED = 20261124
# Disk a lab of each profile takes: (fixed, per unit of --size), fitted over du after builds at
# sizes 0.01 to 3 and rounded up. Checked before building, so a full disk is named up front
# instead of met half-way through.
PROFILE_DISK_BYTES = {"demo": (40 * MIB, 600 * MIB), "bench": (8 * MIB, 1830 * MIB), "scale": (8 * MIB, 700 * MIB)}


def lab_disk_estimate(profile: str, size: float = 1.0) -> int:
    """About how many bytes a ``profile`` lab of ``size`` takes on disk."""
    fixed, per_size = PROFILE_DISK_BYTES.get(profile, (0, 0))
    return int(fixed + per_size * size)


class LabError(HvtuiError):
    """The lab directory is missing, not a lab, or cannot be created."""


# ----------------------------------------------------------------------------------
# lab directory
# ----------------------------------------------------------------------------------
def read_lab_info(lab_dir: Path) -> dict[str, Any] | None:
    try:
        info = json.loads((Path(lab_dir) / LAB_FILE).read_bytes())
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, ValueError) as err:
        raise LabError(f"lab file {Path(lab_dir) / LAB_FILE} is unreadable: {err}") from None
    return info if isinstance(info, dict) else None


def ensure_lab(lab_dir: Path, profile: str, clock: Clock, size: float = 1.0) -> None:
    """Create the ``profile`` estate when ``lab_dir`` has no lab hosts; otherwise do nothing."""
    lab_dir = Path(lab_dir)
    if lab_host_names(lab_dir):
        sweep_leftovers_if_idle(lab_dir)
        return
    lab_dir.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(lab_dir.parent / f".{lab_dir.name}.lock")
    deadline = time.monotonic() + 120
    while not lock.try_acquire():  # another process is creating it: wait for it
        if time.monotonic() > deadline:
            raise LabError(f"timed out waiting for another process to create the lab at {lab_dir}")
        time.sleep(0.05)
    try:
        _sweep_leftovers(lab_dir)
        if not lab_host_names(lab_dir):
            _build_lab(lab_dir, profile, clock, DEFAULT_SEED, replace=lab_dir.exists(), size=size)
    finally:
        lock.release()


def init_lab(
    lab_dir: Path,
    profile: str,
    clock: Clock,
    force: bool = False,
    seed: int = DEFAULT_SEED,
    size: float = 1.0,
) -> dict[str, Any]:
    """Create a lab from ``profile``; refuses to replace an existing lab without ``force``.

    ``size`` scales the data (bench) or the VM count (scale): tests use a small fraction.
    Returns ``lab_status``.
    """
    lab_dir = Path(lab_dir)
    if profile not in PROFILES:
        raise LabError(f"unknown lab profile {profile!r} (expected one of {', '.join(PROFILES)})")
    lab_dir.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(lab_dir.parent / f".{lab_dir.name}.lock")
    if not lock.try_acquire():
        raise LabError(f"another process is creating or resetting the lab at {lab_dir}")
    try:
        _sweep_leftovers(lab_dir)  # first: it may put back a lab, which --force alone may replace
        existing = lab_host_names(lab_dir)
        if existing and not force:
            info = read_lab_info(lab_dir) or {}
            old = " built by an older hvtui with non-VHDX disk files," if is_old_lab(lab_dir) else ""
            raise RefusedError(
                f"a lab already exists at {lab_dir} (profile {info.get('profile', 'unknown')}, "
                f"{len(existing)} hosts){old}: use --force to replace it (its VMs and files are deleted)"
            )
        _build_lab(lab_dir, profile, clock, seed, replace=lab_dir.exists(), size=size)
    finally:
        lock.release()
    return lab_status(lab_dir)


def is_old_lab(lab_dir: Path) -> bool:
    """True when the lab's hosts keep their disks in the pre-VHDX format (rebuild it to use it)."""
    return any(is_old_format_host(Path(lab_dir) / name) for name in lab_host_names(lab_dir))


def sweep_leftovers_if_idle(lab_dir: Path) -> None:
    """Clear what a killed lab build left (see ``_sweep_leftovers``), for a lab in use or looked at:
    only when there is something to clear and no build holds the lock (a build running now owns
    its ``.new-*`` copy)."""
    if not any(lab_dir.parent.glob(f".{lab_dir.name}.new-*")) and not any(lab_dir.parent.glob(f".{lab_dir.name}.old-*")):
        return
    lock = FileLock(lab_dir.parent / f".{lab_dir.name}.lock")
    if lock.try_acquire():
        try:
            _sweep_leftovers(lab_dir)
        finally:
            lock.release()


def _sweep_leftovers(lab_dir: Path) -> None:
    """Clear what a build killed midway left beside ``lab_dir`` (lock held, so no build is running).

    A half-built copy (``.lab.new-*``, hundreds of MiB) is deleted.  An old lab moved aside for a
    replacement (``.lab.old-*``) is put back when the killed build never put a new one in its place,
    and deleted otherwise.
    """
    parent = lab_dir.parent
    for leftover in sorted(parent.glob(f".{lab_dir.name}.new-*")):
        log.warning("removing %s, left by a lab build that was stopped midway", leftover)
        shutil.rmtree(leftover, ignore_errors=True)
    for leftover in sorted(parent.glob(f".{lab_dir.name}.old-*")):
        if not lab_dir.exists():
            log.warning("putting back %s as %s: the build that replaced it was stopped midway", leftover, lab_dir)
            os.rename(leftover, lab_dir)
        else:
            shutil.rmtree(leftover, ignore_errors=True)


def reset_lab(lab_dir: Path, clock: Clock, profile: str | None = None, seed: int | None = None) -> dict[str, Any]:
    """Re-create the lab with its current profile (or ``profile``)."""
    info = read_lab_info(lab_dir) or {}
    profile = profile or info.get("profile") or "demo"
    seed = seed if seed is not None else int(info.get("seed", DEFAULT_SEED))
    size = float(info.get("size", 1.0))
    return init_lab(lab_dir, profile, clock, force=True, seed=seed, size=size)


def _build_lab(lab_dir: Path, profile: str, clock: Clock, seed: int, replace: bool, size: float = 1.0) -> None:
    """Build into a sibling temp directory, then swap it in (a crash leaves old or new)."""
    if replace and any(lab_dir.iterdir()) and read_lab_info(lab_dir) is None and not lab_host_names(lab_dir):
        raise LabError(f"{lab_dir} exists and is not a lab directory: refusing to replace it")
    builder = PROFILE_BUILDERS.get(profile)
    if builder is None:
        raise LabError(f"unknown lab profile {profile!r} (expected one of {', '.join(PROFILES)})")
    need = lab_disk_estimate(profile, size)
    free = shutil.disk_usage(lab_dir.parent).free
    if free < need:
        raise _no_space(lab_dir, profile, need, free)
    stamp = f"{os.getpid()}-{time.monotonic_ns()}"
    building = lab_dir.parent / f".{lab_dir.name}.new-{stamp}"
    old = lab_dir.parent / f".{lab_dir.name}.old-{stamp}"
    building.mkdir(parents=True)
    try:
        builder(building, clock, seed, size)
        info = {
            "format": LAB_FORMAT,
            "profile": profile,
            "seed": seed,
            "size": size,
            "created": iso(clock.now()),
        }
        atomic_write(building / LAB_FILE, json.dumps(info, indent=1).encode())
        if lab_dir.exists():
            os.rename(lab_dir, old)
        os.rename(building, lab_dir)
    except BaseException as err:
        shutil.rmtree(building, ignore_errors=True)
        if old.exists() and not lab_dir.exists():
            os.rename(old, lab_dir)
        if _disk_was_full(err):  # the estimate was short, or something else filled the disk meanwhile
            raise _no_space(lab_dir, profile, need, shutil.disk_usage(lab_dir.parent).free, midway=True) from None
        raise
    shutil.rmtree(old, ignore_errors=True)


def _disk_was_full(err: BaseException) -> bool:
    """True when ``err``, or the error it was raised from, is a full disk or an exhausted quota.

    LabHost turns OSError into HostError (``from None`` still keeps it as ``__context__``)."""
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _no_space(lab_dir: Path, profile: str, need: int, free: int, midway: bool = False) -> LabError:
    kept = "the lab there is unchanged" if lab_host_names(lab_dir) else "nothing was left behind"
    need_text, free_text = humanize.naturalsize(need, binary=True), humanize.naturalsize(free, binary=True)
    if midway:  # what the build wrote is removed again: the free space now does not explain the failure
        what = f"the disk filled up while building the {profile} lab at {lab_dir}; {free_text} is free again without the partial copy"
    else:
        what = f"not enough disk space to build the {profile} lab at {lab_dir}: it needs about {need_text}, {free_text} is free there"
    return LabError(
        f"{what} ({kept}). Free some space, or put the lab on another disk with lab.dir in the config file or --lab-dir."
    )


def lab_status(lab_dir: Path) -> dict[str, Any]:
    """Hosts, VMs and bytes of the lab (read from the state files; no guest catch-up)."""
    lab_dir = Path(lab_dir)
    info = read_lab_info(lab_dir) or {}
    hosts = []
    total_vms = 0
    total_bytes = 0
    for name in lab_host_names(lab_dir):
        root = lab_dir / name
        try:
            state = json.loads((root / STATE_FILE).read_bytes())
        except (OSError, ValueError) as err:
            hosts.append({"name": name, "error": f"unreadable state: {err}"})
            continue
        if isinstance(state, dict) and is_old_format_host(root):
            hosts.append({"name": name, "error": old_format_message(root)})
            continue
        vms = state.get("vms", {})
        nbytes = 0
        allocated = 0
        for dirpath, _dirs, files in os.walk(root):
            for file in files:
                with contextlib.suppress(OSError):
                    st = os.stat(os.path.join(dirpath, file))
                    nbytes += st.st_size
                    allocated += st.st_blocks * 512
        states: dict[str, int] = {}
        checkpoints = 0
        for vm in vms.values():
            states[vm["state"]] = states.get(vm["state"], 0) + 1
            checkpoints += len(vm.get("checkpoints", []))
        hosts.append(
            {
                "name": name,
                "group": state.get("group"),
                "vms": len(vms),
                "states": states,
                "checkpoints": checkpoints,
                "file_bytes": nbytes,
                "allocated_bytes": allocated,
                "volume_size": state.get("volume", {}).get("size"),
            }
        )
        total_vms += len(vms)
        total_bytes += allocated
    return {
        "lab_dir": str(lab_dir),
        "exists": bool(hosts),
        "profile": info.get("profile"),
        "seed": info.get("seed"),
        "created": info.get("created"),
        "hosts": hosts,
        "vms": total_vms,
        "allocated_bytes": total_bytes,
    }
