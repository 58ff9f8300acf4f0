"""Adding and removing key slots of an opened encrypted repository, wherever it lives.

On a local folder a slot is the file ``keys/<slot>.json``.  For a repository in a bucket the
bucket's ``keys/`` objects are the slots (remote_repo.py: each machine's working folder holds a
copy, refreshed at every open), so a slot is published there too: added with ``put_if_absent``
(a random slot name never replaces another's), removed from the bucket under the repository's
exclusive lock after checking the bucket's own slots, so two machines removing one slot each
cannot together remove the last usable one.
"""

from __future__ import annotations

import contextlib

from hvtui.engine import keys
from hvtui.engine.backends.base import ObjectExists
from hvtui.engine.crypto import RepositoryCipher
from hvtui.engine.remote_repo import fetch_key_slots
from hvtui.engine.repository import Repository
from hvtui.errors import RepositoryError


def _cipher(repo: Repository) -> RepositoryCipher:
    if repo.cipher is None:
        raise RepositoryError(f"repository {repo.name} is not encrypted: it has no key slots")
    return repo.cipher


def add_key_slot(repo: Repository, passphrase: str) -> str:
    """A new slot wrapping the master key with ``passphrase``, durably (in the bucket too); its id."""
    slot = keys.add_slot(repo.root, repo.id, _cipher(repo), passphrase, tmp_dir=repo.tmp_dir)
    if repo.backend is not None:
        name = f"{keys.KEYS_DIR}/{slot}.json"
        try:
            repo.backend.put_if_absent(name, (repo.root / name).read_bytes())
        except BaseException as err:
            with contextlib.suppress(OSError):  # not in the bucket: no machine may rely on it
                (repo.root / name).unlink()
            if isinstance(err, ObjectExists):
                raise RepositoryError(f"key slot {slot} already exists in {repo.backend.where}; add the slot again") from None
            raise
    return slot


def remove_key_slot(repo: Repository, slot: str, lock_timeout: float | None = 60.0) -> None:
    """Delete one slot (from the bucket too); refused when it is the last usable one."""
    _cipher(repo)
    if repo.backend is None:
        keys.remove_slot(repo.root, repo.id, slot)
        return
    with repo.lock("exclusive", "key remove", slot).acquire(lock_timeout):
        fetch_key_slots(repo.backend, repo.root)  # judge "the last usable slot" by the bucket's slots
        keys.remove_slot(repo.root, repo.id, slot)
        repo.backend.delete(f"{keys.KEYS_DIR}/{slot}.json")
