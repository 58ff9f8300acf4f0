"""Which repositories the backup service uses: the configured ones, or a ``default``
repository under the user data directory when none is configured.

An encrypted repository is unlocked once per process, with the passphrase its config entry
points at (``passphrase_env``/``passphrase_command``/``passphrase_prompt``) or, with none
configured, asked through the prompter (a terminal's getpass, the console's dialog).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from hvtui.backups.locations import Location, location_of
from hvtui.backups.reachability import HeldUnreachable
from hvtui.clock import Clock, SystemClock
from hvtui.config import RepositoryConfig, SecretSource
from hvtui.engine import keys
from hvtui.engine.repository import Repository
from hvtui.errors import Cancelled, ConfigError, RepositoryError
from hvtui.secrets import Prompter, SecretError, resolve_secret

log = logging.getLogger(__name__)


class PassphraseUnavailable(RepositoryError):
    """An encrypted repository's passphrase could not be obtained (no source, nobody to ask,
    a failing source)."""


class RepositoryList:
    """The repositories by name, each opened once (the ``Repository`` objects are cached)."""

    def __init__(
        self,
        configured: Sequence[RepositoryConfig],
        default_path: Path,
        prompter: Callable[[], Prompter | None] = lambda: None,
        clock: Clock | None = None,
    ) -> None:
        """``configured``: the config's repositories; ``default_path``: where the ``default``
        repository lives when the config names none; ``prompter()``: who asks the user for a
        passphrase now (None: nobody can be asked); ``clock``: how long an unreachable storage
        is left alone (``reachability``)."""
        self._prompter = prompter
        self._clock: Clock = clock or SystemClock()
        # Why an encrypted repository could not be unlocked (a wrong passphrase, a cancelled
        # or impossible prompt): said again without asking again, so that the console's checks
        # of many VMs do not each run scrypt or open a dialog.  Until hvtui restarts.
        self._unlock_failed: dict[str, str] = {}
        self._configured = tuple(configured)
        self._default_path = default_path
        self._repos: dict[str, Repository] = {}
        self._locations: dict[str, Location] = {}
        self._opening: dict[str, threading.Lock] = {}
        self._asking = threading.Lock()
        self._lock = threading.Lock()

    def repository_configs(self) -> list[RepositoryConfig]:
        configured = list(self._configured)
        if not configured:
            configured = [RepositoryConfig(name="default", path=self._default_path, default=True)]
        return configured

    def repository_config(self, name: str | None = None) -> RepositoryConfig:
        configs = self.repository_configs()
        if name is None:
            for rc in configs:
                if rc.default:
                    return rc
            return configs[0]
        for rc in configs:
            if rc.name == name:
                return rc
        known = ", ".join(rc.name for rc in configs)
        raise ConfigError(f"unknown repository {name!r} (configured repositories: {known})")

    def location(self, name: str | None = None) -> Location:
        """Where the repository ``name`` lives (a folder or a bucket), made once per name."""
        rc = self.repository_config(name)
        with self._lock:
            location = self._locations.get(rc.name)
            if location is None or location.rc != rc:
                location = self._locations[rc.name] = location_of(rc, self._prompter, self._clock)
            return location

    def retry_now(self, name: str | None = None) -> None:
        """An explicit action on repository ``name`` (None: on every one): its storage is asked
        again at once, even when it did not answer a moment ago."""
        names = [name] if name is not None else [rc.name for rc in self.repository_configs()]
        for each in names:
            self.location(each).retry_now()

    def open_repository(self, name: str | None = None, create: bool = False) -> Repository | None:
        """The repository object (cached); None when it does not exist and ``create`` is False."""
        rc = self.repository_config(name)
        location = self.location(rc.name)
        # One lock per repository: a bucket that takes its retries to answer delays only its own users.
        with self._lock:
            opening = self._opening.setdefault(rc.name, threading.Lock())
        with opening:
            repo = self._repos.get(rc.name)
            if repo is not None and Repository.exists(repo.root) and not repo.format_changed():
                return repo
            if not create and not location.exists():
                location.check_missing()  # points or chunks without a config: damaged, not absent
                return None
            failed = self._unlock_failed.get(rc.name)
            if failed is not None:
                raise RepositoryError(f"{failed} (not asked again until hvtui restarts)")
            try:
                repo = location.open(create, rc.format, rc.pack_size_mib, self.passphrase(rc), rc.passphrase.configured)
            except (keys.WrongPassphrase, PassphraseUnavailable, Cancelled) as err:
                self._unlock_failed[rc.name] = str(err) if not isinstance(err, Cancelled) else (
                    f"the passphrase of repository {rc.name} was not given ({err})"
                )
                raise
            with self._lock:
                self._repos[rc.name] = repo
            return repo

    def passphrase(self, rc: RepositoryConfig) -> Callable[[], str]:
        """Asks for ``rc``'s passphrase when an encrypted repository is opened (only then)."""

        def ask() -> str:
            with self._asking:  # repositories open in parallel; their questions come one at a time
                return asked()

        def asked() -> str:
            source = rc.passphrase if rc.passphrase.configured else SecretSource(prompt=True)
            prompter = self._prompter()
            if not rc.passphrase.configured and prompter is None:
                raise PassphraseUnavailable(
                    f"repository {rc.name} at {rc.where} is encrypted and there is nobody to ask for its passphrase: "
                    "set passphrase_env or passphrase_command in its config entry (or run on a terminal)"
                )
            try:
                return resolve_secret(source, f"passphrase of repository {rc.name}", prompter)
            except SecretError as err:  # a repository error: listings name it beside the others
                raise PassphraseUnavailable(str(err)) from None

        return ask

    def adopt(self, name: str, repo: Repository) -> None:
        """A repository this process just created (and unlocked): used without asking again."""
        with self._lock:
            self._repos[name] = repo

    def forget(self, name: str) -> None:
        """Drop the cached object (its config was rebuilt): the next use reads it afresh."""
        with self._lock:
            self._repos.pop(name, None)

    def require_repository(self, name: str | None) -> Repository:
        repo = self.open_repository(name)
        if repo is None:
            rc = self.repository_config(name)
            raise RepositoryError(f"repository {rc.name!r} at {rc.where} does not exist yet (no backup was made there)")
        return repo

    def repos_for(
        self, repository: str | None, failures: list[tuple[str, RepositoryError]] | None = None
    ) -> list[Repository]:
        """The repository named, or every configured one that exists.

        Unreadable ones are logged and, when ``failures`` is given, added to it: a damaged
        repository must not pass for an empty one.
        """
        names = [repository] if repository is not None else [rc.name for rc in self.repository_configs()]
        out = []
        for name in names:
            try:
                repo = self.open_repository(name)
            except RepositoryError as err:
                if repository is not None:
                    raise
                # Said once when it happens; not again for each question the hold answers from memory.
                log.log(logging.DEBUG if isinstance(err, HeldUnreachable) else logging.WARNING, "repository %s: %s", name, err)
                if failures is not None:
                    failures.append((name, err))
                continue
            if repo is not None:
                out.append(repo)
        return out
