"""Deciding a WebSocket upgrade: serializer version, origin, ``connect``, subprotocol.

Shared by the standalone server and the WSGI app so both answer exactly alike:
HTTP 400 for a request that is not a WebSocket GET, 403 for an unknown
``vsn``, a refused origin or a refused ``connect``; otherwise the accepted
connection socket, its serializer and the subprotocol to answer.

:class:`Upgrader` is what carries an accepted upgrade out: the endpoint's
WebSocket service (``server.py``). The request reader of the standalone server
(``transports/requests.py``) and the WSGI side (``transports/wsgi.py``) sit
below the service and call back into it through this Protocol.
"""

from __future__ import annotations

import logging
import threading
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from .handler import Refused
from .serializers.negotiate import for_vsn
from .transports.handshake import (
    Request,
    auth_token,
    build_connect_info,
    origin_allowed,
)
from .transports.http import valid_websocket_key

if TYPE_CHECKING:
    import socket

    from .handler import Mount
    from .serializers import Serializer
    from .socket import Socket
    from .transports.served import ServedEndpoint
    from .transports.websocket import WebSocketTransport

__all__ = ["Accepted", "Rejected", "Upgrader", "decide_upgrade"]

logger = logging.getLogger("channels_actor.transport")

_warned: weakref.WeakSet[ServedEndpoint] = weakref.WeakSet()  # endpoints told about url_host
_warned_lock = threading.Lock()


def _warn_no_url_host(endpoint: ServedEndpoint) -> None:
    """Say once per endpoint why a non-loopback origin is refused by ``check_origin=True``."""
    with _warned_lock:
        if endpoint in _warned:
            return
        _warned.add(endpoint)
    logger.warning(
        "check_origin=True with no url_host accepts only loopback origins (localhost, "
        "127.0.0.1, [::1]); set "
        "Endpoint(url_host='your.host.name') to the name browsers reach this endpoint by, "
        "or pass check_origin=[...] with the allowed origins",
    )


@dataclass(frozen=True)
class Rejected:
    """Answer the request with ``status`` and a short plain-text ``body``."""

    status: int
    body: str


@dataclass(frozen=True)
class Accepted:
    """Upgrade: ``socket`` is what ``connect`` returned."""

    socket: Socket
    serializer: Serializer
    subprotocols: list[str]


def decide_upgrade(endpoint: ServedEndpoint, mount: Mount, request: Request) -> Accepted | Rejected:
    """Run Phoenix's checks, in Phoenix's order, and ``connect``."""
    if request.method != "GET" or not request.is_websocket:
        return Rejected(400, "Expected a WebSocket upgrade (GET with Upgrade: websocket)")
    if request.header("sec-websocket-version") != "13":
        return Rejected(426, "Unsupported WebSocket version: use Sec-WebSocket-Version: 13")
    if not valid_websocket_key(request.header("sec-websocket-key")):
        return Rejected(400, "Missing or malformed Sec-WebSocket-Key")
    params: dict[str, Any] = request.params
    vsn = params.get("vsn", "1.0.0")
    serializer = for_vsn(vsn)
    if serializer is None:
        shown = endpoint.config.redactor.preview(vsn)
        logger.warning("Refusing connection to %s: unsupported vsn %s", mount.path, shown)
        return Rejected(403, f"Unsupported serializer version vsn={shown}: use 1.0.0 or 2.0.0")
    check = mount.options.get("check_origin", endpoint.config.check_origin)
    origin = request.header("origin")
    url_host = endpoint.config.url_host
    if not origin_allowed(origin, check, url_host):
        logger.error(
            "Could not check origin for Phoenix.Socket transport. Origin of the request: %s. "
            "Allow it with Endpoint(check_origin=[...]) or the socket's check_origin option.",
            endpoint.config.redactor.preview(origin),
        )
        if check is True and url_host is None:
            _warn_no_url_host(endpoint)
        return Rejected(403, "Origin not allowed")
    token, token_sent = auth_token(request)
    connect_info = build_connect_info(request, token, token_sent)
    result = endpoint.connect(mount.handler, params, connect_info, serializer, "websocket")
    if isinstance(result, Refused):
        return Rejected(403, "Connection refused")
    subprotocols = ["phoenix"] if "phoenix" in request.subprotocols else []
    return Accepted(result, serializer, subprotocols)


class Upgrader(Protocol):
    """What serving a request needs from the endpoint's WebSocket service."""

    @property
    def endpoint(self) -> ServedEndpoint: ...

    def mount_for(self, path: str) -> Mount | None:
        """The mount whose WebSocket path is ``path`` (``/socket/websocket``)."""
        ...

    def upgrade(
        self,
        mount: Mount,
        request: Request,
        environ: dict[str, Any],
        sock: socket.socket,
        early_data: bytes = b"",
        *,
        lent: bool = False,
    ) -> WebSocketTransport | Rejected:
        """Decide and, when accepted, hand ``sock`` to the reactor; or the refusal.

        ``lent``: the socket stays its WSGI server's; the reactor closes a duplicate.
        """
        ...
