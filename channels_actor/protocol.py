"""The per-connection multiplexer, without I/O: decoded messages in, actions out.

Theory of operation
-------------------
This is Phoenix.Socket's ``handle_in`` as a pure state machine, in the manner
of h11: it imports no sockets, threads or actors. A transport decodes a frame
into a :class:`Message`, calls :meth:`ConnectionProtocol.receive`, and carries
out the actions returned, in order. When a channel ends, the transport calls
:meth:`ConnectionProtocol.channel_exited` so the topic is free again.

The state is one map, ``topic -> join_ref`` of the channels this connection
has joined (or is joining). The rules, in Phoenix's order:

- ``heartbeat`` on topic ``phoenix`` is answered ok, joined or not;
- ``phx_join`` of a topic already joined shuts the old channel down with
  ``("shutdown", "duplicate_join")`` and joins again;
- ``phx_join`` of a topic longer than ``max_topic_size`` bytes is refused
  ``topic too long``; it is never joined, so other events on it get
  ``unmatched topic``;
- ``phx_join`` with no route is refused ``unmatched topic`` (join_ref null);
  past ``max_channels`` it is refused ``too many channels joined``;
- a message for a joined topic with a non-null ``join_ref`` other than the
  current one is stale and ignored silently;
- ``phx_leave`` of a joined topic goes to the channel; of an unknown topic it
  is answered ok at once; any other event on an unknown topic is refused
  ``unmatched topic``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Union

from ._constants import HEARTBEAT, HEARTBEAT_TOPIC, PHX_JOIN, PHX_LEAVE
from ._redact import Redactor
from ._redact import redactor as default_redactor
from .message import Message, Reply

if TYPE_CHECKING:
    from ._stats import Counters
    from ._types import HandlerRef
    from .channel import Channel

__all__ = [
    "Action",
    "ConnectionProtocol",
    "DeliverToChannel",
    "DeliverLeave",
    "SendReply",
    "ShutdownDuplicate",
    "StartChannel",
]

logger = logging.getLogger("channels_actor.protocol")


@dataclass(frozen=True, slots=True)
class SendReply:
    """Write ``reply`` to the client."""

    reply: Reply


@dataclass(frozen=True, slots=True)
class StartChannel:
    """Start a ``channel`` actor for ``message.topic`` and give it the join ``message``."""

    channel: type[Channel]
    message: Message


@dataclass(frozen=True, slots=True)
class DeliverToChannel:
    """Give ``message`` to the channel joined on its topic (``handle_in``)."""

    message: Message


@dataclass(frozen=True, slots=True)
class DeliverLeave:
    """Give the client's ``phx_leave`` to the channel joined on ``message.topic``."""

    message: Message


@dataclass(frozen=True, slots=True)
class ShutdownDuplicate:
    """End the channel joined on ``topic`` with ``join_ref``: the client joined it again."""

    topic: str
    join_ref: str | None


Action = Union[SendReply, StartChannel, DeliverToChannel, DeliverLeave, ShutdownDuplicate]


class ConnectionProtocol:
    """The multiplexer state of one connection.

    Args:
        handler: routes topics to channel classes (``channel_for``).
        max_channels: joins allowed at once on this connection.
        max_topic_size: UTF-8 bytes a joined topic may have.
        redactor: renders client values (topics, refs) in log lines.
        counters: where refusals are counted (``joins_refused_topic_too_long``).
    """

    def __init__(
        self,
        handler: HandlerRef,
        *,
        max_channels: int = 100,
        max_topic_size: int = 1024,
        redactor: Redactor | None = None,
        counters: Counters | None = None,
    ) -> None:
        self._handler = handler
        self._max_channels = max_channels
        self._max_topic_size = max_topic_size
        self._redactor = redactor if redactor is not None else default_redactor()
        self._counters = counters
        self._joined: dict[str, str | None] = {}

    @property
    def topics(self) -> dict[str, str | None]:
        """A copy of ``topic -> join_ref`` for the channels joined or joining."""
        return dict(self._joined)

    def join_ref(self, topic: str) -> str | None:
        """The current join_ref of ``topic`` (None when not joined or joined without one)."""
        return self._joined.get(topic)

    def receive(self, message: Message, channel: type[Channel] | None = None) -> list[Action]:
        """Apply one client message and return what the transport must do.

        ``channel`` overrides the route of a join (the testing kit's
        ``join(socket, Channel, topic)``).
        """
        topic, event = message.topic, message.event
        if topic == HEARTBEAT_TOPIC and event == HEARTBEAT:
            return [SendReply(Reply(topic, "ok", {}, message.ref, None))]
        if event == PHX_JOIN:
            return self._join(message, channel)
        if topic in self._joined:
            current = self._joined[topic]
            if message.join_ref is not None and message.join_ref != current:
                if logger.isEnabledFor(logging.DEBUG):
                    show = self._redactor.preview
                    logger.debug(
                        "Ignoring %s on %s with stale join_ref %s (current %s)",
                        show(event),
                        show(topic),
                        show(message.join_ref),
                        show(current),
                    )
                return []
            if event == PHX_LEAVE:
                return [DeliverLeave(message)]
            return [DeliverToChannel(message)]
        if event == PHX_LEAVE:
            return [SendReply(Reply(topic, "ok", {}, message.ref, message.join_ref))]
        if logger.isEnabledFor(logging.DEBUG):
            show = self._redactor.preview
            logger.debug("Ignoring %s on %s: the topic is not joined", show(event), show(topic))
        return [SendReply(Reply(topic, "error", {"reason": "unmatched topic"}, message.ref, None))]

    def _join(self, message: Message, channel: type[Channel] | None) -> list[Action]:
        actions: list[Action] = []
        topic = message.topic
        show = self._redactor.preview
        size = _utf8_size(topic, self._max_topic_size)
        if size is not None:
            logger.warning(
                "Refusing join of a topic of %d bytes (max_topic_size %d): %s",
                size,
                self._max_topic_size,
                show(topic),
            )
            if self._counters is not None:
                self._counters.incr("joins_refused_topic_too_long")
            reason = {"reason": "topic too long"}
            return [SendReply(Reply(topic, "error", reason, message.ref, message.join_ref))]
        if topic in self._joined:
            logger.debug("Duplicate join of %s: shutting the earlier join down", show(topic))
            actions.append(ShutdownDuplicate(topic, self._joined.pop(topic)))
        if channel is None:
            channel = self._handler.channel_for(topic)
        if channel is None:
            logger.warning(
                "Ignoring join of %s: no channel found in %s.channels",
                show(topic),
                type(self._handler).__name__,
            )
            actions.append(
                SendReply(Reply(topic, "error", {"reason": "unmatched topic"}, message.ref, None))
            )
            return actions
        if len(self._joined) >= self._max_channels:
            logger.error(
                "Refusing join of %s: %d channels already joined on this connection "
                "(max_channels_per_socket)",
                show(topic),
                len(self._joined),
            )
            reply = Reply(
                topic,
                "error",
                {"reason": "too many channels joined"},
                message.ref,
                message.join_ref,
            )
            actions.append(SendReply(reply))
            return actions
        self._joined[topic] = message.join_ref
        actions.append(StartChannel(channel, message))
        return actions

    def channel_exited(self, topic: str) -> None:
        """Forget ``topic``: its current channel ended.

        The transport calls this only for the channel that is current for the
        topic (an old channel replaced by a duplicate join is not).
        """
        self._joined.pop(topic, None)


def _utf8_size(text: str, limit: int) -> int | None:
    """The UTF-8 size of ``text`` when it is over ``limit`` bytes, else None."""
    if len(text) * 4 <= limit:  # no character takes more than 4 bytes
        return None
    size = len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
    return size if size > limit else None
