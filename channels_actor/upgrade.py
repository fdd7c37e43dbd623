"""Deciding a WebSocket upgrade: serializer version, origin, ``connect``, subprotocol.

Shared by the standalone server and the WSGI app so both answer exactly alike:
HTTP 400 for a request that is not a WebSocket GET, 403 for an unknown
``vsn``, a refused origin or a refused ``connect``; otherwise the accepted
connection socket, its serializer and the subprotocol to answer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .serializers.negotiate import for_vsn
from .transports.handshake import Request, auth_token, build_connect_info, origin_allowed
from .transports.http import valid_websocket_key

if TYPE_CHECKING:
    from .endpoint import Endpoint, Mount
    from .serializers import Serializer
    from .socket import Socket

__all__ = ["Accepted", "Rejected", "decide_upgrade"]

logger = logging.getLogger("channels_actor.transport")


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


def decide_upgrade(endpoint: Endpoint, mount: Mount, request: Request) -> Accepted | Rejected:
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
    if not origin_allowed(origin, check, request.header("host")):
        logger.error(
            "Could not check origin for Phoenix.Socket transport. Origin of the request: %s. "
            "Allow it with Endpoint(check_origin=[...]) or the socket's check_origin option.",
            endpoint.config.redactor.preview(origin),
        )
        return Rejected(403, "Origin not allowed")
    token, token_sent = auth_token(request)
    connect_info = build_connect_info(request, token, token_sent)
    result = endpoint.connect(mount.handler, params, connect_info, serializer, "websocket")
    from .endpoint import Refused

    if isinstance(result, Refused):
        return Rejected(403, "Connection refused")
    subprotocols = ["phoenix"] if "phoenix" in request.subprotocols else []
    return Accepted(result, serializer, subprotocols)
