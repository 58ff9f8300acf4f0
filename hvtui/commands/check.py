"""`hvtui check [--json] [--host H] [--vm V]`: the sprawl findings as a monitoring check.

Follows the Nagios/Icinga plugin convention: the first line is a one-line summary with
performance data after a ``|``, then one line per finding; the exit code is the state.

State, worst first: CRITICAL (2) when any counted finding is crit; otherwise UNKNOWN (3)
when a host could not be read (unless its host-unreachable finding is exempted) or the
check itself failed; otherwise WARNING (1) when any counted finding is warn; else OK (0).
A real CRIT elsewhere is never masked by an unreachable host; exempted findings are
listed but never change the state.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from hvtui.commands import show, show_json
from hvtui.core import Core
from hvtui.errors import HvtuiError
from hvtui.logsetup import redact
from hvtui.model import VM, Finding, HostInventory
from hvtui.policy import HOST_UNREACHABLE, evaluate, is_about_host, is_problem, summary, vm_keys_of

OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
STATE_NAMES = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL", UNKNOWN: "UNKNOWN"}


def register(subparsers: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "check",
        parents=parents,
        help="sprawl findings as a Nagios/Icinga check (exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN)",
        description="Evaluate the sprawl policy over the inventory. Exit codes follow the Nagios/Icinga "
        "plugin convention: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (a host could not be read, "
        "or the check failed). The first line is a summary with performance data.",
    )
    parser.add_argument("--json", action="store_true", help="an object with status, summary and findings")
    parser.add_argument("--host", metavar="H", help="only this host")
    parser.add_argument("--vm", metavar="V", help="only this VM (name or id)")
    # Every error, config errors included, is UNKNOWN to monitoring (see hvtui.cli.main).
    parser.set_defaults(handler=run, error_exit_code=UNKNOWN)


def run(args: argparse.Namespace, core: Core) -> int:
    try:
        report = build_report(core, host=args.host, vm=args.vm)
    except HvtuiError as err:
        message = redact(" / ".join(str(err).splitlines()))
        if args.json:
            show_json(
                json.dumps(
                    {
                        "status": "UNKNOWN",
                        "exit_code": UNKNOWN,
                        "summary": f"HVTUI UNKNOWN - {message}",
                        "error": message,
                        "findings": [],
                    },
                    indent=2,
                )
            )
        else:
            show(f"HVTUI UNKNOWN - {_clean(message)}")
        return UNKNOWN
    if args.json:
        show_json(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        show(report["summary"] + " | " + " ".join(f"{k}={v}" for k, v in report["perfdata"].items()))
        for finding in report["findings"]:
            show(finding_line(finding))
    return int(report["exit_code"])


def build_report(core: Core, host: str | None = None, vm: str | None = None) -> dict[str, Any]:
    inventory = core.inventory.refresh([host] if host else None)
    hosts = [h for h in inventory.hosts if host is None or h.name == host]
    findings = evaluate(
        inventory,
        core.config.policy,
        core.backups.last_backup_of,
        core.backups.backup_checkpoint_left,
        core.changes.open_checkpoints(),
        core.config.schedules,
        # Only when a repository names copy_to: the copy service is not built otherwise.
        core.copies.offsite_state if any(r.copy_to for r in core.config.repositories) else None,
    )
    findings = [f for f in findings if host is None or is_about_host(f, host)]
    vms = [v for h in hosts for v in h.vms]
    if vm is not None:
        vms = _matching_vms(vms, vm, hosts)
        keys = {v.key for v in vms}
        vm_hosts = {v.host for v in vms}
        findings = [
            f
            for f in findings
            if keys.intersection(vm_keys_of(f)) or (not vm_keys_of(f) and f.host in vm_hosts)
        ]
        hosts = [h for h in hosts if h.name in vm_hosts]
    return report_document(findings, hosts, vms)


def _matching_vms(vms: list[VM], wanted: str, hosts: list[HostInventory]) -> list[VM]:
    folded = wanted.strip().casefold()
    found = [v for v in vms if v.id.casefold() == folded or v.name.casefold() == folded]
    if found:
        return found
    import difflib

    close = difflib.get_close_matches(wanted, sorted({v.name for v in vms}), n=5, cutoff=0.6)
    message = f"no VM {wanted!r}"
    if close:
        message += f" (did you mean: {', '.join(close)}?)"
    unread = [h.name for h in hosts if h.error is not None]
    if unread:
        message += f"; hosts not read: {', '.join(unread)}"
    raise HvtuiError(message)


def state_of(findings: list[Finding]) -> int:
    crit, warn = summary(findings)
    hosts_unknown = any(f.rule == HOST_UNREACHABLE and is_problem(f) for f in findings)
    if crit:
        return CRITICAL
    if hosts_unknown:
        return UNKNOWN
    if warn:
        return WARNING
    return OK


def report_document(findings: list[Finding], hosts: list[HostInventory], vms: list[VM]) -> dict[str, Any]:
    crit, warn = summary(findings)
    state = state_of(findings)
    down = [h for h in hosts if h.error is not None]
    text = (
        f"HVTUI {STATE_NAMES[state]} - {crit} crit, {warn} warn, {len(vms)} VM{'s' if len(vms) != 1 else ''} "
        f"on {len(hosts)} host{'s' if len(hosts) != 1 else ''}"
    )
    if down:
        text += f", {len(down)} not read ({', '.join(h.name for h in down)})"
    exempt = sum(1 for f in findings if f.exempt_reason is not None)
    if exempt:
        text += f", {exempt} exempt"
    perfdata = {
        "crit": crit,
        "warn": warn,
        "vms": len(vms),
        "checkpoints": sum(v.checkpoint_count for v in vms),
        "hosts_down": len(down),
    }
    return {
        "status": STATE_NAMES[state],
        "exit_code": state,
        "summary": _clean(text),
        "perfdata": perfdata,
        "hosts": [{"name": h.name, "reachable": h.error is None, "error": h.error, "stale": h.stale} for h in hosts],
        "findings": [finding_document(f) for f in findings],
    }


def finding_document(finding: Finding) -> dict[str, Any]:
    return {
        "severity": finding.severity.label,
        "rule": finding.rule,
        "host": finding.host,
        "vm_id": finding.vm_id,
        "vm_name": finding.vm_name,
        "checkpoint_id": finding.checkpoint_id,
        "checkpoint_name": finding.data.get("checkpoint_name"),
        "file": finding.file,
        "message": finding.message,
        "action": finding.action,
        "age_seconds": finding.age_seconds,
        "exempt_reason": finding.exempt_reason,
        "data": dict(finding.data),
        # Every VM ("host/vm id") a change window's one finding covers; [] for other findings.
        "vm_keys": list(finding.vm_keys),
    }


def finding_line(finding: dict[str, Any]) -> str:
    if finding["exempt_reason"] is not None:
        label = f"[OK, exempt ({finding['exempt_reason']}); would be {finding['data'].get('exempt_severity', '?')}]"
    else:
        label = f"[{finding['severity']}]"
    where = finding["host"] + (f"/{finding['vm_name']}" if finding["vm_name"] else "")
    return _clean(f"{label} {where} {finding['rule']}: {finding['message']}")


def _clean(text: str) -> str:
    # "|" starts performance data in a plugin's output; names may contain it.
    return " ".join(text.replace("|", "/").split())
