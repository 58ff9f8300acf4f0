"""`hvtui lab`: create, inspect and reset the embedded lab."""

from __future__ import annotations

import argparse
import json
import sys
import time

import humanize

from hvtui.commands import show, show_json
from hvtui.errors import RefusedError

PROFILE_CHOICES = ("demo", "bench", "scale")


def register(subparsers: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    lab = subparsers.add_parser(
        "lab",
        parents=parents,
        help="create, inspect or reset the embedded lab (simulated Hyper-V hosts)",
        description="The embedded lab: simulated Hyper-V hosts that keep real VM files under the lab directory.",
    )
    sub = lab.add_subparsers(dest="lab_command", metavar="ACTION")

    init = sub.add_parser("init", parents=parents, help="create the lab from a profile")
    init.add_argument("--profile", choices=PROFILE_CHOICES, default=None, help="estate to create (default: demo)")
    init.add_argument("--force", action="store_true", help="replace an existing lab (deletes its VMs and files)")
    init.add_argument(
        "--size",
        type=_fraction,
        default=1.0,
        metavar="FRACTION",
        help="scale the profile's data (demo, bench) or VM count (scale); default 1",
    )
    init.set_defaults(handler=cmd_init)

    status = sub.add_parser("status", parents=parents, help="hosts, VMs and bytes of the lab")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(handler=cmd_status)

    reset = sub.add_parser("reset", parents=parents, help="re-create the lab with its current profile")
    reset.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    reset.set_defaults(handler=cmd_reset)

    lab.set_defaults(handler=cmd_status)


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value <= 4:
        raise argparse.ArgumentTypeError(f"size must be above 0 and at most 4 (got {value:g})")
    return value


def _print_summary(status: dict) -> None:
    show(f"lab: {status['lab_dir']}  profile {status.get('profile') or '-'}")
    if not status["exists"]:
        show("no lab here: run `hvtui lab init`")
        return
    for host in status["hosts"]:
        if "error" in host:
            show(f"  {host['name']:<14} error: {host['error']}")
            continue
        states = ", ".join(f"{n} {s.lower()}" for s, n in sorted(host["states"].items()))
        group = f" [{host['group']}]" if host.get("group") else ""
        show(
            f"  {host['name']:<14}{group:<8} {host['vms']:>5} VMs ({states or 'none'}), "
            f"{host['checkpoints']} checkpoints, {humanize.naturalsize(host['allocated_bytes'], binary=True)} on disk"
        )
    show(f"total: {status['vms']} VMs, {humanize.naturalsize(status['allocated_bytes'], binary=True)} on disk")


def cmd_init(args: argparse.Namespace, core) -> int:
    from hvtui.hosts.lab.estate import init_lab

    profile = args.profile or core.config.lab.profile or "demo"
    started = time.monotonic()
    status = init_lab(core.lab_dir, profile, core.clock, force=args.force, size=args.size)
    show(f"created the {profile} lab in {time.monotonic() - started:.1f}s")
    _print_summary(status)
    return 0


def cmd_status(args: argparse.Namespace, core) -> int:
    from hvtui.hosts.lab.estate import lab_status, sweep_leftovers_if_idle

    sweep_leftovers_if_idle(core.lab_dir)  # a lab a killed rebuild moved aside is shown, not "no lab"
    status = lab_status(core.lab_dir)
    if getattr(args, "json", False):
        show_json(json.dumps(status, indent=2))
    else:
        _print_summary(status)
    # An unreadable host is a failure a script must see (as `hvtui inventory` reports it).
    return 1 if any("error" in host for host in status.get("hosts", ())) else 0


def cmd_reset(args: argparse.Namespace, core) -> int:
    from hvtui.hosts.lab.estate import lab_host_names, read_lab_info, reset_lab, sweep_leftovers_if_idle

    lab_dir = core.lab_dir
    sweep_leftovers_if_idle(lab_dir)  # a lab a killed rebuild moved aside is put back first
    if not lab_host_names(lab_dir):
        raise RefusedError(f"there is no lab at {lab_dir} to reset: run `hvtui lab init`")
    profile = (read_lab_info(lab_dir) or {}).get("profile") or "demo"
    if not args.yes:
        if not sys.stdin.isatty():
            raise RefusedError("`hvtui lab reset` deletes every lab VM and file: pass --yes to confirm (stdin is not a terminal)")
        answer = input(f"Re-create the {profile} lab at {lab_dir}? Every lab VM and file is deleted. [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            show("not reset")
            return 1
    started = time.monotonic()
    status = reset_lab(lab_dir, core.clock)
    show(f"reset the {profile} lab in {time.monotonic() - started:.1f}s")
    _print_summary(status)
    return 0
