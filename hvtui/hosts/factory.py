"""Builds a ``Host`` for each configured host; one package per kind behind it.

``BUILDERS`` maps each kind to the function that builds its host.  A new kind (say SCVMM) is
its package under ``hosts/`` behind ``hosts.base.Host``, a builder and one line in the table:
no branch in ``make_host``.  Each builder imports its kind's module when it runs, so a kind
that is not configured is never loaded (the winrm module imports pywinrm).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from hvtui.clock import Clock
from hvtui.config import HostConfig
from hvtui.errors import ConfigError
from hvtui.hosts.base import Host


@dataclass(frozen=True, slots=True)
class HostContext:
    """What a builder may use besides the host's configuration."""

    lab_dir: Path  # the lab hosts, one directory each
    clock: Clock
    secret_prompter: Callable[[str], str] | None = None  # asks for a password at connect time


HostBuilder = Callable[[HostConfig, HostContext], Host]


def build_lab_host(host_config: HostConfig, context: HostContext) -> Host:
    from hvtui.hosts.lab.host import LabHost

    return LabHost.open(
        context.lab_dir / host_config.name,
        name=host_config.name,
        clock=context.clock,
        group=host_config.group,
        read_only=host_config.read_only,
    )


def build_winrm_host(host_config: HostConfig, context: HostContext) -> Host:
    from hvtui.hosts.winrm.host import WinRMHost

    return WinRMHost(host_config, secret_prompter=context.secret_prompter)


BUILDERS: Mapping[str, HostBuilder] = MappingProxyType({"lab": build_lab_host, "winrm": build_winrm_host})


def make_host(
    host_config: HostConfig,
    *,
    lab_dir: Path,
    clock: Clock,
    secret_prompter: Callable[[str], str] | None = None,
    builders: Mapping[str, HostBuilder] = BUILDERS,
) -> Host:
    """Never contacts the host: connecting happens on the first call.

    ``lab_dir`` holds the lab hosts (one directory each); ``secret_prompter`` asks the user
    for a password at connect time (None: nobody to ask, e.g. a cron run).  ``builders``:
    the kinds known (``BUILDERS``).
    """
    builder = builders.get(host_config.kind)
    if builder is None:
        kinds = list(builders)
        expected = " or ".join([", ".join(kinds[:-1]), kinds[-1]] if len(kinds) > 1 else kinds)
        raise ConfigError(f"host {host_config.name!r}: unknown kind {host_config.kind!r} (expected {expected})")
    return builder(host_config, HostContext(lab_dir=lab_dir, clock=clock, secret_prompter=secret_prompter))
