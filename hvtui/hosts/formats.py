"""What a restore can do with a backed-up VM configuration without its host: flatten it.

A restore into a folder needs no host, but flattening a VM's checkpoint chains needs to
know its disk format; the configuration's ``format`` names it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from hvtui.hosts.lab import flatten as lab_flatten
from hvtui.hosts.lab.records import CONFIG_FORMAT as LAB_FORMAT

Flattener = Callable[[dict[str, Any], Path], dict[str, Any]]


def flattener_for(config: dict[str, Any]) -> Flattener | None:
    """The function that flattens restored files of this configuration's format, if any."""
    if config.get("format") == LAB_FORMAT:
        return lab_flatten.flatten_restored
    return None


def checkpoint_names(config: dict[str, Any]) -> list[str]:
    """The checkpoints a backed-up configuration holds (any format that lists them)."""
    return [str(cp.get("name", cp.get("id", "?"))) for cp in config.get("checkpoints") or [] if isinstance(cp, dict)]
