"""The index of a format-2 repository: which pack holds each chunk, at which offset.

``index/<64 hex>.json`` files, each written once (temporary file, fsync, rename)::

    {"format": "hvtui-index", "version": 1,
     "packs": {"<pack id>": [["<chunk id hex>", offset, length], ...]},
     "dropped": [["<chunk id hex>", "<pack id>"], ...],   # blobs a verify found damaged
     "supersedes": ["<index name>", ...],                 # index files this one replaces (prune)
     "digest": "<SHA-256 of the canonical JSON of the other fields>"}

A reader merges every index file (minus superseded ones) into one map, caches the result
under the user cache directory (keyed by the repository id and the index files' names) and
then lists ``packs/``: a pack no index names (its backup was killed before it wrote its
index, or the index file is damaged) is read from its own trailer.  A pack an index names
but that is gone is left out.  So the index is only ever a faster way to read the trailers.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs

from hvtui.engine.crypto import RepositoryCipher
from hvtui.engine.packfile import BlobEntry, PackDamaged, is_pack_id
from hvtui.engine.packobjects import LocalPacks, PackObjects
from hvtui.files import atomic_write

log = logging.getLogger(__name__)

INDEX_FORMAT = "hvtui-index"
INDEX_VERSION = 1
CACHE_VERSION = 1


def default_cache_dir() -> Path:
    return Path(platformdirs.user_cache_dir("hvtui")) / "index"


def _compact(doc: object) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def _digest(doc: dict[str, Any]) -> str:
    body = {k: v for k, v in doc.items() if k != "digest"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def encode_index(
    packs: dict[str, list[BlobEntry]], dropped: list[tuple[bytes, str]] = (), supersedes: list[str] = ()  # type: ignore[assignment]
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "format": INDEX_FORMAT,
        "version": INDEX_VERSION,
        "packs": {pid: [[e.digest.hex(), e.offset, e.length] for e in entries] for pid, entries in packs.items()},
        "dropped": [[d.hex(), pid] for d, pid in dropped],
        "supersedes": list(supersedes),
    }
    doc["digest"] = _digest(doc)
    return doc


class IndexDamaged(ValueError):
    pass


def decode_index(doc: Any) -> tuple[dict[str, list[BlobEntry]], list[tuple[bytes, str]], list[str]]:
    """The packs, dropped blobs and superseded names of an index document; ``IndexDamaged``."""
    if not isinstance(doc, dict) or doc.get("format") != INDEX_FORMAT:
        raise IndexDamaged("not an hvtui index file")
    if doc.get("version") != INDEX_VERSION:
        raise IndexDamaged(f"unknown index version {doc.get('version')!r}")
    if doc.get("digest") != _digest(doc):
        raise IndexDamaged("its digest does not match its contents")
    try:
        packs = {}
        for pid, rows in doc["packs"].items():
            if not is_pack_id(pid):
                raise IndexDamaged(f"bad pack id {pid!r}")
            packs[pid] = [BlobEntry(bytes.fromhex(h), int(o), int(n)) for h, o, n in rows]
        dropped = [(bytes.fromhex(h), str(pid)) for h, pid in doc.get("dropped", [])]
        supersedes = [str(name) for name in doc.get("supersedes", [])]
    except (TypeError, ValueError, KeyError, AttributeError) as err:
        if isinstance(err, IndexDamaged):
            raise
        raise IndexDamaged(f"malformed ({err})") from None
    if any(len(e.digest) != 32 or e.offset < 0 or e.length <= 0 for rows in packs.values() for e in rows):
        raise IndexDamaged("malformed blob entry")
    return packs, dropped, supersedes




@dataclass(slots=True)
class IndexState:
    """The merged index in memory."""

    packs: dict[str, list[BlobEntry]] = field(default_factory=dict)
    dropped: set[tuple[bytes, str]] = field(default_factory=set)
    locations: dict[bytes, tuple[str, int, int]] = field(default_factory=dict)
    damaged_indexes: dict[str, str] = field(default_factory=dict)  # index name -> why
    damaged_packs: dict[str, str] = field(default_factory=dict)  # pack id -> why (trailer)
    unindexed: set[str] = field(default_factory=set)  # packs read from their trailers
    index_names: list[str] = field(default_factory=list)
    superseded: set[str] = field(default_factory=set)  # index files a newer one replaced (prune removes them)

    def add(self, pack_id: str, entries: list[BlobEntry]) -> None:
        self.packs[pack_id] = entries
        for e in entries:
            if (e.digest, pack_id) not in self.dropped:
                self.locations.setdefault(e.digest, (pack_id, e.offset, e.length))

    def drop(self, digest: bytes, pack_id: str) -> None:
        self.dropped.add((digest, pack_id))
        loc = self.locations.get(digest)
        if loc is not None and loc[0] == pack_id:
            del self.locations[digest]
            for pid, entries in self.packs.items():  # another copy of the chunk, if any
                if pid != pack_id and (digest, pid) not in self.dropped:
                    for e in entries:
                        if e.digest == digest:
                            self.locations[digest] = (pid, e.offset, e.length)
                            return


class PackIndex:
    """Loads, caches and extends a repository's index (thread-safe)."""

    def __init__(
        self,
        root: Path,
        repo_id: str,
        cache_dir: Path | None = None,
        cipher: RepositoryCipher | None = None,
        packs: PackObjects | None = None,
    ) -> None:
        """``cipher``: an encrypted repository's: index files are sealed (their path as associated
        data) and pack trailers too.  The local cache holds only keyed chunk ids and pack ids.
        ``packs``: where the pack files are (default: files under ``root``)."""
        self.root = root
        self.packs = packs if packs is not None else LocalPacks(root)
        self.cipher = cipher
        self.index_dir = root / "index"
        self.packs_dir = root / "packs"
        self.tmp_dir = root / "tmp"
        self.repo_id = repo_id
        self.cache_dir = cache_dir if cache_dir is not None else default_cache_dir()
        self.lock = threading.RLock()
        self.state: IndexState | None = None
        self._pending: dict[str, list[BlobEntry]] = {}
        self._published: set[str] = set()  # pending packs this process stored itself (``added``)
        self._pending_dropped: list[tuple[bytes, str]] = []

    # -- reading ---------------------------------------------------------------------
    def pack_path(self, pack_id: str) -> Path:
        return self.packs_dir / pack_id[:2] / pack_id

    def pack_ids_on_disk(self) -> set[str]:
        return self.packs.ids()

    def index_names(self) -> list[str]:
        return self.packs.index_names()

    def current(self) -> IndexState:
        with self.lock:
            if self.state is None:
                self.refresh()
            assert self.state is not None
            return self.state

    def refresh(self) -> IndexState:
        """Re-read what changed on disk: new or removed index files, packs without an index."""
        with self.lock:
            names = self.index_names()
            state = self.state
            if state is None or state.index_names != names:
                state = self._load_indexes(names)
            on_disk = self.pack_ids_on_disk()
            for pid in list(state.packs):
                if pid not in on_disk:  # pruned, or lost: its chunks are missing
                    self._forget_pack(state, pid)
            for pid in sorted(on_disk - set(state.packs) - set(state.damaged_packs)):
                try:
                    entries = self.packs.trailer(pid, self.cipher)
                except FileNotFoundError:
                    continue
                except PackDamaged as err:
                    state.damaged_packs[pid] = err.reason
                    continue
                state.add(pid, entries)
                state.unindexed.add(pid)
                self._pending[pid] = entries  # the next writer indexes it (persists the rebuild)
            self.state = state
            return state

    @staticmethod
    def _forget_pack(state: IndexState, pack_id: str) -> None:
        for e in state.packs.pop(pack_id, []):
            loc = state.locations.get(e.digest)
            if loc is not None and loc[0] == pack_id:
                del state.locations[e.digest]
        state.unindexed.discard(pack_id)

    def _cache_path(self) -> Path:
        return self.cache_dir / f"{self.repo_id}.json"

    def _load_indexes(self, names: list[str]) -> IndexState:
        state = IndexState(index_names=list(names))
        cached = self._read_cache(names)
        if cached is not None:
            packs, dropped, superseded = cached
        else:
            packs, dropped = {}, set()
            superseded: set[str] = set()
            docs: dict[str, tuple[dict[str, list[BlobEntry]], list[tuple[bytes, str]]]] = {}
            for name in names:
                try:
                    raw = self.packs.read_index(name)
                    if self.cipher is not None:
                        raw = self.cipher.open_object(raw, f"index/{name}")
                    p, d, s = decode_index(json.loads(raw))
                except FileNotFoundError:
                    continue
                except (OSError, ValueError) as err:
                    state.damaged_indexes[name] = str(err)
                    log.warning("index file %s of repository %s is damaged (%s): read from the packs", name, self.root, err)
                    continue
                docs[name] = (p, d)
                superseded.update(s)
            for name, (p, d) in docs.items():
                if name in superseded:
                    continue
                packs.update(p)
                dropped.update(d)
            superseded &= set(names)
            if not state.damaged_indexes:
                self._write_cache(names, packs, dropped, superseded)
        state.superseded = set(superseded)
        state.dropped = set(dropped)
        for pid, entries in packs.items():
            state.add(pid, entries)
        return state

    def _read_cache(
        self, names: list[str]
    ) -> tuple[dict[str, list[BlobEntry]], set[tuple[bytes, str]], set[str]] | None:
        try:
            doc = json.loads(self._cache_path().read_bytes())
            if doc.get("cache_version") != CACHE_VERSION or doc.get("index_names") != names:
                return None
            packs, dropped, superseded = decode_index(doc["index"])
        except (OSError, ValueError, KeyError, AttributeError):
            return None  # no cache, or a damaged one: read the index files
        return packs, set(dropped), set(superseded)

    def _write_cache(
        self,
        names: list[str],
        packs: dict[str, list[BlobEntry]],
        dropped: set[tuple[bytes, str]],
        superseded: set[str],
    ) -> None:
        index = encode_index(packs, sorted(dropped), sorted(superseded))
        doc = {"cache_version": CACHE_VERSION, "index_names": names, "index": index}
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            atomic_write(self._cache_path(), _compact(doc), tmp_dir=self.cache_dir, fsync=False)
        except OSError as err:  # a cache only: reading goes on without it
            log.info("cannot write the index cache %s: %s", self._cache_path(), err)

    # -- writing ---------------------------------------------------------------------
    def added(self, pack_id: str, entries: list[BlobEntry]) -> None:
        """A pack this process published: usable at once, indexed by the next ``flush``."""
        with self.lock:
            self.current().add(pack_id, entries)
            self._pending[pack_id] = entries
            self._published.add(pack_id)

    def dropped(self, digest: bytes, pack_id: str) -> None:
        with self.lock:
            self.current().drop(digest, pack_id)
            self._pending_dropped.append((digest, pack_id))

    def flush(self) -> None:
        """Write the pending packs (and drops) as one new index file, durably."""
        with self.lock:
            if not self._pending and not self._pending_dropped:
                return
            # A pack found by a refresh may have been pruned since: only those are looked for
            # (a LIST of every pack, costly on object storage); this process's own are stored.
            found = [pid for pid in self._pending if pid not in self._published]
            on_disk = self.pack_ids_on_disk() if found else set()
            packs = {pid: e for pid, e in self._pending.items() if pid in self._published or pid in on_disk}
            self.write_index(packs, self._pending_dropped)
            self._pending.clear()
            self._published.clear()
            self._pending_dropped = []
            if self.state is not None:
                self.state.unindexed.clear()

    def clear_pending(self) -> None:
        """What was pending is named by an index just written (prune's)."""
        with self.lock:
            self._pending.clear()
            self._published.clear()
            self._pending_dropped = []

    def write_index(
        self, packs: dict[str, list[BlobEntry]], dropped: list[tuple[bytes, str]], supersedes: list[str] = ()  # type: ignore[assignment]
    ) -> str:
        name = f"{secrets.token_hex(32)}.json"
        data = _compact(encode_index(packs, dropped, supersedes))
        if self.cipher is not None:
            data = bytes(self.cipher.seal_object(data, f"index/{name}"))
        self.packs.write_index(name, data)
        with self.lock:
            if self.state is not None:
                self.state.index_names = sorted([*self.state.index_names, name])
        return name
