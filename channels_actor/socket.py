"""The socket value passed to every callback, and the user socket handler.

``Socket`` is an immutable value as in Phoenix: ``assign`` returns a new one.
The channel's actor keeps the current value; callbacks receive it and return
the one to keep. ``SocketHandler`` is what users subclass to authenticate
connections and route topics to channel classes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, ClassVar, Union

from .errors import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Mapping

    import pykka

    from .channel import Channel
    from .endpoint import Endpoint
    from .pubsub import PubSub
    from .serializers import Serializer

__all__ = ["ConnectResult", "Refused", "Socket", "SocketHandler", "assign"]


@dataclass(frozen=True, slots=True, eq=False)
class Socket:
    """The state of one connection, or of one joined channel on it.

    Attributes:
        topic: the channel's topic (None on the connection-level socket).
        assigns: user data; change it with :func:`assign`, never in place.
        join_ref: the client's ref of the join that started this channel.
        joined: True once ``join`` accepted; ``push`` and ``broadcast`` need it.
        endpoint: the :class:`Endpoint` serving this socket.
        handler: the :class:`SocketHandler` instance that accepted the connection.
        id: the socket id returned by ``SocketHandler.id`` (or None).
        transport: the transport's name, ``"websocket"`` or ``"memory"``.
        serializer: the serializer negotiated for this connection.
        pubsub: the endpoint's :class:`PubSub`.
        channel_ref: this join's pykka ``ActorRef``; ``channel_ref.tell(msg)``
            delivers ``msg`` to ``handle_info``.
        ref: the ref of the client message being handled (``handle_in`` only).
        connection: the transport connection frames are written to (internal).
    """

    topic: str | None = None
    assigns: dict[str, Any] = field(default_factory=dict)
    join_ref: str | None = None
    joined: bool = False
    endpoint: Endpoint | None = None
    handler: SocketHandler | None = None
    id: str | None = None
    transport: str = "memory"
    serializer: Serializer | None = None
    pubsub: PubSub | None = None
    channel_ref: pykka.ActorRef[Any] | None = None
    ref: str | None = None
    connection: Any = field(default=None, repr=False)

    def __repr__(self) -> str:
        return (
            f"<Socket topic={self.topic!r} joined={self.joined} id={self.id!r} "
            f"join_ref={self.join_ref!r} assigns={self.assigns!r}>"
        )

    def _replace(self, **changes: Any) -> Socket:
        """A copy with ``changes``; ``dataclasses.replace`` is much slower on this hot path."""
        new = object.__new__(Socket)
        get = changes.get
        for name in _FIELDS:
            _set(new, name, get(name, getattr(self, name)))
        return new


_FIELDS = tuple(f.name for f in fields(Socket))
_set = object.__setattr__


def assign(socket: Socket, key: str | None = None, value: Any = None, /, **pairs: Any) -> Socket:
    """Return ``socket`` with its assigns updated.

    ``assign(socket, "user_id", 7)`` or ``assign(socket, user_id=7, room="a")``.
    The given socket is unchanged: keep the returned one, as in Phoenix.
    """
    updates = dict(pairs)
    if key is not None:
        updates[key] = value
    elif not pairs:
        msg = "assign() needs a key and a value, or keyword pairs: assign(socket, 'k', v)"
        raise TypeError(msg)
    return socket._replace(assigns={**socket.assigns, **updates})


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

    _exact: ClassVar[dict[str, type[Channel]]]
    _prefixes: ClassVar[list[tuple[str, type[Channel]]]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._compile_routes()

    @classmethod
    def _compile_routes(cls) -> None:
        from .channel import Channel

        exact: dict[str, type[Channel]] = {}
        prefixes: list[tuple[str, type[Channel]]] = []
        for pattern, channel in dict(cls.channels).items():
            if not (isinstance(channel, type) and issubclass(channel, Channel)):
                msg = (
                    f"{cls.__name__}.channels[{pattern!r}] must be a Channel subclass, "
                    f"got {channel!r}"
                )
                raise ConfigurationError(msg)
            if not isinstance(pattern, str) or "*" in pattern[:-1]:
                msg = (
                    f"{cls.__name__}.channels has the pattern {pattern!r}: a topic pattern is "
                    "an exact topic or a prefix ending in '*', such as 'rooms:*'"
                )
                raise ConfigurationError(msg)
            if pattern.endswith("*"):
                prefixes.append((pattern[:-1], channel))
            else:
                exact[pattern] = channel
        prefixes.sort(key=lambda item: len(item[0]), reverse=True)
        cls._exact = exact
        cls._prefixes = prefixes

    def channel_for(self, topic: str) -> type[Channel] | None:
        """Return the channel class routed for ``topic``, or None when none matches."""
        found = self._exact.get(topic)
        if found is not None:
            return found
        for prefix, channel in self._prefixes:
            if topic.startswith(prefix):
                return channel
        return None

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
