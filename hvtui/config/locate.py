"""Which config file hvtui reads: ``--config``, else ``$HVTUI_CONFIG``, else
``config.yaml``/``config.yml`` in the user config directory, else none (the demo lab)."""

from __future__ import annotations

from pathlib import Path

from hvtui.errors import ConfigError
from hvtui.paths import Paths, env_config_path


def config_file_candidates(cli_path: Path | None, paths: Paths) -> tuple[list[Path], str]:
    """Where the config is looked for, unchecked: the file(s) in question and where they
    came from.  ``--config``, else ``$HVTUI_CONFIG``, else ``config.yaml``/``config.yml`` in
    the user config dir (both, when both exist: an error); no file, the built-in demo lab."""
    if cli_path is not None:
        return [Path(cli_path).expanduser()], "given with --config"
    from_env = env_config_path()
    if from_env is not None:
        return [from_env], "named by $HVTUI_CONFIG"
    return [candidate for candidate in paths.default_config_candidates if candidate.exists()], "in the user config directory"


def find_config_file(cli_path: Path | None, paths: Paths) -> Path | None:
    """The config file to load (see ``config_file_candidates``); None when there is none."""
    found, origin = config_file_candidates(cli_path, paths)
    if len(found) > 1:
        names = " and ".join(str(candidate) for candidate in found)
        raise ConfigError(f"two config files found: {names}; keep one of them")
    if found:
        return existing_config(found[0], origin)
    return None


def existing_config(path: Path, origin: str) -> Path:
    if not path.exists():
        raise ConfigError(f"config file not found: {path} ({origin})")
    if not path.is_file():
        raise ConfigError(f"config path is not a file: {path} ({origin})")
    return path
