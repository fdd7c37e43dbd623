"""Protocols for references that point up the layers, as starlette's ``types.py``.

The ``Socket`` value is made below the channel, the PubSub and the endpoint,
yet it carries a reference to each, so that a callback can reach them. Its
fields are typed with these Protocols (what those objects offer a callback)
instead of importing the classes, so the import graph stays one-way. The real
``Endpoint``, ``PubSub`` and ``SocketHandler`` satisfy them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .config import EndpointConfig
    from .message import Broadcast

__all__ = ["EndpointRef", "HandlerRef", "Publisher", "RuntimeService"]

Payload = Mapping[str, Any] | bytes


class Publisher(Protocol):
    """The PubSub a socket publishes through and its channel subscribes with."""

    def broadcast(self, topic: str, event: str, message: Payload) -> None: ...

    def broadcast_from(self, from_key: Any, topic: str, event: str, message: Payload) -> None: ...

    def local_broadcast(self, topic: str, event: str, message: Payload) -> None: ...

    def subscribe(self, topic: str, subscriber: Any) -> None: ...

    def subscribe_callback(self, topic: str, callback: Callable[[Broadcast], Any]) -> None: ...

    def unsubscribe(self, topic: str, key: Any) -> None: ...

    def unsubscribe_all(self, key: Any) -> None: ...


class EndpointRef(Protocol):
    """The endpoint serving a socket, as a callback sees it (``socket.endpoint``)."""

    @property
    def config(self) -> EndpointConfig: ...

    @property
    def pubsub(self) -> Publisher: ...

    def broadcast(self, topic: str, event: str, message: Payload) -> None: ...

    def broadcast_from(self, from_ref: Any, topic: str, event: str, message: Payload) -> None: ...

    def local_broadcast(self, topic: str, event: str, message: Payload) -> None: ...

    def subscribe(self, topic: str, callback: Callable[[Broadcast], Any]) -> None: ...

    def unsubscribe(self, topic: str, callback: Callable[[Broadcast], Any]) -> None: ...

    def stats(self) -> dict[str, float]: ...

    def channel_count(self, timeout: float = 5.0) -> int: ...


class HandlerRef(Protocol):
    """The user socket handler that accepted a connection (``socket.handler``)."""

    def connect(self, params: dict[str, Any], socket: Any, connect_info: dict[str, Any]) -> Any: ...

    def id(self, socket: Any) -> str | None: ...

    def channel_for(self, topic: str) -> type[Any] | None: ...


class RuntimeService(Protocol):
    """A part attached to an endpoint's runtime (``Endpoint.attach``), such as a Presence.

    It hears of every channel's end, for any reason, and stops with the runtime.
    """

    def channel_exited(self, ref: Any) -> None:
        """Channel ``ref`` has ended (on the supervisor's thread, after ``terminate``): be quick."""
        ...

    def stop(self, timeout: float) -> None:
        """The runtime stops, its channels already terminated."""
        ...
