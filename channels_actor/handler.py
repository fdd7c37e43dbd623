"""The user socket handler, and where it is mounted.

``SocketHandler`` is what users subclass to authenticate connections and route
topics to channel classes; ``Endpoint.socket`` mounts it at a path.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Union

from .channel import Channel
from .errors import ConfigurationError
from .router import Router
from .socket import Socket

__all__ = ["ConnectResult", "Mount", "Refused", "SocketHandler"]


@dataclass(frozen=True)
class Refused:
    """``connect`` refused the connection; ``reply`` is what it returned, if a map."""

    reply: Mapping[str, Any] | None = None


ConnectResult = Union[tuple[str, Socket], tuple[str, "Mapping[str, Any]"], str]


class SocketHandler:
    """The user socket: authenticates connections and routes topics to channels.

    Subclass it, set ``channels`` and override ``connect`` and ``id`` as needed.
    One instance serves every connection of its mount, from many threads at
    once, so keep per-connection state in ``socket.assigns``, not on ``self``.

    Example:
        ``channels = {"rooms:lobby": LobbyChannel, "rooms:*": RoomChannel}``:
        exact topics win over prefixes ending in ``*``; among prefixes the
        longest wins.
    """

    channels: ClassVar[Mapping[str, type[Channel]]] = {}

    _router: ClassVar[Router[type[Channel]]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._compile_routes()

    @classmethod
    def _compile_routes(cls) -> None:
        routes = dict(cls.channels)
        for pattern, channel in routes.items():
            if not (isinstance(channel, type) and issubclass(channel, Channel)):
                msg = (
                    f"{cls.__name__}.channels[{pattern!r}] must be a Channel subclass, "
                    f"got {channel!r}"
                )
                raise ConfigurationError(msg)
        cls._router = Router(routes, f"{cls.__name__}.channels")

    def channel_for(self, topic: str) -> type[Channel] | None:
        """Return the channel class routed for ``topic``, or None when none matches."""
        return self._router.match(topic)

    def connect(
        self, params: dict[str, Any], socket: Socket, connect_info: dict[str, Any]
    ) -> ConnectResult:
        """Accept or refuse a connection; runs on the connection's thread.

        Return ``("ok", socket)`` (assigns made here are copied into every
        channel of the connection), ``("error", reply_map)`` or ``"error"``; a
        refusal answers the upgrade with HTTP 403. ``params`` are the query
        parameters, untrusted. The default accepts every connection.
        """
        return ("ok", socket)

    def id(self, socket: Socket) -> str | None:
        """Name the connection so ``endpoint.broadcast(id, "disconnect", {})`` can close it.

        Return a string or None (the default: anonymous).
        """
        return None


SocketHandler._compile_routes()


@dataclass(frozen=True)
class Mount:
    """A user socket mounted at ``path`` (served at ``path + "/websocket"``)."""

    path: str
    handler: SocketHandler
    options: Mapping[str, Any] = field(default_factory=dict)
