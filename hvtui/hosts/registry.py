"""The configured hosts as one object the services share: built lazily, once, from any thread.

``HostRegistry`` is what the inventory, the checkpoint actions, the backup service and the
job kinds receive instead of the core that built them: ``hosts`` (name -> ``Host``, in
configuration order), ``host(name)`` (a ``ConfigError`` naming the configured hosts for an
unknown one), ``is_read_only(name)`` and ``settings_of(name)`` (the host's entry in the
config, for its WinRM timeout).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence

from hvtui.config import HostConfig
from hvtui.errors import ConfigError
from hvtui.hosts.base import Host

log = logging.getLogger(__name__)


class HostRegistry:
    def __init__(
        self,
        host_configs: Callable[[], Sequence[HostConfig]],
        build_host: Callable[[HostConfig], Host],
        *,
        settings: Sequence[HostConfig] = (),
        read_only: bool = False,
        hosts: Mapping[str, Host] | None = None,
    ) -> None:
        """``host_configs()`` lists the hosts to build (asked on first use: the lab's hosts are
        found on disk then); ``settings`` are the hosts as listed in the config; ``hosts``
        are pre-built hosts (tests, benchmarks), used instead of building any."""
        self._host_configs = host_configs
        self._build_host = build_host
        self._settings = tuple(settings)
        self.read_only = read_only  # the whole console runs read-only
        self._hosts: dict[str, Host] | None = dict(hosts) if hosts is not None else None
        self._lock = threading.Lock()

    @property
    def hosts(self) -> dict[str, Host]:
        if self._hosts is None:
            with self._lock:  # worker threads may ask at the same time: build once
                if self._hosts is None:
                    self._hosts = {hc.name: self._build_host(hc) for hc in self._host_configs()}
        return self._hosts

    def host(self, name: str) -> Host:
        try:
            return self.hosts[name]
        except KeyError:
            known = ", ".join(sorted(self.hosts)) or "none"
            raise ConfigError(f"unknown host {name!r} (configured hosts: {known})") from None

    def is_read_only(self, name: str) -> bool:
        return self.read_only or self.host(name).read_only

    def settings_of(self, name: str) -> HostConfig | None:
        """The host's entry in the config (None: not listed there, e.g. a lab host)."""
        for host_config in self._settings:
            if host_config.name == name:
                return host_config
        return None

    def close(self) -> None:
        """Close the hosts built so far (none are built by closing)."""
        for host in (self._hosts or {}).values():
            try:
                host.close()
            except Exception:  # closing must never mask the real outcome
                log.debug("closing host %s failed", host.name, exc_info=True)
