"""Open or create a format-2 repository that lives in an object store (a ``Backend``).

The bucket is the repository: ``config.json``, ``keys/<slot>.json``, packs, index files, the
point index, manifests and lock records are objects.  ``state_dir`` is this machine's working
folder for it: a copy of ``config.json`` and the key slots (fetched from the bucket at every
open, so the bucket stays authoritative), temporary pack files before their upload, and the
advisory verification records.  Encryption is mandatory: nothing readable leaves the machine.
"""

from __future__ import annotations

from pathlib import Path

from hvtui.engine import keys
from hvtui.engine.backends.base import Backend, ObjectExists
from hvtui.engine.layout import make_private_dir
from hvtui.engine.repository import Passphrase, Repository
from hvtui.errors import RepositoryError
from hvtui.files import atomic_write

# What makes a bucket without config.json a damaged repository rather than an empty one (key
# slots alone are a creation that stopped before publishing config.json: a new one may start).
_DATA = (("points/", "restore points"), ("packs/", "packs"), ("index/", "index files"))


def open_on_backend(
    backend: Backend,
    state_dir: Path,
    name: str,
    passphrase: Passphrase | None,
    create: bool = False,
    chunk_size: int | None = None,
    pack_size: int | None = None,
) -> Repository:
    """The repository in ``backend``; ``create`` makes one there when the bucket holds none."""
    if passphrase is None:
        raise RepositoryError(
            f"repository {name} at {backend.where} is on object storage, where encryption is mandatory: "
            "set passphrase_env, passphrase_command or passphrase_prompt in its config entry"
        )
    state_dir = Path(state_dir).expanduser()
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if backend.stat("config.json") is None:
        check_missing(backend, state_dir, name)
        if not create:
            raise RepositoryError(f"no backup repository at {backend.where} (nothing has been backed up there yet)")
        if (state_dir / "config.json").exists():
            raise RepositoryError(
                f"{backend.where} holds no repository, but this machine's copy of repository {name} "
                f"({state_dir}) says one was there: check the bucket and prefix, or remove {state_dir}"
            )
        return _create(backend, state_dir, name, passphrase, chunk_size, pack_size)
    _fetch(backend, state_dir)
    return Repository.open(state_dir, name, passphrase=passphrase, backend=backend)


def check_missing(backend: Backend, state_dir: Path, name: str) -> None:
    """For a bucket without ``config.json``: raise when it still holds a repository's data (damaged,
    never to be taken for empty or created over)."""
    if next(iter(backend.list("")), None) is None:  # the usual case, an empty prefix: one request
        return
    held = [what for prefix, what in _DATA if next(iter(backend.list(prefix)), None) is not None]
    if held:
        copy = Path(state_dir).expanduser() / "config.json"
        where = f"this machine's copy {copy}" if copy.is_file() else "the working folder of a machine that used it"
        raise RepositoryError(
            f"repository {name} at {backend.where} is damaged: its config.json is missing, but it holds "
            f"{', '.join(held)}; hvtui does not rebuild config.json on object storage: put back the copy from "
            f"{where} (nothing was changed)"
        )


def _fetch(backend: Backend, state_dir: Path) -> None:
    """This machine's copy of ``config.json`` and the key slots, from the bucket."""
    fetch_key_slots(backend, state_dir)
    atomic_write(state_dir / "config.json", backend.get("config.json"), tmp_dir=state_dir / "tmp")


def fetch_key_slots(backend: Backend, state_dir: Path) -> None:
    """This machine's copy of the key slots made equal to the bucket's (the authoritative ones)."""
    keys_dir = state_dir / keys.KEYS_DIR
    make_private_dir(keys_dir)
    make_private_dir(state_dir / "tmp")
    wanted = set()
    for info in backend.list(f"{keys.KEYS_DIR}/"):
        slot_name = info.key.split("/", 1)[1]
        if "/" in slot_name or not keys.is_key_file_name(slot_name):
            continue
        wanted.add(slot_name)
        atomic_write(keys_dir / slot_name, backend.get(info.key), tmp_dir=state_dir / "tmp")
    for stale in keys_dir.iterdir():  # a slot removed from the bucket no longer opens it here
        if keys.is_key_file_name(stale.name) and stale.name not in wanted:
            stale.unlink()


def _create(
    backend: Backend, state_dir: Path, name: str, passphrase: Passphrase, chunk_size: int | None, pack_size: int | None
) -> Repository:
    """Made on this machine, then published: key slots first, ``config.json`` last and only if no
    other creator published one meanwhile (put_if_absent), so a repository never lacks its keys."""
    repo = Repository.open(
        state_dir, name, create=True, chunk_size=chunk_size, pack_size=pack_size, passphrase=passphrase,
        encrypt=True, backend=backend,
    )  # fmt: skip
    slots = [f"{keys.KEYS_DIR}/{p.name}" for p in sorted((state_dir / keys.KEYS_DIR).iterdir()) if keys.is_key_file_name(p.name)]
    for key in slots:
        backend.put_if_absent(key, (state_dir / key).read_bytes())
    try:
        backend.put_if_absent("config.json", (state_dir / "config.json").read_bytes())
    except ObjectExists:
        for key in slots:  # ours, under random slot names: they wrap a master key nobody uses
            backend.delete(key)
        (state_dir / "config.json").unlink()
        raise RepositoryError(
            f"another process created a repository at {backend.where} at the same moment; run the operation again "
            "to use that one"
        ) from None
    return repo
