"""Serving WebSockets: the standalone server and the WSGI entry point.

Theory of operation
-------------------
:class:`WebSocketService` is the endpoint's I/O side: one :class:`Reactor`
thread reads every WebSocket, a small pool of handshake threads reads HTTP
requests (h11) and runs ``connect`` (user code that may block, so never on the
reactor), and the set of live transports is swept for idle ones.

Standalone (:meth:`Endpoint.start`): the listening socket is registered with
the reactor; each accepted socket goes to the handshake pool, which either
upgrades it (the socket then belongs to the reactor, and no thread is spent
on the connection) or answers a plain HTTP request with ``endpoint.http_app``.

WSGI (``Endpoint.wsgi_app``): the web server's request thread runs the same
checks, hands the socket to the reactor, and waits until the WebSocket has
closed, because a WSGI server must not touch the socket before the app
returns. That costs the server one of its threads per open WebSocket.
"""

from __future__ import annotations

import logging
import queue
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from ._flow import FlowControl
from .transports.handshake import Request, request_from_environ
from .transports.http import BadRequest, RequestHead, parse_head, read_head, response
from .transports.incomplete import IncompleteMessages
from .transports.reactor import Reactor
from .transports.websocket import WebSocketTransport, open_websocket
from .upgrade import Accepted, Rejected, decide_upgrade

if TYPE_CHECKING:
    from .endpoint import Endpoint, Mount

__all__ = ["Server", "WebSocketService"]

logger = logging.getLogger("channels_actor.server")

MAX_BODY = 1024 * 1024
REQUEST_TIMEOUT = 10.0


class _HandshakeThreads:
    """Threads that read HTTP requests and run ``connect``, fed by the reactor.

    A bare queue and loop: ``ThreadPoolExecutor.submit`` made a future, a
    condition and a semaphore round per accepted socket, which showed in the
    rate of new connections.
    """

    def __init__(self, count: int, service: WebSocketService) -> None:
        self._queue: queue.SimpleQueue[tuple[socket.socket, Any, tuple[str, int]] | None] = (
            queue.SimpleQueue()
        )
        self._service = service
        self._closed = False
        self._threads = [
            threading.Thread(target=self._loop, name=f"channels_actor-http_{n}", daemon=True)
            for n in range(count)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, sock: socket.socket, address: Any, local: tuple[str, int]) -> None:
        """Serve ``sock`` (accepted on ``local``) on a handshake thread; closed if shut down."""
        if self._closed:
            sock.close()
            return
        self._queue.put((sock, address, local))

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
                item[0].close()

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self._closed:
                item[0].close()
                continue
            _serve_http(self._service, *item)


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
        self.reactor.stop(timeout)
        self.reactor = Reactor()
        self.flow = self._flow_control()

    def _flow_control(self) -> FlowControl:
        config = self.endpoint.config
        pubsub = self.endpoint.pubsub
        pubsub.max_message_size = config.max_frame_size
        return FlowControl(
            self.reactor,
            self.endpoint.counters,
            pubsub.backlog,
            queue_high=config.publish_queue_high,
            queue_low=config.publish_queue_low,
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
            self._service.pool.submit(sock, address, self._local)

    def on_writable(self) -> None:
        return None


def set_io_timeout(sock: socket.socket, seconds: float) -> None:
    """Time out blocking reads and writes on ``sock`` after ``seconds`` (0: never).

    Kernel timeouts (``SO_RCVTIMEO``/``SO_SNDTIMEO``) instead of
    ``socket.settimeout``: that one releases the GIL for its ``ioctl`` and makes
    every ``recv`` a ``poll`` plus a ``recv``, and on a busy server each release
    costs the handshake thread a wait to get the GIL back (about 0.25 ms apiece
    measured under load). A timed-out call raises ``BlockingIOError``.
    """
    whole = int(seconds)
    value = struct.pack("ll", whole, int((seconds - whole) * 1e6))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, value)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, value)


def _serve_http(
    service: WebSocketService, sock: socket.socket, address: Any, local: tuple[str, int]
) -> None:
    """Read one HTTP request; upgrade it or answer it (handshake pool thread).

    ``local`` is the listening address (``SERVER_NAME``/``SERVER_PORT``).
    """
    set_io_timeout(sock, REQUEST_TIMEOUT)
    try:
        head_bytes, rest = read_head(sock)
        head = parse_head(head_bytes)
        environ = _environ(head, address, local)
        request = request_from_environ(environ)
        mount = service.mount_for(request.path)
        if mount is not None:
            result = service.upgrade(mount, request, environ, sock, rest)
            if isinstance(result, Rejected):
                text = result.body.encode()
                _reply_and_close(sock, result.status, [("content-type", "text/plain")], text)
            return
        _serve_app(service, sock, head, environ, rest)
    except BadRequest as exc:
        logger.info("Bad HTTP request from %s: %s", address, exc.reason)
        _reply_and_close(sock, exc.status, [("content-type", "text/plain")], exc.reason.encode())
    except OSError:  # includes timeouts and resets
        sock.close()
    except Exception:
        logger.exception("Serving %s failed", address)
        sock.close()


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


def _serve_app(
    service: WebSocketService,
    sock: socket.socket,
    head: RequestHead,
    environ: dict[str, Any],
    body: bytes,
) -> None:
    import io
    import sys

    if "HTTP_TRANSFER_ENCODING" in environ:
        raise BadRequest(501, "request bodies with Transfer-Encoding are not supported")
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise BadRequest(400, "malformed Content-Length") from None
    if length > MAX_BODY or length < 0:
        raise BadRequest(413, "request body too large")
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise BadRequest(400, "connection closed inside the request body")
        body += chunk
    app = service.endpoint.http_app
    if app is None:
        _reply_and_close(sock, 404, [("content-type", "text/plain")], b"Not Found")
        return
    environ.update(
        {
            "wsgi.version": (1, 0),
            "wsgi.input": io.BytesIO(body[:length]),
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
    _reply_and_close(sock, status, headers, payload)


def _reply_and_close(
    sock: socket.socket, status: int, headers: list[tuple[str, str]], body: bytes
) -> None:
    try:
        sock.sendall(response(status, headers, body))
    except OSError:
        pass
    finally:
        sock.close()
