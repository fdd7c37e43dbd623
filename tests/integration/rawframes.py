"""Hand-built WebSocket frames over a plain socket, masked as a client must."""

from __future__ import annotations

import os
import socket
import struct
from dataclasses import dataclass, field

from tests.integration.wsclient import UPGRADE

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def client_frame(
    opcode: int,
    payload: bytes,
    *,
    fin: bool = True,
    mask: bool = True,
    rsv: int = 0,
    key: bytes | None = None,
    declared: int | None = None,
) -> bytes:
    """One frame as a client sends it (masked unless ``mask=False``).

    ``rsv``: the reserved bits, already in place (``0x40`` is RSV1); ``key``:
    the masking key (random when None); ``declared``: a length to put in the
    header instead of the payload's (a frame that lies about its size).
    """
    first = (0x80 if fin else 0) | rsv | opcode
    bit = 0x80 if mask else 0
    size = len(payload) if declared is None else declared
    if size < 126:
        head = bytes((first, bit | size))
    elif size < 65536:
        head = struct.pack("!BBH", first, bit | 126, size)
    else:
        head = struct.pack("!BBQ", first, bit | 127, size)
    if not mask:
        return head + payload
    key = os.urandom(4) if key is None else key
    if not payload or key == b"\0\0\0\0":
        return head + key + payload
    # XOR as one big integer: a per-byte loop takes seconds for a few MiB
    length = len(payload)
    keys = (key * (length // 4 + 1))[:length]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(keys, "big")).to_bytes(length, "big")
    return head + key + masked


def upgrade(sock: socket.socket, port: int) -> bytes:
    """Upgrade a connected socket to a V2 WebSocket; return the bytes after the 101 head."""
    sock.sendall(
        (
            f"GET /socket/websocket?vsn=2.0.0 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in UPGRADE.items())
            + "\r\n"
        ).encode()
    )
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        assert chunk, "closed during the handshake"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    return rest


@dataclass
class RawWebSocket:
    """A client socket after the 101, reading the server's (unmasked) frames."""

    sock: socket.socket
    buffer: bytes = field(default=b"")

    @classmethod
    def connect(cls, port: int, timeout: float = 3.0) -> RawWebSocket:
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        return cls(sock, upgrade(sock, port))

    def send(self, opcode: int, payload: bytes, *, fin: bool = True) -> None:
        self.sock.sendall(client_frame(opcode, payload, fin=fin))

    def _need(self, count: int, timeout: float) -> bytes:
        self.sock.settimeout(timeout)
        while len(self.buffer) < count:
            chunk = self.sock.recv(65536)  # socket.timeout fails the test
            if not chunk:
                raise EOFError(f"end of stream after {len(self.buffer)} bytes")
            self.buffer += chunk
        data, self.buffer = self.buffer[:count], self.buffer[count:]
        return data

    def recv_frame(self, timeout: float = 3.0) -> tuple[int, bytes]:
        """The next frame from the server: (opcode, payload)."""
        first, second = self._need(2, timeout)
        size = second & 0x7F
        if size == 126:
            (size,) = struct.unpack("!H", self._need(2, timeout))
        elif size == 127:
            (size,) = struct.unpack("!Q", self._need(8, timeout))
        return first & 0x0F, self._need(size, timeout)

    def close_code(self, timeout: float = 3.0) -> tuple[int, str]:
        """Skip frames until the server's close; return its code and reason."""
        while True:
            opcode, payload = self.recv_frame(timeout)
            if opcode == OP_CLOSE:
                (code,) = struct.unpack("!H", payload[:2])
                return code, payload[2:].decode()

    def ping(self, data: bytes = b"p", timeout: float = 3.0) -> None:
        """Ping and wait for the pong: the server has read everything sent before."""
        self.send(OP_PING, data)
        while True:
            opcode, payload = self.recv_frame(timeout)
            if opcode == OP_PONG and payload == data:
                return

    def wait_eof(self, timeout: float = 3.0) -> None:
        """Read until the server closes the TCP connection."""
        self.sock.settimeout(timeout)
        while self.sock.recv(65536):
            pass

    def close(self) -> None:
        self.sock.close()
