"""Byte-exact WebSocket clients on plain sockets: every server frame is parsed and checked.

A frame that starts inside another one (a spliced stream) shows up here as a
bad header, a payload that is not the JSON it should be, or a length that
does not add up: :class:`FrameParser` checks every header bit the server may
set and returns whole payloads only.
"""

from __future__ import annotations

import json
import socket
import struct
from typing import Any

from tests.integration import rawframes

OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 1, 2, 8, 9, 10


class FrameError(AssertionError):
    """The server's byte stream is not a sequence of well-formed frames."""


class FrameParser:
    """Parses unmasked, final server frames from a byte stream (pure)."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self.closed: tuple[int, str] | None = None  # the close frame's code and reason
        self.total = 0  # bytes fed

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """Add ``data``; return the frames it completes, as ``(opcode, payload)``."""
        self.total += len(data)
        buf = self._buf
        buf += data
        out: list[tuple[int, bytes]] = []
        pos = 0
        while len(buf) - pos >= 2:
            if self.closed is not None:
                raise FrameError(
                    f"{len(buf) - pos} bytes after the close frame: {bytes(buf[pos : pos + 16])!r}"
                )
            b0, b1 = buf[pos], buf[pos + 1]
            opcode = b0 & 0x0F
            if b0 & 0xF0 != 0x80 or opcode not in (OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG):
                at = self.total - len(buf) + pos
                raise FrameError(f"bad frame header {bytes(buf[pos : pos + 4])!r} at byte {at}")
            if b1 & 0x80:
                raise FrameError("a server frame is masked")
            size = b1 & 0x7F
            start = pos + 2
            if size == 126:
                if len(buf) - pos < 4:
                    break
                (size,) = struct.unpack_from("!H", buf, pos + 2)
                start = pos + 4
                if size < 126:
                    raise FrameError(f"16-bit length {size} for a short frame")
            elif size == 127:
                if len(buf) - pos < 10:
                    break
                (size,) = struct.unpack_from("!Q", buf, pos + 2)
                start = pos + 10
                if size < 65536:
                    raise FrameError(f"64-bit length {size} for a short frame")
            if opcode >= OP_CLOSE and size > 125:
                raise FrameError(f"control frame of {size} bytes")
            if len(buf) < start + size:
                break
            payload = bytes(buf[start : start + size])
            pos = start + size
            if opcode == OP_CLOSE:
                if len(payload) < 2:
                    raise FrameError(f"close frame without a code: {payload!r}")
                self.closed = (struct.unpack("!H", payload[:2])[0], payload[2:].decode())
            out.append((opcode, payload))
        del buf[:pos]
        return out

    @property
    def leftover(self) -> int:
        """Bytes of an unfinished frame."""
        return len(self._buf)


def client_frame(payload: bytes, opcode: int = OP_TEXT) -> bytes:
    """One masked client frame (an all-zero mask: the payload goes as it is)."""
    return rawframes.client_frame(opcode, payload, key=b"\0\0\0\0")


def message(*fields: Any) -> bytes:
    """A V2 client message frame."""
    return client_frame(json.dumps(list(fields)).encode())


class RawClient:
    """A plain-socket V2 client: upgrade, then raw bytes, with a parser for what comes back."""

    def __init__(self, port: int, rcvbuf: int | None = None, timeout: float = 5.0) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf
            )  # before connect: the window
        sock.settimeout(timeout)
        sock.connect(("127.0.0.1", port))
        rest = rawframes.upgrade(sock, port)
        self.sock = sock
        self.parser = FrameParser()
        self.frames: list[tuple[int, bytes]] = self.parser.feed(rest)
        self.eof = False

    def send(self, *fields: Any) -> None:
        self.sock.sendall(message(*fields))

    def join(self, topic: str, ref: str = "1") -> Any:
        """Join ``topic``; return the reply's payload."""
        self.send(ref, ref, topic, "phx_join", {})
        return self.next_json()[4]

    def read_some(self, size: int = 262144) -> int:
        """One ``recv``; parse it. Returns the bytes read (0 at end of file or
        when a non-blocking socket has nothing)."""
        try:
            data = self.sock.recv(size)
        except BlockingIOError:
            return 0
        if not data:
            self.eof = True
            return 0
        self.frames += self.parser.feed(data)
        return len(data)

    def next_json(self) -> Any:
        while not self.frames:
            if not self.read_some():
                raise AssertionError("end of file while waiting for a frame")
        opcode, payload = self.frames.pop(0)
        assert opcode == OP_TEXT, (opcode, payload[:80])
        return json.loads(payload)

    def read_to_eof(self) -> None:
        while not self.eof:
            self.read_some()

    def close(self) -> None:
        self.sock.close()
