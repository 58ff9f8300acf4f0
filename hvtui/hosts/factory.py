"""Builds a ``Host`` for each configured host; one module per kind behind it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hvtui.config import HostConfig
from hvtui.errors import ConfigError
from hvtui.hosts.base import Host

if TYPE_CHECKING:
    from hvtui.core import Core


def make_host(host_config: HostConfig, core: Core) -> Host:
    """Never contacts the host: connecting happens on the first call."""
    if host_config.kind == "lab":
        from hvtui.hosts.lab.host import LabHost

        return LabHost.open(
            core.lab_dir / host_config.name,
            name=host_config.name,
            clock=core.clock,
            group=host_config.group,
            read_only=host_config.read_only,
        )
    if host_config.kind == "winrm":
        from hvtui.hosts.winrm.host import WinRMHost

        return WinRMHost(host_config, secret_prompter=core.secret_prompter)
    raise ConfigError(f"host {host_config.name!r}: unknown kind {host_config.kind!r} (expected lab or winrm)")
