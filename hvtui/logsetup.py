"""Logging to a file under the user state directory, never to the screen.

The file handler sits on the root logger, so records from libraries (urllib3, pywinrm,
Textual) land in the file too instead of reaching Python's last-resort stderr handler,
which would scribble over the console. Python warnings (e.g. urllib3's
InsecureRequestWarning) are routed into the log for the same reason.

``register_secret`` adds a value that is replaced with ``***`` wherever it appears in a
formatted record, tracebacks included: a second line of defence behind never logging
secrets at all.
"""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import os
import threading
from pathlib import Path

from hvtui.paths import Paths

_secrets: set[str] = set()
_lock = threading.Lock()
_HANDLER_NAME = "hvtui-file"
LEVELS = ("debug", "info", "warning", "error")
_LIBRARY_LEVEL = logging.WARNING  # other libraries' records below this are dropped


def register_secret(value: str) -> None:
    if value:
        with _lock:
            _secrets.add(value)


def redact(text: str) -> str:
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


class RedactingFilter(logging.Filter):
    """Redacts the message of a record (kept for callers that attach it to their own handlers)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


class RedactingFormatter(logging.Formatter):
    """Redacts the whole formatted record: message, exception text and stack."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class OwnerOnlyFileHandler(logging.handlers.RotatingFileHandler):
    """A rotating log file readable by its owner only (0600), whatever the umask.

    The log names hosts, VMs, paths and errors; on a shared jump box other users have no
    business reading it (borg and restic keep their files owner-only too).
    """

    def _open(self):  # noqa: ANN202 - logging's own signature
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with contextlib.suppress(OSError):
            os.fchmod(fd, 0o600)  # a file left by an older hvtui
        return open(fd, self.mode, encoding=self.encoding, errors=self.errors)  # noqa: SIM115 - the handler closes it


def setup_logging(paths: Paths, level: str | None) -> None:
    """(Re)configure logging to write to ``paths.log_file`` only, at ``level`` for hvtui's own records.

    Safe to call again: the level is updated, and the file handler is replaced only when
    the log file changes (tests run each with their own state directory).
    """
    numeric_level = getattr(logging, (level or "info").upper(), logging.INFO)
    hvtui_logger = logging.getLogger("hvtui")
    hvtui_logger.setLevel(numeric_level)
    hvtui_logger.propagate = True
    # hvtui's handler used to live on the "hvtui" logger: drop any left there.
    for old in list(hvtui_logger.handlers):
        if old.get_name() == _HANDLER_NAME:
            hvtui_logger.removeHandler(old)
            old.close()

    # hvtui's records pass at hvtui's level (a logger's own level decides, not its
    # ancestors'); other libraries' records only from warnings up.
    root = logging.getLogger()
    root.setLevel(_LIBRARY_LEVEL)
    # Off and on again: re-captures if something (a test runner) replaced the hook since.
    logging.captureWarnings(False)
    logging.captureWarnings(True)

    current = _current_handler(root)
    if current is not None:
        if _handler_file(current) == paths.log_file:
            return
        root.removeHandler(current)
        current.close()
    try:
        paths.state_dir.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = OwnerOnlyFileHandler(
            paths.log_file, maxBytes=5_000_000, backupCount=3, encoding="utf-8"
        )
    except OSError:
        handler = logging.NullHandler()  # an unwritable state dir must not stop the console
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)


def _current_handler(root: logging.Logger) -> logging.Handler | None:
    for handler in root.handlers:
        if handler.get_name() == _HANDLER_NAME:
            return handler
    return None


def _handler_file(handler: logging.Handler) -> Path | None:
    filename = getattr(handler, "baseFilename", None)
    return Path(filename) if filename else None
