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
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Union

from ._constants import PHX_JOIN, PHX_LEAVE
from ._messages import GetSocket
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
    "Mailbox",
    "assert_broadcast",
    "assert_push",
    "assert_reply",
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

PayloadMatch = Union[None, Mapping[str, Any], bytes, Callable[[Any], bool]]

_refs = itertools.count(1)
_SERIALIZER = NoopSerializer()
REFUTE_TIMEOUT = 0.1


class Mailbox:
    """What one test thread has received; items are taken out by matching."""

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._cond = threading.Condition()
        self.disconnects: list[str] = []

    def put(self, item: Any) -> None:
        with self._cond:
            self._items.append(item)
            self._cond.notify_all()

    def take(self, match: Callable[[Any], bool], timeout: float) -> Any | None:
        """Remove and return the first item for which ``match`` is true, or None."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for index, item in enumerate(self._items):
                    if match(item):
                        return self._items.pop(index)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)

    def items(self) -> list[Any]:
        """A copy of what is waiting, oldest first."""
        with self._cond:
            return list(self._items)

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
    transport = MemoryTransport(box.put, box.disconnects.append)
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
    ref = socket.channel_ref
    if ref is None:
        msg = "close() needs the channel socket returned by join()"
        raise ValueError(msg)
    _connection(socket).shutdown_channel(_topic(socket), ("shutdown", "closed"))
    if not ref.actor_stopped.wait(timeout):
        msg = f"The channel on {socket.topic!r} did not stop within {timeout}s"
        raise AssertionError(msg)
    endpoint = socket.endpoint
    assert endpoint is not None
    # channel_count asks the supervisor: its FIFO inbox has run terminate once it answers.
    endpoint.channel_count(timeout)


def broadcast_from(socket: Socket, event: str, payload: Mapping[str, Any] | bytes) -> None:
    """Broadcast on the socket's topic from the test: its own subscription is skipped."""
    endpoint = socket.endpoint
    assert endpoint is not None
    endpoint.pubsub.broadcast_from(mailbox(), _topic(socket), event, payload)


# assertions -----------------------------------------------------------------------


def assert_reply(ref: str, status: str, payload: PayloadMatch = None, timeout: float = 1.0) -> Any:
    """Wait for the reply to ``ref`` and check its status (and payload); return the payload."""
    reply = _take_reply(ref, timeout)
    if reply is None:
        msg = f"Expected a reply to ref {ref!r} within {timeout}s; mailbox: {_summary()}"
        raise AssertionError(msg)
    if reply.status != status or not _matches(payload, reply.payload):
        msg = (
            f"Expected reply ({status!r}, {_describe(payload)}) to ref {ref!r}, "
            f"got ({reply.status!r}, {reply.payload!r})"
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
        msg = f"Expected no reply to ref {ref!r}, got {found!r}"
        raise AssertionError(msg)


def assert_push(event: str, payload: PayloadMatch = None, timeout: float = 1.0) -> Any:
    """Wait for a push (or fastlane broadcast) of ``event`` matching ``payload``; return it."""
    return _expect("a push", lambda item: _is_push(item, event, payload), event, payload, timeout)


def refute_push(event: str, payload: PayloadMatch = None, timeout: float = REFUTE_TIMEOUT) -> None:
    """Fail if a push of ``event`` matching ``payload`` arrives within ``timeout``."""
    _refute("push", lambda item: _is_push(item, event, payload), event, payload, timeout)


def assert_broadcast(event: str, payload: PayloadMatch = None, timeout: float = 1.0) -> Any:
    """Wait for a broadcast of ``event`` to a topic joined with ``subscribe_and_join``."""
    return _expect(
        "a broadcast", lambda item: _is_broadcast(item, event, payload), event, payload, timeout
    )


def refute_broadcast(
    event: str, payload: PayloadMatch = None, timeout: float = REFUTE_TIMEOUT
) -> None:
    """Fail if a broadcast of ``event`` matching ``payload`` arrives within ``timeout``."""
    _refute("broadcast", lambda item: _is_broadcast(item, event, payload), event, payload, timeout)


def _expect(
    kind: str, match: Callable[[Any], bool], event: str, payload: PayloadMatch, timeout: float
) -> Any:
    found = mailbox().take(match, timeout)
    if found is None:
        msg = (
            f"Expected {kind} of {event!r} with {_describe(payload)} within {timeout}s; "
            f"mailbox: {_summary()}"
        )
        raise AssertionError(msg)
    return found.payload


def _refute(
    kind: str, match: Callable[[Any], bool], event: str, payload: PayloadMatch, timeout: float
) -> None:
    found = mailbox().take(match, timeout)
    if found is not None:
        msg = f"Expected no {kind} of {event!r} with {_describe(payload)}, got {found!r}"
        raise AssertionError(msg)


# helpers -----------------------------------------------------------------------------


def _take_reply(ref: str, timeout: float) -> Reply | None:
    found: Reply | None = mailbox().take(
        lambda item: isinstance(item, Reply) and item.ref == ref, timeout
    )
    return found


def _is_push(item: Any, event: str, payload: PayloadMatch) -> bool:
    return isinstance(item, Message) and item.event == event and _matches(payload, item.payload)


def _is_broadcast(item: Any, event: str, payload: PayloadMatch) -> bool:
    return isinstance(item, Broadcast) and item.event == event and _matches(payload, item.payload)


def _matches(expected: PayloadMatch, actual: Any) -> bool:
    if expected is None:
        return True
    if callable(expected) and not isinstance(expected, Mapping):
        return bool(expected(actual))
    return bool(expected == actual)


def _describe(payload: PayloadMatch) -> str:
    return "any payload" if payload is None else repr(payload)


def _summary() -> str:
    items = mailbox().items()
    return repr(items[-10:]) if items else "(empty)"


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
