"""A bucket whose storage does not answer is left alone for a while (backups/reachability.py):
inside the hold every question is answered from memory, without a connection; after it, one
connection tries again; an explicit action (a backup, a copy, a retry) tries at once.

In the console, `:repos` says so (why, and when it tries again) and `r` tries at once.

The "storage" is a real TCP server on 127.0.0.1 that accepts each connection and closes it at
once, counting them: boto3 sees a dropped connection on every attempt, as from a dead gateway."""

from __future__ import annotations

import dataclasses
import functools
import logging
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_tui_jobs import flat, ready, wait_until
from tui_support import make_app, make_core, screen_text, settle

from hvtui.backups import locations
from hvtui.backups.reachability import FIRST_HOLD, LONGEST_HOLD
from hvtui.clock import FixedClock
from hvtui.config import Config, RepositoryConfig, S3RepositoryConfig, SecretSource
from hvtui.config.timing import local_zone
from hvtui.core import Core
from hvtui.engine.backends.base import BackendError
from hvtui.engine.backends.s3 import S3Settings
from hvtui.errors import HvtuiError
from hvtui.paths import Paths
from hvtui.tui.screens.repositories import RepositoriesScreen

ATTEMPTS = 2


class DeadGateway:
    """Accepts connections and drops them unanswered; ``connections`` counts them."""

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self.connections = 0
        self._closing = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            conn, _ = self._server.accept()
            with self._lock:
                if self._closing:
                    conn.close()
                    return
                self.connections += 1
            conn.close()

    def count(self) -> int:
        with self._lock:
            return self.connections

    def close(self) -> None:
        with self._lock:
            self._closing = True
        socket.create_connection(("127.0.0.1", self.port)).close()  # wakes accept(), which closing would not
        self._thread.join(30)
        self._server.close()


@pytest.fixture
def gateway() -> Iterator[DeadGateway]:
    server = DeadGateway()
    yield server
    server.close()


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


@pytest.fixture
def core(fresh_demo_lab: Path, paths: Paths, gateway: DeadGateway, clock: FixedClock, monkeypatch: pytest.MonkeyPatch) -> Core:
    # Fewer attempts than boto3's 8 (with their backoff) per try: the same failure, sooner.
    monkeypatch.setattr(locations, "S3Settings", functools.partial(S3Settings, max_attempts=ATTEMPTS))
    monkeypatch.setenv("HVTUI_TEST_S3_ACCESS", "access")
    monkeypatch.setenv("HVTUI_TEST_S3_SECRET", "dead-endpoint-secret-key-Z9")
    monkeypatch.setenv("HVTUI_TEST_OFFSITE", "offsite pass phrase")
    s3 = S3RepositoryConfig(
        bucket="b", endpoint=f"http://127.0.0.1:{gateway.port}", prefix="p", region="us-east-1",
        access_key=SecretSource(env="HVTUI_TEST_S3_ACCESS"), secret_key=SecretSource(env="HVTUI_TEST_S3_SECRET"),
    )  # fmt: skip
    main = RepositoryConfig(name="main", path=paths.data_dir / "main", default=True)
    offsite = RepositoryConfig(
        name="offsite", path=paths.repository_working_dir("offsite"), format=2,
        passphrase=SecretSource(env="HVTUI_TEST_OFFSITE"), s3=s3,
    )  # fmt: skip
    config = dataclasses.replace(Config.lab_default(paths), repositories=(main, offsite))
    return make_core(fresh_demo_lab, paths, clock=clock, config=config)


def offsite_info(core: Core, retry: bool = False) -> dict:
    infos = {info.name: info for info in core.backups.repository_infos(retry=retry)}
    assert infos["main"].state in ("absent", "ok")  # the folder repository is listed whatever the bucket does
    return infos["offsite"].to_dict()


def at(clock: FixedClock) -> str:
    return clock.now().astimezone(local_zone()).strftime("%H:%M:%S")


def test_inside_the_hold_nothing_connects_after_it_one_try_does(
    core: Core, gateway: DeadGateway, clock: FixedClock, caplog: pytest.LogCaptureFixture
) -> None:
    first = offsite_info(core)
    assert first["state"] == "unreachable" and f"did not answer after {ATTEMPTS} attempts" in first["problem"]
    tried = gateway.count()
    assert tried >= 1
    tried_at = at(clock)

    clock.advance(FIRST_HOLD - 15)
    caplog.clear()
    held = offsite_info(core)
    assert held["state"] == "unreachable"
    assert f"unreachable (last tried {tried_at}: stat config.json: http://127.0.0.1:{gateway.port} did not answer" in held["problem"]
    assert held["problem"].endswith("; retrying in 15 s)")
    # The console's other questions (points, a VM's last backup) are answered from memory too.
    listing = core.backups.point_listing()
    assert [name for name, _ in listing.unreadable] == ["offsite"] and "retrying in 15 s" in str(listing.unreadable[0][1])
    assert gateway.count() == tried  # no connection inside the hold
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]  # nor a warning for each answer from memory

    clock.advance(15)
    again = offsite_info(core)
    assert f"did not answer after {ATTEMPTS} attempts" in again["problem"] and "last tried" not in again["problem"]
    assert gateway.count() > tried  # tried again once the hold was over
    tried, tried_at = gateway.count(), at(clock)
    # Still down: held twice as long, and the message names the new try's time.
    clock.advance(FIRST_HOLD + 1)
    held = offsite_info(core)
    assert f"(last tried {tried_at}: " in held["problem"]
    assert held["problem"].endswith(f"; retrying in {int(FIRST_HOLD) - 1} s)")
    assert gateway.count() == tried


def test_the_hold_grows_to_a_few_minutes_and_no_further(core: Core, gateway: DeadGateway, clock: FixedClock) -> None:
    holds = []
    for _ in range(5):
        offsite_info(core)  # tries (the hold is over), and fails
        held = offsite_info(core)
        left = int(held["problem"].rsplit("retrying in ", 1)[1].removesuffix(" s)"))
        holds.append(left)
        clock.advance(left)
    assert holds == [60, 120, 240, int(LONGEST_HOLD), int(LONGEST_HOLD)]


def test_an_explicit_action_tries_at_once(core: Core, gateway: DeadGateway, clock: FixedClock, tmp_path: Path) -> None:
    offsite_info(core)
    tried = gateway.count()
    clock.advance(5)
    assert "retrying in 55 s" in offsite_info(core)["problem"] and gateway.count() == tried

    retried = offsite_info(core, retry=True)  # `r` in :repos, `hvtui repo list`
    assert f"did not answer after {ATTEMPTS} attempts" in retried["problem"] and "last tried" not in retried["problem"]
    assert gateway.count() > tried
    tried = gateway.count()

    vm = next(vm for vm in core.inventory.refresh().vms if vm.name == "test01")
    with pytest.raises(BackendError, match=f"did not answer after {ATTEMPTS} attempts"):  # a backup to it asks again
        core.backups.backup(vm.host, vm.id, "full", repository="offsite")
    assert gateway.count() > tried
    tried = gateway.count()

    core.backups.backup(vm.host, vm.id, "full", repository="main")
    with pytest.raises(HvtuiError, match=f"did not answer after {ATTEMPTS} attempts"):  # so does a copy to it
        core.copies.copy("main", "offsite")
    assert gateway.count() > tried
    tried = gateway.count()
    with pytest.raises(HvtuiError, match=f"did not answer after {ATTEMPTS} attempts"):  # and a restore from it
        core.backups.restore("0" * 32, to_dir=tmp_path / "restored", repository="offsite")
    assert gateway.count() > tried
    tried = gateway.count()
    with pytest.raises(HvtuiError, match=f"did not answer after {ATTEMPTS} attempts"):  # the console's restore job too
        core.jobs.submit_restore("0" * 32, "directory", directory=tmp_path / "restored", repository="offsite")
    assert gateway.count() > tried
    tried = gateway.count()
    # Each failed explicit try held it longer: 60, 120, 240, then the longest hold.
    assert offsite_info(core)["problem"].endswith(f"; retrying in {int(LONGEST_HOLD)} s)")
    assert gateway.count() == tried


async def test_repos_says_why_and_when_it_tries_again_and_r_tries_now(core: Core, gateway: DeadGateway, clock: FixedClock) -> None:
    app = make_app(core)
    async with app.run_test(size=(180, 40)) as pilot:
        await ready(pilot)
        await pilot.press("colon", *"repos", "enter")
        assert await wait_until(pilot, lambda: isinstance(app.screen, RepositoriesScreen) and app.screen.loaded, rounds=3000)
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, RepositoriesScreen)
        line = next(line for line in screen_text(app).splitlines() if line.lstrip().startswith("offsite"))
        assert "UNREACHAB" in line  # the FORMAT column, cut to its width
        tried, tried_at = gateway.count(), at(clock)
        assert tried >= 1
        await pilot.press("down")
        await settle(pilot)
        assert screen.selected.key == "offsite"

        clock.advance(20)
        await pilot.press("ctrl+r")  # the console's refresh: answered from memory, no connection
        assert await wait_until(pilot, lambda: "retrying in 40 s" in flat(screen_text(app)), rounds=3000)
        detail = flat(screen_text(app))
        assert f"unreachable (last tried {tried_at}: stat config.json: http://127.0.0.1:{gateway.port} did not answer" in detail
        assert gateway.count() == tried

        await pilot.press("r")  # retry now: one more try at once
        assert await wait_until(pilot, lambda: "last tried" not in flat(screen_text(app)), rounds=3000)
        assert f"did not answer after {ATTEMPTS} attempts" in flat(screen_text(app))
        assert gateway.count() > tried
