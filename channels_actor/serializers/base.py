"""What a serializer is, and the JSON helpers every JSON serializer shares.

A serializer turns :class:`Message` / :class:`Reply` / :class:`Broadcast` values
into frames and client frames back into :class:`Message`. It is pure: no
sockets, threads or actors. A frame is ``str`` (a text frame), ``bytes`` (a
binary frame) or, for in-memory transports, the value itself.
"""

from __future__ import annotations

from typing import Any, Protocol, Union

import orjson

from .._redact import shape_of
from ..errors import InvalidMessageError
from ..message import Broadcast, Message, Reply, is_payload

__all__ = [
    "Frame",
    "Serializer",
    "decode_json",
    "encode_json",
    "encode_payload",
    "frame_of",
    "shape_of",
    "text_field",
]

Frame = Union[str, bytes, Message, Reply]

_OPTIONS = orjson.OPT_NON_STR_KEYS


class Serializer(Protocol):
    """Encodes outgoing values to frames and decodes client frames.

    ``fastlane`` is called once per serializer per broadcast, never once per
    subscriber, so it should be as cheap as a splice of ``encoded_payload``.
    Encoding raises ``TypeError`` or ``ValueError`` for an unserializable
    payload; decoding raises :class:`InvalidMessageError` for a malformed frame.
    Error messages describe the value's shape and size (:func:`shape_of`),
    never its content: they end up in log lines, and a frame may carry
    credentials or megabytes.
    """

    vsn: str

    def fastlane(self, broadcast: Broadcast) -> Frame: ...

    def encode(self, message: Message | Reply) -> Frame: ...

    def decode(self, data: str | bytes) -> Message: ...


def encode_json(value: Any) -> bytes:
    """Encode ``value`` as JSON bytes (orjson; non-str dict keys become strings)."""
    return orjson.dumps(value, option=_OPTIONS)


def decode_json(data: str | bytes) -> Any:
    """Decode JSON text, raising :class:`InvalidMessageError` when it is not JSON."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        # orjson's message gives the position, not the text.
        msg = f"Expected a JSON frame, got {frame_of(data)} that is not JSON: {exc}"
        raise InvalidMessageError(msg) from None


def encode_payload(payload: Any) -> bytes:
    """Check that ``payload`` may travel as a message and return its JSON.

    Messages are JSON-serializable mappings or ``bytes`` (a binary frame). The
    ``TypeError`` says what was wrong; callers wrap it in their own error class.
    ``bytes`` are returned unchanged.
    """
    if isinstance(payload, bytes):
        return payload
    if not is_payload(payload):
        msg = (
            f"Expected the message payload to be a mapping (dict) or bytes, got {shape_of(payload)}"
        )
        raise TypeError(msg)
    try:
        return orjson.dumps(
            payload if isinstance(payload, dict) else dict(payload), option=_OPTIONS
        )
    except TypeError as exc:
        msg = f"Cannot serialize the message payload to JSON ({exc}): {shape_of(payload)}"
        raise TypeError(msg) from None


def text_field(value: object, what: str, data: object, *, nullable: bool = False) -> Any:
    """Return ``value`` if it is a str (or None when ``nullable``), else raise
    :class:`InvalidMessageError` naming ``what`` was expected in frame ``data``."""
    if isinstance(value, str) or (nullable and value is None):
        return value
    kind = "a string or null" if nullable else "a string"
    msg = f"Expected {what} to be {kind}, got {shape_of(value)} (in {frame_of(data)})"
    raise InvalidMessageError(msg)


def frame_of(data: object) -> str:
    """``a text frame of N characters`` or ``a binary frame of N bytes``."""
    if isinstance(data, str):
        return f"a text frame of {len(data)} characters"
    if isinstance(data, (bytes, bytearray, memoryview)):
        return f"a binary frame of {len(data)} bytes"
    return shape_of(data)
