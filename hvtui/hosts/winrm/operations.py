"""One WinRM operation on the wire: the script sent (the shared prelude, the operation's includes,
its ``.ps1`` template from ``scripts/``) and the result document read back from between the
markers of its output.  ``WinRMHost`` runs every operation through these."""

from __future__ import annotations

import json

from hvtui.errors import HostError
from hvtui.hosts.winrm.transport import BEGIN_MARKER, END_MARKER, CommandOutput, clixml_errors, script_text

# One template per operation, in hosts/winrm/scripts/.
SCRIPTS: dict[str, str] = {
    "inventory": "inventory",
    "checkpoint.create": "checkpoint_create",
    "checkpoint.apply": "checkpoint_apply",
    "checkpoint.remove": "checkpoint_remove",
    "checkpoint.rename": "checkpoint_rename",
    "checkpoint.type": "checkpoint_type",
    "backup.begin": "backup_begin",
    "backup.changes": "backup_changes",
    "backup.end": "backup_end",
    "backup.leftovers": "backup_leftovers",
    "restore.prepare": "restore_prepare",
    "restore.import": "restore_import",
}
PRELUDE = "_prelude"
# Shared helpers some operations need besides the prelude, sent between it and the template.
INCLUDES: dict[str, tuple[str, ...]] = {op: ("_cim",) for op in SCRIPTS if op.startswith("backup.")}


def full_script(op: str) -> str:
    """The script text sent for ``op``: the shared prelude, its includes, then the operation's template."""
    parts = [PRELUDE, *INCLUDES.get(op, ()), SCRIPTS[op]]
    return "\n".join(script_text(name) for name in parts)


def has_document(output: CommandOutput | None) -> bool:
    """Whether the script got as far as writing its document (so its ``finally`` blocks ran)."""
    if output is None:
        return False
    text = output.stdout.decode("utf-8", errors="replace")
    begin = text.find(BEGIN_MARKER)
    return begin >= 0 and text.find(END_MARKER, begin + len(BEGIN_MARKER)) >= 0


def result_document(host: str, output: CommandOutput, operation: str) -> object:
    """The document between the markers; success is decided from it and the exit code,
    never from standard error (Windows PowerShell writes progress records there)."""
    text = output.stdout.decode("utf-8", errors="replace")
    begin = text.find(BEGIN_MARKER)
    end = text.find(END_MARKER, begin + len(BEGIN_MARKER)) if begin >= 0 else -1
    if begin < 0 or end < 0:
        detail = clixml_errors(output.stderr)
        if output.exit_code != 0:
            message = f"the script failed with exit code {output.exit_code} and wrote no result"
            raise HostError(host, operation, f"{message}: {detail}" if detail else message, kind="failed")
        raise HostError(
            host,
            operation,
            f"the answer holds no result document (no {BEGIN_MARKER} ... {END_MARKER} markers)",
            kind="protocol",
        )
    body = text[begin + len(BEGIN_MARKER) : end].strip()
    if not body:
        raise HostError(host, operation, "the result document is empty", kind="protocol")
    try:
        doc = json.loads(body)
    except json.JSONDecodeError as err:
        raise HostError(
            host,
            operation,
            f"the result document is not valid JSON ({err.msg} at line {err.lineno} column {err.colno})",
            kind="protocol",
        ) from None
    if isinstance(doc, dict) and doc.get("ok") is True and output.exit_code != 0:
        raise HostError(
            host,
            operation,
            f"the script reported success but exited with code {output.exit_code}",
            kind="failed",
        )
    return doc
