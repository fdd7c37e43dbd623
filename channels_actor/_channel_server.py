"""The server of one joined channel, and the actors that host it.

Theory of operation
-------------------
:class:`ChannelServer` is a plain object holding the channel logic: it is
given one message at a time and never touches a thread, so it can be driven
by a test directly. The runtime hosts each one in a pykka actor, a thin
wrapper: :class:`PooledChannelActor` (``actor_mode="pool"``) or
:class:`ThreadedChannelActor` (``"thread"``). What the server needs from its
host is the :class:`ChannelHost` Protocol: the actor's ref and an immediate
stop. Other threads hold only a ``ChannelHandle`` (the ref and a one-shot
``ShutdownSignal``), never the actor.

A connection starts one actor per ``phx_join``, the supervisor watches it,
and its first message is ``JoinChannel``. Everything for that join
then arrives in its mailbox, in order: client pushes (``DispatchIn``),
intercepted broadcasts (``DispatchOut``), the leave, a shutdown from outside,
and any other object, which goes to ``handle_info``. The user's ``Channel``
instance lives here, so its callbacks never run concurrently.

Every callback result goes through ``results.normalize_*``. A bad result or an
exception is a crash of this channel only: it is logged with the callback's
name, the client gets ``phx_error``, and the actor ends. The actor ends exactly
once (``_exit``): it unsubscribes from the registry, writes ``phx_close`` or
``phx_error`` when the client should know, tells the connection to forget the
topic, and tells the supervisor ``ChannelExited``; the supervisor then calls
``terminate``. Messages still queued after that are dropped.

A shutdown from outside (``ChannelHandle.request_shutdown``) does not wait behind a backlog:
a duplicate join or an endpoint drain ends the actor at its next message. A
closed connection does the same, except that a leave the client sent before it
closed is still handled (terminate then gets ``("shutdown", "left")``, as in
Phoenix, where the leave is ahead of the transport's exit in the mailbox): the
messages queued in front of it are dropped without running their callbacks,
since nobody would receive what they reply or push. Each client push dropped so
is counted as ``dropped_after_close``.

The mailbox is bounded (``max_mailbox``). A message that would pass the bound
is dropped (``mailbox_overflows``) on the sender's thread, and the channel is
overloaded: it ends at its next message as a crash, with ``("error",
ChannelError(...max_mailbox...))``, and the client gets ``phx_error`` and may
rejoin. A channel that cannot keep up is ended rather than left to grow its
backlog without bound, and one that missed a message does not go on as if it
had not.

Crashes are caught here rather than left to pykka, which would stop the actor
without a word to the client (tells) or keep a broken channel alive (asks).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from itertools import count
from typing import TYPE_CHECKING, Any, Protocol

import pykka

from ._constants import PHX_CLOSE, PHX_ERROR
from ._messages import (
    ChannelExited,
    ChannelHandle,
    DispatchIn,
    DispatchOut,
    GetSocket,
    JoinChannel,
    LeaveChannel,
    NoChannel,
    ShutdownChannel,
    ShutdownSignal,
)
from ._pool import ActorPool, BoundedInbox, MailboxBound, PooledActor
from ._redact import redactor_for
from .channel import check_payload
from .errors import ChannelError
from .message import Message, Reply
from .pubsub import Subscriber
from .results import Joined, Stop, normalize_handle_in, normalize_handle_out, normalize_join
from .serializers.base import decode_json

if TYPE_CHECKING:
    from types import TracebackType

    from pykka._envelope import Envelope

    from ._stats import Counters
    from .channel import Channel
    from .socket import Socket

__all__ = [
    "ChannelHost",
    "ChannelServer",
    "PooledChannelActor",
    "ThreadedChannelActor",
    "is_graceful",
]

logger = logging.getLogger("channels_actor.channel")

_thread_counter = count(1)

# Characters of an exception's message shown in a log line.
_MESSAGE_LIMIT = 500


def is_graceful(reason: Any) -> bool:
    """Phoenix's rule: ``normal``, ``shutdown`` and ``("shutdown", _)`` close; the rest error."""
    return reason in ("normal", "shutdown") or (
        isinstance(reason, tuple) and len(reason) == 2 and reason[0] == "shutdown"
    )


class ChannelHost(Protocol):
    """What a :class:`ChannelServer` needs from the actor that hosts it."""

    @property
    def actor_ref(self) -> pykka.ActorRef[Any]:
        """The hosting actor's ref: the channel's ``socket.channel_ref``."""
        ...

    def stop_now(self) -> None:
        """Stop at once, not after the backlog: queued tells are dropped and
        queued asks fail with ``ActorDeadError``."""
        ...


class ChannelServer:
    """One joined channel's logic: the user's ``Channel``, its socket and its end.

    Args:
        host: the actor running this server.
        channel_cls: the user's channel class, instantiated at the join.
        socket: the connection's socket.
        join: ``(topic, join_ref)``.
        signal: the shutdown signal other threads set (``ChannelHandle``).
        exited: called once with ``ChannelExited`` when the channel ends (the
            supervisor's ``tell``).
        counters: where drops are counted.
        mailbox_limit: the host's ``max_mailbox``, named in errors.
    """

    def __init__(
        self,
        host: ChannelHost,
        channel_cls: type[Channel],
        socket: Socket,
        join: tuple[str, str | None],
        *,
        signal: ShutdownSignal,
        exited: Callable[[ChannelExited], Any],
        counters: Counters | None = None,
        mailbox_limit: int | None = None,
    ) -> None:
        self._host = host
        self._ref = ref = host.actor_ref
        self._counters = counters
        self._mailbox_limit = mailbox_limit
        self._dropped_in = 0
        self._channel_cls = channel_cls
        self._owner = channel_cls.__name__
        self._channel: Channel | None = None
        topic, join_ref = join
        self._socket = socket._replace(topic=topic, join_ref=join_ref, channel_ref=ref)
        self._signal = signal
        self._notify_exit = exited
        self._subscribed = False
        self._exited = False

    # mailbox ------------------------------------------------------------------

    def receive(self, message: Any) -> Any:
        """Handle one message of the mailbox (on the host's thread)."""
        if isinstance(message, GetSocket):
            return self._socket
        if self._exited:
            self._log_dropped(message)
            return None
        shutdown = self._signal.request
        if shutdown is not None:
            if shutdown.urgent or message is shutdown or self._channel is None:
                self._exit(shutdown.reason, send_frames=shutdown.send_close)
                return None
            if type(message) is not LeaveChannel:
                # The connection is gone: nobody would receive what this
                # callback replies or pushes, so it does not run.
                if type(message) is DispatchIn:
                    self._dropped_in += 1
                return None
        try:
            kind = type(message)
            if kind is DispatchOut:
                self._handle_out(message)
            elif kind is DispatchIn:
                self._handle_in(message)
            elif isinstance(message, JoinChannel):
                self._join(message)
            elif isinstance(message, LeaveChannel):
                self._reply(message.ref, "ok", {})
                self._exit(("shutdown", "left"))
            else:
                self._handle_info(message)
        except Exception as exc:
            self._crash(exc)
        return None

    def _log_dropped(self, message: Any) -> None:
        if logger.isEnabledFor(logging.DEBUG):
            show = redactor_for(self._socket).preview
            logger.debug(
                "%s on %s ended; dropped %s", self._owner, show(self._socket.topic), show(message)
            )

    def failed(self, exception: BaseException | None) -> None:
        """The host caught ``exception`` (only a bug in this module gets there)."""
        self._exit(("error", exception))

    def mailbox_full(self, envelope: Envelope[Any]) -> None:
        """The mailbox holds ``max_mailbox`` messages: drop this one, end the channel.

        Runs on the sender's thread (the reactor, the registry, any ``tell``),
        outside the inbox's lock.
        """
        if self._counters is not None:
            self._counters.incr("mailbox_overflows")
        error = ChannelError(
            f"{self._owner} on {self._socket.topic!r:.80} cannot keep up: "
            f"max_mailbox={self._mailbox_limit} messages are already waiting, so it "
            "ends as crashed and its client may rejoin. Make its callbacks faster, "
            "or raise Endpoint(max_mailbox=...)"
        )
        if envelope.reply_to is not None:
            envelope.reply_to.set_exception(exc_info=(ChannelError, error, None))
        if self._signal.request is not None:
            return  # already ending; the rest is dropped too
        logger.warning(
            "%s on %.80r: mailbox full (max_mailbox=%s); dropping messages and "
            "ending the channel as crashed",
            self._owner,
            self._socket.topic,
            self._mailbox_limit,
        )
        ChannelHandle(self._ref, self._signal).request_shutdown(("error", error), send_close=True)

    # callbacks ----------------------------------------------------------------

    def _join(self, message: JoinChannel) -> None:
        socket = self._socket
        topic = socket.topic
        assert topic is not None
        try:
            self._channel = self._channel_cls()
            outcome = normalize_join(
                self._owner, self._channel.join(topic, message.payload, socket)
            )
            status = "ok" if isinstance(outcome, Joined) else "error"
            frame = self._encode_reply(message.ref, status, outcome.response, "join")
        except Exception as exc:
            show = redactor_for(socket).preview
            logger.error("%s.join(%s) crashed", self._owner, show(topic), exc_info=exc)
            self._reply(message.ref, "error", {"reason": "join crashed"})
            self._exit(("error", exc), send_frames=False)
            return
        if not isinstance(outcome, Joined):
            show = redactor_for(socket).preview
            logger.info(
                "%s refused join of %s: %s", self._owner, show(topic), show(outcome.response)
            )
            socket.connection.send(frame)
            self._exit("shutdown", send_frames=False)
            return
        self._socket = outcome.socket._replace(
            joined=True,
            topic=topic,
            join_ref=socket.join_ref,
            channel_ref=self._ref,
            connection=socket.connection,
            serializer=socket.serializer,
        )
        self._subscribe()
        logger.info("JOINED %s with %s", redactor_for(socket).clip(topic), self._owner)
        socket.connection.send(frame)

    def _subscribe(self) -> None:
        socket = self._socket
        assert socket.pubsub is not None and socket.topic is not None
        socket.pubsub.subscribe(
            socket.topic,
            Subscriber(
                key=self._ref,
                channel_ref=self._ref,
                connection=socket.connection,
                serializer=socket.serializer,
                intercepts=frozenset(self._channel_cls.intercept),
            ),
        )
        self._subscribed = True

    def _handle_in(self, message: DispatchIn) -> None:
        assert self._channel is not None
        self._socket = socket = self._socket._replace(ref=message.ref)
        outcome = normalize_handle_in(
            self._owner, self._channel.handle_in(message.event, message.payload, socket)
        )
        self._socket = outcome.socket._replace(ref=None)
        if outcome.reply is not None:
            status, payload = outcome.reply
            self._socket.connection.send(
                self._encode_reply(message.ref, status, payload, "handle_in")
            )
        if isinstance(outcome, Stop):
            self._exit(outcome.reason)

    def _handle_out(self, message: DispatchOut) -> None:
        assert self._channel is not None
        broadcast = message.broadcast
        # Each subscriber decodes its own copy, so handle_out may change it freely.
        payload = (
            decode_json(broadcast.encoded_payload)
            if broadcast.encoded_payload is not None
            else broadcast.payload
        )
        outcome = normalize_handle_out(
            self._owner, self._channel.handle_out(broadcast.event, payload, self._socket)
        )
        self._socket = outcome.socket
        if isinstance(outcome, Stop):
            self._exit(outcome.reason)

    def _handle_info(self, message: Any) -> None:
        if self._channel is None:
            show = redactor_for(self._socket).preview
            logger.warning("%s got %s before join; dropped", self._owner, show(message))
            return
        outcome = normalize_handle_out(
            self._owner, self._channel.handle_info(message, self._socket), "handle_info"
        )
        self._socket = outcome.socket
        if isinstance(outcome, Stop):
            self._exit(outcome.reason)

    # ending -------------------------------------------------------------------

    def _crash(self, exc: BaseException) -> None:
        redactor = redactor_for(self._socket)
        logger.error(
            "%s on %s crashed: %s",
            self._owner,
            redactor.preview(self._socket.topic),
            redactor.clip(str(exc), _MESSAGE_LIMIT),
            exc_info=exc,
        )
        self._exit(("error", exc))

    def _exit(self, reason: Any, *, send_frames: bool = True) -> None:
        if self._exited:
            return
        self._exited = True
        socket = self._socket
        if self._subscribed and socket.pubsub is not None:
            socket.pubsub.unsubscribe_all(self._ref)
        if send_frames:
            event = PHX_CLOSE if is_graceful(reason) else PHX_ERROR
            payload = {} if event == PHX_CLOSE else {"reason": "channel_crash"}
            self._send(
                Message(socket.topic or "", event, payload, socket.join_ref, socket.join_ref)
            )
        if self._dropped_in and self._counters is not None:
            self._counters.incr("dropped_after_close", self._dropped_in)
        connection = socket.connection
        if connection is not None:
            connection.channel_exited(socket.topic, self._ref)
        channel = self._channel if self._channel is not None else NoChannel()
        self._notify_exit(ChannelExited(self._ref, reason, channel, socket))
        self._host.stop_now()

    def _encode_reply(self, ref: str | None, status: str, payload: Any, callback: str) -> Any:
        """Encode a reply the user's callback asked for; a payload that cannot
        be encoded is that callback's fault and crashes the channel."""
        socket = self._socket
        assert socket.serializer is not None
        check_payload(payload, socket.serializer, ChannelError)
        try:
            return socket.serializer.encode(
                Reply(socket.topic or "", status, payload, ref, socket.join_ref)
            )
        except (TypeError, ValueError) as exc:
            # Bounded and redacted: the message is logged, and again in the traceback.
            redactor = redactor_for(socket)
            msg = (
                f"{self._owner}.{callback}() replied ({redactor.preview(status)}, "
                f"{redactor.preview(payload)}), which cannot be encoded: "
                f"{redactor.clip(str(exc), _MESSAGE_LIMIT)}"
            )
            raise ChannelError(msg) from None

    def _reply(self, ref: str | None, status: str, payload: Any) -> None:
        socket = self._socket
        self._send(Reply(socket.topic or "", status, payload, ref, socket.join_ref))

    def _send(self, value: Message | Reply) -> None:
        """Send a frame the runtime made (errors, closes); they always encode."""
        socket = self._socket
        if socket.connection is None or socket.serializer is None:
            return
        try:
            frame = socket.serializer.encode(value)
        except (TypeError, ValueError) as exc:
            redactor = redactor_for(socket)
            logger.error(
                "%s on %s: cannot encode %s: %s",
                self._owner,
                redactor.preview(socket.topic),
                redactor.preview(value),
                redactor.clip(str(exc), _MESSAGE_LIMIT),
            )
            return
        socket.connection.send(frame)


_OWN_MESSAGES = frozenset(
    {DispatchIn, DispatchOut, JoinChannel, LeaveChannel, ShutdownChannel, GetSocket}
)


class _ChannelActor(MailboxBound):
    """What both hosts share: hand every message to the server, stop on request."""

    server: ChannelServer
    unbounded_messages = MailboxBound.unbounded_messages | {ShutdownChannel}

    def _handle_receive(self, message: Any) -> Any:
        # pykka checks four message classes of its own first; ours skip that.
        if type(message) in _OWN_MESSAGES:
            return self.server.receive(message)
        return super()._handle_receive(message)  # type: ignore[misc]

    def on_receive(self, message: Any) -> Any:
        return self.server.receive(message)

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.server.failed(exception_value)

    def on_mailbox_full(self, envelope: Envelope[Any]) -> None:
        self.server.mailbox_full(envelope)

    def stop_now(self) -> None:
        if not self.actor_stopped.is_set():  # type: ignore[attr-defined]
            self._stop()  # type: ignore[attr-defined]

    def begin(self) -> None:
        """Start handling the mailbox (the join is already in it).

        Raises:
            RuntimeError: when no thread can be started (``actor_mode="thread"``).
        """
        self._start_actor_loop()  # type: ignore[attr-defined]


class PooledChannelActor(_ChannelActor, PooledActor):
    """Hosts a channel on the endpoint's worker pool (``actor_mode="pool"``)."""

    def __init__(self, pool: ActorPool, *, max_mailbox: int | None = None) -> None:
        super().__init__(pool, max_mailbox=max_mailbox)


class ThreadedChannelActor(_ChannelActor, pykka.ThreadingActor):
    """Hosts a channel on a thread of its own (``actor_mode="thread"``)."""

    def __init__(self, *, max_mailbox: int | None = None, thread_name: str = "") -> None:
        self._mailbox_limit = max_mailbox  # read by _create_actor_inbox, in super().__init__
        self._thread_name = thread_name
        super().__init__()

    def _create_actor_inbox(self) -> BoundedInbox:  # type: ignore[override]
        return BoundedInbox(self, self._mailbox_limit)

    def _start_actor_loop(self) -> None:
        thread = threading.Thread(
            target=self._actor_loop,
            name=f"ChannelServer-{self._thread_name}-{next(_thread_counter)}",
            daemon=True,
        )
        thread.start()
