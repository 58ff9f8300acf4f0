"""Text from outside (hosts, repositories, lock records, the audit log) made safe for a terminal.

A VM name is whatever its host says: one holding ``ESC ] 0 ; … BEL`` would set the terminal's
title, ``ESC [ 2 J`` would clear the screen, U+202E would show what follows reversed.  Every
such character (Unicode category Cc: C0, DEL, C1; the bidi controls; the line and paragraph
separators) is shown as a visible escape (``\\x1b``, ``\\u202e``), so the name stays
recognisable and nothing reaches the terminal as a command.  Backslashes are left alone:
Windows paths stay readable (``--json`` gives the exact text).
"""

from __future__ import annotations

import re

# Cc, the bidi embeddings/overrides/isolates and marks, and U+2028/2029 (they break lines).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]")
_UNSAFE_BUT_NEWLINE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]")
# What json.dumps(ensure_ascii=False) leaves raw (it escapes only U+0000-001F).
_UNSAFE_IN_JSON = re.compile("[\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]")


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def is_display_safe(text: str) -> bool:
    """True when ``text`` holds no control, bidi or line-separator character."""
    return _UNSAFE.search(text) is None


def display_text(text: str) -> str:
    """One line of outside text for display: every unsafe character (newlines too) as a visible escape."""
    if text.isprintable():  # the common case, at C speed (False for any Cc, bidi control or separator)
        return text
    return _UNSAFE.sub(_visible, text)


def display_lines(text: str) -> str:
    """Like ``display_text``, but newlines stay: for messages that are several lines on purpose."""
    if text.isprintable():
        return text
    return _UNSAFE_BUT_NEWLINE.sub(_visible, text)


def display_json(json_text: str) -> str:
    """JSON text for a terminal, still the same JSON: the DEL, C1 and bidi characters that
    ``json.dumps(ensure_ascii=False)`` leaves raw in strings become ``\\uXXXX`` escapes."""
    return _UNSAFE_IN_JSON.sub(lambda m: f"\\u{ord(m.group()):04x}", json_text)
