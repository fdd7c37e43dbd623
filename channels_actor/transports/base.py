"""The transport seam: what a connection needs from the I/O that carries it.

A transport owns one client's I/O. It makes a ``Connection`` for the client,
feeds it every decoded message (``Connection.receive``) and tells it when the
client is gone (``Connection.close``); the connection writes through the
methods below. The WebSocket transport (``websocket.py``) and the in-memory
one (``memory.py``) implement it; a long-poll transport would be a third.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ..serializers import Frame
    from .frames import SharedFrames

__all__ = ["Transport"]


class Transport(Protocol):
    """A connection's writer. Every method is thread-safe and never blocks.

    Channel actors, the PubSub registry and the reactor all write to one
    client at once; the transport keeps their frames whole and in order.
    """

    name: str
    """Shown to callbacks as ``socket.transport``: ``"websocket"``, ``"memory"``."""

    def send(self, frame: Frame) -> None:
        """Queue ``frame`` (what the connection's serializer produced) for the client."""

    def send_shared(self, shared: SharedFrames) -> None:
        """Queue fastlane frames shared by many connections, in order, written together."""

    def published(self, backlog: Callable[[], int]) -> None:
        """The connection's channel broadcast: flow control may read this client more slowly.

        ``backlog`` counts the client's messages still waiting for that channel.
        """

    def disconnect(self) -> None:
        """Close the connection: its socket id was told to ``disconnect``."""

    def shutdown(self) -> None:
        """Close the connection: the endpoint is stopping (1012 on a WebSocket)."""
