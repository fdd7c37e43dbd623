"""Serving WebSockets: the standalone server and the WSGI entry point.

Theory of operation
-------------------
:class:`WebSocketService` is the endpoint's I/O side: one :class:`Reactor`
thread reads every WebSocket and every HTTP request still arriving, a small
pool of handshake threads parses complete requests and runs ``connect`` (user
code that may block, so never on the reactor), and the set of live transports
is swept for idle ones.

Standalone (:meth:`Endpoint.start`): the listening socket is registered with
the reactor. Each accepted socket is read at once without blocking (on
loopback the head has usually arrived already); a head still on its way is
accumulated by the reactor until its blank line. Only a complete request goes
to the handshake pool, which either upgrades it (the socket then belongs to
the reactor, and no thread is spent on the connection) or answers a plain
HTTP request with ``endpoint.http_app``, whose body the reactor reads too.
The whole request has one deadline, ``request_timeout`` from the accept; a
periodic sweep closes what is past it. A client that trickles its request one
byte at a time so holds a few bytes of memory until the deadline, never a
handshake thread, and clients behind it keep being served.

WSGI (``Endpoint.wsgi_app``): the web server's request thread runs the same
checks, hands the socket to the reactor, and waits until the WebSocket has
closed, because a WSGI server must not touch the socket before the app
returns. That costs the server one of its threads per open WebSocket.
"""

from __future__ import annotations

import contextlib
import io
import logging
import queue
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterable
from functools import partial
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from ._flow import FlowControl
from .transports.handshake import Request, request_from_environ
from .transports.http import (
    BadRequest,
    RequestHead,
    content_length,
    head_end,
    parse_head,
    response,
)
from .transports.incomplete import IncompleteMessages
from .transports.reactor import Reactor
from .transports.websocket import WebSocketTransport, open_websocket
from .upgrade import Accepted, Rejected, decide_upgrade

if TYPE_CHECKING:
    from .endpoint import Endpoint, Mount

__all__ = ["Server", "WebSocketService"]

logger = logging.getLogger("channels_actor.server")

MAX_BODY = 1024 * 1024
_RECV_FLAGS = getattr(socket, "MSG_DONTWAIT", 0)
_SEND_FLAGS = getattr(socket, "MSG_DONTWAIT", 0) | getattr(socket, "MSG_NOSIGNAL", 0)


class _Request:
    """One HTTP request on its way in: read on the reactor, served on a handshake thread.

    ``data`` is the head and what followed it until the head is parsed
    (``head`` is None), then the body read so far, ``body_length`` bytes in all.
    """

    __slots__ = (
        "address",
        "body_length",
        "data",
        "deadline",
        "environ",
        "head",
        "head_end",
        "local",
        "searched",
        "service",
        "sock",
    )

    def __init__(
        self,
        service: WebSocketService,
        sock: socket.socket,
        address: Any,
        local: tuple[str, int],
        deadline: float,
    ) -> None:
        self.service = service
        self.sock = sock
        self.address = address
        self.local = local
        self.deadline = deadline
        self.data: bytes | bytearray = b""
        self.searched = 0  # bytes of data already searched for the head's end
        self.head: RequestHead | None = None
        self.head_end = -1  # where the head ends in data, once found
        self.environ: dict[str, Any] = {}
        self.body_length = 0

    def __repr__(self) -> str:
        return f"<HTTP request from {self.address}>"

    def complete(self) -> bool:
        """Has what the next step needs arrived? Raises BadRequest (431) for a huge head."""
        if self.head is not None:
            return len(self.data) >= self.body_length
        self.head_end = head_end(self.data, start=self.searched)
        self.searched = len(self.data)
        return self.head_end >= 0

    def on_readable(self) -> None:
        self.service._receive(self, registered=True)

    def on_writable(self) -> None:
        return None


class _HandshakeThreads:
    """Threads that parse complete HTTP requests and run ``connect``, fed by the reactor.

    A bare queue and loop: ``ThreadPoolExecutor.submit`` made a future, a
    condition and a semaphore round per accepted socket, which showed in the
    rate of new connections.
    """

    def __init__(self, count: int, service: WebSocketService) -> None:
        self._queue: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        self._service = service
        self._closed = False
        self._threads = [
            threading.Thread(target=self._loop, name=f"channels_actor-http_{n}", daemon=True)
            for n in range(count)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, request: _Request) -> None:
        """Serve ``request`` on a handshake thread; its socket is closed if shut down."""
        if self._closed:
            request.sock.close()
            return
        self._queue.put(request)

    def shutdown(self) -> None:
        """Let the running requests finish, close the waiting sockets, join the threads."""
        self._closed = True
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join()
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is not None:
                item.sock.close()

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self._closed:
                item.sock.close()
                continue
            _serve_request(item)


class WebSocketService:
    """The reactor, the handshake pool and the live transports of one endpoint."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.reactor = Reactor()
        self.flow = self._flow_control()
        self._pool: _HandshakeThreads | None = None
        self._transports: set[WebSocketTransport] = set()
        self._lock = threading.Lock()
        self._servers: list[Server] = []
        self._started = False
        #: bytes held in unfinished messages, bounded by max_incomplete_bytes
        self.incomplete = IncompleteMessages(
            endpoint.config.max_incomplete_bytes, endpoint.counters
        )
        self._incoming: set[_Request] = set()  # requests still arriving (reactor thread only)
        self.request_timeout = endpoint.config.request_timeout

    def start(self) -> None:
        with self._lock:
            if self._started:
                return
            self._started = True
            self._pool = _HandshakeThreads(self.endpoint.config.handshake_threads, self)
            self.reactor.start()
            config = self.endpoint.config
            sweep = min(
                5.0,
                config.heartbeat_timeout / 4,
                config.incomplete_message_timeout / 4,
                config.write_timeout / 4,
            )
            self.reactor.every(sweep, self._sweep)
            # A request is closed at most a quarter of its timeout past its deadline.
            self.reactor.every(min(1.0, self.request_timeout / 4), self._sweep_requests)

    @property
    def pool(self) -> _HandshakeThreads:
        assert self._pool is not None
        return self._pool

    def listen(self, host: str, port: int, backlog: int) -> Server:
        self.start()
        server = Server(self, host, port, backlog)
        with self._lock:
            self._servers.append(server)
        self.reactor.call_soon(server._register)
        return server

    def stop(self, timeout: float) -> None:
        """Stop listening, close every WebSocket with 1012, then stop the threads."""
        with self._lock:
            if not self._started:
                return
            self._started = False
            servers, self._servers = self._servers, []
            transports = list(self._transports)
        for server in servers:
            server._close()
        for transport in transports:
            transport.shutdown()
        deadline = time.monotonic() + timeout
        for transport in transports:
            if not transport.closed_event.wait(max(0.0, deadline - time.monotonic())):
                self.reactor.call_soon(transport._release)
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        self.reactor.call_soon(self._close_incoming)  # after what the pool queued, if anything
        self.reactor.stop(timeout)
        self.reactor = Reactor()
        self.flow = self._flow_control()

    def _flow_control(self) -> FlowControl:
        config = self.endpoint.config
        return FlowControl(
            self.reactor,
            self.endpoint.counters,
            self.endpoint.pubsub.backlog,
            queue_high=config.publish_queue_high,
            queue_low=config.publish_queue_low,
            stall_grace=min(1.0, config.write_timeout / 4),
        )

    @property
    def transport_count(self) -> int:
        return len(self._transports)

    def _sweep(self) -> None:
        now = time.monotonic()
        with self._lock:
            transports = list(self._transports)
        for transport in transports:
            transport.check_idle(now)

    def _closed(self, transport: WebSocketTransport) -> None:
        with self._lock:
            self._transports.discard(transport)

    # reading requests (reactor thread) ------------------------------------------------

    def accepted(self, sock: socket.socket, address: Any, local: tuple[str, int]) -> None:
        """A new connection on ``local``: read its request, serve it once complete."""
        deadline = time.monotonic() + self.request_timeout
        self._receive(_Request(self, sock, address, local, deadline), registered=False)

    def _receive(self, request: _Request, *, registered: bool) -> None:
        """Read what has arrived; hand a complete request to the pool, else wait for more."""
        try:
            chunk: bytes | None = request.sock.recv(65536, _RECV_FLAGS)
        except (BlockingIOError, InterruptedError):
            chunk = None
        except OSError:
            chunk = b""
        if chunk == b"":  # the client left, or reset
            self._forget(request, registered=registered)
            request.sock.close()
            return
        if chunk is not None:
            data = request.data
            if not data:
                request.data = chunk
            else:
                if isinstance(data, bytes):
                    data = request.data = bytearray(data)
                data += chunk
            try:
                done = request.complete()
            except BadRequest as exc:
                self._forget(request, registered=registered)
                _refuse_now(request, exc)
                return
            if done:
                self._forget(request, registered=registered)
                pool = self._pool
                if pool is None:  # stopping
                    request.sock.close()
                else:
                    pool.submit(request)
                return
        if not registered:
            self._wait(request)

    def _wait(self, request: _Request) -> None:
        """Read ``request`` when more of it arrives (reactor thread)."""
        if not self._started:
            request.sock.close()
            return
        self.reactor.register(request.sock, request)
        self._incoming.add(request)

    def _forget(self, request: _Request, *, registered: bool) -> None:
        if registered:
            self.reactor.unregister(request.sock)
            self._incoming.discard(request)

    def _sweep_requests(self) -> None:
        if not self._incoming:
            return
        now = time.monotonic()
        for request in [item for item in self._incoming if item.deadline <= now]:
            self._forget(request, registered=True)
            self._timed_out(request)

    def _timed_out(self, request: _Request) -> None:
        self.endpoint.counters.incr("request_timeouts")
        stage = "head" if request.head is None else "body"
        logger.info(
            "Closing the connection from %s: its request was not complete after %.1fs "
            "(%d bytes of its %s received)",
            request.address,
            self.request_timeout,
            len(request.data),
            stage,
        )
        sock = request.sock
        if request.data or request.head is not None:
            # An answer for a client that sent part of a request; a connection opened
            # and never used (a browser's preconnect) is just closed.
            with contextlib.suppress(OSError):
                # Unread bytes would turn the close into a reset that loses the 408; a
                # few reads at most, so a client sending without end cannot keep us here.
                for _ in range(4):
                    if not sock.recv(65536, _RECV_FLAGS):
                        break
            with contextlib.suppress(OSError):
                sock.send(response(408, [("content-type", "text/plain")], b""), _SEND_FLAGS)
        sock.close()

    def _close_incoming(self) -> None:
        for request in list(self._incoming):
            self._forget(request, registered=True)
            request.sock.close()

    # upgrading -------------------------------------------------------------------

    def mount_for(self, path: str) -> Mount | None:
        """The mount whose WebSocket path is ``path`` (``/socket/websocket``)."""
        if not path.endswith("/websocket"):
            return None
        base = path[: -len("/websocket")] or "/"
        return self.endpoint.mounts.get(base)

    def upgrade(
        self,
        mount: Mount,
        request: Request,
        environ: dict[str, Any],
        sock: socket.socket,
        early_data: bytes = b"",
    ) -> WebSocketTransport | Rejected:
        """Decide and, when accepted, hand ``sock`` to the reactor. Returns the
        transport, or the refusal to answer instead."""
        self.start()
        decision = decide_upgrade(self.endpoint, mount, request)
        if not isinstance(decision, Accepted):
            return decision
        config = self.endpoint.config
        if sock.gettimeout() is not None:
            sock.settimeout(None)  # a socket from a WSGI server
        set_io_timeout(sock, 0)
        transport = open_websocket(
            sock,
            environ,
            self.reactor,
            decision.serializer,
            subprotocols=decision.subprotocols,
            max_frame_size=config.max_frame_size,
            max_buffer=int(mount.options.get("max_buffer", config.max_buffer)),
            compress=bool(mount.options.get("compress", config.compress)),
            heartbeat_timeout=config.heartbeat_timeout,
            on_closed=self._closed,
            incomplete_message_timeout=config.incomplete_message_timeout,
            incomplete=self.incomplete,
            write_timeout=config.write_timeout,
            flow=self.flow,
        )
        with self._lock:
            self._transports.add(transport)
        connection = self.endpoint.open_connection(decision.socket, transport)
        transport.connection = connection

        def begin() -> None:
            transport.start_reading()
            if early_data:
                transport.feed(early_data)

        self.reactor.call_soon(begin)
        return transport


class Server:
    """A standalone server started by :meth:`Endpoint.start`.

    Attributes:
        host: the address listened on.
        port: the port listened on (the real one when 0 was asked).
        url: ``http://host:port``.
    """

    def __init__(self, service: WebSocketService, host: str, port: int, backlog: int) -> None:
        self._service = service
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((host, port))
        except OSError:
            listener.close()
            raise
        listener.listen(backlog)
        listener.setblocking(False)
        self._listener = listener
        self.host = host
        self.port: int = listener.getsockname()[1]
        self._local = (host, self.port)
        self.url = f"http://{host}:{self.port}"
        self._closed = False

    def __repr__(self) -> str:
        return f"<Server {self.url}>"

    def stop(self) -> None:
        """Stop the endpoint this server belongs to (drains every channel)."""
        self._service.endpoint.stop()

    def _register(self) -> None:
        if not self._closed:
            self._service.reactor.register(self._listener, self)

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True

        def close() -> None:
            self._service.reactor.unregister(self._listener)
            self._listener.close()

        if self._service.reactor.running:
            done = threading.Event()

            def close_then_signal() -> None:
                close()
                done.set()

            self._service.reactor.call_soon(close_then_signal)
            done.wait(5)
        else:
            close()

    # reactor callbacks --------------------------------------------------------------

    def on_readable(self) -> None:
        for _ in range(64):
            try:
                sock, address = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                logger.warning("accept() failed: %s", exc)
                return
            self._service.accepted(sock, address, self._local)

    def on_writable(self) -> None:
        return None


def set_io_timeout(sock: socket.socket, seconds: float) -> None:
    """Time out blocking reads and writes on ``sock`` after ``seconds`` (0: never).

    Kernel timeouts (``SO_RCVTIMEO``/``SO_SNDTIMEO``) instead of
    ``socket.settimeout``: that one releases the GIL for its ``ioctl`` and makes
    every ``recv`` a ``poll`` plus a ``recv``, and on a busy server each release
    costs the handshake thread a wait to get the GIL back. A timed-out call
    raises ``BlockingIOError``.
    """
    whole = int(seconds)
    value = struct.pack("ll", whole, int((seconds - whole) * 1e6))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, value)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, value)


def _serve_request(request: _Request) -> None:
    """Serve a complete request: upgrade it or answer it (handshake pool thread)."""
    sock = request.sock
    try:
        if request.head is None:
            _serve_head(request)
        else:
            _serve_app(request)
    except BadRequest as exc:
        logger.info("Bad HTTP request from %s: %s", request.address, exc.reason)
        body = exc.reason.encode()
        _reply_and_close(request, exc.status, [("content-type", "text/plain")], body)
    except OSError:  # includes timeouts and resets
        sock.close()
    except Exception:
        logger.exception("Serving %s failed", request.address)
        sock.close()


def _serve_head(request: _Request) -> None:
    """Parse the head; upgrade, or read the body on the reactor, or answer ``http_app``.

    ``request.local`` is the listening address (``SERVER_NAME``/``SERVER_PORT``).
    """
    service = request.service
    data, end = request.data, request.head_end
    head = parse_head(bytes(data[:end]))
    rest = bytes(data[end:])
    environ = _environ(head, request.address, request.local)
    parsed = request_from_environ(environ)
    mount = service.mount_for(parsed.path)
    if mount is not None:
        result = service.upgrade(mount, parsed, environ, request.sock, rest)
        if isinstance(result, Rejected):
            text = result.body.encode()
            _reply_and_close(request, result.status, [("content-type", "text/plain")], text)
        return
    if "HTTP_TRANSFER_ENCODING" in environ:
        raise BadRequest(501, "request bodies with Transfer-Encoding are not supported")
    request.head, request.environ, request.data = head, environ, rest
    request.body_length = content_length(environ.get("CONTENT_LENGTH"), MAX_BODY)
    if len(rest) < request.body_length:
        # The reactor reads the rest, within the same deadline, then hands it back.
        service.reactor.call_soon(partial(service._wait, request))
        return
    _serve_app(request)


def _environ(head: RequestHead, address: Any, local: tuple[str, int]) -> dict[str, Any]:
    path, _, query = head.target.partition("?")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": head.method,
        "PATH_INFO": unquote(path),
        "QUERY_STRING": query,
        "SERVER_PROTOCOL": head.version,
        "wsgi.url_scheme": "http",
        "REMOTE_ADDR": address[0] if isinstance(address, tuple) else "",
        "REMOTE_PORT": str(address[1]) if isinstance(address, tuple) else "",
    }
    environ["SERVER_NAME"], environ["SERVER_PORT"] = local[0], str(local[1])
    for name, value in head.headers:
        key = name.upper().replace("-", "_")
        if key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            environ[key] = value
        key = "HTTP_" + key
        environ[key] = f"{environ[key]},{value}" if key in environ else value
    return environ


def _serve_app(request: _Request) -> None:
    """Answer a complete plain request with ``http_app`` (handshake pool thread)."""
    head, environ, length = request.head, request.environ, request.body_length
    assert head is not None
    body = bytes(request.data[:length])
    app = request.service.endpoint.http_app
    if app is None:
        _reply_and_close(request, 404, [("content-type", "text/plain")], b"Not Found")
        return
    environ.update(
        {
            "wsgi.version": (1, 0),
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
            "SCRIPT_NAME": "",
        }
    )
    started: list[Any] = []

    def start_response(
        status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], None]:
        started[:] = [status, headers]
        return lambda data: None

    chunks: Iterable[bytes] = app(environ, start_response)
    try:
        payload = b"".join(bytes(chunk) for chunk in chunks)
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    status = int(str(started[0]).split(" ", 1)[0]) if started else 500
    headers = [(k.lower(), v) for k, v in (started[1] if started else [])]
    if head.method == "HEAD":
        headers = [(k, v) for k, v in headers if k != "content-length"]
        headers.append(("content-length", str(len(payload))))
        payload = b""
    _reply_and_close(request, status, headers, payload)


def _reply_and_close(
    request: _Request, status: int, headers: list[tuple[str, str]], body: bytes
) -> None:
    """Send a response, giving up after ``request_timeout``, and close (pool thread).

    One deadline for the whole answer, not a timeout per ``send``: a client
    that reads a byte now and then would otherwise hold the thread for as long
    as it likes.
    """
    sock = request.sock
    view = memoryview(response(status, headers, body))
    deadline = time.monotonic() + request.service.request_timeout
    try:
        while view:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            set_io_timeout(sock, max(remaining, 0.001))
            view = view[sock.send(view) :]
    except OSError:
        pass
    finally:
        sock.close()


def _refuse_now(request: _Request, exc: BadRequest) -> None:
    """Answer a request refused while it arrived, without blocking (reactor thread)."""
    logger.info("Bad HTTP request from %s: %s", request.address, exc.reason)
    reply = response(exc.status, [("content-type", "text/plain")], exc.reason.encode())
    with contextlib.suppress(OSError):
        request.sock.send(reply, _SEND_FLAGS)
    request.sock.close()
