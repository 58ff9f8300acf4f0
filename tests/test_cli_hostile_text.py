"""Hostile names from a host or a repository never reach the terminal as control sequences.

A lab host's state is edited on disk to give its VMs names a Hyper-V host could report:
ESC sequences (set the title, clear the screen), a C1 CSI, DEL and a bidi override.  Every
command that shows them (inventory, check, backup, points, restore, jobs, audit) runs as a real
process; its stdout and stderr must hold none of those characters, only visible escapes, and
``--json`` must still give back the exact name.
"""

from __future__ import annotations

import ast
import io
import json
import subprocess
import sys
import unicodedata
from pathlib import Path
from typing import Any

import pytest

from hvtui.clock import SystemClock
from hvtui.commands.progress import ProgressLine
from hvtui.events import Progress
from hvtui.hosts.lab.host import LabHost
from hvtui.hosts.lab.state import STATE_FILE
from hvtui.text import display_json, display_lines, display_text

MiB = 1 << 20
PACKAGE = Path(__file__).resolve().parent.parent / "hvtui"
# A name that sets the terminal title, clears the screen and reverses what follows.
TITLE_NAME = "osc\x1b]0;PWNED\x07t\x1b[2Jclear\u202eevil\x9b2J\x7f"
# One the lab can still back up (its checkpoint names refuse only C0): C1 CSI, DEL, U+202E.
BACKED_UP_NAME = "c1\x9b2J\x7fdel\u202erev"
BIDI = set("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def unsafe_characters(text: str) -> list[str]:
    """Control (Cc, but the newline), bidi and line-separator characters in ``text``."""
    return [
        ch
        for ch in text
        if (unicodedata.category(ch) == "Cc" and ch != "\n") or ch in BIDI or ch in "\u2028\u2029"
    ]


def rename_vm(host_root: Path, old: str, new: str) -> None:
    """Give a lab VM the name a host could report, by editing the host's state on disk."""
    path = host_root / STATE_FILE
    state = json.loads(path.read_text(encoding="utf-8"))

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "name" and value == old:
                    node[key] = new
                else:
                    walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(state)
    path.write_text(json.dumps(state), encoding="utf-8")


@pytest.fixture(scope="module")
def estate(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("hostile")
    lab_dir = root / "lab"
    host = LabHost.create(lab_dir / "lab-a", "lab-a", SystemClock())
    title_id = host.add_vm("title-vm", state="Off", disk_sizes=(8 * MiB,), fsync=False)
    backed_id = host.add_vm("backed-vm", state="Off", disk_sizes=(8 * MiB,), fsync=False)
    rename_vm(lab_dir / "lab-a", "title-vm", TITLE_NAME)
    rename_vm(lab_dir / "lab-a", "backed-vm", BACKED_UP_NAME)
    config = root / "config.yaml"
    config.write_text(
        f"hosts:\n  - name: lab-a\n    kind: lab\n"
        f"repositories:\n  - name: main\n    path: {root / 'repo'}\n    default: true\n",
        encoding="utf-8",
    )
    return {"root": root, "lab_dir": lab_dir, "config": config, "title_id": title_id, "backed_id": backed_id}


def hvtui(estate: dict[str, Any], *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "hvtui", "--config", str(estate["config"]), "--lab-dir", str(estate["lab_dir"]), *args]
    return subprocess.run(cmd, capture_output=True, text=True, encoding="utf-8", stdin=subprocess.DEVNULL, timeout=300)


def assert_safe(proc: subprocess.CompletedProcess) -> None:
    assert unsafe_characters(proc.stdout) == [], proc.stdout
    assert unsafe_characters(proc.stderr) == [], proc.stderr


def test_every_command_shows_hostile_names_escaped(estate: dict[str, Any], tmp_path: Path) -> None:
    inventory = hvtui(estate, "inventory")
    assert inventory.returncode == 0, inventory.stderr
    assert_safe(inventory)
    assert "osc\\x1b]0;PWNED\\x07t\\x1b[2Jclear\\u202eevil\\x9b2J\\x7f" in inventory.stdout
    assert len(inventory.stdout.splitlines()[1:3]) == 2  # one row per VM: nothing broke a line

    check = hvtui(estate, "check", "--vm", estate["title_id"])
    assert check.returncode == 0, check.stdout + check.stderr
    assert_safe(check)

    # The title VM's backup fails (its checkpoint name would hold ESC); the failure quotes nothing raw.
    failed = hvtui(estate, "backup", estate["title_id"])
    assert failed.returncode != 0
    assert_safe(failed)
    backed = hvtui(estate, "backup", estate["backed_id"])
    assert backed.returncode == 0, backed.stderr
    assert_safe(backed)
    assert "c1\\x9b2J\\x7fdel\\u202erev" in backed.stdout

    points = hvtui(estate, "points")
    assert points.returncode == 0, points.stderr
    assert_safe(points)
    assert "c1\\x9b2J\\x7fdel\\u202erev" in points.stdout

    restored = hvtui(estate, "restore", estate["backed_id"], "--to", str(tmp_path / "out"), "--yes")
    assert restored.returncode == 0, restored.stderr
    assert_safe(restored)

    for command in (("jobs",), ("audit",)):
        proc = hvtui(estate, *command)
        assert proc.returncode == 0, proc.stderr
        assert_safe(proc)
        assert "osc\\x1b]0;PWNED" in proc.stdout and "c1\\x9b2J" in proc.stdout


def test_json_output_keeps_the_exact_names_without_raw_controls(estate: dict[str, Any]) -> None:
    for command in (("inventory", "--json"), ("check", "--json"), ("audit", "--json"), ("points", "--json")):
        proc = hvtui(estate, *command)
        assert proc.returncode == 0, proc.stderr
        assert_safe(proc)
    names = {vm["name"] for vm in json.loads(hvtui(estate, "inventory", "--json").stdout)["vms"]}
    assert names == {TITLE_NAME, BACKED_UP_NAME}


@pytest.mark.parametrize(
    "new_name",
    ["ev\x1b]0;T\x07il", "two\nlines", "tab\there", "c1\x9bname", "del\x7fname", "rev\u202eersed", "iso\u2066late"],
)
def test_restore_as_refuses_control_and_bidi_characters(estate: dict[str, Any], new_name: str) -> None:
    assert hvtui(estate, "backup", estate["backed_id"]).returncode == 0
    before = json.loads(hvtui(estate, "inventory", "--json").stdout)["vms"]
    proc = hvtui(estate, "restore", estate["backed_id"], "--as", new_name, "--yes")
    assert proc.returncode != 0
    assert "cannot be a VM name: it holds control or bidi-override characters" in proc.stderr
    assert_safe(proc)
    assert json.loads(hvtui(estate, "inventory", "--json").stdout)["vms"] == before  # nothing registered


def test_the_progress_line_escapes_what_it_quotes() -> None:
    """The lock-wait message names who holds the lock (a VM name from a lock record)."""
    event = Progress(phase="lock", message=f"waiting for the repository lock: backup {TITLE_NAME} (pid 1)")
    stream = io.StringIO()
    ProgressLine(stream, title=f"backup {BACKED_UP_NAME}")(event)
    assert unsafe_characters(stream.getvalue()) == []
    assert "PWNED\\x07" in stream.getvalue()


def test_display_text_escapes_every_control_and_is_idempotent() -> None:
    hostile = "a\x00b\x1b[2Jc\x7fd\x85e\x9bf\u202eg\u2066h\u2028i\nj\tk"
    shown = display_text(hostile)
    assert unsafe_characters(shown) == [] and "\n" not in shown
    assert shown == "a\\x00b\\x1b[2Jc\\x7fd\\x85e\\x9bf\\u202eg\\u2066h\\u2028i\\x0aj\\x09k"
    assert display_text(shown) == shown
    assert display_lines("one\x1b\ntwo") == "one\\x1b\ntwo"
    assert display_text("Ünïcode ok — 日本 \\path") == "Ünïcode ok — 日本 \\path"
    document = json.dumps({"name": hostile}, ensure_ascii=False)
    assert unsafe_characters(display_json(document)) == []
    assert json.loads(display_json(document)) == {"name": hostile}


def test_commands_print_only_through_the_display_seam() -> None:
    """Every command module prints through ``hvtui.commands.show``/``show_json`` (which make
    outside text safe), never with a bare ``print`` or a write to stdout/stderr."""
    allowed = {PACKAGE / "commands" / "__init__.py", PACKAGE / "commands" / "progress.py", PACKAGE / "cli.py"}
    offenders = []
    for path in sorted((PACKAGE / "commands").glob("*.py")):
        if path in allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            if isinstance(func, ast.Name) and func.id == "print":
                offenders.append(f"{path.name}:{node.lineno} print")
            elif isinstance(func, ast.Attribute) and func.attr in ("write", "dump") and ast.unparse(func.value) in (
                "sys.stdout",
                "sys.stderr",
                "json",
            ):
                offenders.append(f"{path.name}:{node.lineno} {ast.unparse(func)}")
    assert offenders == []
