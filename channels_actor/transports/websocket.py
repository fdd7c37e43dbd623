"""The WebSocket transport: simple-websocket for the handshake and frame parsing,
one reactor thread for reading, and a lock-serialized non-blocking writer.

Theory of operation
-------------------
After the upgrade checks pass (``upgrade.py``), :func:`open_websocket` hands
the raw socket to ``simple_websocket.Server`` with a stand-in thread class,
so simple-websocket answers the handshake but starts no reader thread of its
own; the shared :class:`Reactor` reads instead and feeds simple-websocket's
event handling (pings, close, message assembly, ``max_message_size``).
Complete messages are decoded by the connection's serializer and given to
the runtime's :class:`Connection`.

Writing: every frame for this client, from any thread (the PubSub registry
for fastlane broadcasts, channel actors for pushes and replies, the reactor
for heartbeats and pongs), goes through :meth:`WebSocketTransport._write`
under one lock: one writer at a time, in order. The write never blocks: what
the kernel does not take is queued and flushed by the reactor when the socket
is writable. The queue is bounded (``max_buffer``); a client that stops
reading is closed with 1008 instead of slowing everyone else down.

Without compression, frames are built here (``frames.py``), so a fastlane
broadcast is framed once for all subscribers. With ``compress=True``
(permessage-deflate, off by default as in Phoenix) each frame goes through the
connection's own wsproto state.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import simple_websocket
from wsproto.connection import Connection as WsprotoConnection
from wsproto.connection import ConnectionType
from wsproto.events import BytesMessage, TextMessage
from wsproto.frame_protocol import CloseReason

from .. import _writes
from .._pool import StopFlag
from ..errors import InvalidMessageError
from .frames import SharedFrames, frame_message
from .http import switching_protocols

if TYPE_CHECKING:
    from ..connection import Connection
    from ..serializers import Serializer
    from .reactor import Reactor

__all__ = ["WebSocketTransport", "open_websocket"]

logger = logging.getLogger("channels_actor.transport")

_SEND_FLAGS = getattr(socket, "MSG_DONTWAIT", 0) | getattr(socket, "MSG_NOSIGNAL", 0)
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_INVALID_DATA = 1007
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_RESTART = 1012
CLOSE_TIMEOUT = 5.0  # how long a closing socket waits for the peer's close


class _NoThread:
    """Stands in for simple-websocket's reader thread: the reactor reads instead."""

    def __init__(self, target: Any = None) -> None:
        self.name = "channels_actor-reactor"

    def start(self) -> None:
        return None


class _NoEvent:
    """simple-websocket signals its ``receive()`` callers with an Event; nobody
    calls ``receive()`` here (messages go straight to the runtime), so skip it."""

    def set(self) -> None:
        return None

    def clear(self) -> None:
        return None

    def wait(self, timeout: float | None = None) -> bool:
        return True


class _SocketProxy:
    """The socket simple-websocket sees: its writes (101, pongs, close) go through our writer."""

    def __init__(self, sock: socket.socket, transport: WebSocketTransport) -> None:
        self._sock = sock
        self._transport = transport

    def send(self, data: bytes) -> int:
        self._transport._write_now(bytes(data))  # handshake, pongs, close: never batched
        return len(data)

    sendall = send

    def recv(self, size: int) -> bytes:
        return self._sock.recv(size)

    def fileno(self) -> int:
        return self._sock.fileno()

    def close(self) -> None:
        self._transport._reactor.call_soon(self._transport._release)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class _UpgradedServer(simple_websocket.Server):  # type: ignore[misc]
    """simple-websocket's server, answering the upgrade directly.

    The request was parsed and checked already (``upgrade.py``); without
    extensions the answer is fixed by RFC 6455, so build it here and start
    from wsproto's open connection instead of running the request through
    wsproto's h11 handshake again (about 300 µs a connection). Everything
    after the handshake is simple-websocket's and wsproto's as usual.

    ``__init__`` sets the attributes simple-websocket's ``Server`` and
    ``Base`` set (a test compares the two), without ``Base`` building a
    wsproto connection, and with it an h11 one, that ``handshake`` replaces
    at once (35 µs a connection, under the GIL).
    """

    def __init__(
        self, environ: dict[str, Any], subprotocols: list[str], max_message_size: int | None
    ) -> None:
        self.environ = environ
        self.subprotocols = subprotocols
        self.mode = "werkzeug"
        self.subprotocol: str | None = None
        self.sock = environ["werkzeug.socket"]
        self.receive_bytes = 4096
        self.ping_interval = None
        self.max_message_size = max_message_size
        self.pong_received = True
        self.input_buffer: list[Any] = []
        self.incoming_message = None
        self.incoming_message_len = 0
        self.connected = False
        self.is_server = True
        self.close_reason = CloseReason.NO_STATUS_RCVD
        self.close_message = None
        self.selector_class = selectors.DefaultSelector
        self.event = _NoEvent()
        self.handshake()
        self.thread = _NoThread()

    def handshake(self) -> None:
        offered = [
            item.strip()
            for item in self.environ.get("HTTP_SEC_WEBSOCKET_PROTOCOL", "").split(",")
            if item.strip()
        ]
        self.subprotocol = next((p for p in offered if p in self.subprotocols), None)
        self.ws = WsprotoConnection(ConnectionType.SERVER)
        self.sock.send(
            switching_protocols(self.environ["HTTP_SEC_WEBSOCKET_KEY"], self.subprotocol)
        )
        self.connected = True


class _Inbox(list[Any]):
    """simple-websocket appends complete messages here; we collect, then dispatch."""


class WebSocketTransport:
    """One WebSocket client connection as seen by the runtime.

    Thread-safe: ``send``, ``send_shared``, ``disconnect`` and ``shutdown``
    may be called from any thread.
    """

    name = "websocket"

    def __init__(
        self,
        sock: socket.socket,
        reactor: Reactor,
        serializer: Serializer,
        *,
        max_buffer: int,
        compress: bool,
        heartbeat_timeout: float,
        on_closed: Any = None,
    ) -> None:
        self._sock = sock
        self._reactor = reactor
        self._serializer = serializer
        self._max_buffer = max_buffer
        self._compress = compress
        self._heartbeat_timeout = heartbeat_timeout
        self._on_closed = on_closed
        self._lock = threading.RLock()
        self._pending: deque[memoryview] = deque()
        self._pending_bytes = 0
        self._registered = False
        self._writable_wanted = False
        self._state = "open"  # open -> closing -> closed
        self._closing_since = 0.0
        self._last_seen = time.monotonic()
        self._inbox = _Inbox()
        self.ws: simple_websocket.Server | None = None
        self.connection: Connection | None = None
        self.closed_event = StopFlag()  # set once the socket is released

    def __repr__(self) -> str:
        try:
            peer = self._sock.getpeername()
        except OSError:
            peer = "?"
        return f"<WebSocketTransport {peer} {self._state}>"

    # writing (any thread) -------------------------------------------------------

    def send(self, frame: Any) -> None:
        """Frame ``frame`` (``str`` text, ``bytes`` binary) and write it."""
        if self._compress:
            with self._lock:
                if self._state == "open" and self.ws is not None and not self._close_sent:
                    event = BytesMessage(frame) if isinstance(frame, bytes) else TextMessage(frame)
                    # framed with the connection's deflate state: write in that order
                    self._write_now(self.ws.ws.send(event))
            return
        self._write(frame_message(frame))

    def send_shared(self, shared: SharedFrames) -> None:
        """Write fastlane frames framed once for every subscriber, with one system call.

        Only the registry's thread calls this, and it never batches writes
        (``_writes`` is for pool workers), so the bytes go straight out.
        """
        if self._compress:
            for one in shared.frames:
                self.send(one.frame)
        else:
            self._write_now(shared.wire())

    def _write(self, data: bytes) -> None:
        if not _writes.defer(self, data):
            self._write_now(data)

    def _write_now(self, data: bytes) -> None:
        with self._lock:
            if self._state != "open" or self._close_sent:
                return  # nothing may follow our close frame
            if self._pending:
                self._queue(memoryview(data))
                return
            try:
                sent = self._sock.send(data, _SEND_FLAGS)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                self._reactor.call_soon(self._lost)
                return
            if sent < len(data):
                self._queue(memoryview(data)[sent:])

    _overflowed = False
    _close_sent = False

    def _queue(self, rest: memoryview) -> None:
        self._pending.append(rest)
        self._pending_bytes += len(rest)
        if self._pending_bytes > self._max_buffer:
            if not self._overflowed:
                self._overflowed = True
                logger.warning(
                    "%r stopped reading: %d bytes are waiting (max_buffer %d); closing it (1008)",
                    self,
                    self._pending_bytes,
                    self._max_buffer,
                )
                self._pending.clear()
                self._pending_bytes = 0
                self._reactor.call_soon(lambda: self.close(CLOSE_POLICY, "outgoing buffer full"))
            return
        if not self._writable_wanted:
            self._writable_wanted = True
            self._reactor.call_soon(self._want_write)

    # closing (any thread) -----------------------------------------------------------

    def disconnect(self) -> None:
        """Close with 1001 so the client reconnects (its socket id was disconnected)."""
        self._reactor.call_soon(lambda: self.close(CLOSE_GOING_AWAY, "disconnected"))

    def shutdown(self) -> None:
        """Close with 1012: the server is restarting, reconnect elsewhere."""
        self._reactor.call_soon(lambda: self.close(CLOSE_RESTART, "server restarting"))

    def close(self, code: int, reason: str = "") -> None:
        """Send a close frame, end the channels, and wait briefly for the peer's close."""
        with self._lock:
            if self._state != "open":
                return
            ws = self.ws
            if ws is not None and ws.connected and not self._overflowed:
                try:
                    ws.close(code, reason)  # writes the close frame: the last one we send
                except Exception:
                    logger.debug("close frame to %r failed", self, exc_info=True)
            self._state = "closing"
            self._closing_since = time.monotonic()
        logger.debug("closing %r with %d %s", self, code, reason)
        self._end_session()
        if self._overflowed:
            self._reactor.call_soon(self._release)
        elif not self._pending:  # else on_writable shuts down once the queue is flushed
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_WR)

    # reactor thread ---------------------------------------------------------------------

    def start_reading(self) -> None:
        """Register with the reactor (reactor thread)."""
        if self._state == "closed":
            return
        self._reactor.register(self._sock, self, write=bool(self._pending))
        self._registered = True
        self._writable_wanted = bool(self._pending)

    def on_readable(self) -> None:
        try:
            data = self._sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._lost()
            return
        self.feed(data)

    def feed(self, data: bytes) -> None:
        """Process bytes from the client (reactor thread)."""
        self._last_seen = time.monotonic()
        ws = self.ws
        assert ws is not None
        with self._lock:
            ws.ws.receive_data(data)
            keep_going = ws._handle_events()
            # A close frame just went out (simple-websocket's): nothing may follow it.
            self._close_sent = self._close_sent or not keep_going
            messages = list(self._inbox)
            self._inbox.clear()
        for message in messages:
            if self._state != "open":
                break
            self._dispatch(message)
        if not keep_going:
            self._peer_closed(ws)

    def on_writable(self) -> None:
        with self._lock:
            while self._pending:
                head = self._pending[0]
                try:
                    sent = self._sock.send(head, _SEND_FLAGS)
                except (BlockingIOError, InterruptedError):
                    return
                except OSError:
                    self._pending.clear()
                    self._pending_bytes = 0
                    self._reactor.call_soon(self._lost)
                    return
                self._pending_bytes -= sent
                if sent < len(head):
                    self._pending[0] = head[sent:]
                    return
                self._pending.popleft()
            self._writable_wanted = False
            self._reactor.want_write(self._sock, self, False)
            if self._state == "closing":
                with contextlib.suppress(OSError):
                    self._sock.shutdown(socket.SHUT_WR)

    def _want_write(self) -> None:
        if self._registered and self._state != "closed":
            self._reactor.want_write(self._sock, self, True)

    def check_idle(self, now: float) -> None:
        """Close after ``heartbeat_timeout`` of silence; release a close that hangs."""
        if self._state == "open" and now - self._last_seen > self._heartbeat_timeout:
            logger.info("%r sent nothing for %.0fs; closing it", self, self._heartbeat_timeout)
            self.close(CLOSE_GOING_AWAY, "heartbeat timeout")
        elif self._state == "closing" and now - self._closing_since > CLOSE_TIMEOUT:
            self._release()

    def _dispatch(self, data: str | bytes) -> None:
        connection = self.connection
        assert connection is not None
        try:
            message = self._serializer.decode(data)
        except InvalidMessageError as exc:
            logger.warning("Closing %r: malformed frame: %s", self, exc)
            self.close(CLOSE_INVALID_DATA, "malformed frame")
            return
        connection.receive(message)

    def _peer_closed(self, ws: simple_websocket.Server) -> None:
        # A close frame from the peer (answered by simple-websocket), or
        # max_message_size exceeded (simple-websocket sent 1009).
        if self._state == "open":
            self._state = "closing"
            self._closing_since = time.monotonic()
            if ws.max_message_size and ws.incoming_message_len > ws.max_message_size:
                logger.info("Closed %r: a frame exceeded max_frame_size (1009)", self)
            self._end_session()
        if not self._pending:
            self._release()

    def _lost(self) -> None:
        """EOF or a socket error: the peer is gone."""
        if self._state == "open":
            self._state = "closing"
            self._end_session()
        self._release()

    def _end_session(self) -> None:
        connection = self.connection
        if connection is not None:
            connection.close(("shutdown", "closed"))

    def _release(self) -> None:
        """Unregister and close the socket (reactor thread)."""
        with self._lock:
            if self._state == "closed":
                return
            if self._state == "open":
                self._state = "closing"
                release_session = True
            else:
                release_session = False
            self._state = "closed"
            self._pending.clear()
            self._pending_bytes = 0
        if release_session:
            self._end_session()
        if self._registered:
            self._reactor.unregister(self._sock)
            self._registered = False
        with contextlib.suppress(OSError):
            self._sock.close()
        if self.ws is not None:
            self.ws.connected = False
        self.closed_event.set()
        if self._on_closed is not None:
            self._on_closed(self)


def open_websocket(
    sock: socket.socket,
    environ: dict[str, Any],
    reactor: Reactor,
    serializer: Serializer,
    *,
    subprotocols: list[str],
    max_frame_size: int,
    max_buffer: int,
    compress: bool,
    heartbeat_timeout: float,
    on_closed: Any = None,
) -> WebSocketTransport:
    """Answer the upgrade (101) on ``sock`` and return the transport, not yet reading.

    ``environ`` holds the request's ``HTTP_*`` headers; without ``compress``
    the client's permessage-deflate offer is left out, so it is refused.
    """
    transport = WebSocketTransport(
        sock,
        reactor,
        serializer,
        max_buffer=max_buffer,
        compress=compress,
        heartbeat_timeout=heartbeat_timeout,
        on_closed=on_closed,
    )
    headers = {key: value for key, value in environ.items() if key.startswith("HTTP_")}
    if not compress:
        headers.pop("HTTP_SEC_WEBSOCKET_EXTENSIONS", None)
    headers["werkzeug.socket"] = _SocketProxy(sock, transport)
    if compress:
        ws = simple_websocket.Server(
            headers,
            subprotocols=subprotocols,
            max_message_size=max_frame_size,
            thread_class=_NoThread,
            event_class=_NoEvent,
        )
    else:
        ws = _UpgradedServer(headers, subprotocols, max_frame_size)
    ws.input_buffer = transport._inbox
    transport.ws = ws
    return transport
