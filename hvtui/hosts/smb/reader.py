"""``SmbReader``: a seekable reader of one remote file with bounded parallel read-ahead.

smbprotocol's reads are synchronous, one request at a time, so throughput is bound by the round
trip (../shared/notes/smb.md §5).  This reader keeps up to ``depth`` chunk reads in flight: it
sends each READ as soon as it is due and takes the answers in order (the connection's receive
thread matches them by message id), with no thread of its own in between.  Read-ahead only runs
while the caller reads sequentially, and grows with the run: half of what the run has read so far, up to
``depth`` chunks.  After a seek only what is asked is fetched (in parallel chunks when it is
large), so an incremental backup's scattered block reads pull in at most half again what they
asked for, and a full read soon has ``depth`` requests in flight.

The chunk reads take turns over the owner's connections (lanes).  The first read-ahead sets the
other lanes up on a thread of their own (a connection costs several round trips) while the first
lane keeps reading; each joins in once it is ready.  Small reads (headers) use one connection only.

A lost connection is re-established and the file opened again on it at the same offset (the
other lanes carry on); a busy server is asked again after a pause; both give up after the
owner's retry delays (``smb-lost``).
"""

from __future__ import annotations

import io
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from hvtui.hosts.ratelimit import RateLimiter
from hvtui.hosts.smb import fastpath
from hvtui.hosts.smb.errors import Where, is_connection_lost, is_transient, translate
from hvtui.hosts.smb.shares import Mapped

log = logging.getLogger(__name__)

CHUNK = 4 * 1024 * 1024  # bytes per read request: half smbprotocol's usual 8 MiB max, so 4 in flight stay small
CREDIT_BYTES = 64 * 1024  # one SMB2 credit per 64 KiB of a request (MS-SMB2 3.1.5.2)
CREDIT_WAIT = 0.005  # seconds between looks for credits that other requests still hold
CREDIT_WAITS = 2000  # ~10 s of waiting for credits before it counts as a busy server


def ensure_credits(raw: Any, depth: int, chunk: int, server: str) -> None:
    """Ask the server for enough credits to keep ``depth`` requests of ``chunk`` bytes in flight.

    smbprotocol asks each request's own charge back, so the window stays at what the session
    started with (64 against Samba): one 4 MiB request at a time.  An ECHO asking for more costs
    one round trip per connection; a server that grants less just means fewer requests in flight.
    """
    connection = raw.fd.connection
    window = connection.sequence_window["high"] - connection.sequence_window["low"]
    needed = depth * ((chunk - 1) // CREDIT_BYTES + 1) + 8
    if window >= needed:
        return
    try:
        connection.echo(sid=raw.fd.tree_connect.session.session_id, credit_request=min(needed - window, 8192))
    except Exception:  # more credits are an optimisation; requests work with what there is
        log.debug("asking %s for more SMB credits failed", server, exc_info=True)


def wait_for_credits(exc: BaseException, waits: int) -> bool:
    """True (after a short pause) when ``exc`` says other requests hold the credits: they come
    back with their answers, so the request is worth sending again."""
    if "credits are available" not in str(exc) or waits >= CREDIT_WAITS:
        return False
    time.sleep(CREDIT_WAIT)
    return True


@dataclass(slots=True)
class _Queued:
    """A chunk read asked for: sent on ``raw`` (lane ``lane``, its ``generation``) when ``pending``
    is set; else it is read when its turn comes, after what sending it raised (``failure``)."""

    offset: int
    length: int
    lane: int
    raw: Any = None
    generation: int = 0
    pending: tuple[Any, Any] | None = None
    failure: Exception | None = None


class ReaderOwner(Protocol):
    """What a reader needs of the ``SmbRemoteFiles`` that opened it."""

    host_name: str
    connections: int
    rate_limiter: RateLimiter | None
    retry_delays: tuple[float, ...]
    sleep: Callable[[float], None]

    def where(self, mapped: Mapped) -> Where: ...

    def drop_connection(self, server: str, lane: int = 0) -> None: ...

    def open_raw(self, mapped: Mapped, operation: str, reconnecting: bool = False, lane: int = 0) -> Any: ...


class SmbReader(io.RawIOBase):
    """``read(n)`` returns fewer than ``n`` bytes only at the end of the file."""

    def __init__(self, files: ReaderOwner, mapped: Mapped, raw: Any, depth: int, chunk: int = CHUNK) -> None:
        super().__init__()
        self._files = files
        self._mapped = mapped
        self._size = int(raw.fd.end_of_file)
        self._chunk = max(64 * 1024, min(chunk, int(raw.fd.connection.max_read_size)))
        self._depth = max(1, depth)
        lanes = max(1, min(getattr(files, "connections", 1), self._depth))
        # The file open on each lane (None: not yet), and a count bumped each time a lane's is
        # opened again after a lost connection.
        self._raws: list[Any] = [raw] + [None] * (lanes - 1)
        self._generations = [0] * lanes
        self._reopen_lock = threading.Lock()
        self._unavailable: set[int] = set()  # lanes that could not connect: their reads go to lane 0
        self._connecting: dict[int, threading.Thread] = {}  # lanes being set up in the background
        self._queue: deque[_Queued] = deque()
        self._next = 0  # where the next chunk to queue starts
        self._buffer = b""
        self._buffer_offset = 0
        self._position = 0
        self._last_end: int | None = None  # where the previous read ended: a read starting there is sequential
        self._run = 0  # bytes read since the last seek (the sequential run)
        self._stats_lock = threading.Lock()
        self.bytes_fetched = 0  # bytes received from the server (read-ahead included)
        self.lane_bytes = [0] * lanes  # of which over each connection
        self._ensure_credits(raw)

    # -- io -------------------------------------------------------------------------------

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    @property
    def size(self) -> int:
        return self._size

    @property
    def in_flight(self) -> int:
        """Chunk reads asked of the server and not yet consumed (read-ahead included)."""
        return len(self._queue)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise ValueError(f"negative seek position {base + offset}")
        self._position = base + offset
        return self._position

    def readinto(self, buffer: Any) -> int:
        # The pieces go straight into the caller's buffer: one copy of each byte (the backup
        # pipeline borrows them through read_view instead, without that copy).
        view = memoryview(buffer).cast("B")
        done = 0
        for piece in self._pieces(len(view)):
            view[done : done + len(piece)] = piece
            done += len(piece)
        return done

    def read_view(self, size: int) -> memoryview:
        """The next ``size`` bytes (fewer only at the end of the file) lent, not copied: most often a
        view of the answer they arrived in, whose buffer is not reused while any view of it is alive.
        The backup pipeline hashes and compresses them there and releases the view when done."""
        pieces = list(self._pieces(size))
        if len(pieces) == 1:
            return memoryview(pieces[0])  # a view of its own: releasing it leaves the reader's
        return memoryview(b"".join(pieces))

    def readall(self) -> bytes:
        return self.read(-1)

    def read(self, size: int | None = -1) -> bytes:
        pieces = list(self._pieces(-1 if size is None else size))
        if len(pieces) == 1 and isinstance(pieces[0], bytes):
            return pieces[0]  # a whole chunk comes back uncopied
        return b"".join(pieces)

    def _pieces(self, size: int) -> Iterator[memoryview | bytes]:
        """The next ``size`` bytes (``-1``: to the end) as views into the fetched chunks."""
        if self.closed:
            raise ValueError("read from a closed SMB reader")
        start = self._position
        end = self._size if size < 0 else max(start, min(self._size, start + size))
        sequential = start == self._last_end
        self._run = (self._run if sequential else 0) + (end - start)
        ahead = min(self._depth * self._chunk, self._run // 2) if sequential else 0
        position = start
        while position < end:
            if self._buffer_offset <= position < self._buffer_offset + len(self._buffer):
                low, high = position - self._buffer_offset, min(end - self._buffer_offset, len(self._buffer))
                piece = self._buffer if low == 0 and high == len(self._buffer) else memoryview(self._buffer)[low:high]
                position += len(piece)
                self._position = self._last_end = position
                yield piece
                continue
            if not self._queue or self._queue[0].offset != position:
                self._drop_queue(position)
            # Ask for what this read needs, plus read-ahead while reading sequentially.
            self._fill(min(self._size, end + ahead), needed=end)
            queued = self._queue.popleft()
            self._buffer, self._buffer_offset = b"", queued.offset  # the old answer's buffer is free again
            self._buffer = self._fetch(queued)
            if not self._buffer:  # the file shrank under us: what there is, is all there is
                break
        self._position = self._last_end = position
        if ahead:
            self._fill(min(self._size, position + ahead))

    def close(self) -> None:
        if self.closed:
            return
        self._drop_queue(0)
        self._buffer = b""
        with self._reopen_lock:  # a lane still being set up closes its file itself when it is ready
            super().close()
        for raw in self._raws:
            if raw is not None:
                self._close_raw(raw)

    def _close_raw(self, raw: Any) -> None:
        try:
            raw.close()
        except Exception:  # a dead session cannot close the handle; the server drops it with the session
            log.debug("closing %s failed", self._mapped.unc, exc_info=True)

    # -- inside ---------------------------------------------------------------------------

    def _ensure_credits(self, raw: Any) -> None:
        ensure_credits(raw, self._depth, self._chunk, self._mapped.server)

    def _drop_queue(self, position: int) -> None:
        # Answers already asked for are taken and dropped: one left unclaimed would stay in the
        # connection's table of outstanding requests for good.
        for queued in self._queue:
            if queued.pending is not None:
                try:
                    fastpath.take_read(queued.raw.fd, queued.pending)
                except Exception:  # noqa: BLE001 - the data is not wanted; a dead connection shows on the next read
                    log.debug("dropping a read of %s failed", self._mapped.unc, exc_info=True)
        self._queue.clear()
        self._next = position

    def _fill(self, until: int, needed: int = 0) -> None:
        """Ask for chunks from ``self._next`` towards ``until``, at most ``depth`` in flight; past
        ``needed`` (what the caller waits for) only whole chunks, or up to the end of the file."""
        while self._next < until and len(self._queue) < self._depth:
            # Requests end on multiples of the chunk size, so that a caller's chunks (a divisor
            # of it) each lie within one answer.
            whole = self._chunk - self._next % self._chunk
            length = min(whole, until - self._next)
            if self._next >= needed and length < whole and until < self._size:
                break  # read ahead once a whole chunk fits: fewer, larger requests
            # The ready lane with the fewest reads in flight (the first when none are): reads one
            # at a time stay on one connection, a run's read-ahead takes turns over all of them.
            queued = [entry.lane for entry in self._queue]
            if queued:
                self._connect_lanes()
            lane = min(self._ready_lanes(), key=queued.count)
            if self._files.rate_limiter is not None:
                self._files.rate_limiter.take(length)
            self._queue.append(self._send(_Queued(self._next, length, lane)))
            self._next += length

    def _send(self, queued: _Queued) -> _Queued:
        """Send ``queued``'s READ now; one that cannot be sent (no credits yet, a lost connection)
        is read, with retries, when its turn comes."""
        try:
            queued.lane, queued.raw, queued.generation = self._lane(queued.lane)
            count = min(queued.length, int(queued.raw.fd.connection.max_read_size))
            queued.pending = fastpath.send_read(queued.raw.fd, queued.offset, count)
        except Exception as exc:  # noqa: BLE001 - _fetch retries it and names what failed
            queued.pending, queued.failure = None, exc
        return queued

    def _ready_lanes(self) -> list[int]:
        return [lane for lane, raw in enumerate(self._raws) if raw is not None]

    def _connect_lanes(self) -> None:
        """Set up, each on a thread of its own, the lanes that are not open yet (once)."""
        for lane, raw in enumerate(self._raws):
            if raw is None and lane not in self._unavailable and lane not in self._connecting:
                thread = threading.Thread(target=self._connect_lane, args=(lane,), name=f"hvtui-smb-lane-{lane}", daemon=True)
                self._connecting[lane] = thread
                thread.start()

    def _connect_lane(self, lane: int) -> None:
        try:
            raw = self._files.open_raw(self._mapped, "read", lane=lane)
        except Exception as err:  # noqa: BLE001 - open_raw names what failed; the first lane carries on
            # A server that takes fewer connections, or one down for now: the first connection
            # carries on (and reconnects on its own if it is lost).
            log.info("%s: a second SMB connection for %s failed (%s); reading on one", self._files.host_name,
                     self._mapped.unc, getattr(err, "detail", err))  # fmt: skip
            self._unavailable.add(lane)
            return
        self._ensure_credits(raw)
        with self._reopen_lock:
            if not self.closed:
                self._raws[lane] = raw
                return
        self._close_raw(raw)  # the reader was closed meanwhile

    def _lane(self, lane: int) -> tuple[int, Any, int]:
        """The lane to read on (``lane``, or the first one when ``lane`` is not set up), the file
        as opened there and its generation."""
        if self._raws[lane] is None:  # reads are only queued on ready lanes; the first always is
            lane = 0
        return lane, self._raws[lane], self._generations[lane]

    def _fetch(self, queued: _Queued) -> bytes | memoryview:
        """``queued``'s bytes (fewer only at the end of the file): its sent READ's answer, then
        what is still missing, read again after a failure."""
        files, offset, length, lane = self._files, queued.offset, queued.length, queued.lane
        pending, queued.pending = queued.pending, None
        failure, queued.failure = queued.failure, None
        got: bytes | bytearray | memoryview = b""
        attempt = credit_waits = 0
        label = f"read {self._mapped.host_path}"
        while len(got) < length:
            if pending is None and failure is None:
                lane, raw, generation = self._lane(lane)
            else:  # what was sent ahead (or tried to be), on the file as then opened
                raw, generation = queued.raw, queued.generation
            try:
                if failure is not None:  # sending it ahead failed: that failure first
                    raise failure
                if pending is not None:
                    piece = fastpath.take_read(raw.fd, pending)
                else:
                    count = min(length - len(got), int(raw.fd.connection.max_read_size))
                    piece = fastpath.read(raw.fd, offset + len(got), count)
            except Exception as exc:  # every smbprotocol failure is translated or retried
                pending = failure = None
                # A closed connection also says "no credits": smbprotocol charges them before it
                # finds the socket gone.
                alive = raw is None or getattr(raw.fd.connection.transport, "connected", True)
                if alive and wait_for_credits(exc, credit_waits):
                    credit_waits += 1
                    continue
                lost = is_connection_lost(exc) or not alive
                if lost and self._generations[lane] != generation:
                    continue  # sent on a connection this lane has replaced already: read it on the new one
                if not (lost or is_transient(exc)) or attempt >= len(files.retry_delays):
                    raise translate(exc, files.where(self._mapped), label, reconnecting=lost) from None
                log.info("%s: %s at offset %d failed (%s); retrying", files.host_name, self._mapped.unc, offset, exc)
                files.sleep(files.retry_delays[attempt])
                attempt += 1
                if lost:
                    self._reopen(lane, generation)
                continue
            pending = None
            if not piece:
                break
            # Most chunks arrive in one answer: kept as they came, not copied.
            if not got:
                got = piece
            else:
                got = got if isinstance(got, bytearray) else bytearray(got)
                got += piece
        with self._stats_lock:
            self.bytes_fetched += len(got)
            self.lane_bytes[lane] += len(got)
        return bytes(got) if isinstance(got, bytearray) else got

    def _reopen(self, lane: int, generation: int) -> None:
        """Open the file again on a new connection ``lane`` (once, whichever worker notices first)."""
        with self._reopen_lock:
            if self._generations[lane] != generation:
                return
            self._files.drop_connection(self._mapped.server, lane)
            self._raws[lane] = self._files.open_raw(self._mapped, "read", reconnecting=True, lane=lane)
            self._generations[lane] += 1
            self._ensure_credits(self._raws[lane])
