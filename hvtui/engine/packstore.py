"""The chunk store of a format-2 repository: chunks in pack files, found through the index.

It answers the same questions as format 1's ``ChunkStore`` (has, get, a sink for the backup
pipeline, what to make durable before a manifest), so backup, restore, verify and prune
work on either format.  See packfile.py (the files) and packindex.py (the index).
In an encrypted repository (``cipher``) chunk ids are keyed and every blob is sealed with
its chunk id as associated data: a blob that does not authenticate is damaged, named by
its pack and offset, and never decoded.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from hvtui.engine.crypto import OVERHEAD, NotAuthentic, RepositoryCipher
from hvtui.engine.packfile import DEFAULT_PACK_SIZE, PackDamaged, PackWriter
from hvtui.engine.packindex import PackIndex
from hvtui.engine.packobjects import LocalPacks, PackObjects
from hvtui.engine.store import (
    HEADER,
    MAGIC,
    ChunkDamaged,
    ChunkMissing,
    ChunkQuarantined,
    chunk_id,
    decode_chunk,
    disk_error,
)

# A pack whose referenced chunks fill less than this share of it is rewritten by prune
# (restic's --max-unused plays the same role).
REPACK_BELOW = 0.5
READ_SPAN = 16 * 1024 * 1024  # get_many's largest single read


class PackStore:
    """``packs/`` and ``index/`` of a repository; thread-safe."""

    def __init__(
        self,
        root: Path,
        repo_id: str,
        pack_size: int = DEFAULT_PACK_SIZE,
        cache_dir: Path | None = None,
        cipher: RepositoryCipher | None = None,
        packs: PackObjects | None = None,
    ) -> None:
        """``packs``: where the pack files are (default: files under ``root/packs``)."""
        self.root = root
        self.packs = packs if packs is not None else LocalPacks(root)
        self.cipher = cipher
        self.tmp_dir = root / "tmp"
        self.packs_dir = root / "packs"
        self.pack_size = pack_size
        self.index = PackIndex(root, repo_id, cache_dir, cipher, self.packs)

    # -- index -------------------------------------------------------------------
    def refresh(self) -> None:
        """Re-read the index (packs and index files other processes added or removed)."""
        self.index.refresh()

    def location(self, digest: bytes) -> tuple[str, int, int] | None:
        return self.index.current().locations.get(digest)

    def has(self, digest: bytes) -> bool:
        return digest in self.index.current().locations

    def iter_ids(self) -> list[bytes]:
        return list(self.index.current().locations)

    def pack_path(self, pack_id: str) -> Path:
        return self.index.pack_path(pack_id)

    def chunk_id(self, data: bytes | bytearray | memoryview) -> bytes:
        """The id a chunk gets here: HMAC-SHA256 under the id key when encrypted, else SHA-256."""
        return self.cipher.chunk_id(data) if self.cipher is not None else chunk_id(data)

    def decode(self, digest: bytes, blob: bytes, pack_id: str, offset: int, verify: bool = True) -> bytes:
        """The chunk's data from its blob as stored: opened (encrypted), decompressed, re-hashed."""
        if self.cipher is None:
            return decode_chunk(digest, blob, verify)
        try:
            plain = self.cipher.open_reused(blob, digest)
        except NotAuthentic as err:
            raise ChunkDamaged(digest, f"{err} (pack {pack_id[:16]}, offset {offset})") from None
        return decode_chunk(digest, plain, verify, self.cipher.chunk_id)  # type: ignore[arg-type]  # a view: read at once

    def seal(self, digest: bytes, header: bytes, payload: bytes | bytearray | memoryview) -> tuple[bytes, bytes | bytearray | memoryview]:
        """A chunk object as written into a pack: (header, payload), or (sealed object, b"")."""
        if self.cipher is None:
            return header, payload
        return self.cipher.seal_parts(header, payload, digest), b""

    # -- reading -----------------------------------------------------------------
    def read_blob(self, digest: bytes) -> tuple[bytes, str]:
        """The chunk object's bytes and the pack they came from."""
        loc = self.location(digest)
        if loc is None:
            raise self.missing(digest)
        pack_id, offset, length = loc
        try:
            blob = self.packs.read(pack_id, offset, length)
        except FileNotFoundError:
            raise ChunkMissing(digest) from None
        except OSError as err:
            raise ChunkDamaged(digest, f"unreadable in pack {pack_id[:16]} ({err.strerror})") from None
        if len(blob) != length:
            raise ChunkDamaged(digest, f"truncated (pack {pack_id[:16]} ends inside it)")
        return blob, pack_id

    def _offset(self, digest: bytes) -> int:
        """Where the chunk sits in its pack, for a message (-1: no longer indexed)."""
        loc = self.location(digest)
        return loc[1] if loc is not None else -1

    def get(self, digest: bytes, verify: bool = True) -> bytes:
        blob, pack_id = self.read_blob(digest)
        return self.decode(digest, blob, pack_id, self._offset(digest), verify)

    def get_many(self, digests: list[bytes], verify: bool = True) -> Iterator[tuple[bytes, bytes]]:
        """(digest, data) of each chunk, neighbouring blobs of a pack read together, at most
        ``READ_SPAN`` bytes at a time: on object storage one ranged GET per span instead of
        one per chunk. For reading back what was just written (they sit side by side)."""
        for span in self.spans(digests):
            yield from self.read_span(span, verify)

    def spans(self, digests: list[bytes]) -> list[list[tuple[str, int, int, bytes]]]:
        """The chunks grouped as ``get_many`` reads them: (pack id, offset, length, digest) of
        neighbours in one pack, at most ``READ_SPAN`` bytes from the first to the last."""
        located = []
        for digest in digests:
            loc = self.location(digest)
            if loc is None:
                raise self.missing(digest)
            located.append((*loc, digest))
        located.sort()
        spans = []
        first = 0
        while first < len(located):
            pack_id, start = located[first][0], located[first][1]
            last = first + 1
            while (
                last < len(located) and located[last][0] == pack_id
                and located[last][1] + located[last][2] - start <= READ_SPAN
            ):  # fmt: skip
                last += 1
            spans.append(located[first:last])
            first = last
        return spans

    def read_span(
        self, span: list[tuple[str, int, int, bytes]], verify: bool | None = True
    ) -> Iterator[tuple[bytes, bytes]]:
        """(digest, data) of the chunks of one of ``spans``, in one read (thread-safe: a copy
        reads back several spans at once). ``verify=None`` in an encrypted store: each blob is
        only authenticated under its id (data b""): what a copy needs to know that what it
        sealed arrived, without decompressing it."""
        pack_id, start = span[0][0], span[0][1]
        end = max(offset + length for _pid, offset, length, _d in span)
        try:
            data = self.packs.read(pack_id, start, end - start)
        except FileNotFoundError:
            raise ChunkMissing(span[0][3]) from None
        except OSError as err:
            raise ChunkDamaged(span[0][3], f"unreadable in pack {pack_id[:16]} ({err.strerror})") from None
        for _pid, offset, length, digest in span:
            blob = data[offset - start : offset - start + length]
            if len(blob) != length:
                raise ChunkDamaged(digest, f"truncated (pack {pack_id[:16]} ends inside it)")
            if verify is None:  # authenticated, not opened further
                try:
                    self.cipher.open_reused(blob, digest)  # type: ignore[union-attr]
                except NotAuthentic as err:
                    raise ChunkDamaged(digest, f"{err} (pack {pack_id[:16]}, offset {offset})") from None
                yield digest, b""
            else:
                yield digest, self.decode(digest, blob, pack_id, offset, verify)

    def stored_size(self, digest: bytes) -> int:
        loc = self.location(digest)
        return loc[2] if loc is not None else 0

    def quarantined(self, digest: bytes) -> Path | None:
        """The pack a verify found this chunk damaged in, while no good copy is stored."""
        state = self.index.current()
        if digest in state.locations:
            return None
        for d, pack_id in state.dropped:
            if d == digest:
                return self.pack_path(pack_id)
        return None

    def missing(self, digest: bytes) -> ChunkMissing:
        bad = self.quarantined(digest)
        return ChunkQuarantined(digest, bad) if bad is not None else ChunkMissing(digest)

    # -- verify ------------------------------------------------------------------
    def check_quick(self, digest: bytes) -> str | None:
        """Presence in the index, the pack's size and the blob's header; reads 16 bytes."""
        loc = self.location(digest)
        if loc is None:
            return "quarantined by an earlier verify (its data was damaged)" if self.quarantined(digest) else "missing"
        pack_id, offset, length = loc
        try:
            header = self.packs.read(pack_id, offset, HEADER.size)
        except FileNotFoundError:
            return f"missing (its pack {pack_id[:16]} is gone)"
        except OSError as err:
            return f"unreadable ({err.strerror})"
        if len(header) < HEADER.size:
            return f"truncated (pack {pack_id[:16]} ends inside it)"
        if self.cipher is not None:  # sealed: the header is ciphertext; its size is what can be checked
            return None if length >= HEADER.size + OVERHEAD else f"too short to be a sealed chunk object ({length} bytes)"
        magic, _codec, _raw, pay_len = HEADER.unpack(header)
        if magic != MAGIC:
            return "bad header (not a chunk object)"
        if HEADER.size + pay_len != length:
            return f"its length in the index ({length}) does not match its header ({HEADER.size + pay_len})"
        return None

    def check_full(self, digest: bytes) -> tuple[str | None, int, str | None]:
        """(problem or None, bytes read, the pack to quarantine the blob in)."""
        try:
            blob, pack_id = self.read_blob(digest)
        except ChunkMissing:
            return ("quarantined by an earlier verify (its data was damaged)" if self.quarantined(digest) else "missing"), 0, None
        except ChunkDamaged as err:
            loc = self.location(digest)
            return err.reason, 0, loc[0] if loc else None
        try:
            self.decode(digest, blob, pack_id, self._offset(digest))
        except ChunkDamaged as err:
            return err.reason, len(blob), pack_id
        return None, len(blob), None

    def quarantine(self, digest: bytes, pack_id: str | None = None) -> Path | None:
        """Take a damaged blob out of the index (the pack keeps it as evidence); the next
        backup that reads the data stores it again, in a new pack."""
        loc = self.location(digest)
        if loc is None or (pack_id is not None and loc[0] != pack_id):
            return None
        self.index.dropped(digest, loc[0])
        try:
            self.index.flush()
        except OSError as err:
            raise disk_error(err, f"recording damaged chunk {digest.hex()[:16]} in the index") from err
        return self.pack_path(loc[0])

    def check_packs(self) -> dict[str, str]:
        """Every pack's trailer against the index: pack id -> problem."""
        state = self.index.refresh()
        problems = dict(state.damaged_packs)
        for pack_id, entries in sorted(state.packs.items()):
            try:
                trailer = self.packs.trailer(pack_id, self.cipher)
            except FileNotFoundError:
                problems[pack_id] = "missing"
                continue
            except PackDamaged as err:
                problems[pack_id] = err.reason
                continue
            if sorted((e.digest, e.offset, e.length) for e in trailer) != sorted(
                (e.digest, e.offset, e.length) for e in entries
            ):
                problems[pack_id] = "its trailer and the index disagree"
        return problems

    # -- writing -----------------------------------------------------------------
    def sink(self, owner: str, fsync: bool, batch_bytes: int = 0, batch_seconds: float = 0.0) -> PackSink:
        """``fsync`` is ignored (a pack is always synced whole before its rename), and so
        are the batch limits: a pack is handed over when it reaches the target size."""
        self.packs.settle()  # uploads an earlier, failed operation left running: not this one's
        return PackSink(self, owner)

    def publish_pack(self, writer: PackWriter, fsync: bool = True) -> int:
        size = self.packs.publish(writer, fsync)
        self.index.added(writer.pack_id, list(writer.entries))
        return size

    def publish_pack_background(self, writer: PackWriter) -> None:
        """Publish a finished pack while the caller goes on (several upload at once to an object
        store); its chunks become usable once it is stored. ``make_durable`` waits for it."""
        entries = list(writer.entries)
        self.packs.publish_background(writer, lambda _size: self.index.added(writer.pack_id, entries))

    def make_durable(self) -> None:
        """Before a manifest: the packs' directories, then an index naming the new packs."""
        self.make_durable_dirs()
        try:
            self.index.flush()
        except OSError as err:
            raise disk_error(err, "writing the index") from err

    def make_durable_dirs(self) -> None:
        self.packs.make_durable()

    # -- prune -------------------------------------------------------------------
    def unreferenced(self, referenced: set[bytes]) -> int:
        return sum(1 for d in self.index.refresh().locations if d not in referenced)

    def evidence_packs(self) -> dict[str, int | None]:
        """Packs holding a blob a verify found damaged, kept whole by prune as evidence: their
        sizes (None: the pack is gone)."""
        state = self.index.current()
        return {pid: self.packs.size(pid) for pid in sorted({pid for _d, pid in state.dropped if pid in state.packs})}

    def sweep(self, referenced: set[bytes], owner: str) -> tuple[int, int]:
        """Free the space of unreferenced chunks; (chunks removed, bytes freed).

        Under the exclusive lock (``owner``: its id, which tags the new packs' temporary
        files).  A pack with no referenced chunk is deleted; one whose referenced share is
        under ``REPACK_BELOW`` of its bytes is rewritten: its live chunks are re-read,
        hash-checked and copied into new packs (a pack with a damaged live chunk is kept
        whole).  Order: new packs durable, then a new index naming exactly the packs that
        stay (superseding every older index file) durable, and only then are packs and old
        index files deleted.  A crash at any moment leaves an index whose packs all exist,
        or name a pack about to be deleted, which a reader leaves out.  A pack holding a
        blob a verify found damaged is evidence and is kept whole (``evidence_packs``).
        """
        state = self.index.refresh()
        doomed: list[str] = []
        repack: list[str] = []
        evidence = {pid for _d, pid in state.dropped}
        for pack_id, entries in state.packs.items():
            if pack_id in evidence:
                continue
            total = sum(e.length for e in entries)
            live = sum(e.length for e in entries if e.digest in referenced and (e.digest, pack_id) not in state.dropped)
            if not live:
                doomed.append(pack_id)
            elif live < total * REPACK_BELOW:
                repack.append(pack_id)
        before = {e.digest for pid in doomed + repack for e in state.packs[pid]}
        if not doomed and not repack and not state.unindexed and not state.damaged_indexes and not state.superseded:
            return 0, 0
        repacked = self._repack(repack, referenced, owner)
        gone = set(doomed) | set(repacked)
        keep = {pid: entries for pid, entries in self.index.current().packs.items() if pid not in gone}
        dropped = [(d, p) for d, p in state.dropped if p in keep]
        old = list(self.index.current().index_names)
        self.index.write_index(keep, dropped, supersedes=old)
        self.index.clear_pending()
        freed = self.packs.delete(sorted(gone))
        self.packs.delete_indexes(old)
        self.index.state = None
        still = self.index.refresh().locations
        return sum(1 for d in before if d not in still), freed

    def _repack(self, pack_ids: list[str], referenced: set[bytes], owner: str) -> list[str]:
        """Copy the live chunks of ``pack_ids`` into new packs; the packs fully copied."""
        done: list[str] = []
        writer: PackWriter | None = None
        copied: set[bytes] = set()
        try:
            for pack_id in pack_ids:
                intact = True
                for entry in self.index.current().packs.get(pack_id, []):
                    if entry.digest not in referenced or entry.digest in copied:
                        continue
                    try:
                        blob = self._read_at(pack_id, entry.offset, entry.length)
                        self.decode(entry.digest, blob, pack_id, entry.offset)
                    except (OSError, ChunkDamaged):
                        intact = False  # keep the pack: it is the only copy, and evidence
                        continue
                    if writer is None:
                        writer = PackWriter(self.tmp_dir, owner, self.cipher)
                    writer.add(entry.digest, blob[: HEADER.size], memoryview(blob)[HEADER.size :])
                    copied.add(entry.digest)
                    if writer.size >= self.pack_size:
                        self.publish_pack(writer)
                        writer = None
                if intact:
                    done.append(pack_id)
            if writer is not None:
                self.publish_pack(writer)
                writer = None
        finally:
            if writer is not None:
                writer.discard()
        self.make_durable_dirs()
        return done

    def _read_at(self, pack_id: str, offset: int, length: int) -> bytes:
        blob = self.packs.read(pack_id, offset, length)
        if len(blob) != length:
            raise OSError(f"pack {pack_id[:16]} ends inside a chunk")
        return blob


@dataclass(slots=True)
class _Batch:
    writer: PackWriter


class PackSink:
    """Where the backup pipeline's writer thread puts new chunks: the current pack.

    A pack is handed to the publisher thread (``take``) once it reaches the target size;
    the publisher writes its trailer, fsyncs and renames it into ``packs/`` (or starts its
    upload: several upload at once, and ``make_durable`` waits for them).  A killed
    backup loses at most the packs not yet published (one or two target sizes of work).
    """

    def __init__(self, store: PackStore, owner: str) -> None:
        self.store = store
        self.owner = owner
        self.current: PackWriter | None = None

    def add(self, digest: bytes, codec: int, raw_len: int, payload: bytes | bytearray | memoryview) -> int:
        if self.store.has(digest):
            return 0
        if self.current is None:
            self.current = PackWriter(self.store.tmp_dir, self.owner, self.store.cipher)
        header = HEADER.pack(MAGIC, codec, raw_len, len(payload))
        return self.current.add(digest, *self.store.seal(digest, header, payload))

    def add_sealed(self, digest: bytes, sealed: bytes | bytearray) -> int:
        """A chunk object already sealed under this store's key for ``digest`` (a copy seals on
        its worker threads: ``cipher.seal(header ‖ payload, digest)``, what ``add`` writes)."""
        if self.store.has(digest):
            return 0
        if self.current is None:
            self.current = PackWriter(self.store.tmp_dir, self.owner, self.store.cipher)
        return self.current.add(digest, sealed, b"")

    def take(self, force: bool = False) -> _Batch | None:
        current = self.current
        if current is None or not current.entries:
            return None
        if force or current.size >= self.store.pack_size:
            self.current = None
            return _Batch(current)
        return None

    def publish(self, batch: _Batch) -> None:
        """Hand the pack over; it may still be uploading on return (``store.make_durable`` waits)."""
        self.store.publish_pack_background(batch.writer)

    def discard(self, batch: _Batch | None) -> None:
        if batch is not None:
            batch.writer.discard()

    def close(self) -> None:
        if self.current is not None:
            self.current.discard()
            self.current = None
