"""WebSocket server frames, built once and written to many sockets.

Server-to-client frames are not masked, so without compression every
subscriber of a broadcast receives the same bytes: the fastlane frames a
broadcast once and writes those bytes to each connection. Pure functions; no
sockets. (Compressed connections frame through wsproto per connection instead.)
"""

from __future__ import annotations

import struct

__all__ = [
    "OP_BINARY",
    "OP_CLOSE",
    "OP_TEXT",
    "SharedFrame",
    "SharedFrames",
    "close_frame",
    "frame",
    "frame_message",
]

OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8

_LEN16 = struct.Struct("!BBH")
_LEN64 = struct.Struct("!BBQ")


def frame(opcode: int, payload: bytes) -> bytes:
    """One final, unmasked frame of ``opcode`` carrying ``payload``."""
    first = 0x80 | opcode
    size = len(payload)
    if size < 126:
        return bytes((first, size)) + payload
    if size < 65536:
        return _LEN16.pack(first, 126, size) + payload
    return _LEN64.pack(first, 127, size) + payload


def frame_message(data: str | bytes) -> bytes:
    """A text frame for ``str``, a binary frame for ``bytes``."""
    if isinstance(data, str):
        return frame(OP_TEXT, data.encode())
    return frame(OP_BINARY, bytes(data))


def close_frame(code: int, reason: str = "") -> bytes:
    """A close frame with ``code`` and a reason of at most 123 bytes."""
    return frame(OP_CLOSE, struct.pack("!H", code) + reason.encode()[:123])


class SharedFrame:
    """A fastlane frame shared by every subscriber of one broadcast.

    ``frame`` is the serializer's output; ``wire()`` is its WebSocket frame,
    built by the first connection that needs it and reused by the rest.
    """

    __slots__ = ("_wire", "frame")

    def __init__(self, frame: str | bytes | object) -> None:
        self.frame = frame
        self._wire: bytes | None = None

    def wire(self) -> bytes:
        wire = self._wire
        if wire is None:
            assert isinstance(self.frame, (str, bytes))
            wire = self._wire = frame_message(self.frame)
        return wire


class SharedFrames:
    """Fastlane frames written together to every connection of a fan-out group.

    The registry builds one per group of subscribers that get the same frames
    (same serializer, same intercepts), so ``wire()`` joins the bytes once and
    each connection costs one ``send`` of an existing buffer.
    """

    __slots__ = ("_wire", "frames")

    def __init__(self, frames: list[SharedFrame]) -> None:
        self.frames = frames
        self._wire: bytes | None = None

    @classmethod
    def concat(cls, parts: list[SharedFrames]) -> SharedFrames:
        """Several groups' frames for one connection, in order."""
        return cls([shared for part in parts for shared in part.frames])

    def wire(self) -> bytes:
        wire = self._wire
        if wire is None:
            frames = self.frames
            if len(frames) == 1:
                wire = frames[0].wire()
            else:
                wire = b"".join([shared.wire() for shared in frames])
            self._wire = wire
        return wire
