"""Shared fixtures: every test runs with its own XDG config/data/state/cache directories."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from samba_support import SambaServer, reset_client_cache, start_samba

from hvtui import logsetup
from hvtui.clock import FixedClock
from hvtui.engine import keys
from hvtui.hosts.lab.estate import init_lab
from hvtui.paths import Paths


@pytest.fixture
def fast_kdf(monkeypatch: pytest.MonkeyPatch) -> None:
    """New key slots get a cheap scrypt (the cost is recorded in each key file and read back), so
    tests that create encrypted repositories do not each spend a second unlocking."""
    monkeypatch.setattr(keys, "SCRYPT_N", 1 << 12)


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Paths:
    root = tmp_path_factory.mktemp("xdg")
    for var, sub in (("XDG_CONFIG_HOME", "config"), ("XDG_DATA_HOME", "data"), ("XDG_STATE_HOME", "state"), ("XDG_CACHE_HOME", "cache")):
        (root / sub).mkdir()
        monkeypatch.setenv(var, str(root / sub))
    monkeypatch.delenv("HVTUI_CONFIG", raising=False)
    monkeypatch.setenv("TEXTUAL_ANIMATIONS", "none")
    # The log redactor's secrets are process-wide: one test's secret must not mask another's log text
    # (a test's S3 secret "secret" once turned "hv-secret" into "hv-***" in a later test's log).
    monkeypatch.setattr(logsetup, "_secrets", set())
    return Paths.default()


@pytest.fixture
def paths(isolated_dirs: Paths) -> Paths:
    return isolated_dirs


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


@pytest.fixture
def samba_server() -> Iterator[SambaServer]:
    """A real smbd on 127.0.0.1 (SMB3 only, signing and encryption required) with share ``share``.

    ``.folder`` is the local folder behind the share; ``.stop()``/``.start()``/``.restart()``/``.kill()``
    for fault tests; ``.start_second(encrypt=False)`` for a server that cannot encrypt.
    """
    server = start_samba(encrypt=True)
    try:
        yield server
    finally:
        reset_client_cache()
        server.close()


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """setup_logging changes process-wide state; put it back so other tests see the default."""
    root, hvtui_logger = logging.getLogger(), logging.getLogger("hvtui")
    saved = (root.level, list(root.handlers), hvtui_logger.level, hvtui_logger.propagate)
    yield
    for handler in root.handlers:
        if handler not in saved[1]:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(saved[0])
    hvtui_logger.setLevel(saved[2])
    hvtui_logger.propagate = saved[3]
    logging.captureWarnings(False)


# The console tests change the estate, not its data volume: a tenth of the demo's data keeps every VM,
# checkpoint and finding (tests/test_lab_estate.py checks that) at a tenth of the disk (60 MB, not 585).
FRESH_DEMO_SIZE = 0.1


@pytest.fixture(scope="session")
def shared_demo_lab(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One full demo lab for the whole run, for the tests that only look (a fixed clock: no guest writes).

    Defined here, not in a helper module, so that it is built once per run rather than once per module
    that imports it.
    """
    lab = tmp_path_factory.mktemp("tui-shared") / "lab"
    init_lab(lab, "demo", FixedClock())
    return lab


@pytest.fixture
def fresh_demo_lab(tmp_path: Path) -> Path:
    """A demo lab of the test's own, for tests that change it."""
    lab = tmp_path / "lab"
    init_lab(lab, "demo", FixedClock(), size=FRESH_DEMO_SIZE)
    return lab


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory):
    """A real S3 server (SeaweedFS) for the whole session; tests use their own key prefixes."""
    from seaweed_support import seaweed_server

    with seaweed_server(tmp_path_factory.mktemp("seaweed")) as server:
        yield server
