"""Messages between the runtime's actors. Anything else told to a channel goes to handle_info."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

if TYPE_CHECKING:
    import threading

    import pykka

    from ._channel_server import ChannelServerMixin
    from .message import Broadcast
    from .socket import Socket


class Terminable(Protocol):
    """What the supervisor calls when a channel ends: a ``Channel``, or a stand-in."""

    def terminate(self, reason: Any, socket: Socket) -> None: ...


class NoChannel:
    """Stands in for a channel that never ran (its actor could not start, or its
    constructor failed): ``terminate`` has nothing to clean up."""

    def terminate(self, reason: Any, socket: Socket) -> None:
        return None


class JoinChannel(NamedTuple):
    """Run ``join`` (the first message a channel actor receives)."""

    payload: Any
    """The join payload the client sent."""
    ref: str | None
    """The client's ref of the join, which the reply carries."""


class DispatchIn(NamedTuple):
    """A client's push for ``handle_in``."""

    event: str
    """The client's event name."""
    payload: Any
    """The decoded payload (``bytes`` for a binary frame)."""
    ref: str | None
    """The client's ref, which a reply carries."""


class DispatchOut(NamedTuple):
    """An intercepted broadcast for ``handle_out``."""

    broadcast: Broadcast
    """The broadcast as published."""


class LeaveChannel(NamedTuple):
    """The client left: reply ok, send ``phx_close``, terminate with ``("shutdown", "left")``."""

    ref: str | None
    """The client's ref of the ``phx_leave``."""


class ShutdownChannel(NamedTuple):
    """End the channel from outside: connection closed, duplicate join, endpoint drain."""

    reason: Any
    """The reason ``terminate`` receives."""
    send_close: bool
    """Send ``phx_close`` to the client (duplicate join) or not (connection gone)."""
    urgent: bool = True
    """End before the messages already queued (see ``request_shutdown``)."""


class ChannelExited(NamedTuple):
    """Told by a channel actor to the supervisor when it ends; the supervisor runs ``terminate``."""

    ref: pykka.ActorRef[Any]
    """The channel actor that ended."""
    reason: Any
    """The reason given to ``terminate``."""
    channel: Terminable
    """The user's channel instance (or a stand-in when none was made)."""
    socket: Socket
    """The channel's last socket value."""


class WatchChannel(NamedTuple):
    """Recorded in the supervisor's ``Children`` before a channel actor starts."""

    ref: pykka.ActorRef[Any]
    """The channel actor's ref."""
    actor: ChannelServerMixin
    """The channel actor itself, for ``request_shutdown``."""
    name: str
    """Channel class and topic, for logs."""


class DrainChannels(NamedTuple):
    """Asked of the supervisor: shut every child down; ``done`` is set when none is left."""

    reason: Any
    """The reason every child's ``terminate`` receives."""
    done: threading.Event
    """Set once the last child has terminated."""


class GetSocket(NamedTuple):
    """Asked of a channel actor (testing kit): returns its current socket value."""
