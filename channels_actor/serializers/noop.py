"""The in-memory serializer: frames are the values themselves.

Used by :mod:`channels_actor.testing` and any in-process transport, as
Phoenix.ChannelTest's NoopSerializer: the test receives ``Message`` and
``Reply`` values instead of bytes.
"""

from __future__ import annotations

from ..errors import InvalidMessageError
from ..message import Broadcast, Message, Reply
from .base import Frame

__all__ = ["NoopSerializer"]


class NoopSerializer:
    """Passes values through unchanged; a broadcast becomes a ``Message``."""

    vsn = "noop"

    def fastlane(self, broadcast: Broadcast) -> Frame:
        return Message(broadcast.topic, broadcast.event, broadcast.payload)

    def encode(self, message: Message | Reply) -> Frame:
        return message

    def decode(self, data: str | bytes) -> Message:
        if isinstance(data, Message):
            return data
        msg = f"The noop serializer takes Message values, got {type(data).__name__}"
        raise InvalidMessageError(msg)
