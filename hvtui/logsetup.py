"""Logging to a file under the user state directory, never to the screen.

``register_secret`` adds a value that the log filter replaces with ``***`` wherever it
appears, a second line of defence behind never logging secrets at all.
"""

from __future__ import annotations

import logging
import logging.handlers
import threading

from hvtui.paths import Paths

_secrets: set[str] = set()
_lock = threading.Lock()
_HANDLER_NAME = "hvtui-file"


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
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def setup_logging(paths: Paths, level: str | None) -> None:
    """(Re)configure the ``hvtui`` logger to write to the log file only."""
    logger = logging.getLogger("hvtui")
    logger.setLevel(getattr(logging, (level or "info").upper(), logging.INFO))
    logger.propagate = False
    for handler in list(logger.handlers):
        if handler.get_name() == _HANDLER_NAME:
            return
    try:
        paths.state_dir.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = logging.handlers.RotatingFileHandler(
            paths.log_file, maxBytes=5_000_000, backupCount=3, encoding="utf-8"
        )
    except OSError:
        handler = logging.NullHandler()  # an unwritable state dir must not stop the console
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    logger.addHandler(handler)
