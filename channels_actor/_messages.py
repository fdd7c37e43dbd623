"""Messages between the runtime's actors, and the handle by which a channel is ended.

Anything else told to a channel goes to ``handle_info``. Only values defined
here, ``ActorRef`` s and one-shot signals cross threads: no thread holds
another's actor object.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import pykka

if TYPE_CHECKING:
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
    """Told to a channel actor when the client left: reply ok, send ``phx_close``,
    terminate with ``("shutdown", "left")``."""

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


_signal_lock = threading.Lock()


class ShutdownSignal:
    """A one-shot request to end one channel: set from any thread, the first one wins.

    The channel actor reads it before each message, so an urgent request takes
    effect at its next message instead of behind its backlog; the
    ``ShutdownChannel`` told with it wakes an idle actor.
    """

    __slots__ = ("request",)

    def __init__(self) -> None:
        self.request: ShutdownChannel | None = None

    def set(self, request: ShutdownChannel) -> ShutdownChannel:
        """Record ``request`` unless one is already recorded; return the one that holds."""
        with _signal_lock:
            if self.request is None:
                self.request = request
            return self.request


class ChannelHandle(NamedTuple):
    """What other threads hold of a channel actor: its ref and its shutdown signal."""

    ref: pykka.ActorRef[Any]
    """The channel actor's ref."""
    signal: ShutdownSignal
    """Read by the actor before each message."""

    def request_shutdown(
        self, reason: Any, *, send_close: bool = False, urgent: bool = True
    ) -> None:
        """End this channel with ``reason`` (any thread). The first request wins.

        ``urgent`` (duplicate join, endpoint drain): like an exit signal in
        Erlang, the actor ends at its next message, after the callback running
        now, instead of working through its backlog first.

        Not urgent (the connection closed): the callback running now
        finishes; the messages queued behind it are dropped unread (client
        pushes are counted as ``dropped_after_close``) until either a leave the
        client sent before the close, which is handled as usual and ends the
        channel with ``("shutdown", "left")``, or this request's own message,
        which ends it with ``reason``.
        """
        request = self.signal.set(ShutdownChannel(reason, send_close, urgent))
        try:
            self.ref.tell(request)
        except pykka.ActorDeadError:
            pass  # already ended


class WatchChannel(NamedTuple):
    """Recorded in the supervisor's ``Children`` before a channel actor starts."""

    handle: ChannelHandle
    """The channel actor's ref and shutdown signal (an endpoint drain uses it)."""
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
