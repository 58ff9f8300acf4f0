"""Key slots of an encrypted repository: the master key wrapped by passphrases.

``keys/<16 hex>.json``, one file per slot (several passphrases open the same repository;
rotating one re-wraps the master key, never the data)::

    {"format": "hvtui-key", "version": 1, "slot": "<16 hex>", "repository": "<repository id>",
     "created": "<ISO 8601>",
     "kdf": {"name": "scrypt", "n": 131072, "r": 8, "p": 1, "salt": "<base64, 32 bytes>"},
     "cipher": "aes-256-gcm", "nonce": "<base64, 12 bytes>",
     "wrapped": "<base64: AES-256-GCM of the 64-byte master key, 80 bytes>",
     "checksum": "<SHA-256 of the canonical JSON of the other fields>"}

The wrapping key is scrypt(passphrase, salt, n, r, p) — memory-hard, in the standard
library (no extra native dependency), 128 MiB and ~0.4 s per attempt at the default
parameters, which are recorded per slot so they can be raised later.  The associated data
of the wrapped key is ``hvtui-key:<repository id>:<slot>``: a slot copied from another
repository, or renamed, does not open.  ``checksum`` tells a damaged file (named as such)
from a wrong passphrase; a forged file with a recomputed checksum still cannot unwrap.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hvtui.engine.crypto import CIPHER_NAME, KEY_SIZE, NONCE_SIZE, RepositoryCipher
from hvtui.errors import RepositoryError
from hvtui.files import atomic_write, fsync_dir

KEYS_DIR = "keys"
FORMAT = "hvtui-key"
VERSION = 1
# scrypt N=2^17, r=8, p=1: 128 MiB of memory, ~0.4 s here (engine notes); what OWASP and
# restic-era guidance put at the interactive level.  Tests lower SCRYPT_N (module attribute).
SCRYPT_N = 1 << 17
SCRYPT_R = 8
SCRYPT_P = 1
# A key file may ask for at most this much (a forged file must not exhaust memory or time).
MAX_SCRYPT_MEMORY = 1 << 30
_SLOT_NAME = re.compile(r"[0-9a-f]{16}\.json")


class WrongPassphrase(RepositoryError):
    """No key slot opens with the passphrase given."""


class KeyFileDamaged(RepositoryError):
    """A key file that cannot be used, named with the reason."""


@dataclass(frozen=True, slots=True)
class KeySlot:
    slot: str
    path: Path
    created: str
    kdf: dict[str, Any]
    problem: str | None = None  # why the file cannot be used (damaged), else None

    def to_dict(self) -> dict[str, Any]:
        kdf = {k: v for k, v in self.kdf.items() if k != "salt"}
        return {"slot": self.slot, "file": f"{KEYS_DIR}/{self.path.name}", "created": self.created, "kdf": kdf, "problem": self.problem}


def is_key_file_name(name: str) -> bool:
    return bool(_SLOT_NAME.fullmatch(name))


def _checksum(doc: dict[str, Any]) -> str:
    body = {k: v for k, v in doc.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _aad(repo_id: str, slot: str) -> bytes:
    return f"hvtui-key:{repo_id}:{slot}".encode()


def _derive(passphrase: str, kdf: dict[str, Any]) -> bytes:
    n, r, p = kdf["n"], kdf["r"], kdf["p"]
    return hashlib.scrypt(
        passphrase.encode(), salt=base64.b64decode(kdf["salt"]), n=n, r=r, p=p, maxmem=MAX_SCRYPT_MEMORY + (1 << 20), dklen=KEY_SIZE
    )


def wrap_master(master: bytes, passphrase: str, repo_id: str, slot: str | None = None) -> dict[str, Any]:
    """A key file document holding ``master`` wrapped by ``passphrase``."""
    slot = slot or secrets.token_hex(8)
    kdf = {"name": "scrypt", "n": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P, "salt": base64.b64encode(os.urandom(32)).decode()}
    nonce = os.urandom(NONCE_SIZE)
    wrapped = AESGCM(_derive(passphrase, kdf)).encrypt(nonce, master, _aad(repo_id, slot))
    doc: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "slot": slot,
        "repository": repo_id,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "kdf": kdf,
        "cipher": CIPHER_NAME,
        "nonce": base64.b64encode(nonce).decode(),
        "wrapped": base64.b64encode(wrapped).decode(),
    }
    doc["checksum"] = _checksum(doc)
    return doc


def _check_document(doc: Any, name: str, repo_id: str) -> dict[str, Any]:
    """The key document, or ``KeyFileDamaged`` naming the file and what is wrong."""
    where = f"key file {KEYS_DIR}/{name}"
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise KeyFileDamaged(f"{where} is damaged (not an hvtui key file)")
    if doc.get("version") != VERSION:
        raise KeyFileDamaged(f"{where} has an unknown version {doc.get('version')!r} (upgrade hvtui)")
    if doc.get("checksum") != _checksum(doc):
        raise KeyFileDamaged(f"{where} is damaged (its checksum does not match its contents)")
    if doc.get("slot") != name[:-5]:
        raise KeyFileDamaged(f"{where} is damaged (it names itself slot {doc.get('slot')!r})")
    if doc.get("repository") != repo_id:
        raise KeyFileDamaged(f"{where} belongs to another repository ({doc.get('repository')!r}), not this one ({repo_id})")
    kdf = doc.get("kdf")
    try:
        n, r, p = kdf["n"], kdf["r"], kdf["p"]
        ok = (
            kdf["name"] == "scrypt"
            and all(isinstance(v, int) and not isinstance(v, bool) for v in (n, r, p))
            and n >= 2 and n & (n - 1) == 0 and 1 <= r <= 64 and 1 <= p <= 16
            and 128 * n * r <= MAX_SCRYPT_MEMORY
            and len(base64.b64decode(kdf["salt"], validate=True)) >= 16
            and len(base64.b64decode(doc["nonce"], validate=True)) == NONCE_SIZE
            and len(base64.b64decode(doc["wrapped"], validate=True)) == 2 * KEY_SIZE + 16
        )
    except (TypeError, KeyError, ValueError):
        ok = False
    if not ok or doc.get("cipher") != CIPHER_NAME:
        raise KeyFileDamaged(f"{where} is damaged (unsupported or out-of-range key derivation parameters)")
    return doc


def _key_files(root: Path) -> list[Path]:
    try:
        names = sorted(os.listdir(root / KEYS_DIR))
    except FileNotFoundError:
        return []
    except OSError as err:
        raise RepositoryError(f"cannot list {root / KEYS_DIR}: {err.strerror}") from None
    return [root / KEYS_DIR / n for n in names if is_key_file_name(n)]


def list_slots(root: Path, repo_id: str) -> list[KeySlot]:
    """Every key slot, damaged ones with their problem (reads no secret)."""
    slots = []
    for path in _key_files(root):
        try:
            doc = _check_document(json.loads(path.read_bytes()), path.name, repo_id)
            slots.append(KeySlot(doc["slot"], path, doc["created"], dict(doc["kdf"])))
        except (OSError, ValueError) as err:  # JSONDecodeError is a ValueError
            slots.append(KeySlot(path.name[:-5], path, "?", {}, problem=_problem(path, err)))
        except KeyFileDamaged as err:
            slots.append(KeySlot(path.name[:-5], path, "?", {}, problem=str(err)))
    return slots


def _problem(path: Path, err: Exception) -> str:
    if isinstance(err, OSError):
        return f"key file {KEYS_DIR}/{path.name} cannot be read ({err.strerror})"
    return f"key file {KEYS_DIR}/{path.name} is damaged (not valid JSON)"


def unlock(root: Path, repo_id: str, passphrase: str, what: str) -> tuple[RepositoryCipher, str]:
    """The repository's cipher and the slot that opened it; ``WrongPassphrase`` when none does,
    ``KeyFileDamaged`` when no usable key file is left (each named)."""
    slots = list_slots(root, repo_id)
    if not slots:
        raise KeyFileDamaged(f"{what} is encrypted, but {root / KEYS_DIR} holds no key file: its data cannot be read")
    damaged = [s.problem for s in slots if s.problem]
    for slot in slots:
        if slot.problem:
            continue
        doc = json.loads(slot.path.read_bytes())
        try:
            master = AESGCM(_derive(passphrase, doc["kdf"])).decrypt(
                base64.b64decode(doc["nonce"]), base64.b64decode(doc["wrapped"]), _aad(repo_id, slot.slot)
            )
        except InvalidTag:
            continue
        return RepositoryCipher(master), slot.slot
    if len(damaged) == len(slots):
        raise KeyFileDamaged(f"{what}: no usable key file: " + "; ".join(str(d) for d in damaged))
    extra = f" (and {'; '.join(str(d) for d in damaged)})" if damaged else ""
    raise WrongPassphrase(f"wrong passphrase for {what}: no key slot opens with it{extra}")


def add_slot(root: Path, repo_id: str, cipher: RepositoryCipher, passphrase: str, tmp_dir: Path | None = None) -> str:
    """Wrap the master key by ``passphrase`` in a new slot, durably; the slot id."""
    doc = wrap_master(cipher.master_key(), passphrase, repo_id)
    keys_dir = root / KEYS_DIR
    keys_dir.mkdir(mode=0o700, exist_ok=True)
    data = json.dumps(doc, indent=1, sort_keys=True).encode()
    atomic_write(keys_dir / f"{doc['slot']}.json", data, tmp_dir=tmp_dir or root / "tmp")
    fsync_dir(keys_dir)
    return doc["slot"]


def remove_slot(root: Path, repo_id: str, slot: str) -> None:
    """Delete one slot; refused when it is the last usable one (the data would be lost)."""
    slots = list_slots(root, repo_id)
    target = [s for s in slots if s.slot == slot]
    if not target:
        known = ", ".join(s.slot for s in slots) or "none"
        raise RepositoryError(f"no key slot {slot!r} (slots: {known})")
    usable = [s for s in slots if not s.problem and s.slot != slot]
    if not usable:
        raise RepositoryError(
            f"key slot {slot} is the repository's last usable key: removing it would make every point unreadable; "
            "add another slot first (hvtui repo key add)"
        )
    with contextlib.suppress(FileNotFoundError):
        os.unlink(target[0].path)
    fsync_dir(root / KEYS_DIR)


def clear_unpublished(root: Path) -> None:
    """Remove the key files of a creation killed before its ``config.json`` appeared: no data
    was ever sealed with them (called under the creation lock, with no ``config.json``)."""
    for path in _key_files(root):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
