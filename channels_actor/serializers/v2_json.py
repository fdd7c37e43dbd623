"""The V2 serializer: phoenix.js's default wire format (``vsn=2.0.0``).

Text frames are JSON arrays ``[join_ref, ref, topic, event, payload]``; payloads
that are ``bytes`` travel as binary frames with one-byte length prefixes, so
topics, events, refs and statuses are limited to 255 UTF-8 bytes there. This
module mirrors ``Phoenix.Socket.V2.JSONSerializer`` and phoenix.js's
``serializer.js`` byte for byte, so the official client works unchanged.

Text frames are returned as ``str`` because the websocket transport sends
``bytes`` as binary frames.
"""

from __future__ import annotations

from typing import Any

from .._constants import PHX_REPLY
from ..errors import InvalidMessageError
from ..message import Broadcast, Message, Reply
from .base import decode_json, encode_json, encode_payload, frame_of, shape_of, text_field

__all__ = ["V2JSONSerializer"]

_PUSH = 0
_REPLY = 1
_BROADCAST = 2
_MAX_FIELD_BYTES = 255
# kind byte + four size bytes (join_ref, ref, topic, event) of a client push.
_CLIENT_PUSH_HEADER = 5
_TEXT_SHAPE = "[join_ref, ref, topic, event, payload]"
_TEXT_FIELDS = 5


class V2JSONSerializer:
    """Phoenix's V2 JSON serializer, with binary frames for ``bytes`` payloads."""

    vsn = "2.0.0"

    def fastlane(self, broadcast: Broadcast) -> str | bytes:
        """Encode a broadcast as ``[null, null, topic, event, payload]``.

        ``broadcast.encoded_payload`` (made once by the publisher) is spliced in
        as is, so fanning out to many sockets costs no payload re-encoding.
        """
        payload = broadcast.payload
        if isinstance(payload, bytes):
            return _broadcast_binary(broadcast.topic, broadcast.event, payload)
        encoded = broadcast.encoded_payload
        if encoded is None:
            encoded = encode_payload(payload)
        return _splice_json_array([None, None, broadcast.topic, broadcast.event], encoded)

    def encode(self, message: Message | Reply) -> str | bytes:
        """Encode a push (``Message``) or a ``Reply`` as a text or binary frame."""
        if isinstance(message, Reply):
            return _encode_reply(message)
        if isinstance(message.payload, bytes):
            return _push_binary(message)
        head = [message.join_ref, message.ref, message.topic, message.event]
        return _splice_json_array(head, encode_payload(message.payload))

    def decode(self, data: str | bytes) -> Message:
        """Decode a client frame: ``str`` is a text frame, ``bytes`` a binary push.

        Raises:
            InvalidMessageError: the frame is not a well-formed V2 client frame.
        """
        if isinstance(data, str):
            return _decode_text(data)
        return _decode_binary(_binary_input(data))


def _splice_json_array(head: list[Any], encoded_last: bytes) -> str:
    """Return the JSON text of ``head + [x]`` where ``encoded_last`` is x's JSON.

    ``head`` is encoded once and the already-encoded element is concatenated,
    which gives exactly the bytes that encoding the whole list would give
    (orjson writes compact JSON).
    """
    prefix = encode_json(head)
    return b"".join((prefix[:-1], b",", encoded_last, b"]")).decode()


def _encode_reply(reply: Reply) -> str | bytes:
    if isinstance(reply.payload, bytes):
        return _reply_binary(reply)
    response = {"status": reply.status, "response": reply.payload}
    frame = [reply.join_ref, reply.ref, reply.topic, PHX_REPLY, response]
    try:
        return encode_json(frame).decode()
    except TypeError as exc:
        msg = f"Cannot serialize the reply payload to JSON ({exc}): {shape_of(reply.payload)}"
        raise TypeError(msg) from None


def _push_binary(message: Message) -> bytes:
    join_ref = _field(message.join_ref or "", "join_ref")
    topic = _field(message.topic, "topic")
    event = _field(message.event, "event")
    sizes = bytes((_PUSH, len(join_ref), len(topic), len(event)))
    return b"".join((sizes, join_ref, topic, event, message.payload))


def _reply_binary(reply: Reply) -> bytes:
    join_ref = _field(reply.join_ref or "", "join_ref")
    ref = _field(reply.ref or "", "ref")
    topic = _field(reply.topic, "topic")
    status = _field(reply.status, "status")
    sizes = bytes((_REPLY, len(join_ref), len(ref), len(topic), len(status)))
    return b"".join((sizes, join_ref, ref, topic, status, reply.payload))


def _broadcast_binary(topic_text: str, event_text: str, data: bytes) -> bytes:
    topic = _field(topic_text, "topic")
    event = _field(event_text, "event")
    sizes = bytes((_BROADCAST, len(topic), len(event)))
    return b"".join((sizes, topic, event, data))


def _field(value: str, name: str) -> bytes:
    """UTF-8 encode one binary-frame field, checking its one-byte size prefix."""
    raw = value.encode()
    if len(raw) > _MAX_FIELD_BYTES:
        msg = (
            f"Cannot put the {name} in a V2 binary frame: it must be at most "
            f"{_MAX_FIELD_BYTES} bytes (UTF-8), got {len(raw)} bytes"
        )
        raise ValueError(msg)
    return raw


def _decode_text(data: str) -> Message:
    frame = decode_json(data)
    if not isinstance(frame, list) or len(frame) < _TEXT_FIELDS:
        msg = (
            f"Expected a V2 text frame {_TEXT_SHAPE} (a JSON array of at least "
            f"{_TEXT_FIELDS} elements), got {shape_of(frame)} (in {frame_of(data)})"
        )
        raise InvalidMessageError(msg)
    join_ref, ref, topic, event, payload = frame[:_TEXT_FIELDS]
    return Message(
        topic=_text_field(topic, "topic", data),
        event=_text_field(event, "event", data),
        payload=payload,
        ref=_text_ref(ref, "ref", data),
        join_ref=_text_ref(join_ref, "join_ref", data),
    )


def _text_field(value: object, name: str, data: str) -> str:
    return text_field(value, f"the {name} of a V2 text frame {_TEXT_SHAPE}", data)  # type: ignore[no-any-return]


def _text_ref(value: object, name: str, data: str) -> str | None:
    what = f"the {name} of a V2 text frame {_TEXT_SHAPE}"
    return text_field(value, what, data, nullable=True)  # type: ignore[no-any-return]


def _binary_input(data: object) -> bytes:
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    kind = type(data).__name__
    msg = f"Expected a V2 frame as str (text) or bytes (binary), got {kind}"
    raise InvalidMessageError(msg)


def _decode_binary(data: bytes) -> Message:
    """Decode a kind-0 client push: ``0, |J|, |R|, |topic|, |event|, J, R, topic, event, data``."""
    sizes, end = _push_header(data)
    join_ref, ref, topic, event = _split_fields(data, sizes)
    return Message(
        topic=topic,
        event=event,
        payload=data[end:],
        ref=ref or None,
        join_ref=join_ref or None,
    )


def _push_header(data: bytes) -> tuple[bytes, int]:
    """Return the four field sizes of a client push and where its data starts."""
    if not data or data[0] != _PUSH:
        kind = f"kind {data[0]}" if data else "an empty frame"
        msg = (
            f"Expected a V2 binary push frame (kind {_PUSH}) from the client, got {kind} "
            f"({len(data)} bytes; kinds {_REPLY} and {_BROADCAST} only go from server to client)"
        )
        raise InvalidMessageError(msg)
    if len(data) < _CLIENT_PUSH_HEADER:
        msg = (
            f"Expected a V2 binary push frame with {_CLIENT_PUSH_HEADER} header bytes "
            "(kind, join_ref size, ref size, topic size, event size), "
            f"got {len(data)} bytes"
        )
        raise InvalidMessageError(msg)
    sizes = data[1:_CLIENT_PUSH_HEADER]
    end = _CLIENT_PUSH_HEADER + sum(sizes)
    if len(data) < end:
        msg = (
            f"Expected a V2 binary push frame of at least {end} bytes (join_ref {sizes[0]}, "
            f"ref {sizes[1]}, topic {sizes[2]}, event {sizes[3]} bytes), "
            f"got {len(data)} bytes"
        )
        raise InvalidMessageError(msg)
    return sizes, end


def _split_fields(data: bytes, sizes: bytes) -> list[str]:
    names = ("join_ref", "ref", "topic", "event")
    fields: list[str] = []
    offset = _CLIENT_PUSH_HEADER
    for name, size in zip(names, sizes, strict=True):
        raw = data[offset : offset + size]
        offset += size
        try:
            fields.append(raw.decode())
        except UnicodeDecodeError as exc:
            msg = (
                f"Expected the {name} of a V2 binary push frame to be UTF-8, "
                f"got {len(raw)} bytes that are not ({exc.reason} at byte {exc.start})"
            )
            raise InvalidMessageError(msg) from None
    return fields
