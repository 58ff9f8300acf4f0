"""``SmbWriter``: a writer of one remote file with bounded write-behind.

A restore writes a VM's disks over SMB; one write request at a time is bound by the round trip
(74 MiB/s on loopback here), so ``write`` hands each piece to one of ``depth`` worker threads as
a positioned SMB write and returns; at most ``depth`` pieces are in flight (``write`` waits for
the oldest beyond that), so memory stays at ``depth`` chunks.  An error of a piece surfaces on a
later ``write`` or on ``flush``/``close``, which wait for every piece.

After a lost connection the file is opened again (not truncated) on a new one and the piece
sent again at its offset: positioned writes are idempotent.  A busy server is asked again
after a pause; both give up after the owner's retry delays (``smb-lost``).
"""

from __future__ import annotations

import io
import logging
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol

from hvtui.errors import HvtuiError
from hvtui.hosts.smb.errors import Where, is_connection_lost, is_transient, translate
from hvtui.hosts.smb.reader import CHUNK, ensure_credits, wait_for_credits
from hvtui.hosts.smb.shares import Mapped

log = logging.getLogger(__name__)


class WriterOwner(Protocol):
    """What a writer needs of the ``SmbRemoteFiles`` that opened it."""

    host_name: str
    retry_delays: tuple[float, ...]
    sleep: Callable[[float], None]

    def where(self, mapped: Mapped) -> Where: ...

    def drop_connection(self, server: str) -> None: ...

    def size(self, host_path: str) -> int: ...

    def open_raw_for_writing(self, mapped: Mapped, reconnecting: bool = False) -> Any: ...


class SmbWriter(io.RawIOBase):
    """Creates or truncates the file; ``write`` returns once the bytes are queued."""

    def __init__(self, files: WriterOwner, mapped: Mapped, raw: Any, depth: int, chunk: int = CHUNK) -> None:
        super().__init__()
        self._files = files
        self._mapped = mapped
        self._raw = raw
        self._generation = 0
        self._reopen_lock = threading.Lock()
        self._depth = max(1, depth)
        self._chunk = max(64 * 1024, min(chunk, int(raw.fd.connection.max_write_size)))
        self._pool = ThreadPoolExecutor(max_workers=self._depth, thread_name_prefix="smb-write")
        self._pending: deque[Future[None]] = deque()
        self._position = 0
        ensure_credits(raw, self._depth, self._chunk, mapped.server)

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    @property
    def in_flight(self) -> int:
        """Pieces handed to the workers since the last wait for them (written or not yet)."""
        return len(self._pending)

    def write(self, data: Any) -> int:
        if self.closed:
            raise ValueError("write to a closed SMB writer")
        view = memoryview(data).cast("B")
        for start in range(0, len(view), self._chunk):
            piece = bytes(view[start : start + self._chunk])  # the caller may reuse its buffer at once
            while len(self._pending) >= self._depth:
                self._pending.popleft().result()
            self._pending.append(self._pool.submit(self._write_piece, self._position, piece))
            self._position += len(piece)
        return len(view)

    def flush(self) -> None:
        """Wait until every queued piece is written (the first error is raised)."""
        while self._pending:
            self._pending.popleft().result()

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            self._position = offset
        elif whence == io.SEEK_CUR:
            self._position += offset
        else:
            self.flush()
            self._position = self._files.size(self._mapped.host_path) + offset
        return self._position

    def tell(self) -> int:
        return self._position

    def truncate(self, size: int | None = None) -> int:
        self.flush()
        target = self._position if size is None else size
        return self._retrying(lambda: self._raw.truncate(target))

    def close(self) -> None:
        if self.closed:
            return
        try:
            self.flush()
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)
            try:
                self._raw.close()
            except Exception as exc:  # every write was acknowledged; a dead session's handle goes with it
                if not is_connection_lost(exc):
                    raise translate(exc, self._files.where(self._mapped), f"write {self._mapped.host_path}") from None
                log.info("%s: closing %s after a lost connection: %s", self._files.host_name, self._mapped.unc, exc)
            finally:
                super().close()

    # -- inside ---------------------------------------------------------------------------

    def _write_piece(self, offset: int, piece: bytes) -> None:
        """On a worker: ``piece`` at ``offset``, in requests the server accepts."""
        done = 0
        while done < len(piece):
            count = self._retrying(lambda done=done: self._send(offset + done, piece[done:]))
            if not count:
                raise translate(OSError("the server accepted no bytes"), self._files.where(self._mapped), f"write {self._mapped.host_path}")
            done += count

    def _send(self, offset: int, data: bytes) -> int:
        fd = self._raw.fd
        size = min(len(data), int(fd.connection.max_write_size))
        return int(fd.write(data[:size], offset))

    def _retrying(self, action: Callable[[], Any]) -> Any:
        files = self._files
        attempt = credit_waits = 0
        reconnecting = False
        while True:
            generation = self._generation
            try:
                return action()
            except HvtuiError:
                raise
            except Exception as exc:  # every smbprotocol failure is translated or retried
                if wait_for_credits(exc, credit_waits):
                    credit_waits += 1
                    continue
                lost = is_connection_lost(exc)
                if not (lost or is_transient(exc)) or attempt >= len(files.retry_delays):
                    raise translate(exc, files.where(self._mapped), f"write {self._mapped.host_path}", reconnecting or lost) from None
                files.sleep(files.retry_delays[attempt])
                attempt += 1
                if lost:
                    reconnecting = True
                    self._reopen(generation)

    def _reopen(self, generation: int) -> None:
        """Open the file again on a new connection (once, whichever worker notices first)."""
        with self._reopen_lock:
            if self._generation != generation:
                return
            self._files.drop_connection(self._mapped.server)
            self._raw = self._files.open_raw_for_writing(self._mapped, reconnecting=True)
            self._generation += 1
            ensure_credits(self._raw, self._depth, self._chunk, self._mapped.server)
