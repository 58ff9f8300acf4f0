"""`hvtui copy --from A --to B [VM ...]`: restore points copied from one repository into another.

Runs as a job (``core.jobs``), like a backup: the console's job list shows it, Ctrl-C
cancels it, and one that was stopped resumes when run again (the chunks that arrived are not
sent again).  Only the points the target lacks are copied; the target's retention applies
afterwards.  Exit codes as for `hvtui backup`.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from hvtui.commands import show
from hvtui.commands.backup import job_failed, run_job, size
from hvtui.commands.output import EXIT_OK, emit_json, reported
from hvtui.engine.copy import ARRIVAL_CHECKS

if TYPE_CHECKING:
    from hvtui.core import Core


def register(subparsers: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    copy = subparsers.add_parser(
        "copy",
        parents=parents,
        help="copy restore points from one repository into another",
        description="Copy the restore points the target repository lacks (of the VMs named, or of every VM): only "
        "chunks the target lacks are sent, each checked against its id before it is sent, the manifest last; a copy "
        "that was stopped resumes where it stopped. On arrival an object store checks each upload against its "
        "Content-MD5 and refuses one that differs from what was sent; into a local folder, or with --read-back, "
        "every chunk sent is read back from the target and checked (twice the storage's work). The target's own retention applies afterwards.",
    )
    copy.add_argument("vms", nargs="*", metavar="VM", help="VM names or ids (default: every VM in the source)")
    copy.add_argument("--from", dest="source", required=True, metavar="REPO", help="source repository name from the config")
    copy.add_argument("--to", dest="target", required=True, metavar="REPO", help="target repository name from the config")
    copy.add_argument(
        "--read-back", action="store_true",
        help="read every chunk sent back from the target and check it before writing the manifest, even when "
        "the storage checks each upload itself (a local folder target is always read back)",
    )
    copy.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    copy.set_defaults(handler=run_copy_command)


@reported
def run_copy_command(args: argparse.Namespace, core: Core) -> int:
    job = core.jobs.submit_copy(args.source, args.target, list(args.vms), read_back=args.read_back)
    code, final = run_job(core, args, job)
    if code != EXIT_OK:
        return job_failed(args, final, code)
    result = dict(final.summary or {})
    if args.json:
        emit_json({"ok": True, "job": final.id, **result})
        return EXIT_OK
    copied = result.get("copied") or []
    show(f"Copied {len(copied)} restore point(s) from {result.get('source')} to {result.get('target')}.")
    for point in copied:
        show(f"  {point}")
    show(
        f"  {result.get('chunks_sent')} chunks sent ({size(result.get('bytes_sent'))}), {result.get('chunks_present')} "
        f"already there, {float(result.get('duration') or 0):.1f} s."
    )
    check = str(result.get("arrival_check") or "")
    show(f"  on arrival: {ARRIVAL_CHECKS.get(check, check)}")
    if result.get("present"):
        show(f"  {len(result['present'])} point(s) were in {result.get('target')} already")
    for point in result.get("skipped") or []:
        show(f"  not copied: {point} (the target's retention would remove it at once)")
    for point in result.get("removed_by_retention") or []:
        show(f"  retention removed point {point} from {result.get('target')}")
    return EXIT_OK
