"""What goes to an operation script and what comes back: the bootstrap command line, the
standard-input payload, the output markers and the CLIXML error text on standard error.

Calling convention (``shared/contracts/winrm-wire.md``): a fixed bootstrap goes on the
command line as ``-EncodedCommand``; the real script and its JSON arguments go over
standard input as UTF-8 bytes, ``<script> \\0\\0\\0\\0 <json>``.  Nothing a user typed is
ever pasted into script text.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from importlib import resources

BEGIN_MARKER = "<<<HVTUI-BEGIN>>>"
END_MARKER = "<<<HVTUI-END>>>"
SEPARATOR = b"\0\0\0\0"


def script_text(name: str) -> str:
    """A template from ``hosts/winrm/scripts`` (``inventory``, ``checkpoint_create``, ...)."""
    return resources.files("hvtui.hosts.winrm").joinpath("scripts", f"{name}.ps1").read_text(encoding="utf-8")


def bootstrap_command() -> str:
    """The command line: PowerShell with the fixed bootstrap as ``-EncodedCommand``."""
    encoded = base64.b64encode(script_text("bootstrap").encode("utf-16-le")).decode("ascii")
    return f"powershell -NoProfile -NonInteractive -ExecutionPolicy Unrestricted -EncodedCommand {encoded}"


def operation_payload(script: str, arguments: dict) -> bytes:
    """What goes over standard input. JSON is ASCII-escaped so no code page can garble it."""
    return script.encode("utf-8") + SEPARATOR + json.dumps(arguments, ensure_ascii=True).encode("ascii")


@dataclass(frozen=True, slots=True)
class CommandOutput:
    stdout: bytes
    stderr: bytes
    exit_code: int


_CLIXML_STRING = re.compile(r'<S S="Error">(.*?)</S>', re.DOTALL)
_CLIXML_ESCAPE = re.compile(r"_x([0-9A-Fa-f]{4})_")


def clixml_errors(stderr: bytes) -> str:
    """The error text in standard error; CLIXML (progress records, error strings) decoded."""
    text = stderr.decode("utf-8", errors="replace")
    if "#< CLIXML" in text:
        parts = [_CLIXML_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), part) for part in _CLIXML_STRING.findall(text)]
        text = "".join(parts)
    text = " ".join(text.split())
    return text[:400]

