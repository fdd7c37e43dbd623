"""The endpoint as its I/O side sees it: the Protocol the server and transports type against.

The endpoint is the top module: it makes the WebSocket service and wires it to
everything else. The service, the request readers, the WSGI side and the
upgrade decisions call back into it, so they are typed with
:class:`ServedEndpoint` (what they really read and call) instead of importing
the ``Endpoint`` class, and the import graph points one way. The real
``Endpoint`` satisfies it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .._stats import Counters
    from ..config import EndpointConfig
    from ..connection import Connection
    from ..handler import Mount, Refused, SocketHandler
    from ..serializers import Serializer
    from ..socket import Socket
    from .base import Transport

__all__ = ["PublishBacklog", "ServedEndpoint", "WSGIApp"]

#: A WSGI application: ``app(environ, start_response) -> iterable of bytes``.
WSGIApp = Callable[[dict[str, Any], Any], Any]


class PublishBacklog(Protocol):
    """The PubSub, as flow control and the WSGI side see it."""

    def backlog(self) -> int:
        """Messages waiting to be dispatched now."""
        ...

    @property
    def single_node(self) -> bool:
        """Whether broadcasts stay in this process (what ``gunicorn -w N`` checks)."""
        ...


class ServedEndpoint(Protocol):
    """What the I/O side needs from the endpoint it serves."""

    @property
    def config(self) -> EndpointConfig: ...

    @property
    def counters(self) -> Counters:
        """Where timeouts, closes and pauses are counted."""
        ...

    @property
    def mounts(self) -> Mapping[str, Mount]:
        """Mounted sockets by path (``/socket``; served at ``/socket/websocket``)."""
        ...

    @property
    def http_app(self) -> WSGIApp | None:
        """The app answering plain HTTP requests; None answers 404."""
        ...

    @property
    def pubsub(self) -> PublishBacklog: ...

    def connect(
        self,
        handler: SocketHandler,
        params: dict[str, Any],
        connect_info: dict[str, Any],
        serializer: Serializer,
        transport_name: str,
    ) -> Socket | Refused:
        """Run the handler's ``connect`` (user code: may block)."""
        ...

    def open_connection(self, socket: Socket, transport: Transport) -> Connection:
        """Start serving an accepted connection through ``transport``."""
        ...

    def start_runtime(self) -> None:
        """Start the actors if they are not running."""
        ...

    def stop(self, timeout: float | None = None) -> None:
        """Drain every channel and stop serving."""
        ...
