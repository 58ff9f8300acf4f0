"""The config: its schema, the file -> typed config loader, and where the file is found.

- ``settings``: the frozen dataclasses every layer reads (``Config``, ``HostConfig``, ...).
- ``models``: the file's schema, declared once as msgspec models; ``config_json_schema()``.
- ``document``, ``walk``: the YAML read with line numbers, against the models.
- ``load``, ``load_hosts``, ``load_policy``: ``load_config`` and the rules between keys.
- ``errors``: "did you mean" and the collection of every mistake in a file.
- ``units``: durations and sizes.  ``locate``: which file is read.

``load_config`` reports every mistake in a file at once, each with the file, the line,
the key path, what was expected and what was found.  No config file at all gives
``Config.lab_default()``: the built-in demo lab.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from hvtui.config.locate import config_file_candidates, find_config_file
from hvtui.config.settings import (
    DAY,
    DEFAULT_REPOSITORY_NAME,
    HOUR,
    Config,
    Exemption,
    HostConfig,
    JobsConfig,
    LabConfig,
    PolicyConfig,
    RepositoryConfig,
    Retention,
    S3RepositoryConfig,
    SecretSource,
    SmbSettings,
    Thresholds,
    UIConfig,
    WinRMSettings,
)
from hvtui.config.units import DURATION_HELP, SIZE_HELP, format_duration, parse_duration, parse_size

# The loader and the schema are imported when first asked for: with no config file (the
# built-in lab) the file is never read against the schema, and msgspec with the models cost
# tens of milliseconds of the console's first paint.
_LAZY = {
    "load_config": "hvtui.config.load",
    **dict.fromkeys(
        (
            "HOST_KINDS",
            "HYPERV_CHECKPOINT_LIMIT",
            "LAB_PROFILES",
            "LOG_LEVELS",
            "MESSAGE_ENCRYPTING_TRANSPORTS",
            "PASSWORD_TRANSPORTS",
            "RULE_IDS",
            "WINRM_SCHEMES",
            "WINRM_TRANSPORTS",
            "config_json_schema",
        ),
        "hvtui.config.models",
    ),
}

if TYPE_CHECKING:
    from hvtui.config.load import load_config
    from hvtui.config.models import (
        HOST_KINDS,
        HYPERV_CHECKPOINT_LIMIT,
        LAB_PROFILES,
        LOG_LEVELS,
        MESSAGE_ENCRYPTING_TRANSPORTS,
        PASSWORD_TRANSPORTS,
        RULE_IDS,
        WINRM_SCHEMES,
        WINRM_TRANSPORTS,
        config_json_schema,
    )


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # asked once
    return value

__all__ = [
    "DAY",
    "DEFAULT_REPOSITORY_NAME",
    "DURATION_HELP",
    "HOST_KINDS",
    "HOUR",
    "HYPERV_CHECKPOINT_LIMIT",
    "LAB_PROFILES",
    "LOG_LEVELS",
    "MESSAGE_ENCRYPTING_TRANSPORTS",
    "PASSWORD_TRANSPORTS",
    "RULE_IDS",
    "SIZE_HELP",
    "WINRM_SCHEMES",
    "WINRM_TRANSPORTS",
    "Config",
    "Exemption",
    "HostConfig",
    "JobsConfig",
    "LabConfig",
    "PolicyConfig",
    "RepositoryConfig",
    "Retention",
    "S3RepositoryConfig",
    "SecretSource",
    "SmbSettings",
    "Thresholds",
    "UIConfig",
    "WinRMSettings",
    "config_file_candidates",
    "config_json_schema",
    "find_config_file",
    "format_duration",
    "load_config",
    "parse_duration",
    "parse_size",
]
