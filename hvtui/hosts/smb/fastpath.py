"""smbprotocol's receive path without its copies of every message.

smbprotocol 1.17 copies each 4 MiB read answer about nine times before our reader sees it:
socket pieces into a bytearray, that into bytes, the transform header's payload out, payload and
tag joined, the whole header packed again only to take its 32 bytes of AES-GCM associated data,
then the plain message's payload and the READ response's buffer.  On a 2-core jump box that is
more CPU than hashing and compressing the same data (bench/engine.py ``--tools hvtui,hvtui-smb``).

``install()`` swaps three steps of the receive thread, keeping their checks and errors:

- ``Tcp.recv`` receives each message with ``recv_into`` straight into one buffer per connection,
  reused for the next message (16 bytes spare);
- an encrypted message's transform header is read in place and the payload decrypted from that
  buffer, the tag moved to the spare bytes behind it (AES-GCM/CCM authenticate it as before: a
  changed byte anywhere is refused, never decoded), into a buffer from a small pool per connection,
  one that nothing looks at any more; the plain message is a view of it;
- a successful READ answer's header keeps the data behind it as a view, not a copy, so the
  buffer stays taken until every view of the data (the backup pipeline's lent chunks) is dropped.

``send_read`` sends a READ without waiting and ``take_read`` returns its data as such a view,
without the READ response's own copy.  Only smbprotocol releases this was written against are
touched (``PATCHED_RELEASES``); any other keeps its own receive path, slower but correct.
"""

from __future__ import annotations

import errno
import logging
import select
import struct
import threading
import timeit
import weakref
from typing import Any

from cryptography.hazmat.primitives.ciphers import aead
from smbprotocol import connection as smb_connection
from smbprotocol import transport as smb_transport
from smbprotocol.connection import Ciphers, Dialects
from smbprotocol.exceptions import SMBException
from smbprotocol.structure import BytesField

log = logging.getLogger(__name__)

PATCHED_RELEASES = ("1.17.",)  # the smbprotocol versions whose internals these replacements mirror
TRANSFORM_HEADER = 52  # MS-SMB2 2.2.41: protocol id 4, signature 16, nonce 16, size 4, reserved 2, flags 2, session 8
TAG = 16  # the AEAD tag, sent in the transform header's signature field
SMB2_HEADER = 64  # MS-SMB2 2.2.1
READ_RESPONSE = 16  # MS-SMB2 2.2.20, before its buffer
_READ = (8).to_bytes(2, "little")  # SMB2 READ's command code, at offset 12 of the header
_SUCCESS = bytes(4)  # STATUS_SUCCESS, at offset 8
_lock = threading.Lock()
_installed = False
# Whether this cryptography decrypts into a given buffer (an older one only into new bytes).
_DECRYPTS_INTO = hasattr(aead.AESGCM, "decrypt_into") and hasattr(aead.AESCCM, "decrypt_into")
POOLED_BUFFERS = 8  # decrypted-answer buffers kept per connection (answers the reader and the chunks it lent hold, plus spare)
# Each such buffer holds a 4 MiB READ answer (the reader's chunk) and its headers from the start:
# buffers sized to each answer would be replaced while read-ahead grows towards 4 MiB.
BUFFER_SIZE = 4 * 1024 * 1024 + 4096


class _Received(bytearray):
    """One message as received, ``size`` bytes, with room for the tag behind an encrypted payload."""

    __slots__ = ("size",)


class _TransformHeader(smb_connection.SMB2TransformHeader):
    """smbprotocol's transform header; a received one is kept as its buffer, not unpacked."""

    received: _Received | None = None

    def unpack(self, data: Any) -> bytes:
        if isinstance(data, _Received):
            self.received = data
            return b""
        return super().unpack(data)


class _ViewField(BytesField):
    """A bytes field that may hold a memoryview (smbprotocol's turns one into bytes: a copy)."""

    def _parse_value(self, value: Any) -> Any:
        return value if isinstance(value, memoryview) else super()._parse_value(value)


class _HeaderResponse(smb_connection.SMB2HeaderResponse):
    """smbprotocol's response header; a successful READ answer keeps its data as a view."""

    def unpack(self, data: Any) -> bytes:
        if len(data) > SMB2_HEADER + READ_RESPONSE and data[12:14] == _READ and data[8:12] == _SUCCESS:
            with memoryview(data) as view:
                super().unpack(view[:SMB2_HEADER])
            field = _ViewField()
            field.structure, field.name = weakref.proxy(self), "data"
            field.value = memoryview(data)[SMB2_HEADER:]
            self.fields["data"] = field
            return b""
        # Any other answer is small: a copy, so that it does not keep its pooled buffer taken.
        return super().unpack(bytes(data) if isinstance(data, memoryview) else data)


def _receive_exactly(tcp: Any, view: memoryview, timeout: float) -> tuple[bool, float]:
    """Fill ``view`` from the socket (False: the socket was closed first), as ``Tcp._recv`` does."""
    offset, length = 0, len(view)
    while offset < length:
        started = timeit.default_timer()
        with tcp._close_lock:
            if not tcp.connected:
                return False, timeout
            ready = select.select([tcp._sock], [], [], max(timeout, 1))[0]
            elapsed = timeit.default_timer() - started
            timeout -= elapsed
            if not ready:
                raise TimeoutError(f"recv idle for {elapsed:.1f}s ({offset}/{length} bytes)")
            try:
                count = tcp._sock.recv_into(view[offset:])
            except OSError as err:
                # As smbprotocol: a socket shut down or reset by the peer is the end of the stream.
                if err.errno not in (errno.ESHUTDOWN, errno.ECONNRESET, errno.ECONNABORTED):
                    raise
                count = 0
        if count == 0:
            tcp.close()
            return False, timeout
        offset += count
    return True, timeout


def _recv(tcp: Any, timeout: float) -> bytes | bytearray:
    """``Tcp.recv``: one whole message, b"" when the connection is closed."""
    prefix = bytearray(4)
    with memoryview(prefix) as view:
        complete, timeout = _receive_exactly(tcp, view, timeout)
    if not complete:
        return b""
    size = struct.unpack(">L", prefix)[0]
    # One buffer per connection, reused: only this thread touches it, and each message is
    # decrypted out of it before the next one is received.
    message = getattr(tcp, "_hvtui_received", None)
    if message is None or len(message) < size + TAG:
        message = tcp._hvtui_received = _Received(size + TAG)
    message.size = size
    with memoryview(message) as view:
        complete, _timeout = _receive_exactly(tcp, view[:size], timeout)
        if not complete:
            return b""
        if size > TRANSFORM_HEADER and message[:4] == b"\xfdSMB":
            return message  # decrypted out of it by _decrypt
        return bytes(view[:size])


def _unviewed(buffer: _Received) -> bool:
    """True when no view of ``buffer`` is alive (a bytearray with views refuses to change size)."""
    try:
        buffer.append(0)
    except BufferError:
        return False
    buffer.pop()
    return True


def _new_buffer(size: int) -> _Received:
    buffer = _Received(size)
    _unviewed(buffer)  # its first resize allocates spare room: later looks cost nothing
    return buffer


def _free_buffer(tcp: Any, size: int) -> _Received:
    """A buffer of at least ``size`` bytes that nothing looks at any more, from the connection's
    pool.  A message's data is handed on as a view of the buffer it was decrypted into, so the
    buffer stays taken until every view of the data is dropped; a fresh 4 MiB
    buffer per message instead costs ~1,000 page faults and a memset."""
    pool: list[_Received] = tcp.__dict__.setdefault("_hvtui_buffers", [])
    for index, buffer in enumerate(pool):
        if _unviewed(buffer):
            if len(buffer) < size:
                buffer = pool[index] = _new_buffer(max(size, BUFFER_SIZE))
            return buffer
    buffer = _new_buffer(max(size, BUFFER_SIZE))
    if len(pool) < POOLED_BUFFERS:
        pool.append(buffer)
    return buffer  # more answers held at once than the pool keeps: this one is freed with its views


def _decrypt(connection: Any, message: Any) -> bytes | memoryview:
    """``Connection._decrypt`` for a message ``_recv`` kept whole (others go the stock way): the
    payload is decrypted into a free pooled buffer and returned as a view of it."""
    received = getattr(message, "received", None)
    if received is None:
        return STOCK["_decrypt"](connection, message)
    size = received.size
    flags = int.from_bytes(received[42:44], "little")
    if flags != 0x0001:
        raise SMBException(f"Expecting flag of 0x0001 but got {flags:x} in the SMB Transform Header Response")
    session_id = int.from_bytes(received[44:52], "little")
    session = connection.session_table.get(session_id, None)
    if session is None:
        raise SMBException(f"Failed to find valid session {session_id} for message decryption")
    cipher_id = connection.cipher_id if connection.dialect >= Dialects.SMB_3_1_1 else Ciphers.AES_128_CCM
    if cipher_id in (Ciphers.AES_128_GCM, Ciphers.AES_256_GCM):
        cipher: Any = aead.AESGCM
        nonce_length = 12
    else:
        cipher, nonce_length = aead.AESCCM, 11
    nonce = bytes(received[20 : 20 + nonce_length])
    associated = bytes(received[20:TRANSFORM_HEADER])  # nonce .. session id, as the sender sealed it
    received[size : size + TAG] = received[4:20]  # payload || tag, the layout the AEAD takes
    with memoryview(received) as view:
        sealed = view[TRANSFORM_HEADER : size + TAG]
        box = cipher(session.decryption_key)
        if not _DECRYPTS_INTO:  # an older cryptography: into new bytes
            return box.decrypt(nonce, sealed, associated)
        # cryptography 51 refuses an output overlapping the input, so not in place.  A changed byte
        # anywhere raises InvalidTag: what was written into the buffer is never read.
        plain = memoryview(_free_buffer(connection.transport, size - TRANSFORM_HEADER))[: size - TRANSFORM_HEADER]
        box.decrypt_into(nonce, sealed, associated, plain)
        return plain


# What install() swaps, smbprotocol's own of each (as imported), and the replacements.
SWAPPED = (
    (smb_transport.Tcp, "recv"),
    (smb_connection, "SMB2TransformHeader"),
    (smb_connection.Connection, "_decrypt"),
    (smb_connection, "SMB2HeaderResponse"),
)
STOCK = {name: getattr(owner, name) for owner, name in SWAPPED}
_REPLACEMENTS = {"recv": _recv, "SMB2TransformHeader": _TransformHeader, "_decrypt": _decrypt,
                 "SMB2HeaderResponse": _HeaderResponse}  # fmt: skip


def applies(version: str) -> bool:
    """True when this smbprotocol release is one the replacements were written against."""
    return version.startswith(PATCHED_RELEASES)


def installed() -> bool:
    return _installed


def install() -> bool:
    """Swap the receive steps in (once; True when they are in use)."""
    global _installed
    with _lock:
        if _installed:
            return True
        if not applies(_version()):
            log.info("smbprotocol %s: its own receive path is used (the faster one is written for %s)",
                     _version(), ", ".join(f"{r}x" for r in PATCHED_RELEASES))  # fmt: skip
            return False
        for owner, name in SWAPPED:
            setattr(owner, name, _REPLACEMENTS[name])
        _installed = True
        return True


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("smbprotocol")
    except PackageNotFoundError:
        return ""


def send_read(raw_open: Any, offset: int, length: int) -> tuple[Any, Any]:
    """Send one READ of ``length`` bytes at ``offset`` now, without waiting; ``take_read`` gives
    its data.  Several sent before the first is taken are answered while the caller works."""
    request, receive = raw_open.read(offset, length, send=False)
    sent = raw_open.connection.send(request, raw_open.tree_connect.session.session_id,
                                    raw_open.tree_connect.tree_connect_id)  # fmt: skip
    return sent, receive


def take_read(raw_open: Any, pending: tuple[Any, Any]) -> memoryview | bytes:
    """The data of a READ ``send_read`` sent (waiting for its answer): a view of the received
    answer when the receive steps are swapped in, else smbprotocol's own bytes."""
    sent, receive = pending
    if not _installed:
        return receive(sent)
    response = raw_open.connection.receive(sent)
    data = response["data"].get_value()
    if len(data) < READ_RESPONSE:
        return b""
    start = data[2] - SMB2_HEADER  # DataOffset counts from the SMB2 header's start
    count = int.from_bytes(data[4:8], "little")
    if start < READ_RESPONSE or start + count > len(data):
        raise SMBException(f"malformed SMB2 READ response: {count} bytes at {start} in a {len(data)}-byte answer")
    return memoryview(data)[start : start + count]


def read(raw_open: Any, offset: int, length: int) -> memoryview | bytes:
    """``Open.read(offset, length)``, its data as ``take_read`` gives it."""
    return take_read(raw_open, send_read(raw_open, offset, length))
