"""A repository's ``config.json``: what a new one holds and the checks an existing one passes.

Split out of repository.py: the format's constants and the config's validation, which need no
open repository (``repo key`` commands and the catalog read a config without opening one).
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hvtui.config.settings import DEFAULT_FORMAT
from hvtui.engine import keys
from hvtui.engine.crypto import CHUNK_ID_NAME, CIPHER_NAME
from hvtui.engine.layout import RepositoryNeedsRepair, inspect_folder
from hvtui.engine.packfile import DEFAULT_PACK_SIZE, MAX_PACK_SIZE, MIN_PACK_SIZE
from hvtui.errors import RepositoryError

FORMAT = "hvtui-repository"
VERSION = 2  # the newest format this hvtui reads and writes
DEFAULT_VERSION = DEFAULT_FORMAT  # what a new repository is made as unless asked (the config's default)
VERSIONS = (1, 2)
DEFAULT_CHUNK_SIZE = 1024 * 1024
MIN_CHUNK_SIZE = 64 * 1024
MAX_CHUNK_SIZE = 16 * 1024 * 1024


def new_config(
    chunk_size: int,
    created: datetime | None = None,
    version: int = DEFAULT_VERSION,
    pack_size: int | None = None,
    encrypted: bool = False,
) -> dict[str, Any]:
    """The ``config.json`` of a new repository (or one rebuilt by a repair); ``encrypted``
    implies format 2."""
    config: dict[str, Any] = {
        "format": FORMAT,
        "version": version,
        "id": uuid.uuid4().hex,
        "created": (created or datetime.now(UTC)).astimezone(UTC).isoformat(),
        "chunk_size": chunk_size,
        "hash": "sha256",
        "compression": "lz4-block",
    }
    if version >= 2:
        config["pack_size"] = pack_size or DEFAULT_PACK_SIZE
    if encrypted:
        config["hash"] = CHUNK_ID_NAME
        config["encryption"] = {"cipher": CIPHER_NAME, "chunk_id": CHUNK_ID_NAME, "keys": keys.KEYS_DIR}
    return config


def check_pack_size(pack_size: int) -> None:
    if not MIN_PACK_SIZE <= pack_size <= MAX_PACK_SIZE:
        raise RepositoryError(f"pack size must be between 16 and 128 MiB, not {pack_size / 2**20:g} MiB")


def read_config(root: Path) -> dict[str, Any]:
    """The checked ``config.json``; ``RepositoryNeedsRepair`` when it is missing or damaged
    in a folder that holds restore points or chunks, ``RepositoryError`` otherwise."""
    config_path = root / "config.json"

    def damaged(problem: str, otherwise: str) -> RepositoryError:
        state = inspect_folder(root)
        if state.kind == "damaged":
            return RepositoryNeedsRepair(
                f"repository {root} is damaged: its config.json {problem}, but the folder holds "
                f"{state.describe_data()}; run `hvtui repair-repository` to rebuild config.json from them",
                problem,
            )
        return RepositoryError(otherwise)

    try:
        config = json.loads(config_path.read_text())
    except (OSError, ValueError) as err:
        raise damaged("cannot be read", f"repository {root}: cannot read config.json: {err}") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise damaged(
            "has no hvtui format marker",
            f"{root} is not an hvtui repository (config.json has no hvtui format marker)",
        )
    version = config.get("version")
    if isinstance(version, int) and not isinstance(version, bool) and version > VERSION:
        raise RepositoryError(
            f"repository {root} has format version {version!r}; this hvtui reads version {VERSION} (upgrade hvtui)"
        )
    size = config.get("chunk_size")
    problem = None
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        problem = f"has an invalid format version {version!r}"
    elif not isinstance(config.get("id"), str):
        problem = "has no repository id"
    elif not isinstance(size, int) or not MIN_CHUNK_SIZE <= size <= MAX_CHUNK_SIZE or config.get("hash") != (
        CHUNK_ID_NAME if config.get("encryption") else "sha256"
    ):
        problem = "has an unsupported chunk size or hash"
    elif version >= 2 and (
        not isinstance(config.get("pack_size"), int) or not MIN_PACK_SIZE <= config["pack_size"] <= MAX_PACK_SIZE
    ):
        problem = "has an invalid pack size"
    elif config.get("encryption") is not None and (
        version < 2 or config["encryption"] != {"cipher": CIPHER_NAME, "chunk_id": CHUNK_ID_NAME, "keys": keys.KEYS_DIR}
    ):
        problem = f"has an unsupported encryption {config['encryption']!r}"
    if problem is not None:
        raise damaged(problem, f"repository {root}: config.json {problem}")
    return config
