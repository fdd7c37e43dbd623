"""Phoenix.ChannelTest for Python: test channels in-process, without a network.

Each thread that uses the kit has a mailbox, the Python stand-in for the
ExUnit test process: replies, pushes, fastlane broadcasts and (after
``subscribe_and_join``) raw broadcasts to its sockets land there, and the
``assert_*`` functions take the first matching item out of it, waiting up to
``timeout`` seconds. Everything goes through the real runtime: the same
connection protocol, channel actors, supervisor and PubSub as a WebSocket
client, on an in-memory transport whose frames are ``Message`` / ``Reply``
values.

Example::

    from channels_actor import Endpoint
    from channels_actor import testing as ct

    endpoint = Endpoint()
    sock = ct.socket(UserSocket, "user:1", {"user_id": 1}, endpoint=endpoint)
    status, reply, room = ct.subscribe_and_join(sock, "rooms:lobby")
    ref = ct.push(room, "new_msg", {"body": "hi"})
    ct.assert_reply(ref, "ok")
    ct.assert_broadcast("new_msg", {"body": "hi"})
    endpoint.stop()

Payloads given to ``assert_*`` / ``refute_*`` are patterns, as in Elixir's
``assert_push "ev", %{"a" => 1}``: a mapping matches any payload with at least
its keys (recursively), ``Exact({...})`` allows no other keys, ``ANY`` matches
any value and a callable is a predicate (see ``_patterns``). Items are tagged
with the connection that received them, so ``assert_push(..., socket=sock)``
tells two sockets of one test thread apart.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Union

from ._constants import PHX_JOIN, PHX_LEAVE
from ._messages import GetSocket
from ._patterns import ANY, Exact, describe, mismatch
from ._redact import Redactor, redactor, redactor_for
from .endpoint import Endpoint, Refused
from .handler import SocketHandler
from .message import Broadcast, Message, Reply
from .pubsub import Subscriber
from .serializers.noop import NoopSerializer
from .socket import Socket
from .transports.memory import MemoryTransport

if TYPE_CHECKING:
    from .channel import Channel
    from .connection import Connection

__all__ = [
    "ANY",
    "Exact",
    "Mailbox",
    "assert_broadcast",
    "assert_presence_diff",
    "assert_presence_state",
    "assert_push",
    "assert_reply",
    "assert_terminated",
    "broadcast_from",
    "close",
    "connect",
    "default_endpoint",
    "join",
    "leave",
    "mailbox",
    "push",
    "refute_broadcast",
    "refute_push",
    "refute_reply",
    "socket",
    "stop_default_endpoint",
    "subscribe_and_join",
]

PayloadMatch = Union[None, Mapping[str, Any], Exact, bytes, Callable[[Any], bool]]

_refs = itertools.count(1)
_SERIALIZER = NoopSerializer()
REFUTE_TIMEOUT = 0.1


class Mailbox:
    """What one test thread has received; items are taken out by matching.

    Each item keeps its ``source``: the transport of the kit connection that
    received it (``None`` for broadcasts to a ``subscribe_and_join``
    subscription), so assertions can ask for what one socket got.
    """

    def __init__(self) -> None:
        self._items: list[tuple[Any, object]] = []
        self._cond = threading.Condition()
        self.disconnects: list[str] = []

    def put(self, item: Any, source: object = None) -> None:
        with self._cond:
            self._items.append((item, source))
            self._cond.notify_all()

    def take(
        self, match: Callable[[Any], bool], timeout: float, source: object = None
    ) -> Any | None:
        """Remove and return the first item for which ``match`` is true, or None.

        With ``source``, only items received by that source are considered.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for index, (item, origin) in enumerate(self._items):
                    if (source is None or origin is source) and match(item):
                        return self._items.pop(index)[0]
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)

    def items(self, source: object = None) -> list[Any]:
        """A copy of what is waiting (from ``source`` only, if given), oldest first."""
        with self._cond:
            return [item for item, origin in self._items if source is None or origin is source]

    def clear(self) -> None:
        """Drop everything waiting, and the record of disconnects."""
        with self._cond:
            self._items.clear()
            self.disconnects.clear()


_local = threading.local()


def mailbox() -> Mailbox:
    """The calling thread's mailbox."""
    box = getattr(_local, "mailbox", None)
    if box is None:
        box = _local.mailbox = Mailbox()
    return box


_default: Endpoint | None = None
_default_lock = threading.Lock()


def default_endpoint() -> Endpoint:
    """The endpoint used when a kit function is given none (made on first use)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Endpoint()
        return _default


def stop_default_endpoint() -> None:
    """Stop the default endpoint, terminating its channels (call it in teardown)."""
    global _default
    with _default_lock:
        endpoint, _default = _default, None
    if endpoint is not None:
        endpoint.stop()


def _handler(handler: type[SocketHandler] | SocketHandler) -> SocketHandler:
    return handler() if isinstance(handler, type) else handler


def _open(endpoint: Endpoint, socket: Socket) -> Socket:
    box = mailbox()

    def sink(frame: Any) -> None:
        box.put(frame, transport)  # tagged, for assertions given socket=

    transport = MemoryTransport(sink, box.disconnects.append)
    connection = endpoint.open_connection(socket, transport)
    return connection.socket


def socket(
    handler: type[SocketHandler] | SocketHandler,
    id: str | None = None,
    assigns: Mapping[str, Any] | None = None,
    *,
    endpoint: Endpoint | None = None,
) -> Socket:
    """Build a connected socket for ``handler`` without running ``connect``."""
    endpoint = endpoint or default_endpoint()
    endpoint.start_runtime()
    base = Socket(
        assigns=dict(assigns or {}),
        endpoint=endpoint,
        handler=_handler(handler),
        id=id,
        serializer=_SERIALIZER,
        pubsub=endpoint.pubsub,
    )
    return _open(endpoint, base)


def connect(
    handler: type[SocketHandler] | SocketHandler,
    params: Mapping[str, Any] | None = None,
    connect_info: Mapping[str, Any] | None = None,
    *,
    endpoint: Endpoint | None = None,
) -> Socket | Refused:
    """Run the handler's real ``connect`` and ``id``; return the socket or a ``Refused``."""
    endpoint = endpoint or default_endpoint()
    result = endpoint.connect(
        _handler(handler), dict(params or {}), dict(connect_info or {}), _SERIALIZER
    )
    if isinstance(result, Refused):
        return result
    return _open(endpoint, result)


def _connection(socket: Socket) -> Connection:
    connection = socket.connection
    if connection is None:
        msg = "This socket has no connection: build it with testing.socket() or testing.connect()"
        raise ValueError(msg)
    return connection  # type: ignore[no-any-return]


def _next_ref() -> str:
    return str(next(_refs))


def join(
    socket: Socket,
    topic_or_channel: str | type[Channel],
    topic_or_payload: Any = None,
    payload: Any = None,
    *,
    timeout: float = 1.0,
) -> tuple[str, Any, Socket] | tuple[str, Any]:
    """Join a topic: ``join(socket, topic, payload)`` or ``join(socket, Channel, topic, payload)``.

    Returns ``("ok", reply, channel_socket)`` or ``("error", reply)``.
    """
    if isinstance(topic_or_channel, str):
        channel, topic, join_payload = None, topic_or_channel, topic_or_payload
    else:
        channel, topic, join_payload = topic_or_channel, topic_or_payload, payload
    if not isinstance(topic, str):
        msg = f"join() needs a str topic, got {topic!r}"
        raise TypeError(msg)
    connection = _connection(socket)
    ref = _next_ref()
    connection.receive(Message(topic, PHX_JOIN, _stringify(join_payload or {}), ref, ref), channel)
    reply = _take_reply(ref, timeout)
    if reply is None:
        msg = f"join({topic!r}) got no reply within {timeout}s"
        raise AssertionError(msg)
    if reply.status != "ok":
        return (reply.status, reply.payload)
    channel_ref = connection.channel_ref(topic)
    if channel_ref is None:
        msg = f"join({topic!r}) was accepted but the channel ended at once"
        raise AssertionError(msg)
    joined: Socket = channel_ref.ask(GetSocket(), block=True, timeout=timeout)
    return ("ok", reply.payload, joined)


def subscribe_and_join(
    socket: Socket,
    topic_or_channel: str | type[Channel],
    topic_or_payload: Any = None,
    payload: Any = None,
    *,
    timeout: float = 1.0,
) -> tuple[str, Any, Socket] | tuple[str, Any]:
    """Subscribe this thread's mailbox to the topic (for ``assert_broadcast``), then join."""
    topic = topic_or_channel if isinstance(topic_or_channel, str) else topic_or_payload
    box = mailbox()
    endpoint = socket.endpoint or default_endpoint()
    endpoint.pubsub.subscribe(topic, Subscriber(key=box, callback=box.put))
    return join(socket, topic_or_channel, topic_or_payload, payload, timeout=timeout)


def push(socket: Socket, event: str, payload: Any = None) -> str:
    """Push ``event`` to the joined channel of ``socket``; returns the ref for ``assert_reply``."""
    ref = _next_ref()
    message = Message(
        _topic(socket),
        event,
        _stringify(payload if payload is not None else {}),
        ref,
        socket.join_ref,
    )
    _connection(socket).receive(message)
    return ref


def leave(socket: Socket) -> str:
    """Leave the channel (``phx_leave``); returns the ref, answered ``ok``."""
    return push(socket, PHX_LEAVE, {})


def close(socket: Socket, timeout: float = 5.0) -> None:
    """End the channel as if its connection closed: ``terminate(("shutdown", "closed"))``.

    Returns once ``terminate`` has run.
    """
    if socket.channel_ref is None:
        msg = "close() needs the channel socket returned by join()"
        raise ValueError(msg)
    _connection(socket).shutdown_channel(_topic(socket), ("shutdown", "closed"))
    assert_terminated(socket, timeout)


def assert_terminated(socket: Socket, timeout: float = 1.0) -> None:
    """Wait until the channel of ``socket`` has ended and its ``terminate`` has run.

    For what ends a channel without waiting: ``leave``, a ``stop`` result, a
    crash, a duplicate join. ``socket`` is the channel socket from ``join()``.
    """
    ref = socket.channel_ref
    if ref is None:
        msg = "assert_terminated() needs the channel socket returned by join()"
        raise ValueError(msg)
    if not ref.actor_stopped.wait(timeout):
        msg = f"Expected the channel on {socket.topic!r} to stop within {timeout}s"
        raise AssertionError(msg)
    endpoint = socket.endpoint
    assert endpoint is not None
    # The actor told the supervisor ChannelExited before it stopped, and channel_count
    # asks the supervisor: its FIFO inbox has run terminate once it answers.
    endpoint.channel_count(timeout)


def broadcast_from(socket: Socket, event: str, payload: Mapping[str, Any] | bytes) -> None:
    """Broadcast on the socket's topic from the test: its own subscription is skipped."""
    endpoint = socket.endpoint
    assert endpoint is not None
    endpoint.pubsub.broadcast_from(mailbox(), _topic(socket), event, payload)


# assertions -----------------------------------------------------------------------


def assert_reply(ref: str, status: str, payload: PayloadMatch = None, timeout: float = 1.0) -> Any:
    """Wait for the reply to ``ref``, check its status and that its payload matches; return it.

    ``payload`` is a pattern (a subset mapping, ``Exact``, ``ANY``, a callable).
    """
    reply = _take_reply(ref, timeout)
    if reply is None:
        msg = f"Expected a reply to ref {ref!r} within {timeout}s; mailbox: {_summary()}"
        raise AssertionError(msg)
    show = redactor()
    why = (
        f"status: expected {status!r}, got {show.preview(reply.status)}"
        if reply.status != status
        else _why(payload, reply.payload, show)
    )
    if why is not None:
        msg = (
            f"Expected reply ({status!r}, {_describe(payload, show)}) to ref {ref!r}, "
            f"got ({show.preview(reply.status)}, {show.preview(reply.payload)}): {why}"
        )
        raise AssertionError(msg)
    return reply.payload


def refute_reply(ref: str, status: str | None = None, timeout: float = REFUTE_TIMEOUT) -> None:
    """Fail if a reply to ``ref`` (with ``status``, if given) arrives within ``timeout``."""
    found = mailbox().take(
        lambda item: (
            isinstance(item, Reply)
            and item.ref == ref
            and (status is None or item.status == status)
        ),
        timeout,
    )
    if found is not None:
        msg = f"Expected no reply to ref {ref!r}, got {_item(found, redactor())}"
        raise AssertionError(msg)


def assert_push(
    event: str,
    payload: PayloadMatch = None,
    timeout: float = 1.0,
    *,
    socket: Socket | None = None,
) -> Any:
    """Wait for a push (or fastlane broadcast) of ``event`` matching ``payload``; return it.

    With ``socket``, only what that socket received counts: a socket from
    ``socket()``/``connect()`` means any topic of its connection, a channel
    socket from ``join()`` means its topic only.
    """
    return _expect("push", _is_push, event, payload, timeout, socket=socket)


def refute_push(
    event: str,
    payload: PayloadMatch = None,
    timeout: float = REFUTE_TIMEOUT,
    *,
    socket: Socket | None = None,
) -> None:
    """Fail if a push of ``event`` matching ``payload`` arrives within ``timeout``."""
    _expect("push", _is_push, event, payload, timeout, socket=socket, present=False)


def assert_broadcast(event: str, payload: PayloadMatch = None, timeout: float = 1.0) -> Any:
    """Wait for a broadcast of ``event`` to a topic joined with ``subscribe_and_join``."""
    return _expect("broadcast", _is_broadcast, event, payload, timeout, socket=None)


def refute_broadcast(
    event: str, payload: PayloadMatch = None, timeout: float = REFUTE_TIMEOUT
) -> None:
    """Fail if a broadcast of ``event`` matching ``payload`` arrives within ``timeout``."""
    _expect("broadcast", _is_broadcast, event, payload, timeout, socket=None, present=False)


def assert_presence_state(
    state: PayloadMatch = None, timeout: float = 1.0, *, socket: Socket | None = None
) -> Any:
    """Wait for a ``presence_state`` push; ``state`` maps each presence key to a pattern.

    The keys must be exactly those given (``{"u1": ANY}`` fails if ``"u2"`` is
    there too); each value is matched as a pattern, e.g.
    ``{"u1": {"metas": [{"name": "ada"}]}}``. Returns the payload.
    """
    return assert_push("presence_state", _keys_exactly(state), timeout, socket=socket)


def assert_presence_diff(
    joins: PayloadMatch = None,
    leaves: PayloadMatch = None,
    timeout: float = 1.0,
    *,
    socket: Socket | None = None,
) -> Any:
    """Wait for a ``presence_diff`` push whose ``joins`` and ``leaves`` match.

    Each of ``joins`` / ``leaves`` names exactly the keys that joined / left
    (``leaves={}``: nobody left), values matched as patterns; ``None`` (the
    default) accepts any. Returns the payload.
    """
    pattern: dict[str, Any] = {}
    if joins is not None:
        pattern["joins"] = _keys_exactly(joins)
    if leaves is not None:
        pattern["leaves"] = _keys_exactly(leaves)
    return assert_push("presence_diff", pattern, timeout, socket=socket)


def _keys_exactly(pattern: PayloadMatch) -> PayloadMatch:
    if isinstance(pattern, Mapping) and not isinstance(pattern, Exact):
        return Exact(pattern)
    return pattern


def _expect(
    kind: str,
    is_kind: Callable[[Any, str], bool],
    event: str,
    payload: PayloadMatch,
    timeout: float,
    *,
    socket: Socket | None,
    present: bool = True,
) -> Any:
    """Take the first match; fail if there is none (``present``) or if there is one."""
    source, show = _source(socket), _redactor(socket)
    found = mailbox().take(_matcher(is_kind, event, payload, socket, show), timeout, source)
    if present and found is None:
        where = "" if socket is None else f" on {_name(socket, show)}"
        msg = (
            f"Expected a {kind} of {event!r}{where} matching {_describe(payload, show)} "
            f"within {timeout}s; {_arrived(is_kind, event, payload, socket, show)}"
        )
        raise AssertionError(msg)
    if not present and found is not None:
        msg = (
            f"Expected no {kind} of {event!r} matching {_describe(payload, show)}, "
            f"got {_item(found, show)}"
        )
        raise AssertionError(msg)
    return None if found is None else found.payload


def _matcher(
    is_kind: Callable[[Any, str], bool],
    event: str,
    payload: PayloadMatch,
    socket: Socket | None,
    show: Redactor,
) -> Callable[[Any], bool]:
    def match(item: Any) -> bool:
        return (
            is_kind(item, event) and _on(item, socket) and _why(payload, item.payload, show) is None
        )

    return match


# helpers -----------------------------------------------------------------------------


def _take_reply(ref: str, timeout: float) -> Reply | None:
    found: Reply | None = mailbox().take(
        lambda item: isinstance(item, Reply) and item.ref == ref, timeout
    )
    return found


def _is_push(item: Any, event: str) -> bool:
    return isinstance(item, Message) and item.event == event


def _is_broadcast(item: Any, event: str) -> bool:
    return isinstance(item, Broadcast) and item.event == event


def _source(socket: Socket | None) -> object:
    return None if socket is None else _connection(socket).transport


def _on(item: Any, socket: Socket | None) -> bool:
    """A channel socket also narrows to its topic; a connection's socket has none."""
    return socket is None or socket.topic is None or item.topic == socket.topic


def _redactor(socket: Socket | None) -> Redactor:
    return redactor() if socket is None else redactor_for(socket)


def _why(pattern: PayloadMatch, actual: Any, show: Redactor) -> str | None:
    """Why ``actual`` does not match (``None``: it does). ``None`` as pattern: any payload."""
    return None if pattern is None else mismatch(pattern, actual, show)


def _describe(payload: PayloadMatch, show: Redactor) -> str:
    return "any payload" if payload is None else describe(payload, show)


def _arrived(
    is_kind: Callable[[Any, str], bool],
    event: str,
    payload: PayloadMatch,
    socket: Socket | None,
    show: Redactor,
) -> str:
    """What came instead: the same event's payloads and why the first fails, or the rest."""
    items = mailbox().items(_source(socket))
    same = [item for item in items if is_kind(item, event) and _on(item, socket)]
    if not same:
        return f"mailbox: {_summary(items, show)}"
    shown = ", ".join(show.preview(item.payload) for item in same[:3])
    more = f" (and {len(same) - 3} more)" if len(same) > 3 else ""
    return f"got {event!r} with {shown}{more}; first: {_why(payload, same[0].payload, show)}"


def _item(item: Any, show: Redactor) -> str:
    if isinstance(item, Reply):
        return f"Reply({item.ref!r}, {show.preview(item.status)}, {show.preview(item.payload)})"
    event = getattr(item, "event", None)
    payload = getattr(item, "payload", item)
    return f"{type(item).__name__}({show.preview(event)}, {show.preview(payload)})"


def _name(socket: Socket, show: Redactor) -> str:
    """A socket's repr shows its assigns, which may hold secrets: name it by id and topic."""
    return f"socket id={show.preview(socket.id)} topic={show.preview(socket.topic)}"


def _summary(items: list[Any] | None = None, show: Redactor | None = None) -> str:
    items = mailbox().items() if items is None else items
    if not items:
        return "(empty)"
    shown = ", ".join(_item(item, show or redactor()) for item in items[-10:])
    return f"{len(items)} items, last: {shown}" if len(items) > 10 else shown


def _topic(socket: Socket) -> str:
    if socket.topic is None:
        msg = "This socket has not joined a topic: use the socket returned by join()"
        raise ValueError(msg)
    return socket.topic


def _stringify(payload: Any) -> Any:
    """Make keys strings, as a JSON round trip would (Phoenix's ChannelTest does too)."""
    if isinstance(payload, Mapping):
        return {str(key): _stringify(value) for key, value in payload.items()}
    if isinstance(payload, (list, tuple)):
        return [_stringify(value) for value in payload]
    return payload
