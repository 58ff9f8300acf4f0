"""Chunk codecs: raw, lz4 (block) and zstd, chosen per repository, recorded per chunk.

The codec byte sits in every chunk object's header (store.py), so a repository can hold
chunks of several codecs (its configuration changed, or it was migrated) and every reader
decodes each by its own byte.  What a backup *writes* is the repository's configured
``Compressor``; what a reader *accepts* is any codec below.

zstd frames are written without a content size or checksum: the header's ``raw_len`` bounds
the output and the chunk id (SHA-256) already covers the content.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import lz4.block
import zstandard

from hvtui.config.settings import DEFAULT_COMPRESSION, DEFAULT_ZSTD_LEVEL

CODEC_RAW = 0
CODEC_LZ4 = 1
CODEC_ZSTD = 2
CODEC_NAMES = {CODEC_RAW: "raw", CODEC_LZ4: "lz4", CODEC_ZSTD: "zstd"}
COMPRESSIONS = ("lz4", "zstd")  # what a repository's configuration may ask for
MIN_ZSTD_LEVEL = 1
MAX_ZSTD_LEVEL = 19

SAMPLE = 16 * 1024


class CorruptPayload(Exception):
    """A chunk's payload does not decode with its codec; the message names the codec."""


def _sample_compresses(data: bytes | bytearray | memoryview) -> bool:
    """Predict from three 16 KiB samples whether compressing the whole chunk is worth it.

    Random (already compressed or encrypted) data is a third of a typical VM disk and no
    codec gains anything on it; trying anyway costs a core about 1 s per GB with lz4 (more
    with zstd).  The lz4 samples (start, middle, end) cost 5 % of that; a chunk whose samples
    save under 3 % is stored raw.
    """
    view = memoryview(data)
    mid = len(view) // 2
    sample = b"".join((view[:SAMPLE], view[mid : mid + SAMPLE], view[-SAMPLE:]))
    return len(lz4.block.compress(sample, store_size=False)) < len(sample) * 0.97


_local = threading.local()  # zstandard's (de)compressor objects are not thread-safe: one per thread


def _zstd_compressor(level: int) -> zstandard.ZstdCompressor:
    cache = getattr(_local, "compressors", None)
    if cache is None:
        cache = _local.compressors = {}
    compressor = cache.get(level)
    if compressor is None:
        compressor = cache[level] = zstandard.ZstdCompressor(level=level, write_content_size=False, write_checksum=False)
    return compressor


def _zstd_decompressor() -> zstandard.ZstdDecompressor:
    decompressor = getattr(_local, "decompressor", None)
    if decompressor is None:
        decompressor = _local.decompressor = zstandard.ZstdDecompressor()
    return decompressor


@dataclass(frozen=True, slots=True)
class Compressor:
    """How a repository compresses the chunks a backup writes."""

    name: str = DEFAULT_COMPRESSION
    level: int = DEFAULT_ZSTD_LEVEL  # zstd only

    def __post_init__(self) -> None:
        if self.name not in COMPRESSIONS:
            raise ValueError(f"unknown compression {self.name!r} (use {' or '.join(COMPRESSIONS)})")
        if not MIN_ZSTD_LEVEL <= self.level <= MAX_ZSTD_LEVEL:
            raise ValueError(f"zstd level must be between {MIN_ZSTD_LEVEL} and {MAX_ZSTD_LEVEL}, not {self.level}")

    def describe(self) -> str:
        return f"zstd level {self.level}" if self.name == "zstd" else "lz4"

    def compress(self, data: bytes | bytearray | memoryview) -> tuple[int, bytes | None]:
        """``(codec, payload)``; ``(CODEC_RAW, None)`` when compression saves less than 1/16.

        Storing incompressible chunks raw keeps restores of random data at memcpy speed and
        costs at most 6 % of space on data that barely compresses.
        """
        raw_len = len(data)
        if raw_len >= 4 * SAMPLE and not _sample_compresses(data):
            return CODEC_RAW, None
        if self.name == "zstd":
            codec, packed = CODEC_ZSTD, _zstd_compressor(self.level).compress(data)
        else:
            codec, packed = CODEC_LZ4, lz4.block.compress(data, store_size=False)
        if len(packed) <= raw_len - raw_len // 16:
            return codec, packed
        return CODEC_RAW, None


LZ4 = Compressor()


def decompress(codec: int, payload: bytes | bytearray | memoryview, raw_len: int) -> bytes:
    """The data of a compressed payload; ``CorruptPayload`` naming the codec when it does
    not decode, ``KeyError`` for a codec this hvtui does not know."""
    if codec == CODEC_LZ4:
        try:
            return lz4.block.decompress(payload, uncompressed_size=raw_len)
        except lz4.block.LZ4BlockError:
            raise CorruptPayload("does not decompress (corrupt lz4 payload)") from None
    if codec == CODEC_ZSTD:
        try:
            return _zstd_decompressor().decompress(payload, max_output_size=raw_len)
        except zstandard.ZstdError as err:
            raise CorruptPayload(f"does not decompress (corrupt zstd frame: {err})") from None
    raise KeyError(codec)
