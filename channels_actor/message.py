"""The three values that travel between clients, channels and the PubSub.

They mirror ``Phoenix.Socket.Message``, ``Reply`` and ``Broadcast``. Payloads are
what the JSON decoder gives (or ``bytes`` for binary frames); serializers turn
these values into wire frames and back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

__all__ = ["Broadcast", "Message", "Reply", "is_payload"]


def is_payload(value: object) -> bool:
    """The rule for what a message may carry: a mapping (sent as a JSON object) or
    ``bytes`` (a binary frame). Whether a mapping's values encode is the
    serializer's to say."""
    kind = type(value)
    return kind is dict or kind is bytes or isinstance(value, (Mapping, bytes))


class Message(NamedTuple):
    """A frame between a client and a channel: a push, a join, a leave, a heartbeat.

    ``ref`` and ``join_ref`` are the client's strings (``None`` on server pushes
    and fastlane broadcasts). Immutable; a named tuple because one is made for
    every frame in and every push out.
    """

    topic: str
    event: str
    payload: Any
    ref: str | None = None
    join_ref: str | None = None


class Reply(NamedTuple):
    """The answer to a client's message with ``ref``: ``phx_reply`` on the wire."""

    topic: str
    status: str
    payload: Any
    ref: str | None
    join_ref: str | None = None


@dataclass(frozen=True, slots=True)
class Broadcast:
    """A message published to every subscriber of ``topic``.

    ``encoded_payload`` caches the payload's JSON, made once in the publisher's
    thread (where a bad payload must raise), so that serializers splice it into
    their frames instead of encoding again for each subscriber.
    """

    topic: str
    event: str
    payload: Any
    encoded_payload: bytes | None = field(default=None, compare=False, repr=False)
