"""Key slots of encrypted repositories: ``hvtui repo key list|add|remove``.

Listing reads only the key files (no passphrase).  Adding and removing a slot first opens the
repository with a passphrase that works (its config entry's source, or a prompt), so only
someone who can already read it changes who may; both are refused read-only and audit-logged
(never a passphrase).  Removing the last usable slot is refused: the data would be lost.  For a
repository in a bucket the slot objects there are added and removed too (engine/repo_keys.py).
"""

from __future__ import annotations

from hvtui.backups.guard import SafetyGuard
from hvtui.backups.repositories import RepositoryList
from hvtui.config import RepositoryConfig
from hvtui.engine import keys
from hvtui.engine.repo_keys import add_key_slot, remove_key_slot
from hvtui.engine.repository import Repository
from hvtui.errors import ReadOnlyError, RepositoryError


class RepositoryKeys:
    def __init__(self, repositories: RepositoryList, guard: SafetyGuard) -> None:
        self._repositories = repositories
        self._guard = guard

    def _encrypted(self, name: str | None) -> tuple[RepositoryConfig, dict]:
        rc = self._repositories.repository_config(name)
        location = self._repositories.location(rc.name)
        if not location.exists():
            location.check_missing()
            raise RepositoryError(f"repository {rc.name!r} at {location.where} does not exist yet")
        if location.backend_name != "local":  # its key slots are objects: opening fetches them into rc.path
            self._repositories.require_repository(rc.name)
        config = Repository.read_config(rc.path)
        if not config.get("encryption"):
            raise RepositoryError(f"repository {rc.name!r} is not encrypted: it has no key slots")
        return rc, config

    def slots(self, name: str | None = None) -> tuple[RepositoryConfig, list[keys.KeySlot]]:
        rc, config = self._encrypted(name)
        return rc, keys.list_slots(rc.path, config["id"])

    def _opened(self, rc: RepositoryConfig, action: str, args: dict) -> Repository:
        target = f"repository:{rc.name}"
        reason = self._guard.read_only_reason()
        if reason is not None:
            self._guard.audit_record(action, target, None, args, "refused", f"read-only: {reason}")
            raise ReadOnlyError(f"{action} refused: {reason}")
        try:
            return self._repositories.require_repository(rc.name)
        except RepositoryError as err:
            self._guard.audit_record(action, target, None, args, "failed", str(err))
            raise

    def add(self, name: str | None, new_passphrase: str) -> str:
        """A new slot wrapping the master key with ``new_passphrase``; its id."""
        rc, _config = self._encrypted(name)
        args = {"repository": rc.name}
        repo = self._opened(rc, "repo.key.add", args)
        try:
            slot = add_key_slot(repo, new_passphrase)
        except (OSError, RepositoryError) as err:
            self._guard.audit_record("repo.key.add", f"repository:{rc.name}", None, args, "failed", str(err))
            raise RepositoryError(f"cannot add a key slot to repository {rc.name}: {err}") from None
        self._guard.audit_record("repo.key.add", f"repository:{rc.name}", None, {**args, "slot": slot}, "ok", None)
        return slot

    def remove(self, name: str | None, slot: str) -> None:
        rc, _config = self._encrypted(name)
        args = {"repository": rc.name, "slot": slot}
        repo = self._opened(rc, "repo.key.remove", args)
        try:
            remove_key_slot(repo, slot)
        except (OSError, RepositoryError) as err:
            self._guard.audit_record("repo.key.remove", f"repository:{rc.name}", None, args, "failed", str(err))
            if isinstance(err, RepositoryError):
                raise
            raise RepositoryError(f"cannot remove key slot {slot}: {err}") from None
        self._guard.audit_record("repo.key.remove", f"repository:{rc.name}", None, args, "ok", None)

