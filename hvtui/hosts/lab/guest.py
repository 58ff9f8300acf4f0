"""Deterministic guest activity and data patterns for lab disks.

A running lab VM "writes" to its disk once per simulated minute (a tick).  What it writes
in tick ``t`` depends only on the VM's seed and ``t``, so the same catch-up moments always
give the same bytes.  Writes land in a small hot region (logs, page file) and now and then
in a larger warm region, which bounds how far a differencing file can grow however long
the lab runs: at most hot + warm bytes per file.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

TICK_SECONDS = 60
# A lab left alone for a month catches up at most this many ticks in one go.
MAX_TICKS_PER_CATCH_UP = 180
WRITE_ALIGN = 4096
MIB = 1 << 20


@dataclass(frozen=True, slots=True)
class GuestProfile:
    kib_per_minute: int = 0  # 0: an idle guest that writes nothing
    hot_offset: int = 2 * MIB  # where the busy region starts (inside the base's data)
    hot_size: int = 4 * MIB
    warm_size: int = 24 * MIB  # follows the hot region
    warm_share: float = 0.04  # fraction of writes that go to the warm region

    @classmethod
    def from_dict(cls, data: dict | None) -> GuestProfile:
        if not data:
            return cls()
        return cls(
            kib_per_minute=int(data.get("kib_per_minute", 0)),
            hot_offset=int(data.get("hot_offset", 2 * MIB)),
            hot_size=int(data.get("hot_size", 4 * MIB)),
            warm_size=int(data.get("warm_size", 24 * MIB)),
            warm_share=float(data.get("warm_share", 0.04)),
        )

    def to_dict(self) -> dict:
        return {
            "kib_per_minute": self.kib_per_minute,
            "hot_offset": self.hot_offset,
            "hot_size": self.hot_size,
            "warm_size": self.warm_size,
            "warm_share": self.warm_share,
        }


def tick_of(timestamp: float) -> int:
    return int(timestamp // TICK_SECONDS)


def ticks_to_apply(last_tick: int | None, now_tick: int) -> range:
    """The ticks a catch-up applies: those after ``last_tick``, capped to the latest few."""
    if last_tick is None or now_tick <= last_tick:
        return range(0)
    return range(max(last_tick + 1, now_tick - MAX_TICKS_PER_CATCH_UP + 1), now_tick + 1)


def tick_writes(seed: int, tick: int, profile: GuestProfile, virtual_size: int) -> list[tuple[int, bytes]]:
    """The (offset, data) writes of one tick."""
    if profile.kib_per_minute <= 0:
        return []
    rng = random.Random(f"guest:{seed}:{tick}")
    budget = max(WRITE_ALIGN, profile.kib_per_minute * 1024)
    count = rng.randint(1, 3)
    out: list[tuple[int, bytes]] = []
    for _ in range(count):
        length = max(WRITE_ALIGN, (budget // count) // WRITE_ALIGN * WRITE_ALIGN)
        if rng.random() < profile.warm_share:
            start, size = profile.hot_offset + profile.hot_size, profile.warm_size
        else:
            start, size = profile.hot_offset, profile.hot_size
        size = max(WRITE_ALIGN, min(size, virtual_size - start - length))
        if start + length > virtual_size:
            start = 0
        offset = start + rng.randrange(0, max(1, size - length)) // WRITE_ALIGN * WRITE_ALIGN
        out.append((offset, pattern_bytes(rng, length)))
    return out


def cpu_usage(seed: int, tick: int) -> int:
    rng = random.Random(f"cpu:{seed}:{tick}")
    return rng.randint(1, 45)


def pattern_bytes(rng: random.Random, length: int) -> bytes:
    """Small writes: half text-like (compressible), half random."""
    if rng.random() < 0.5:
        return rng.randbytes(length)
    return text_bytes(rng, length)


_WORDS = (
    b"INFO", b"WARN", b"svchost", b"request", b"completed", b"in", b"ms", b"user", b"session", b"opened",
    b"closed", b"GET", b"/api/v1/items", b"200", b"404", b"cache", b"hit", b"miss", b"db", b"query",
    b"commit", b"rollback", b"backup", b"volume", b"shadow", b"copy", b"service", b"started", b"stopped",
)


_text_pool: bytes | None = None


def _pool() -> bytes:
    global _text_pool
    if _text_pool is None:
        rng = random.Random("hvtui-lab-text-pool")
        lines = []
        size = 0
        while size < 256 * 1024:
            line = b" ".join(rng.choice(_WORDS) for _ in range(rng.randint(4, 10))) + b"\r\n"
            lines.append(line)
            size += len(line)
        _text_pool = b"".join(lines)
    return _text_pool


def text_bytes(rng: random.Random, length: int) -> bytes:
    """Log-like text: compresses well, rarely repeats exactly (every 4 KiB starts with a stamp)."""
    pool = _pool()
    out = bytearray()
    while len(out) < length:
        start = rng.randrange(0, len(pool) - 4096)
        out += b"%010d " % rng.randrange(10**10)
        out += pool[start : start + 4085]
    return bytes(out[:length])


_random_pools: dict[int, bytes] = {}


def _random_pool(size: int) -> bytes:
    """One shared random pool (blocks differ by their per-seed, per-index XOR key)."""
    if size not in _random_pools:
        _random_pools[size] = hashlib.shake_128(b"hvtui-lab-random-pool").digest(size)
    return _random_pools[size]


class BlockSource:
    """Fast deterministic block payloads: random (incompressible, unique), text, zeros.

    Random blocks are a slice of a shared random pool XOR-ed with a per-block key, so
    generating hundreds of MiB takes about a second and no two blocks are alike (neither
    byte-equal nor shifted copies a content-defined chunker could find).
    """

    POOL_SIZE = 8 * MIB

    def __init__(self, seed: int | str, block_size: int = MIB) -> None:
        self.block_size = block_size
        self.seed = str(seed)
        self._pool = _random_pool(self.POOL_SIZE + block_size)
        self._rng = random.Random(f"blocks:{self.seed}")
        self._text: bytes | None = None

    def random_block(self, index: int) -> bytes:
        start = random.Random(f"{self.seed}:{index}").randrange(0, self.POOL_SIZE) // 8 * 8
        key = hashlib.blake2b(f"{self.seed}:{index}".encode(), digest_size=64).digest()
        mask = key * (self.block_size // len(key))
        value = int.from_bytes(self._pool[start : start + self.block_size], "little") ^ int.from_bytes(mask, "little")
        return value.to_bytes(self.block_size, "little")

    def text_block(self, index: int) -> bytes:
        if self._text is None:
            self._text = text_bytes(random.Random(f"text:{self.seed}"), 2 * self.block_size)
        shift = random.Random(f"{self.seed}:t:{index}").randrange(0, self.block_size) // 16 * 16
        stamp = f"[block {index:08d} of {self.seed}]".encode()
        return (stamp + self._text[shift : shift + self.block_size])[: self.block_size]

    def mixed_block(self, index: int, random_share: float = 0.5) -> bytes:
        """A block that is partly random and partly text, with a zero tail now and then."""
        rng = random.Random(f"{self.seed}:m:{index}")
        kind = rng.random()
        if kind < random_share:
            return self.random_block(index)
        block = bytearray(self.text_block(index))
        if rng.random() < 0.3:
            cut = rng.randrange(self.block_size // 4, self.block_size) // 4096 * 4096
            block[cut:] = bytes(self.block_size - cut)
        return bytes(block)
