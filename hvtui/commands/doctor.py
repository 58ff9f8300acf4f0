"""`hvtui doctor [HOST ...] [--json]`: check, from this machine, each step hvtui needs of each
host and name the first that fails, with what to do (docs/host-setup.md is the host's side).

Exit 0 when every check of every host passed (warnings allowed), 1 when one failed.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from hvtui.commands import show, show_json
from hvtui.errors import EXIT_FAILED, EXIT_OK

if TYPE_CHECKING:
    from hvtui.core import Core


def register(subparsers: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "doctor",
        parents=parents,
        help="check each step hvtui needs of a host (DNS, port, TLS, logon, Hyper-V, SMB, free space)",
        description="Check, from this machine, each step hvtui needs of a host, in order: the address resolves, "
        "the port is open, the TLS certificate is valid for the name, the credentials are accepted, PowerShell "
        "and the Hyper-V module answer, the VMs can be listed, each mapped SMB share is reachable with encryption "
        "and readable, the host's volumes have free space. Names the first failure with what to do. "
        "Exit 0 when every check passed, 1 when one failed.",
    )
    parser.add_argument("hosts", nargs="*", metavar="HOST", help="the hosts to check (default: every configured host)")
    parser.add_argument("--json", action="store_true", help="print the checks as JSON")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, core: Core) -> int:
    from hvtui.hosts.doctor import describe

    doctor = core.doctor
    names = list(args.hosts) or doctor.host_names()
    for name in names:
        core.host(name)  # an unknown name is a usage error before any host is contacted
    diagnoses = []
    for name in names:
        diagnosis = doctor.diagnose(name)
        diagnoses.append(diagnosis)
        if not args.json:
            show(describe(diagnosis))
    if args.json:
        show_json(json.dumps({"hosts": [d.to_json() for d in diagnoses]}, indent=2, ensure_ascii=False))
    return EXIT_OK if all(d.ok for d in diagnoses) else EXIT_FAILED
