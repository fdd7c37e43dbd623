"""The Channel behaviour users subclass, and the functions callbacks call.

A ``Channel`` is a plain class: the runtime makes one instance per joined
topic per connection and runs its callbacks inside that join's actor, one at a
time. Callbacks can therefore be unit-tested with no threads at all::

    RoomChannel().handle_in("ping", {}, socket)
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import pykka

from ._redact import preview, redactor_for
from ._timer import TimerHandle, call_later
from .errors import ChannelError
from .message import Message, Reply, is_payload
from .results import normalize_reply
from .serializers.base import encode_payload
from .serializers.noop import NoopSerializer

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .results import HandleInfoResult, HandleInResult, HandleOutResult, JoinResult, ReplyT
    from .serializers import Serializer
    from .socket import Socket

__all__ = [
    "Channel",
    "SocketRef",
    "TimerHandle",
    "broadcast",
    "broadcast_from",
    "push",
    "reply",
    "send_after",
    "socket_ref",
]

logger = logging.getLogger("channels_actor.channel")


class Channel:
    """Subclass this for each kind of topic; see the Phoenix.Channel docs.

    Every callback runs on this join's actor (a pool worker or the actor's own
    thread), never concurrently with another callback of the same join.
    Payloads come from clients: treat them as untrusted.

    Messages wait in the join's mailbox, in order. When its connection closes,
    the callback running finishes and the pushes still waiting are dropped, not
    run (a leave sent before the close is still handled, so ``terminate`` gets
    ``("shutdown", "left")``). The mailbox holds at most ``max_mailbox``
    messages (an ``Endpoint`` option, default 10,000): a channel that falls
    that far behind is overloaded, the message past the bound is dropped, and
    the channel ends as a crash: ``terminate`` gets ``("error", ChannelError)``
    naming ``max_mailbox`` and the client gets ``phx_error`` and may rejoin.

    Attributes:
        intercept: event names whose broadcasts go through ``handle_out`` in
            every subscriber. Other broadcasts skip channel code entirely and
            are encoded once per serializer (the fastlane).
    """

    intercept: ClassVar[Sequence[str]] = ()

    def join(self, topic: str, payload: Any, socket: Socket) -> JoinResult:
        """Authorize a client joining ``topic``.

        Return ``("ok", socket)``, ``("ok", reply_map, socket)`` or
        ``("error", reply_map)``. ``push`` and ``broadcast`` are not allowed
        yet: ``socket.channel_ref.tell("after_join")`` and push from
        ``handle_info``. There is no default; every channel defines ``join``.
        """
        msg = (
            f"{type(self).__name__} does not define join(self, topic, payload, socket); "
            "every Channel must, returning ('ok', socket) or ('error', reply_map)"
        )
        raise NotImplementedError(msg)

    def handle_in(self, event: str, payload: Any, socket: Socket) -> HandleInResult:
        """Handle a client's push of ``event``.

        Return ``("noreply", socket)``, ``("reply", reply, socket)``,
        ``("stop", reason, socket)`` or ``("stop", reason, reply, socket)``
        where ``reply`` is a status string or ``(status, payload_map)``.
        """
        msg = (
            f"{type(self).__name__} received {event!r} but does not define "
            "handle_in(self, event, payload, socket)"
        )
        raise NotImplementedError(msg)

    def handle_out(self, event: str, payload: Any, socket: Socket) -> HandleOutResult:
        """Filter or change an intercepted broadcast before it reaches this client.

        Return ``("noreply", socket)`` or ``("stop", reason, socket)``. The
        default pushes the event unchanged.
        """
        push(socket, event, payload)
        return ("noreply", socket)

    def handle_info(self, message: Any, socket: Socket) -> HandleInfoResult:
        """Handle anything told to ``socket.channel_ref`` or sent with ``send_after``.

        Return ``("noreply", socket)`` or ``("stop", reason, socket)``. The
        default logs the message (a short preview, secret keys redacted) and
        keeps going.
        """
        logger.warning(
            "%s received an unexpected message in handle_info: %s",
            type(self).__name__,
            redactor_for(socket).preview(message),
        )
        return ("noreply", socket)

    def terminate(self, reason: Any, socket: Socket) -> None:
        """Clean up; called exactly once per join, by the supervisor.

        ``reason`` is ``("shutdown", "left")``, ``("shutdown", "closed")``, a
        ``stop`` reason, ``("error", exception)`` after a crash,
        ``("shutdown", "duplicate_join")``, or the bare string ``"shutdown"``
        after ``join`` refused with ``("error", reply)`` (as in Phoenix, whose
        channel server stops with ``:shutdown`` then; the socket has
        ``joined == False``). The return value is ignored.
        """


def _require_joined(socket: Socket, action: str) -> None:
    if not socket.joined or socket.connection is None:
        msg = (
            f"{action} needs a joined channel, but the socket for topic {socket.topic!r} "
            "has not joined yet. In join(), tell yourself a message with "
            "socket.channel_ref.tell('after_join') and do it from handle_info()."
        )
        raise ChannelError(msg)


def check_payload(payload: Any, serializer: Serializer | None, error: type[ChannelError]) -> None:
    """Raise ``error`` unless ``payload`` can travel (a JSON mapping or bytes).

    Serializers that produce bytes reject bad payloads themselves while
    encoding; the in-memory serializer does not encode, so check it here to
    keep tests as strict as production.
    """
    if is_payload(payload) and not isinstance(serializer, NoopSerializer):
        return
    try:
        encode_payload(payload)
    except TypeError as exc:
        raise error(str(exc)) from None


def _encode(serializer: Serializer, value: Message | Reply) -> Any:
    try:
        return serializer.encode(value)
    except (TypeError, ValueError) as exc:
        topic = preview(value.topic)
        msg = f"Cannot encode {value.__class__.__name__.lower()} for topic {topic}: {exc}"
        raise ChannelError(msg) from None


def _refuse_oversized(frame: Any, limit: int, action: str, event: str | None) -> None:
    """Raise unless ``frame`` fits ``max_frame_size`` (``limit``); the exact check.

    Callers come here only when the frame's length times four passes the limit,
    so a push pays one ``len`` and a comparison.
    """
    if isinstance(frame, str):
        size = len(frame.encode())
    elif isinstance(frame, bytes):
        size = len(frame)
    else:
        return  # in-memory frames (Message, Reply) have no wire size
    if size > limit:
        what = action if event is None else f"{action} {preview(event)}"
        msg = (
            f"Cannot {what}: the message is {size} bytes, more than max_frame_size "
            f"({limit}); send it in parts or raise the endpoint's max_frame_size"
        )
        raise ChannelError(msg)


def _published(socket: Socket) -> None:
    """Tell the connection's transport that its channel publishes (flow control).

    With the channel's mailbox: what the client sent that is not handled
    yet will be published too, so it counts as queued work.
    """
    published = getattr(socket.connection, "published", None)
    ref = socket.channel_ref
    if published is not None and ref is not None:
        inbox: Any = ref.actor_inbox  # a queue.Queue, or the pool's mailbox with the same qsize
        published(inbox.qsize)


def push(socket: Socket, event: str, message: Mapping[str, Any] | bytes) -> None:
    """Send ``event`` with ``message`` down this socket only.

    Raises:
        ChannelError: before the channel has joined, when ``message`` is not
            a JSON-serializable mapping or ``bytes``, or when it is larger
            than the endpoint's ``max_frame_size``.
    """
    _require_joined(socket, "push")
    serializer = socket.serializer
    assert serializer is not None
    check_payload(message, serializer, ChannelError)
    frame = _encode(serializer, Message(socket.topic or "", event, message, None, socket.join_ref))
    connection = socket.connection
    if len(frame) * 4 > connection.max_frame_size:  # a character is at most 4 bytes
        _refuse_oversized(frame, connection.max_frame_size, "push", event)
    connection.send(frame)


def broadcast(socket: Socket, event: str, message: Mapping[str, Any] | bytes) -> None:
    """Send ``event`` to every subscriber of ``socket.topic``, this channel included.

    While the server is overloaded, the client connection of a channel that
    broadcasts is read more slowly (see ``EndpointConfig``), so a flooding
    client slows down instead of its subscribers falling behind.

    Raises:
        BroadcastError: when the message cannot be serialized, is larger than
            the endpoint's ``max_frame_size``, or the PubSub fails.
        ChannelError: before the channel has joined.
    """
    _require_joined(socket, "broadcast")
    assert socket.pubsub is not None and socket.topic is not None
    socket.pubsub.broadcast(socket.topic, event, message)
    _published(socket)


def broadcast_from(socket: Socket, event: str, message: Mapping[str, Any] | bytes) -> None:
    """Send ``event`` to every subscriber of ``socket.topic`` except this channel.

    Raises:
        BroadcastError: when the message cannot be serialized, is larger than
            the endpoint's ``max_frame_size``, or the PubSub fails.
        ChannelError: before the channel has joined.
    """
    _require_joined(socket, "broadcast_from")
    assert socket.pubsub is not None and socket.topic is not None
    socket.pubsub.broadcast_from(socket.channel_ref, socket.topic, event, message)
    _published(socket)


@dataclass(frozen=True, slots=True)
class SocketRef:
    """Where a delayed reply goes: made by :func:`socket_ref` inside ``handle_in``."""

    connection: Any
    serializer: Serializer
    topic: str
    join_ref: str | None
    ref: str | None


def socket_ref(socket: Socket) -> SocketRef:
    """Capture the current ``handle_in`` message so :func:`reply` can answer it later.

    Return ``("noreply", socket)`` from ``handle_in`` and call ``reply(ref, ...)``
    from any thread once the answer is known.
    """
    _require_joined(socket, "socket_ref")
    if socket.ref is None:
        msg = "socket_ref() works only inside handle_in(), on a message that carries a ref"
        raise ChannelError(msg)
    assert socket.serializer is not None and socket.topic is not None
    return SocketRef(
        socket.connection, socket.serializer, socket.topic, socket.join_ref, socket.ref
    )


def reply(ref: SocketRef, status_or_reply: ReplyT) -> None:
    """Answer the client message captured by :func:`socket_ref`.

    ``status_or_reply`` is a status string or ``(status, payload_map)``.

    Raises:
        ChannelError: for a bad reply, or one larger than the endpoint's
            ``max_frame_size``.
    """
    normal = normalize_reply(status_or_reply)
    if normal is None:
        msg = (
            "reply() takes a status string or (status, payload) with a mapping or bytes "
            f"payload, got {status_or_reply!r}"
        )
        raise ChannelError(msg)
    status, payload = normal
    check_payload(payload, ref.serializer, ChannelError)
    frame = _encode(ref.serializer, Reply(ref.topic, status, payload, ref.ref, ref.join_ref))
    if len(frame) * 4 > ref.connection.max_frame_size:
        _refuse_oversized(frame, ref.connection.max_frame_size, "reply", None)
    ref.connection.send(frame)


def send_after(ref: pykka.ActorRef[Any], message: Any, seconds: float) -> TimerHandle:
    """Tell ``message`` to ``ref`` after ``seconds``, as Phoenix's ``Process.send_after``.

    For a channel, ``send_after(socket.channel_ref, "tick", 1.0)`` calls
    ``handle_info("tick", socket)`` a second later. Returns a handle whose
    ``cancel()`` drops the message if it has not been sent. A message for an
    actor that has stopped meanwhile is dropped.
    """

    def deliver() -> None:
        try:
            ref.tell(message)
        except pykka.ActorDeadError:
            logger.debug("send_after: %s stopped before %s was due", ref, preview(message))

    return call_later(seconds, deliver, ref)
