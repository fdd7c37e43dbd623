"""The V1 serializer: JSON objects, for clients that ask for ``vsn=1.0.0`` or no vsn.

Older Phoenix clients (and phoenix.js before 1.4) speak V1:
``{"topic", "event", "payload", "ref"}`` objects. Output never carries a
``join_ref``, so V1 clients cannot drop stale messages; there are no binary
frames. This module mirrors ``Phoenix.Socket.V1.JSONSerializer``.
"""

from __future__ import annotations

from typing import Any

from .._constants import PHX_REPLY
from ..errors import InvalidMessageError
from ..message import Broadcast, Message, Reply
from .base import decode_json, encode_json, encode_payload, frame_of, shape_of, text_field

__all__ = ["V1JSONSerializer"]

_SHAPE = '{"topic", "event", "payload", "ref"}'
_REQUIRED_KEYS = ("topic", "event", "payload", "ref")


class V1JSONSerializer:
    """Phoenix's V1 JSON serializer: text frames only."""

    vsn = "1.0.0"

    def fastlane(self, broadcast: Broadcast) -> str:
        """Encode a broadcast as ``{"topic", "event", "payload", "ref": null}``.

        ``broadcast.encoded_payload`` is spliced in as is when present.
        """
        _refuse_bytes(broadcast.payload, "broadcast")
        encoded = broadcast.encoded_payload
        if encoded is None:
            encoded = encode_payload(broadcast.payload)
        return _splice_object(broadcast.topic, broadcast.event, encoded, None)

    def encode(self, message: Message | Reply) -> str:
        """Encode a push (``Message``) or a ``Reply``; V1 output has no join_ref."""
        _refuse_bytes(message.payload, type(message).__name__.lower())
        if isinstance(message, Reply):
            return _encode_reply(message)
        encoded = encode_payload(message.payload)
        return _splice_object(message.topic, message.event, encoded, message.ref)

    def decode(self, data: str | bytes) -> Message:
        """Decode a client text frame (a JSON object) into a ``Message``.

        Raises:
            InvalidMessageError: the frame is binary, not JSON, or not a V1 object.
        """
        if not isinstance(data, str):
            msg = (
                f"Expected a V1 text frame {_SHAPE}; V1 has no binary frames "
                f"(connect with vsn=2.0.0 to send binary), got {frame_of(data)}"
            )
            raise InvalidMessageError(msg)
        frame = _require_object(decode_json(data), data)
        return Message(
            topic=_text_field(frame["topic"], "topic", data),
            event=_text_field(frame["event"], "event", data),
            payload=frame["payload"],
            ref=_ref_field(frame["ref"], "ref", data),
            join_ref=_ref_field(frame.get("join_ref"), "join_ref", data),
        )


def _splice_object(topic: str, event: str, encoded_payload: bytes, ref: str | None) -> str:
    """Return ``{"topic":T,"event":E,"payload":P,"ref":R}`` with P already JSON."""
    head = encode_json({"topic": topic, "event": event})
    tail = encode_json(ref)
    return b"".join((head[:-1], b',"payload":', encoded_payload, b',"ref":', tail, b"}")).decode()


def _encode_reply(reply: Reply) -> str:
    frame = {
        "topic": reply.topic,
        "event": PHX_REPLY,
        "payload": {"status": reply.status, "response": reply.payload},
        "ref": reply.ref,
    }
    try:
        return encode_json(frame).decode()
    except TypeError as exc:
        msg = f"Cannot serialize the reply payload to JSON ({exc}): {shape_of(reply.payload)}"
        raise TypeError(msg) from None


def _refuse_bytes(payload: object, what: str) -> None:
    if isinstance(payload, bytes):
        msg = (
            f"Cannot send a {what} with a bytes payload ({len(payload)} bytes) to a V1 client: "
            "V1 has no binary frames; the client must connect with vsn=2.0.0"
        )
        # ValueError, not TypeError: bytes are a valid payload type, just not in V1.
        raise ValueError(msg)


def _require_object(frame: object, data: str) -> dict[str, Any]:
    """Check the frame has the keys ``Phoenix.Socket.Message.from_map!`` needs."""
    if not isinstance(frame, dict):
        msg = f"Expected a V1 text frame, a JSON object {_SHAPE}, got {shape_of(frame)}"
        raise InvalidMessageError(msg)
    missing = [key for key in _REQUIRED_KEYS if key not in frame]
    if missing:
        names = ", ".join(map(repr, missing))
        msg = (
            f"Expected a V1 text frame, a JSON object {_SHAPE}, "
            f"but it lacks {names} (got {shape_of(frame)} in {frame_of(data)})"
        )
        raise InvalidMessageError(msg)
    return frame


def _text_field(value: object, name: str, data: str) -> str:
    return text_field(value, f"the {name!r} of a V1 text frame", data)  # type: ignore[no-any-return]


def _ref_field(value: object, name: str, data: str) -> str | None:
    return text_field(value, f"the {name!r} of a V1 text frame", data, nullable=True)  # type: ignore[no-any-return]
