"""One client connection: its protocol state, its channel actors and its writer.

Theory of operation
-------------------
A transport (WebSocket, in-memory) owns the I/O. For each connection it makes
one :class:`Connection` and calls :meth:`Connection.receive` with every decoded
client message from its reader thread; the connection runs the sans-IO
:class:`ConnectionProtocol` and carries out its actions: start a channel actor,
tell a channel actor, write a reply. Everything written goes through
``transport.send(frame)``, the single writer of that connection.

Channel actors call back into the connection from their own threads in only
two ways, neither of which blocks: ``send(frame)`` and ``channel_exited``. A
lock guards the protocol state and the ``topic -> ActorRef`` map, which change
together; nothing done under it waits for another thread.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import pykka

from ._constants import DISCONNECT
from ._messages import ChannelExited, DispatchIn, JoinChannel, NoChannel, WatchChannel
from ._messages import LeaveChannel as LeaveMessage
from .message import Reply
from .protocol import (
    ConnectionProtocol,
    DeliverToChannel,
    LeaveChannel,
    SendReply,
    ShutdownDuplicate,
    StartChannel,
)
from .pubsub import Subscriber

if TYPE_CHECKING:
    from ._channel_server import ChannelServerMixin
    from .channel import Channel
    from .endpoint import Endpoint
    from .message import Broadcast, Message
    from .protocol import Action
    from .serializers import Frame
    from .socket import Socket
    from .transports.frames import SharedFrames

__all__ = ["Connection", "Transport"]

logger = logging.getLogger("channels_actor.connection")

_ids = itertools.count(1)


class Transport(Protocol):
    """What a connection needs from its transport; both methods are thread-safe."""

    name: str

    def send(self, frame: Frame) -> None:
        """Queue ``frame`` for the single writer; never blocks."""

    def send_shared(self, shared: SharedFrames) -> None:
        """Fastlane frames shared by many connections, in order, written together."""

    def disconnect(self) -> None:
        """Close the connection because its socket id was told to ``disconnect``."""

    def shutdown(self) -> None:
        """Close the connection because the endpoint is stopping (1012 on a WebSocket)."""


class Connection:
    """The runtime side of one client connection.

    Args:
        endpoint: the endpoint whose supervisor and PubSub channels use.
        socket: the connection-level socket returned by ``connect``.
        transport: the transport's writer for this connection.
    """

    def __init__(self, endpoint: Endpoint, socket: Socket, transport: Transport) -> None:
        self.endpoint = endpoint
        self.number = next(_ids)
        self.transport = transport
        #: the largest frame the endpoint sends or accepts (push and reply check it)
        self.max_frame_size = endpoint.config.max_frame_size
        self.socket = socket._replace(connection=self, transport=transport.name)
        assert socket.handler is not None
        config = endpoint.config
        self._protocol = ConnectionProtocol(
            socket.handler,
            max_channels=config.max_channels_per_socket,
            max_topic_size=config.max_topic_size,
            redactor=config.redactor,
            counters=endpoint.counters,
        )
        self._channels: dict[str, ChannelServerMixin] = {}
        self._lock = threading.Lock()
        self._closed = False
        # The fastlane writes straight to the transport: one call fewer per delivery.
        self.send_shared: Callable[[SharedFrames], None] = transport.send_shared

    def __repr__(self) -> str:
        return f"<Connection #{self.number} id={self.socket.id!r} transport={self.transport.name}>"

    # called by the transport ------------------------------------------------

    def open(self) -> None:
        """Register with the endpoint and subscribe to the socket id's topic."""
        self.endpoint._connection_opened(self)
        if self.socket.id is not None:
            self.endpoint.pubsub.subscribe(
                self.socket.id, Subscriber(key=self, callback=self._on_id_broadcast)
            )

    def receive(self, message: Message, channel: type[Channel] | None = None) -> None:
        """Handle one decoded client message (transport reader thread).

        ``channel`` overrides the handler's route for a join (testing kit).
        """
        with self._lock:
            if self._closed:
                return
            for action in self._protocol.receive(message, channel):
                self._do(action)

    def close(self, reason: Any = ("shutdown", "closed")) -> None:
        """The connection is gone: end every channel with ``reason`` (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            channels = list(self._channels.values())
            self._channels.clear()
        for actor in channels:
            actor.request_shutdown(reason, urgent=False)
        if self.socket.id is not None:
            self.endpoint.pubsub.unsubscribe_all(self)
        self.endpoint._connection_closed(self)

    @property
    def closed(self) -> bool:
        return self._closed

    def topics(self) -> dict[str, str | None]:
        """``topic -> join_ref`` of the channels joined or joining now."""
        with self._lock:
            return self._protocol.topics

    def channel_ref(self, topic: str) -> pykka.ActorRef[Any] | None:
        """The actor of the channel joined on ``topic``, if any."""
        with self._lock:
            actor = self._channels.get(topic)
        return None if actor is None else actor.actor_ref

    def shutdown_channel(self, topic: str, reason: Any) -> pykka.ActorRef[Any] | None:
        """End the channel joined on ``topic`` with ``reason``, as a closing connection does."""
        with self._lock:
            actor = self._channels.get(topic)
        if actor is None:
            return None
        actor.request_shutdown(reason, urgent=False)
        return actor.actor_ref

    # called by channel actors -------------------------------------------------

    def send(self, frame: Frame) -> None:
        """Write ``frame`` to the client through the transport's single writer."""
        self.transport.send(frame)

    def channel_exited(self, topic: str, ref: pykka.ActorRef[Any]) -> None:
        """A channel actor ended; free its topic unless a newer join replaced it."""
        with self._lock:
            actor = self._channels.get(topic)
            if actor is not None and actor.actor_ref is ref:
                del self._channels[topic]
                self._protocol.channel_exited(topic)

    # internals ----------------------------------------------------------------

    def _do(self, action: Action) -> None:
        if isinstance(action, DeliverToChannel):
            message = action.message
            self._tell(message.topic, DispatchIn(message.event, message.payload, message.ref))
        elif isinstance(action, SendReply):
            self.transport.send(self.socket.serializer.encode(action.reply))  # type: ignore[union-attr]
        elif isinstance(action, StartChannel):
            self._start(action)
        elif isinstance(action, LeaveChannel):
            self._tell(action.message.topic, LeaveMessage(action.message.ref))
        elif isinstance(action, ShutdownDuplicate):
            actor = self._channels.pop(action.topic, None)
            if actor is not None:
                actor.request_shutdown(("shutdown", "duplicate_join"), send_close=True)

    def _start(self, action: StartChannel) -> None:
        message = action.message
        runtime = self.endpoint._runtime
        actor = runtime.create_channel(
            action.channel,
            self.socket,
            (message.topic, message.join_ref),
            max_mailbox=self.endpoint.config.max_mailbox,
            counters=self.endpoint.counters,
        )
        ref = actor.actor_ref
        self._channels[message.topic] = actor
        # Watched before it runs, so its ChannelExited always finds it watched.
        # The name is for log lines: the topic is cut to a preview.
        topic_shown = self.endpoint.config.redactor.clip(message.topic)
        name = f"{action.channel.__name__}({topic_shown})"
        runtime.children.add(WatchChannel(ref, actor, name))
        ref.tell(JoinChannel(message.payload, message.ref))
        try:
            actor._start_actor_loop()  # type: ignore[attr-defined]
        except RuntimeError as exc:  # "can't start new thread": the process is at its limit
            show = self.endpoint.config.redactor.preview
            logger.error("Cannot start a channel for %s: %s", show(message.topic), exc)
            del self._channels[message.topic]
            self._protocol.channel_exited(message.topic)
            runtime.supervisor.tell(ChannelExited(ref, ("error", exc), NoChannel(), self.socket))
            reply = Reply(
                message.topic, "error", {"reason": "join crashed"}, message.ref, message.join_ref
            )
            self.transport.send(self.socket.serializer.encode(reply))  # type: ignore[union-attr]

    def _tell(self, topic: str, message: Any) -> None:
        actor = self._channels.get(topic)
        if actor is None:
            return
        try:
            actor.actor_ref.tell(message)
        except pykka.ActorDeadError:
            show = self.endpoint.config.redactor.preview
            logger.debug("%s ended before %s reached it", actor, show(message))

    def _on_id_broadcast(self, broadcast: Broadcast) -> None:
        if broadcast.event == DISCONNECT:
            logger.info("Disconnecting %r: %r was broadcast to its id", self, DISCONNECT)
            self.transport.disconnect()
