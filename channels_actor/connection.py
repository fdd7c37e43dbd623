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
lock guards the protocol state and the ``topic -> ChannelHandle`` map, which
change together; nothing done under it waits for another thread. What the
connections of one endpoint share (runtime, configuration, counters, PubSub,
the set of open connections) is handed in as a :class:`ConnectionContext`.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pykka

from ._constants import DISCONNECT
from ._messages import ChannelHandle, DispatchIn, JoinChannel, LeaveChannel
from .message import Reply
from .protocol import (
    ConnectionProtocol,
    DeliverLeave,
    DeliverToChannel,
    SendReply,
    ShutdownDuplicate,
    StartChannel,
)
from .pubsub import PubSub, Subscriber

if TYPE_CHECKING:
    from ._runtime import Runtime
    from ._stats import Counters
    from .channel import Channel
    from .config import EndpointConfig
    from .message import Broadcast, Message
    from .protocol import Action
    from .serializers import Frame
    from .socket import Socket
    from .transports.base import Transport
    from .transports.frames import SharedFrames

__all__ = ["Connection", "ConnectionContext", "OpenConnections"]

logger = logging.getLogger("channels_actor.connection")

_ids = itertools.count(1)


class OpenConnections:
    """The connections of one endpoint that are open now (any thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: set[Connection] = set()

    def add(self, connection: Connection) -> None:
        with self._lock:
            self._open.add(connection)

    def discard(self, connection: Connection) -> None:
        with self._lock:
            self._open.discard(connection)

    def snapshot(self) -> list[Connection]:
        with self._lock:
            return list(self._open)

    def __len__(self) -> int:
        return len(self._open)


@dataclass(frozen=True, slots=True)
class ConnectionContext:
    """What every connection of one endpoint shares; the endpoint makes one."""

    runtime: Runtime
    """Starts channel actors under the supervisor."""
    config: EndpointConfig
    """The endpoint's limits and log redaction."""
    counters: Counters
    """Where drops and closes are counted."""
    pubsub: PubSub
    """Where the connection subscribes its socket id's topic."""
    connections: OpenConnections
    """Every open connection registers here while it is open."""


class Connection:
    """The runtime side of one client connection.

    Args:
        context: what the endpoint's connections share.
        socket: the connection-level socket returned by ``connect``.
        transport: the transport's writer for this connection.
    """

    def __init__(self, context: ConnectionContext, socket: Socket, transport: Transport) -> None:
        self._context = context
        self.config = config = context.config
        #: where the transport counts what it drops and closes
        self.counters = context.counters
        self.number = next(_ids)
        self.transport = transport
        #: the largest frame the endpoint sends or accepts (push and reply check it)
        self.max_frame_size = config.max_frame_size
        self.socket = socket._replace(connection=self, transport=transport.name)
        assert socket.handler is not None
        self._protocol = ConnectionProtocol(
            socket.handler,
            max_channels=config.max_channels_per_socket,
            max_topic_size=config.max_topic_size,
            redactor=config.redactor,
            counters=context.counters,
        )
        self._channels: dict[str, ChannelHandle] = {}
        self._lock = threading.Lock()
        self._closed = False
        # The fastlane writes straight to the transport: one call fewer per delivery.
        self.send_shared: Callable[[SharedFrames], None] = transport.send_shared
        #: called by ``broadcast`` with the channel's backlog (flow control)
        self.published: Callable[[Callable[[], int]], None] = transport.published

    def __repr__(self) -> str:
        return f"<Connection #{self.number} id={self.socket.id!r} transport={self.transport.name}>"

    # called by the transport ------------------------------------------------

    def open(self) -> None:
        """Register as open and subscribe to the socket id's topic."""
        self._context.connections.add(self)
        if self.socket.id is not None:
            self._context.pubsub.subscribe(
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
        for handle in channels:
            handle.request_shutdown(reason, urgent=False)
        if self.socket.id is not None:
            self._context.pubsub.unsubscribe_all(self)
        self._context.connections.discard(self)

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
            handle = self._channels.get(topic)
        return None if handle is None else handle.ref

    def shutdown_channel(self, topic: str, reason: Any) -> pykka.ActorRef[Any] | None:
        """End the channel joined on ``topic`` with ``reason``, as a closing connection does."""
        with self._lock:
            handle = self._channels.get(topic)
        if handle is None:
            return None
        handle.request_shutdown(reason, urgent=False)
        return handle.ref

    # called by channel actors -------------------------------------------------

    def send(self, frame: Frame) -> None:
        """Write ``frame`` to the client through the transport's single writer."""
        self.transport.send(frame)

    def channel_exited(self, topic: str, ref: pykka.ActorRef[Any]) -> None:
        """A channel actor ended; free its topic unless a newer join replaced it."""
        with self._lock:
            handle = self._channels.get(topic)
            if handle is not None and handle.ref is ref:
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
        elif isinstance(action, DeliverLeave):
            self._tell(action.message.topic, LeaveChannel(action.message.ref))
        elif isinstance(action, ShutdownDuplicate):
            handle = self._channels.pop(action.topic, None)
            if handle is not None:
                handle.request_shutdown(("shutdown", "duplicate_join"), send_close=True)

    def _start(self, action: StartChannel) -> None:
        message = action.message
        config = self.config
        # The name is for log lines: the topic is cut to a preview.
        name = f"{action.channel.__name__}({config.redactor.clip(message.topic)})"
        try:
            handle = self._context.runtime.start_channel(
                action.channel,
                self.socket,
                (message.topic, message.join_ref),
                JoinChannel(message.payload, message.ref),
                name=name,
                max_mailbox=config.max_mailbox,
                counters=self.counters,
            )
        except RuntimeError as exc:  # "can't start new thread": the process is at its limit
            logger.error(
                "Cannot start a channel for %s: %s", config.redactor.preview(message.topic), exc
            )
            self._protocol.channel_exited(message.topic)
            reply = Reply(
                message.topic, "error", {"reason": "join crashed"}, message.ref, message.join_ref
            )
            self.transport.send(self.socket.serializer.encode(reply))  # type: ignore[union-attr]
            return
        # Under the lock: a channel that ends at once waits for this in channel_exited.
        self._channels[message.topic] = handle

    def _tell(self, topic: str, message: Any) -> None:
        handle = self._channels.get(topic)
        if handle is None:
            return
        try:
            handle.ref.tell(message)
        except pykka.ActorDeadError:
            show = self.config.redactor.preview
            logger.debug("%s ended before %s reached it", handle.ref, show(message))

    def _on_id_broadcast(self, broadcast: Broadcast) -> None:
        if broadcast.event == DISCONNECT:
            logger.info("Disconnecting %r: %r was broadcast to its id", self, DISCONNECT)
            self.transport.disconnect()
