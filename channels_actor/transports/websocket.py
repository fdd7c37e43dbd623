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
the runtime's :class:`Connection`; unfinished ones are bounded in time and in
bytes held across the endpoint (``incomplete.py``).

Writing: every frame for this client, from any thread (the PubSub registry
for fastlane broadcasts, channel actors for pushes and replies, the reactor
for heartbeats and pongs), goes through :meth:`WebSocketTransport._write`
under one lock: one writer at a time, in order. The write never blocks: what
the kernel does not take is queued and flushed by the reactor when the socket
is writable.

Slow clients. The queue holds whole frames; only its first chunk may be
partly written, so the stream is always cut at a frame boundary. A
client's *backlog* is what waits beyond that first chunk: one large
message (up to ``max_frame_size``) is never a backlog by itself, however
long the client takes to read it. A client is closed with 1008 when its
backlog passes ``max_buffer`` ("outgoing buffer full") or when it has bytes
waiting and takes none of them for ``write_timeout`` ("stopped reading").
The close frame jumps the queue: the partly written chunk is finished, the
rest dropped, the close frame written, in one decision under the lock, so
nothing else follows it. Past a quarter of ``max_buffer`` a client counts
as congested and flow control (``_flow.py``) holds back the connections
that publish until it has drained below a sixteenth.

Without compression, frames are built here (``frames.py``), so a fastlane
broadcast is framed once for all subscribers. With ``compress=True``
(permessage-deflate, off by default as in Phoenix) each frame goes through the
connection's own wsproto state.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import selectors
import socket
import struct
import termios
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import simple_websocket
from wsproto.connection import Connection as WsprotoConnection
from wsproto.connection import ConnectionState, ConnectionType
from wsproto.events import BytesMessage, TextMessage
from wsproto.frame_protocol import CloseReason

from .. import _writes
from .._pool import StopFlag
from ..errors import InvalidMessageError
from .frames import SharedFrames, close_frame, frame_message
from .http import switching_protocols
from .incomplete import IncompleteMessages, held_size
from .sockets import SEND_FLAGS as _SEND_FLAGS

if TYPE_CHECKING:
    from .._flow import FlowControl
    from ..connection import Connection
    from ..serializers import Serializer
    from .reactor import Reactor

__all__ = ["WebSocketTransport", "open_websocket"]

logger = logging.getLogger("channels_actor.transport")

# The kernel's unsent bytes of a socket (Linux SIOCOUTQ); None where unknown.
_OUTQ: int | None = getattr(termios, "TIOCOUTQ", None)
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_INVALID_DATA = 1007
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_RESTART = 1012
CLOSE_TRY_AGAIN_LATER = 1013
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
        self._transport.write_now(bytes(data))  # handshake, pongs, close: never batched
        return len(data)

    sendall = send

    def recv(self, size: int) -> bytes:
        return self._sock.recv(size)

    def fileno(self) -> int:
        return self._sock.fileno()

    def close(self) -> None:
        self._transport.release_soon()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class _UpgradedServer(simple_websocket.Server):  # type: ignore[misc]
    """simple-websocket's server, answering the upgrade directly.

    The request was parsed and checked already (``upgrade.py``); without
    extensions the answer is fixed by RFC 6455, so build it here and start
    from wsproto's open connection instead of running the request through
    wsproto's h11 handshake again, which cost more than the rest of the
    upgrade. Everything
    after the handshake is simple-websocket's and wsproto's as usual.

    ``__init__`` sets the attributes simple-websocket's ``Server`` and
    ``Base`` set (a test compares the two), without ``Base`` building a
    wsproto connection, and with it an h11 one, that ``handshake`` replaces
    at once (work done under the GIL for every connection).
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
        incomplete_message_timeout: float = 30.0,
        incomplete: IncompleteMessages | None = None,
        write_timeout: float = 30.0,
        flow: FlowControl | None = None,
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
        self._head_partial = False  # the first pending chunk is partly on the wire
        self._last_drain = 0.0  # when the kernel last took bytes from the queue
        self._kernel_queued = 0  # the kernel's send queue when flow control last looked
        self._kernel_taken = 0.0  # when it last saw that queue shrink
        self._write_timeout = write_timeout
        self._congested_at = max_buffer // 4  # flow control's high mark
        self._clear_at = max_buffer // 16  # and its low mark
        self._congested = False
        self._flow = flow
        self._read_paused = False
        self._registered = False
        self._writable_wanted = False
        self._state = "open"  # open -> closing -> closed
        self._closing_since = 0.0
        self._last_seen = time.monotonic()
        #: simple-websocket's input_buffer: complete messages, taken after each read
        self.inbox = _Inbox()
        self.ws: simple_websocket.Server | None = None
        self.connection: Connection | None = None
        self.closed_event = StopFlag()  # set once the socket is released
        # the unfinished message (incomplete.py): when it began, the bytes it holds
        self._incomplete_timeout = incomplete_message_timeout
        if incomplete is None:  # no endpoint to share a bound with
            incomplete = IncompleteMessages(limit=1 << 62)
        self._incomplete = incomplete
        self._incomplete_since: float | None = None
        self._paused_at = 0.0  # when flow control last stopped reading this client
        self._incomplete_held = 0

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
                    self.write_now(self.ws.ws.send(event))
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
            self.write_now(shared.wire())

    def _write(self, data: bytes) -> None:
        if not _writes.defer(self, data):
            self.write_now(data)

    def write_now(self, data: bytes) -> None:
        """Write ``data`` now, or queue it behind what waits (``_writes`` flushes here)."""
        # ``data`` is whole frames: queued chunks always end on a frame boundary.
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
                self._head_partial = sent > 0
                self._last_drain = time.monotonic()  # the wait for the client starts now
                self._queue(memoryview(data)[sent:])

    _close_sent = False  # simple-websocket wrote its close frame: nothing may follow

    def _queue(self, rest: memoryview) -> None:
        """Queue whole frames (the lock is held)."""
        pending = self._pending
        pending.append(rest)
        self._pending_bytes += len(rest)
        backlog = self._pending_bytes - len(pending[0])  # beyond the chunk being written
        if backlog > self._congested_at:
            if backlog > self._max_buffer:
                self._close_slow("outgoing buffer full")
                return
            if not self._congested and self._flow is not None:
                self._congested = True
                self._flow.congested(self)
        if not self._writable_wanted:
            self._writable_wanted = True
            self._reactor.call_soon(self._want_write)

    def _close_slow(self, reason: str) -> None:
        """Close a client that does not keep up with 1008, at once (the lock is held).

        Finish the chunk that is partly written, drop the rest, queue the
        close frame, and stop writing anything else, in one step: the client
        gets whole frames, then the close frame.
        """
        pending = self._pending
        logger.warning(
            "%r stopped reading (%s): %d bytes are waiting (max_buffer %d); closing it (1008)",
            self,
            reason,
            self._pending_bytes,
            self._max_buffer,
        )
        head = pending[0] if pending and self._head_partial else None
        pending.clear()
        if head is not None:
            pending.append(head)
        pending.append(memoryview(close_frame(CLOSE_POLICY, reason)))
        self._pending_bytes = sum(len(chunk) for chunk in pending)
        self._state = "closing"
        self._closing_since = time.monotonic()
        self._uncongest()
        if self._flow is not None:
            self._flow.counters.incr("slow_consumer_closed")
        self._writable_wanted = True
        self._reactor.call_soon(self._after_slow_close)

    def _after_slow_close(self) -> None:
        self._end_session()
        self.resume_reading()  # to see the client's close answer
        self._want_write()

    def _uncongest(self) -> None:
        if self._congested:
            self._congested = False
            if self._flow is not None:
                self._flow.clear(self)

    def published(self, backlog: Callable[[], int]) -> None:
        """This connection's channel broadcast: flow control may hold its reading back.

        ``backlog``: how many of the client's messages wait for that channel.
        """
        if self._flow is not None:
            self._flow.published(self, backlog)

    # closing (any thread) -----------------------------------------------------------

    def disconnect(self) -> None:
        """Close with 1001 so the client reconnects (its socket id was disconnected)."""
        self._reactor.call_soon(lambda: self.close(CLOSE_GOING_AWAY, "disconnected"))

    def shutdown(self) -> None:
        """Close with 1012: the server is restarting, reconnect elsewhere."""
        self._reactor.call_soon(lambda: self.close(CLOSE_RESTART, "server restarting"))

    def close(self, code: int, reason: str = "") -> None:
        """Send a close frame after what is queued, end the channels, and wait
        briefly for the peer's close (reactor thread)."""
        with self._lock:
            if self._state != "open":
                return
            ws = self.ws
            if ws is not None and ws.connected:
                try:
                    ws.close(code, reason)  # writes the close frame: the last one we send
                except Exception:
                    logger.debug("close frame to %r failed", self, exc_info=True)
            self._state = "closing"
            self._closing_since = time.monotonic()
            flushed = not self._pending
        logger.debug("closing %r with %d %s", self, code, reason)
        self._end_session()
        self.resume_reading()  # to see the client's close answer
        if flushed:  # else on_writable shuts down once the queue is flushed
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_WR)

    def draining(self, horizon: float) -> bool:
        """Whether the client took bytes since ``horizon`` (flow control; any thread).

        Our queue drains only when the kernel's send buffer has room, which
        with megabytes of kernel buffer can take longer than the horizon for a
        client that reads steadily; so a shrinking kernel send queue
        (``SIOCOUTQ``, where the platform has it) counts as taking bytes too.
        """
        now = time.monotonic()
        if _OUTQ is not None:
            try:
                queued = struct.unpack("i", fcntl.ioctl(self._sock, _OUTQ, b"\0\0\0\0"))[0]
            except OSError:
                queued = None
            if queued is not None:
                if queued < self._kernel_queued:
                    self._kernel_taken = now
                self._kernel_queued = queued
        return max(self._last_drain, self._kernel_taken) >= horizon

    def pause_reading(self) -> None:
        """Stop reading this client (flow control; reactor thread)."""
        if self._state == "open" and not self._read_paused:
            self._read_paused = True
            self._paused_at = time.monotonic()
            self._update_interest()

    def resume_reading(self) -> None:
        """Read this client again (reactor thread)."""
        if self._read_paused:
            self._read_paused = False
            now = time.monotonic()
            self._last_seen = now  # paused time is not the client's silence
            if self._incomplete_since is not None:
                # nor time the client took to finish its message: it could not send it
                self._incomplete_since += now - self._paused_at
            self._update_interest()

    def _update_interest(self) -> None:
        if self._registered and self._state != "closed":
            self._reactor.set_interest(
                self._sock, self, read=not self._read_paused, write=self._writable_wanted
            )

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
        if self._flow is not None:
            self._flow.read(self)

    def feed(self, data: bytes) -> None:
        """Process bytes from the client (reactor thread)."""
        now = self._last_seen = time.monotonic()  # unfinished messages count too
        ws = self.ws
        assert ws is not None
        with self._lock:
            ws.ws.receive_data(data)
            keep_going = ws._handle_events()
            # A close frame just went out (simple-websocket's): nothing may follow it.
            self._close_sent = self._close_sent or not keep_going
            messages = list(self.inbox)
            self.inbox.clear()
        for message in messages:
            if self._state != "open":
                break
            self._dispatch(message)
        if not keep_going:
            self._peer_closed(ws)
            self._drop_incomplete()
        elif ws.incoming_message is not None or self._incomplete_since is not None:
            if messages:
                self._incomplete_since = None  # what is left began in this read
            self._check_incomplete(ws, now)

    def _check_incomplete(self, ws: simple_websocket.Server, now: float) -> None:
        """Account the unfinished message's bytes; close at its deadline or the endpoint's bound."""
        message = ws.incoming_message
        if message is None or self._state != "open":
            self._drop_incomplete()  # finished, or closing: nothing more is dispatched
            return
        if self._incomplete_since is None:
            self._incomplete_since = now
        elif now - self._incomplete_since > self._incomplete_timeout:
            self._incomplete_timed_out()
            return
        size = held_size(message)
        if not self._incomplete.change(self._incomplete_held, size):
            self._drop_incomplete()  # before the close frame: the peer sees the bytes released
            logger.warning(
                "Closing %s: its unfinished message of %d bytes would take the endpoint's "
                "unfinished messages past max_incomplete_bytes (%d) (1013)",
                repr(self),  # now: once closed, the peer is no longer known
                size,
                self._incomplete.limit,
            )
            self._count("incomplete_bytes_refused")
            self.close(CLOSE_TRY_AGAIN_LATER, "too many unfinished messages")
            return
        self._incomplete_held = size

    def _incomplete_timed_out(self) -> None:
        held = self._incomplete_held
        age = time.monotonic() - (self._incomplete_since or 0.0)
        self._drop_incomplete()  # before the close frame: the peer sees the bytes released
        logger.info(
            "Closing %s: a message begun %.1fs ago is still unfinished (%d bytes); "
            "incomplete_message_timeout is %.1fs (1008)",
            repr(self),
            age,
            held,
            self._incomplete_timeout,
        )
        self._count("incomplete_message_timeouts")
        self.close(CLOSE_POLICY, "message not finished in time")

    def _drop_incomplete(self) -> None:
        """Forget the unfinished message and give its bytes back to the endpoint's bound."""
        ws = self.ws
        if ws is not None and ws.incoming_message is not None:
            ws.incoming_message = None
            ws.incoming_message_len = 0
        self._incomplete_since = None
        if self._incomplete_held:
            self._incomplete.change(self._incomplete_held, 0)
            self._incomplete_held = 0

    def _count(self, name: str) -> None:
        connection = self.connection
        if connection is not None:
            connection.counters.incr(name)

    def on_writable(self) -> None:
        with self._lock:
            pending = self._pending
            drained = False
            while pending:
                head = pending[0]
                try:
                    sent = self._sock.send(head, _SEND_FLAGS)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    pending.clear()
                    self._pending_bytes = 0
                    self._uncongest()
                    self._reactor.call_soon(self._lost)
                    return
                drained = drained or sent > 0
                self._pending_bytes -= sent
                if sent < len(head):
                    pending[0] = head[sent:]
                    self._head_partial = True
                    break
                pending.popleft()
                self._head_partial = False
            if drained:
                self._last_drain = time.monotonic()
            if self._congested and self._pending_bytes - len(pending[0] if pending else b"") < (
                self._clear_at
            ):
                self._uncongest()
            if pending:
                return
            self._writable_wanted = False
            self._update_interest()
            if self._state == "closing":
                with contextlib.suppress(OSError):
                    self._sock.shutdown(socket.SHUT_WR)

    def _want_write(self) -> None:
        self._update_interest()

    def _check_writes(self, now: float) -> None:
        """The idle sweep's write side: a paused client is not silent; one that
        takes nothing of its queue for ``write_timeout`` is closed (1008)."""
        if self._read_paused:
            self._last_seen = now
        if self._state == "open" and self._pending and now - self._last_drain > self._write_timeout:
            with self._lock:
                if self._state == "open" and self._pending:
                    self._close_slow("stopped reading")

    def check_idle(self, now: float) -> None:
        """Close after ``heartbeat_timeout`` of silence, or a message unfinished past
        ``incomplete_message_timeout``; close a client that stopped reading; release a
        close that hangs."""
        self._check_writes(now)
        since = self._incomplete_since
        if (
            self._state == "open"
            and not self._read_paused
            and since is not None
            and self.ws is not None
            and self.ws.incoming_message is not None
            and now - since > self._incomplete_timeout
        ):
            self._incomplete_timed_out()
        elif self._state == "open" and now - self._last_seen > self._heartbeat_timeout:
            logger.info("%r sent nothing for %.0fs; closing it", self, self._heartbeat_timeout)
            self._drop_incomplete()
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
        # A close frame from the peer (answered by simple-websocket),
        # max_message_size exceeded (simple-websocket sent 1009), or a
        # protocol error (wsproto's code, sent back by simple-websocket).
        if self._state == "open":
            self._state = "closing"
            self._closing_since = time.monotonic()
            if ws.max_message_size and ws.incoming_message_len > ws.max_message_size:
                logger.info("Closed %r: a frame exceeded max_frame_size (1009)", self)
            elif ws.ws.state is ConnectionState.LOCAL_CLOSING:
                # simple-websocket answers wsproto's parse failure as if the peer
                # had sent that close code; a real close from the peer leaves
                # wsproto CLOSED once answered, so LOCAL_CLOSING means ours
                logger.info(
                    "Closed %s: protocol error (%d): %s",
                    repr(self),
                    int(ws.close_reason),
                    _loggable_reason(ws.close_message),
                )
                self._count("protocol_error_closes")
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

    def release_soon(self) -> None:
        """Unregister and close the socket on the reactor thread (from any thread)."""
        self._reactor.call_soon(self._release)

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
            self._uncongest()
        self._drop_incomplete()
        if self._flow is not None:
            self._flow.forget(self)
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


def _loggable_reason(reason: str | None) -> str:
    """wsproto's reason for a protocol error, fit for the log.

    Its reasons are fixed texts, except that a UTF-8 error quotes the
    client's offending byte and its position: keep the client's bytes out.
    """
    text = reason or ""
    if "codec can't decode" in text:
        return "invalid UTF-8 in a close reason" if "CLOSE" in text else "invalid UTF-8"
    return text[:80]


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
    incomplete_message_timeout: float = 30.0,
    incomplete: IncompleteMessages | None = None,
    write_timeout: float = 30.0,
    flow: FlowControl | None = None,
) -> WebSocketTransport:
    """Answer the upgrade (101) on ``sock`` and return the transport, not yet reading.

    ``environ`` holds the request's ``HTTP_*`` headers; without ``compress``
    the client's permessage-deflate offer is left out, so it is refused.
    ``max_buffer`` and ``write_timeout`` decide when a client that does not
    keep up is closed (see the module docstring); ``flow`` is the
    endpoint's flow control.
    """
    transport = WebSocketTransport(
        sock,
        reactor,
        serializer,
        max_buffer=max_buffer,
        compress=compress,
        heartbeat_timeout=heartbeat_timeout,
        on_closed=on_closed,
        incomplete_message_timeout=incomplete_message_timeout,
        incomplete=incomplete,
        write_timeout=write_timeout,
        flow=flow,
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
    ws.input_buffer = transport.inbox
    transport.ws = ws
    return transport
