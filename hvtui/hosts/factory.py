"""Builds a ``Host`` for each configured host; one module per kind behind it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from hvtui.clock import Clock
from hvtui.config import HostConfig
from hvtui.errors import ConfigError
from hvtui.hosts.base import Host


def make_host(
    host_config: HostConfig,
    *,
    lab_dir: Path,
    clock: Clock,
    secret_prompter: Callable[[str], str] | None = None,
) -> Host:
    """Never contacts the host: connecting happens on the first call.

    ``lab_dir`` holds the lab hosts (one directory each); ``secret_prompter`` asks the user
    for a password at connect time (None: nobody to ask, e.g. a cron run).
    """
    if host_config.kind == "lab":
        from hvtui.hosts.lab.host import LabHost

        return LabHost.open(
            lab_dir / host_config.name,
            name=host_config.name,
            clock=clock,
            group=host_config.group,
            read_only=host_config.read_only,
        )
    if host_config.kind == "winrm":
        from hvtui.hosts.winrm.host import WinRMHost

        return WinRMHost(host_config, secret_prompter=secret_prompter)
    raise ConfigError(f"host {host_config.name!r}: unknown kind {host_config.kind!r} (expected lab or winrm)")
