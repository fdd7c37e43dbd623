"""The socket value passed to every callback.

``Socket`` is an immutable value as in Phoenix: ``assign`` returns a new one.
The channel's actor keeps the current value; callbacks receive it and return
the one to keep. Its references up the layers (endpoint, handler, PubSub) are
typed with the Protocols of ``_types.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pykka

    from ._types import EndpointRef, HandlerRef, Publisher
    from .serializers import Serializer

__all__ = ["Socket", "assign"]


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
    endpoint: EndpointRef | None = None
    handler: HandlerRef | None = None
    id: str | None = None
    transport: str = "memory"
    serializer: Serializer | None = None
    pubsub: Publisher | None = None
    channel_ref: pykka.ActorRef[Any] | None = None
    ref: str | None = None
    connection: Any = field(default=None, repr=False)

    def __repr__(self) -> str:
        return (
            f"<Socket topic={self.topic!r} joined={self.joined} id={self.id!r} "
            f"join_ref={self.join_ref!r} assigns={self.assigns!r}>"
        )

    def _replace(self, **changes: Any) -> Socket:
        """A copy with ``changes``; ``dataclasses.replace`` is much slower on this hot path.

        Named as ``NamedTuple._replace`` is, and for the same reason: the
        underscore keeps it clear of field names; the runtime calls it freely.
        """
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
