"""The bytes one broadcast is between nodes: a record format, without I/O.

A cluster adapter publishes each broadcast as one record on a medium every
node reads (a Redis channel). The record says who sent it and for whom, so a
receiver can drop what is not for it after reading a short header, before it
touches (or decompresses) the payload::

    version   1 byte   (1)
    route     1 byte   0: every node but the origin, 1: the target node only
    flags     1 byte   bit 0: the payload is binary (bytes), else JSON
                       bit 1: the payload is zlib-compressed
                       bit 2: a control record: its event says which (no payload)
    origin    2-byte length, UTF-8
    target    2-byte length, UTF-8 (empty for route 0)
    topic     4-byte length, UTF-8
    event     4-byte length, UTF-8
    payload   the rest: the JSON as the publisher encoded it, or the binary payload

Lengths are big-endian. The JSON crosses as the bytes the publisher made, so
the receiving node splices them into its frames and never encodes again.
"""

from __future__ import annotations

import struct
import zlib
from typing import NamedTuple

__all__ = [
    "ALL_BUT_ORIGIN",
    "BYE",
    "HELLO",
    "ONLY_TARGET",
    "WAKE",
    "Record",
    "WireError",
    "decode",
    "encode",
    "encode_control",
    "route_of",
]

VERSION = 1
ALL_BUT_ORIGIN = 0
ONLY_TARGET = 1

_BINARY = 0x01
_COMPRESSED = 0x02
_CONTROL = 0x04

_HEAD = struct.Struct(">BBBH")  # version, route, flags, origin length
_SHORT = struct.Struct(">H")
_LONG = struct.Struct(">I")


class WireError(ValueError):
    """A record that is not in this format (another program's, a newer version, cut short)."""


class Record(NamedTuple):
    """One broadcast as it crossed the wire, its payload decompressed."""

    route: int
    origin: str
    target: str
    topic: str
    event: str
    payload: bytes
    binary: bool
    control: bool = False


def encode(
    route: int,
    origin: str,
    target: str,
    *,
    topic: str,
    event: str,
    payload: bytes,
    binary: bool,
    compress_over: int | None = None,
) -> bytes:
    """One broadcast's record; its payload is compressed when over ``compress_over`` bytes."""
    flags = _BINARY if binary else 0
    if compress_over is not None and len(payload) > compress_over:
        squeezed = zlib.compress(payload, 1)
        if len(squeezed) < len(payload):
            payload = squeezed
            flags |= _COMPRESSED
    return _pack(route, flags, (origin, target, topic, event), payload)


#: Control records: a node announces itself or leaves (to the others), or wakes
#: its own receiver (to itself).
HELLO = "hello"
BYE = "bye"
WAKE = "wake"


def encode_control(origin: str, kind: str) -> bytes:
    """A control record: ``HELLO`` and ``BYE`` go to the other nodes, ``WAKE`` to ``origin``."""
    if kind == WAKE:
        return _pack(ONLY_TARGET, _CONTROL, (origin, origin, "", kind), b"")
    return _pack(ALL_BUT_ORIGIN, _CONTROL, (origin, "", "", kind), b"")


def _pack(route: int, flags: int, names: tuple[str, str, str, str], payload: bytes) -> bytes:
    """``names`` are origin, target, topic and event."""
    origin_b, target_b, topic_b, event_b = (name.encode() for name in names)
    return b"".join(
        (
            _HEAD.pack(VERSION, route, flags, len(origin_b)),
            origin_b,
            _SHORT.pack(len(target_b)),
            target_b,
            _LONG.pack(len(topic_b)),
            topic_b,
            _LONG.pack(len(event_b)),
            event_b,
            payload,
        )
    )


class _Reader:
    """Reads the fields of one record in order, refusing one cut short."""

    __slots__ = ("data", "offset")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.offset = 0

    def take(self, size: int) -> bytes:
        end = self.offset + size
        if end > len(self.data):
            msg = f"record of {len(self.data)} bytes is cut short (a field ends at byte {end})"
            raise WireError(msg)
        chunk = self.data[self.offset : end]
        self.offset = end
        return chunk

    def text(self, length: struct.Struct) -> str:
        """A name whose byte count comes first, as ``length`` packs it."""
        (size,) = length.unpack(self.take(length.size))
        return self.utf8(size)

    def utf8(self, size: int) -> str:
        try:
            return self.take(size).decode()
        except UnicodeDecodeError:
            raise WireError("record has a name that is not UTF-8") from None


def _head(data: bytes) -> tuple[int, int, str, str, _Reader]:
    reader = _Reader(data)
    version, route, flags, origin_size = _HEAD.unpack(reader.take(_HEAD.size))
    if version != VERSION:
        msg = f"record of version {version}; this node reads version {VERSION}"
        raise WireError(msg)
    if route not in (ALL_BUT_ORIGIN, ONLY_TARGET):
        raise WireError(f"record with unknown route {route}")
    origin = reader.utf8(origin_size)
    target = reader.text(_SHORT)
    return route, flags, origin, target, reader


def route_of(data: bytes) -> tuple[int, str, str]:
    """``(route, origin, target)`` from the header alone.

    Raises:
        WireError: the header is not in this format.
    """
    route, _, origin, target, _ = _head(data)
    return route, origin, target


def decode(data: bytes, max_payload: int | None = None) -> Record:
    """Read a whole record; a compressed payload may not grow past ``max_payload`` bytes.

    Raises:
        WireError: the record is not in this format, or its payload is too large.
    """
    route, flags, origin, target, reader = _head(data)
    topic = reader.text(_LONG)
    event = reader.text(_LONG)
    payload = data[reader.offset :]
    if flags & _COMPRESSED:
        payload = _inflate(payload, max_payload)
    elif max_payload is not None and len(payload) > max_payload:
        msg = f"record payload of {len(payload)} bytes is over the limit of {max_payload}"
        raise WireError(msg)
    return Record(
        route, origin, target, topic, event, payload, bool(flags & _BINARY), bool(flags & _CONTROL)
    )


def _inflate(payload: bytes, limit: int | None) -> bytes:
    """Decompress, stopping at ``limit`` so that a small record cannot become a huge one."""
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(payload, 0 if limit is None else limit + 1)
    except zlib.error:
        raise WireError("record payload is not valid zlib data") from None
    if limit is not None and len(out) > limit:
        raise WireError(f"record payload inflates past the limit of {limit} bytes")
    if not inflater.eof:
        raise WireError("record payload is cut short (incomplete zlib data)")
    return out
