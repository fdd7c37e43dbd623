"""The endpoint's WebSocket service, and the listening sockets of the standalone server.

Theory of operation
-------------------
:class:`WebSocketService` is the endpoint's I/O side: one :class:`Reactor`
thread reads every WebSocket and every HTTP request still arriving, and the
set of live transports is swept for idle ones. It carries out the upgrades of
both ways in:

- standalone (:meth:`Endpoint.start`): a :class:`Listener` accepts on the
  reactor, and ``transports/requests.py`` reads each request there and serves
  it on a handshake thread once complete;
- inside a WSGI server (``Endpoint.wsgi_app``): the web server's request
  thread serves the upgrade (``transports/wsgi.py``).

Either way an accepted socket then belongs to the reactor. The service is
typed against :class:`ServedEndpoint`, not the endpoint that makes it.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._flow import FlowControl
from .errors import ConfigurationError
from .transports.incomplete import IncompleteMessages
from .transports.reactor import Reactor
from .transports.requests import RequestReader
from .transports.sockets import set_io_timeout
from .transports.websocket import WebSocketTransport, open_websocket
from .upgrade import Accepted, Rejected, decide_upgrade

if TYPE_CHECKING:
    from .handler import Mount
    from .transports.handshake import Request
    from .transports.served import ServedEndpoint

__all__ = ["Listener", "Server", "WebSocketService", "bound_socket"]

logger = logging.getLogger("channels_actor.server")


class WebSocketService:
    """The reactor, the request reader and the live transports of one endpoint."""

    def __init__(self, endpoint: ServedEndpoint) -> None:
        self.endpoint = endpoint
        self.reactor = Reactor()
        self.flow = self._flow_control()
        self._requests: RequestReader | None = None
        self._transports: set[WebSocketTransport] = set()
        self._lock = threading.Lock()
        self._listeners: list[Listener] = []
        self._started = False
        #: set while stop() runs: an upgrade decided meanwhile is refused (503)
        self._stopping = False
        #: bytes held in unfinished messages, bounded by max_incomplete_bytes
        self.incomplete = IncompleteMessages(
            endpoint.config.max_incomplete_bytes, endpoint.counters
        )

    def start(self) -> None:
        with self._lock:
            if self._started:
                return
            self._started = True
            requests = self._requests = RequestReader(self.reactor, self)
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
            self.reactor.every(min(1.0, requests.request_timeout / 4), requests.sweep)

    def listen(self, host: str, port: int, backlog: int, *, reuse_port: bool = False) -> Server:
        """Accept connections on ``host:port``; their requests go to the request reader."""
        self.start()
        requests = self._requests
        assert requests is not None
        listener = Listener(
            self.reactor, host, port, backlog, requests.accepted, reuse_port=reuse_port
        )
        with self._lock:
            self._listeners.append(listener)
        self.reactor.call_soon(listener.register)
        return Server(self.endpoint, listener.host, listener.port)

    def stop(self, timeout: float) -> None:
        """Stop listening, close every WebSocket with 1012, then stop the threads."""
        with self._lock:
            if not self._started:
                return
            self._started = False
            self._stopping = True
            listeners, self._listeners = self._listeners, []
            transports = set(self._transports)
            requests, self._requests = self._requests, None
        if requests is not None:
            requests.close()
        for listener in listeners:
            listener.close()
        deadline = time.monotonic() + timeout
        self._close_all(transports, deadline)
        if requests is not None:
            requests.shutdown()
        # an upgrade that was past its check when the stop began has finished now
        # (the handshake threads are joined): close what it opened too
        with self._lock:
            late = self._transports - transports
        self._close_all(late, deadline)
        self.reactor.stop(timeout)
        self.reactor = Reactor()
        self.flow = self._flow_control()
        with self._lock:
            self._stopping = False

    @staticmethod
    def _close_all(transports: set[WebSocketTransport], deadline: float) -> None:
        """Close each with 1012; release at ``deadline`` those that have not finished."""
        for transport in transports:
            transport.shutdown()
        for transport in transports:
            if not transport.closed_event.wait(max(0.0, deadline - time.monotonic())):
                transport.release_soon()

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
        *,
        lent: bool = False,
    ) -> WebSocketTransport | Rejected:
        """Decide and, when accepted, hand ``sock`` to the reactor. Returns the
        transport, or the refusal to answer instead.

        ``lent``: ``sock`` stays a WSGI server's, which closes it after the
        request; the reactor works on a duplicate and closes only that.
        """
        self.start()
        decision = decide_upgrade(self.endpoint, mount, request)
        if not isinstance(decision, Accepted):
            return decision
        with self._lock:
            if self._stopping:
                return Rejected(503, "The server is stopping: connect again in a moment")
        if lent:
            sock = sock.dup()
        try:
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
        except BaseException:
            if lent:  # the duplicate would hold the connection open
                sock.close()
            raise
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


def bound_socket(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A TCP socket bound to ``host:port``, not yet listening.

    Raises:
        ConfigurationError: ``reuse_port`` on a system without ``SO_REUSEPORT``.
        OSError: the address cannot be bound (in use, not this host's).
    """
    option: int | None = getattr(socket, "SO_REUSEPORT", None)
    if reuse_port and option is None:
        msg = "reuse_port=True needs SO_REUSEPORT, which this system lacks (Linux and BSDs have it)"
        raise ConfigurationError(msg)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port and option is not None:
            sock.setsockopt(socket.SOL_SOCKET, option, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


class Listener:
    """A listening socket the reactor accepts on; each connection goes to ``accepted``.

    ``accepted(sock, address, local)`` runs on the reactor thread, with
    ``local`` the ``(host, port)`` listened on. With ``reuse_port`` several
    processes listen on one port and the kernel spreads connections among them
    (``SO_REUSEPORT``; ``channels-actor serve --workers``).
    """

    def __init__(
        self,
        reactor: Reactor,
        host: str,
        port: int,
        backlog: int,
        accepted: Callable[[socket.socket, Any, tuple[str, int]], None],
        *,
        reuse_port: bool = False,
    ) -> None:
        self._reactor = reactor
        self._accepted = accepted
        listener = bound_socket(host, port, reuse_port=reuse_port)
        try:
            listener.listen(backlog)
        except OSError:
            listener.close()
            raise
        listener.setblocking(False)
        self._socket = listener
        self.host = host
        self.port: int = listener.getsockname()[1]
        self._local = (host, self.port)
        self._closed = False

    def __repr__(self) -> str:
        return f"<Listener {self.host}:{self.port}>"

    def register(self) -> None:
        """Start accepting (reactor thread); nothing once closed."""
        if not self._closed:
            self._reactor.register(self._socket, self)

    def close(self) -> None:
        """Stop accepting and close the socket (idempotent; waits for the reactor)."""
        if self._closed:
            return
        self._closed = True

        def close() -> None:
            self._reactor.unregister(self._socket)
            self._socket.close()

        if self._reactor.running:
            done = threading.Event()

            def close_then_signal() -> None:
                close()
                done.set()

            self._reactor.call_soon(close_then_signal)
            done.wait(5)
        else:
            close()

    # reactor callbacks --------------------------------------------------------------

    def on_readable(self) -> None:
        for _ in range(64):
            try:
                sock, address = self._socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                logger.warning("accept() failed: %s", exc)
                return
            self._accepted(sock, address, self._local)

    def on_writable(self) -> None:
        return None


class Server:
    """A standalone server started by :meth:`Endpoint.start`.

    Attributes:
        host: the address listened on.
        port: the port listened on (the real one when 0 was asked).
        url: ``http://host:port``.
    """

    def __init__(self, endpoint: ServedEndpoint, host: str, port: int) -> None:
        self._endpoint = endpoint
        self.host = host
        self.port = port
        self.url = f"http://{host}:{port}"

    def __repr__(self) -> str:
        return f"<Server {self.url}>"

    def stop(self) -> None:
        """Stop the endpoint this server belongs to (drains every channel)."""
        self._endpoint.stop()
