"""smbprotocol's receive path without its copies (hvtui/hosts/smb/fastpath.py).

Sealed messages are made by smbprotocol's own ``Connection._encrypt`` and sent over a socket pair,
so the replacement is checked against the library it stands in for: the plain message comes back,
and a changed byte anywhere in the sealed message is refused, never decoded.  Then reads over a
real Samba (encrypted and signed-only) go through it and stay byte-identical.
"""

from __future__ import annotations

import gc
import os
import socket
import struct
import threading
from types import SimpleNamespace

import pytest
from cryptography.exceptions import InvalidTag
from samba_support import SambaServer
from smbprotocol import connection as smb_connection
from smbprotocol.connection import Ciphers, Dialects
from smbprotocol.exceptions import SMBException
from test_smb_faults import big_file, read_as_the_pipeline_does, smb_files

from hvtui.config import SmbSettings
from hvtui.hosts.smb import fastpath, open_remote_files

MiB = 1024 * 1024
SESSION_ID = 0x1122334455667788
CIPHERS = {"AES-128-GCM": (Dialects.SMB_3_1_1, Ciphers.AES_128_GCM, 16), "AES-256-GCM": (Dialects.SMB_3_1_1, Ciphers.AES_256_GCM, 32),
           "AES-128-CCM (SMB 3.0)": (Dialects.SMB_3_0_2, Ciphers.AES_128_GCM, 16)}  # fmt: skip


class FakeTcp:
    """What ``fastpath._recv`` needs of smbprotocol's ``Tcp``: the socket and its close lock."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock, self._close_lock, self.connected, self.closed = sock, threading.Lock(), True, False

    def close(self) -> None:
        self.connected, self.closed = False, True


@pytest.fixture
def pair():
    ours, theirs = socket.socketpair()
    yield FakeTcp(ours), theirs
    ours.close()
    theirs.close()


def connection(cipher: str) -> SimpleNamespace:
    dialect, cipher_id, key_size = CIPHERS[cipher]
    key = os.urandom(key_size)
    session = SimpleNamespace(session_id=SESSION_ID, encryption_key=key, decryption_key=key)
    return SimpleNamespace(dialect=dialect, cipher_id=cipher_id, session_table={SESSION_ID: session}, session=session)


def sealed(conn: SimpleNamespace, plain: bytes) -> bytes:
    """``plain`` as a server sends it: smbprotocol's own sealing, then the 4-byte stream length."""
    message = smb_connection.Connection._encrypt(conn, plain, conn.session).pack()
    return struct.pack(">L", len(message)) + message


def send_in_pieces(sock: socket.socket, data: bytes, pieces: int = 7) -> threading.Thread:
    step = len(data) // pieces + 1

    def run() -> None:
        for start in range(0, len(data), step):
            sock.sendall(data[start : start + step])

    sender = threading.Thread(target=run)
    sender.start()
    return sender


def receive_and_open(conn: SimpleNamespace, tcp: FakeTcp) -> bytes:
    conn.transport = tcp  # the connection's transport holds its buffers
    received = fastpath._recv(tcp, 30.0)
    header = fastpath._TransformHeader()
    header.unpack(received)
    return fastpath._decrypt(conn, header)


def test_only_the_smbprotocol_release_it_was_written_for_is_changed() -> None:
    assert fastpath.applies("1.17.0") and fastpath.applies("1.17.3")
    assert not fastpath.applies("1.16.1") and not fastpath.applies("1.18.0") and not fastpath.applies("")


@pytest.mark.parametrize("cipher", sorted(CIPHERS))
def test_a_sealed_message_is_opened_as_smbprotocol_sealed_it(pair, cipher: str) -> None:
    tcp, server = pair
    conn = connection(cipher)
    plain = os.urandom(3 * MiB + 11)
    sender = send_in_pieces(server, sealed(conn, plain))  # arrives in pieces, as from a real socket
    assert receive_and_open(conn, tcp) == plain
    sender.join()


def test_one_buffer_serves_messages_of_any_size_in_turn(pair) -> None:
    tcp, server = pair
    conn = connection("AES-128-GCM")
    for size in (2 * MiB, 300, 5 * MiB, 64):
        plain = os.urandom(size)
        sender = send_in_pieces(server, sealed(conn, plain))
        assert receive_and_open(conn, tcp) == plain
        sender.join()


# Every part of a sealed message is covered: the tag (signature field), the nonce, the reserved
# field and the flags' neighbour in the authenticated header, and the payload.
@pytest.mark.parametrize("offset", [4, 19, 20, 35, 36, 41, 52, -1], ids=lambda o: f"byte {o}")
def test_a_changed_byte_anywhere_is_refused(pair, offset: int) -> None:
    tcp, server = pair
    conn = connection("AES-128-GCM")
    framed = bytearray(sealed(conn, os.urandom(MiB)))
    framed[4 + offset if offset >= 0 else offset] ^= 0x01
    sender = send_in_pieces(server, bytes(framed))
    with pytest.raises(InvalidTag):
        receive_and_open(conn, tcp)
    sender.join()


def test_an_unknown_session_or_wrong_flags_are_refused_like_smbprotocol_does(pair) -> None:
    tcp, server = pair
    conn = connection("AES-128-GCM")
    framed = bytearray(sealed(conn, b"x" * 1000))
    framed[4 + 44] ^= 0xFF  # the session id
    server.sendall(bytes(framed))
    with pytest.raises(SMBException, match="Failed to find valid session"):
        receive_and_open(conn, tcp)
    framed = bytearray(sealed(conn, b"x" * 1000))
    framed[4 + 42] = 2  # flags: only 0x0001 (encrypted) is valid
    server.sendall(bytes(framed))
    with pytest.raises(SMBException, match="Expecting flag of 0x0001"):
        receive_and_open(conn, tcp)


def test_a_plain_message_comes_back_as_bytes(pair) -> None:
    tcp, server = pair
    plain = b"\xfeSMB" + os.urandom(200)
    server.sendall(struct.pack(">L", len(plain)) + plain)
    received = fastpath._recv(tcp, 30.0)
    assert received == plain and type(received) is bytes


def test_a_connection_closed_mid_message_ends_the_stream(pair) -> None:
    tcp, server = pair
    server.sendall(struct.pack(">L", MiB) + b"\xfdSMB" + bytes(1000))
    server.shutdown(socket.SHUT_WR)
    assert fastpath._recv(tcp, 30.0) == b"" and tcp.closed  # as smbprotocol's Tcp: b"" then closed


def test_a_read_answer_keeps_its_data_as_a_view_and_other_answers_are_bytes() -> None:
    payload = os.urandom(4096)
    read_answer = bytearray(64) + struct.pack("<HBBIII", 17, 64 + 16, 0, len(payload), 0, 0) + payload
    read_answer[0:4], read_answer[12:14] = b"\xfeSMB", (8).to_bytes(2, "little")
    header = fastpath._HeaderResponse()
    header.unpack(bytes(read_answer))
    data = header["data"].get_value()
    assert isinstance(data, memoryview) and bytes(data[16:]) == payload
    failed = bytearray(read_answer)
    failed[8:12] = (0xC0000011).to_bytes(4, "little")  # STATUS_END_OF_FILE: the stock way, as bytes
    header = fastpath._HeaderResponse()
    header.unpack(bytes(failed))
    assert type(header["data"].get_value()) is bytes


def test_reads_over_real_samba_go_through_it_byte_identical(samba_server: SambaServer) -> None:
    data = big_file(samba_server, "disk.vhdx", 24 * MiB + 123)
    with smb_files(samba_server) as remote, remote.open_read("D:\\disk.vhdx") as reader:
        assert fastpath.installed()
        assert b"".join(iter(lambda: reader.read(3 * MiB + 7), b"")) == data
        received = [raw.fd.connection.transport for raw in reader._raws if raw is not None]
        pools = [getattr(tcp, "_hvtui_buffers", []) for tcp in received]
        # Each connection received into one reused buffer and decrypted into a few reused ones,
        # not one per answer (seven 4 MiB answers over two connections).
        assert received and all(isinstance(getattr(tcp, "_hvtui_received", None), bytearray) for tcp in received)
        assert all(1 <= len(pool) <= fastpath.POOLED_BUFFERS for pool in pools) and sum(map(len, pools)) < 7
    # Once the reader is closed no view of any buffer is left: each can take the next answer.
    assert all(fastpath._unviewed(buffer) for pool in pools for buffer in pool)


def test_read_view_lends_the_answers_bytes_which_stay_taken_until_released(samba_server: SambaServer) -> None:
    data = big_file(samba_server, "disk.vhdx", 24 * MiB)
    with smb_files(samba_server) as remote, remote.open_read("D:\\disk.vhdx") as reader:
        views = []
        for offset in range(0, len(data), MiB):  # as the backup pipeline takes its 1 MiB chunks
            reader.seek(offset)
            views.append(reader.read_view(MiB))
        assert b"".join(views) == data
        pools = [getattr(raw.fd.connection.transport, "_hvtui_buffers", []) for raw in reader._raws if raw is not None]
        lent = [view.obj for view in views]
        # Past the read-ahead's first, smaller requests (a chunk across two of them is joined), each
        # chunk is a view of the 4 MiB answer it came in, with no bytes of its own, and an answer's
        # buffer stays taken while any chunk of it is lent out.
        assert all(isinstance(obj, bytearray) for obj in lent[8:]) and len({id(obj) for obj in lent[8:]}) == 4
        pooled = [buffer for pool in pools for buffer in pool]
        assert all(not fastpath._unviewed(buffer) for buffer in pooled if any(buffer is obj for obj in lent))
        for view in views:
            view.release()
        views.clear()
        lent.clear()
    assert pooled and all(fastpath._unviewed(buffer) for buffer in pooled)


def test_a_signed_only_connection_reads_byte_identical_too(samba_server: SambaServer) -> None:
    plain = samba_server.start_second(encrypt=False)
    data = os.urandom(9 * MiB + 5)
    (plain.folder / "disk.vhdx").write_bytes(data)
    smb = SmbSettings(shares=(("D:\\", plain.unc()),), port=plain.port, encrypt=False, timeout=10.0)
    with open_remote_files("hv01", plain.host, smb, plain.username, lambda: plain.password) as remote:
        with remote.open_read("D:\\disk.vhdx") as reader:
            assert reader.read() == data
        assert remote.security("D:\\") == "SMB 3.1.1, signed, not encrypted"


def test_without_it_reads_take_smbprotocols_own_path(samba_server: SambaServer, monkeypatch: pytest.MonkeyPatch) -> None:
    data = big_file(samba_server, "disk.vhdx", 9 * MiB)
    # As with an smbprotocol release it was not written for: every step is smbprotocol's own.
    for owner, name in fastpath.SWAPPED:
        monkeypatch.setattr(owner, name, fastpath.STOCK[name])
    monkeypatch.setattr(fastpath, "_installed", False)
    monkeypatch.setattr(fastpath, "applies", lambda version: False)
    pieces: list[object] = []
    take = fastpath.take_read
    monkeypatch.setattr(fastpath, "take_read", lambda raw, pending: pieces.append(take(raw, pending)) or pieces[-1])
    with smb_files(samba_server) as remote, remote.open_read("D:\\disk.vhdx") as reader:
        assert not fastpath.installed()
        assert reader.read() == data
        assert not hasattr(reader._raws[0].fd.connection.transport, "_hvtui_buffers")
    assert len(pieces) >= 3 and all(type(piece) is bytes for piece in pieces)  # smbprotocol's copies


def test_a_sequential_read_receives_into_a_few_buffers_it_keeps(
    samba_server: SambaServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = big_file(samba_server, "disk.vhdx", 48 * MiB)
    made: list[int] = []
    new_buffer = fastpath._new_buffer
    monkeypatch.setattr(fastpath, "_new_buffer", lambda size: made.append(size) or new_buffer(size))
    gc.disable()  # buffers must come free as the reader drops its views, not when the collector runs
    try:
        with smb_files(samba_server) as remote, remote.open_read("D:\\disk.vhdx") as reader:
            got = read_as_the_pipeline_does(reader)
    finally:
        gc.enable()
    assert got == data
    # Read-ahead grows its requests towards 4 MiB; the buffers are made for that size from the
    # start, and an answer's buffer is free again once the reader has copied it out: a few per
    # connection, not one per answer (twelve 4 MiB answers and the small ones before them).
    assert all(size >= 4 * MiB for size in made) and len(made) <= 8
