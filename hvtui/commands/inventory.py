"""`hvtui inventory [--json] [--host H]`: every VM on every host, headless.

The table uses humanized ages and sizes; the JSON keeps the wire contract's field names
(one record per VM, naming its host) and lists each host with its error when it could
not be read.  Exit 0 when every host was read, 1 when one could not be (the output is
still complete for the others).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from hvtui.commands import show, show_json
from hvtui.core import Core
from hvtui.model import HostInventory
from hvtui.policy import age_seconds, age_text, size_text
from hvtui.text import display_text
from hvtui.wire import facts_to_wire, format_datetime, vm_to_wire

EXIT_OK = 0
EXIT_HOST_UNREAD = 1


def register(subparsers: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "inventory",
        parents=parents,
        help="list every VM on every host (table or JSON)",
        description="List every VM on every host, as a table or as JSON for scripts. "
        "Exit 0 when every host was read, 1 when one could not be.",
    )
    parser.add_argument("--json", action="store_true", help="JSON with the wire contract's field names")
    parser.add_argument("--host", metavar="H", help="only this host")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, core: Core) -> int:
    hosts = [args.host] if args.host else None
    inventory = core.inventory.refresh(hosts)
    entries = [h for h in inventory.hosts if hosts is None or h.name in hosts]
    if args.json:
        show_json(json.dumps(inventory_document(entries, core.clock.now()), indent=2, ensure_ascii=False))
    else:
        show(inventory_table(entries))
    return EXIT_OK if all(h.error is None for h in entries) else EXIT_HOST_UNREAD


# -- JSON -----------------------------------------------------------------------------------------
def host_document(host: HostInventory) -> dict[str, Any]:
    return {
        "name": host.name,
        "kind": host.kind,
        "group": host.group,
        "read_only": host.read_only,
        "reachable": host.error is None,
        "error": host.error,
        "stale": host.stale,
        "refreshed_at": format_datetime(host.refreshed_at) if host.refreshed_at else None,
        "duration": round(host.duration, 3),
        "facts": facts_to_wire(host.facts) if host.facts is not None else None,
        "vm_count": len(host.vms),
    }


def inventory_document(hosts: Sequence[HostInventory], generated: datetime) -> dict[str, Any]:
    vms = []
    for host in hosts:
        for vm in sorted(host.vms, key=lambda v: v.name.casefold()):
            record = vm_to_wire(vm)
            record["stale"] = host.stale
            vms.append(record)
    return {
        "generated": format_datetime(generated),
        "hosts": [host_document(h) for h in hosts],
        "vms": vms,
    }


# -- table ----------------------------------------------------------------------------------------
def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[int] = ()) -> str:
    """Plain aligned columns (no colour: the output goes to scripts and pagers too).

    Each cell is one line of display-safe text: a name's newline or ESC cannot split or
    repaint the table."""
    rows = [[display_text(cell) for cell in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    def line(cells: Sequence[str]) -> str:
        out = [cell.rjust(widths[i]) if i in right else cell.ljust(widths[i]) for i, cell in enumerate(cells)]
        return "  ".join(out).rstrip()

    return "\n".join([line(headers), *(line(row) for row in rows)])


def inventory_table(hosts: Sequence[HostInventory]) -> str:
    headers = ("HOST", "VM", "STATE", "UPTIME", "CKPTS", "OLDEST", "DEPTH", "DIFF")
    rows: list[list[str]] = []
    for host in hosts:
        now = host.facts.now if host.facts is not None else None
        for vm in sorted(host.vms, key=lambda v: v.name.casefold()):
            oldest = vm.oldest_checkpoint
            rows.append(
                [
                    host.name + ("*" if host.stale else ""),
                    vm.name,
                    vm.state,
                    age_text(vm.uptime_seconds) if vm.uptime_seconds else "-",
                    str(vm.checkpoint_count),
                    age_text(age_seconds(now, oldest.created)) if oldest is not None and now is not None else "-",
                    str(vm.chain_depth),
                    size_text(vm.differencing_bytes) if vm.differencing_bytes else "-",
                ]
            )
    parts = [format_table(headers, rows, right=(4, 6, 7)) if rows else "No VMs."]
    reachable = sum(1 for h in hosts if h.error is None)
    notes = [f"{reachable} of {len(hosts)} hosts read, {len(rows)} VMs."]
    for host in hosts:
        if host.error is None:
            continue
        if host.stale and host.refreshed_at is not None:
            notes.append(
                f"{host.name}: NOT READ: {host.error} (rows marked * show data from "
                f"{host.refreshed_at.isoformat(timespec='seconds')})"
            )
        else:
            notes.append(f"{host.name}: NOT READ: {host.error}")
    return "\n".join(parts + [""] + notes)
