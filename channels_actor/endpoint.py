"""The Endpoint: configuration, socket mounts, broadcasts and the runtime's lifecycle.

One endpoint owns one PubSub and one supervisor; nothing is global, so tests
and applications can run several endpoints side by side. The actors start on
first use (a connection, a broadcast, a subscription) and stop with
:meth:`Endpoint.stop`, which terminates every channel before it returns.
"""

from __future__ import annotations

import atexit
import logging
import signal
import threading
import weakref
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Self

from ._runtime import Runtime
from ._stats import Counters
from .config import EndpointConfig
from .connection import Connection, ConnectionContext, OpenConnections
from .errors import ConfigurationError
from .handler import Mount, Refused, SocketHandler
from .pubsub import PubSub
from .server import WebSocketService
from .socket import Socket
from .token import Token
from .transports.gunicorn import current_worker, embed
from .transports.wsgi import serve_wsgi

if TYPE_CHECKING:
    import pykka

    from ._types import RuntimeService
    from .message import Broadcast
    from .serializers import Serializer
    from .server import Server
    from .transports.base import Transport
    from .transports.served import WSGIApp

__all__ = ["Endpoint", "Mount", "Refused"]


# The library's threads are daemons so that a forgotten stop() cannot hang the
# process at exit; endpoints still running then are drained here instead, so
# terminate() runs for every channel (gunicorn workers exit this way).
_running: weakref.WeakSet[Endpoint] = weakref.WeakSet()


@atexit.register
def _stop_running_endpoints() -> None:
    for endpoint in list(_running):
        try:
            endpoint.stop()
        except Exception:
            logger.exception("Stopping %r at exit failed", endpoint)


logger = logging.getLogger("channels_actor.endpoint")


class Endpoint:
    """Serves user sockets and publishes broadcasts.

    Args:
        pubsub: the PubSub to use; defaults to the embedded in-process registry.
        **config: see :class:`EndpointConfig` (``max_frame_size``,
            ``heartbeat_timeout``, ``max_channels_per_socket``,
            ``check_origin``, ``secret_key_base``, ``actor_mode``,
            ``pool_size``, ``stop_timeout``).
    """

    def __init__(self, pubsub: PubSub | None = None, **config: Any) -> None:
        self.config = EndpointConfig.from_kwargs(config)
        #: Drops, closes and pauses counted by the runtime (see :meth:`stats`).
        self.counters = Counters()
        self.pubsub = pubsub if pubsub is not None else PubSub()
        # what no client would accept from us is refused where it is broadcast
        self.pubsub.max_message_size = self.config.max_frame_size
        self.mounts: dict[str, Mount] = {}
        self._runtime = Runtime(
            self.pubsub, actor_mode=self.config.actor_mode, pool_size=self.config.pool_size
        )
        self._connections = OpenConnections()
        self._context = ConnectionContext(
            self._runtime, self.config, self.counters, self.pubsub, self._connections
        )
        self._lock = threading.Lock()
        #: WSGI app for plain HTTP requests to the standalone server and to
        #: ``wsgi_app`` (pages, assets); None answers 404.
        self.http_app: WSGIApp | None = None
        self._service: WebSocketService | None = None
        worker = current_worker()  # built inside a gunicorn worker: say now what cannot work
        if worker is not None:
            embed(self, worker)

    def __repr__(self) -> str:
        return f"<Endpoint mounts={sorted(self.mounts)} mode={self.config.actor_mode}>"

    # mounting -----------------------------------------------------------------

    def socket(self, path: str, handler_class: type[SocketHandler], **options: Any) -> Mount:
        """Mount ``handler_class`` at ``path``; its WebSocket is ``path + "/websocket"``."""
        if not (isinstance(handler_class, type) and issubclass(handler_class, SocketHandler)):
            msg = f"Endpoint.socket() needs a SocketHandler subclass, got {handler_class!r}"
            raise ConfigurationError(msg)
        if not path.startswith("/"):
            msg = f"A socket path starts with '/', such as '/socket'; got {path!r}"
            raise ConfigurationError(msg)
        path = path.rstrip("/") or "/"
        mount = Mount(path, handler_class(), dict(options))
        self.mounts[path] = mount
        return mount

    # connections ----------------------------------------------------------------

    def connect(
        self,
        handler: SocketHandler,
        params: dict[str, Any],
        connect_info: dict[str, Any],
        serializer: Serializer,
        transport_name: str = "memory",
    ) -> Socket | Refused:
        """Run the handler's ``connect`` and ``id``; return the connection socket or a refusal."""
        self.start_runtime()
        socket = Socket(
            endpoint=self,
            handler=handler,
            transport=transport_name,
            serializer=serializer,
            pubsub=self.pubsub,
        )
        owner = type(handler).__name__
        try:
            result = handler.connect(params, socket, connect_info)
        except Exception:
            logger.exception("%s.connect raised; refusing the connection", owner)
            return Refused()
        match result:
            case ("ok", Socket() as accepted):
                socket = accepted
            case "error" | ("error",):
                return Refused()
            case ("error", Mapping() as reply):
                return Refused(reply)
            case _:
                logger.error(
                    'Expected %s.connect() to return one of:\n  ("ok", socket)\n'
                    '  ("error", reply_map)\n  "error"\ngot: %s; refusing the connection',
                    owner,
                    self.config.redactor.preview(result),
                )
                return Refused()
        try:
            socket_id = handler.id(socket)
        except Exception:
            logger.exception("%s.id raised; refusing the connection", owner)
            return Refused()
        if socket_id is not None and not isinstance(socket_id, str):
            logger.error(
                "Expected %s.id() to return a str or None, got %s",
                owner,
                self.config.redactor.preview(socket_id),
            )
            return Refused()
        return socket._replace(
            id=socket_id, endpoint=self, handler=handler, serializer=serializer, pubsub=self.pubsub
        )

    def open_connection(self, socket: Socket, transport: Transport) -> Connection:
        """Start serving an accepted connection through ``transport``."""
        connection = Connection(self._context, socket, transport)
        connection.open()
        return connection

    @property
    def connection_count(self) -> int:
        """Connections open now."""
        return len(self._connections)

    def stats(self) -> dict[str, float]:
        """A snapshot of the endpoint's counters: connections open now, and every drop,
        close and pause the runtime has counted since the endpoint was made (names
        such as ``slow_consumer_closed``; a counter appears once it is non-zero). A
        cluster PubSub adds its own as ``pubsub_<name>``: ``pubsub_outages``, and
        broadcasts ``pubsub_refused`` (raised to the publisher) or ``pubsub_lost``
        (accepted, then dropped by an outage)."""
        snapshot = self.counters.snapshot()
        for name, value in self.pubsub.adapter_stats().items():
            if value:
                snapshot[f"pubsub_{name}"] = value
        snapshot["connections"] = self.connection_count
        return snapshot

    def channel_count(self, timeout: float = 5.0) -> int:
        """Channel actors alive now (0 when the runtime is not running)."""
        return self._runtime.channel_count(timeout) if self._runtime.running else 0

    # broadcasts -------------------------------------------------------------------

    def broadcast(self, topic: str, event: str, message: Mapping[str, Any] | bytes) -> None:
        """Send ``event`` to every subscriber of ``topic``.

        Raises:
            BroadcastError: the message cannot be serialized or the PubSub is down.
        """
        self.start_runtime()
        self.pubsub.broadcast(topic, event, message)

    def broadcast_from(
        self,
        from_ref: pykka.ActorRef[Any] | None,
        topic: str,
        event: str,
        message: Mapping[str, Any] | bytes,
    ) -> None:
        """Like :meth:`broadcast`, skipping the channel whose ``channel_ref`` is ``from_ref``."""
        self.start_runtime()
        self.pubsub.broadcast_from(from_ref, topic, event, message)

    def local_broadcast(self, topic: str, event: str, message: Mapping[str, Any] | bytes) -> None:
        """Like :meth:`broadcast`, to this node's subscribers only."""
        self.start_runtime()
        self.pubsub.local_broadcast(topic, event, message)

    def subscribe(self, topic: str, callback: Callable[[Broadcast], Any]) -> None:
        """Call ``callback(broadcast)`` for every broadcast to ``topic``.

        Callbacks run on the PubSub registry's thread, in publish order: keep
        them quick and hand long work to a queue. Subscribing the same callback
        twice to a topic keeps one subscription.
        """
        self.start_runtime()
        self.pubsub.subscribe_callback(topic, callback)

    def unsubscribe(self, topic: str, callback: Callable[[Broadcast], Any]) -> None:
        """Stop calling ``callback`` for ``topic``."""
        self.start_runtime()
        self.pubsub.unsubscribe(topic, callback)

    # tokens ----------------------------------------------------------------------

    def sign_token(self, salt: str, data: Any, **opts: Any) -> str:
        """:meth:`Token.sign` with this endpoint's ``secret_key_base``.

        ``opts``: ``max_age`` (seconds, default one day; None: forever) and
        ``signed_at``. Signed, not encrypted: the holder can read ``data``.

        Raises:
            ConfigurationError: the endpoint has no ``secret_key_base``.
        """
        return Token.sign(self._secret_key_base("sign_token"), salt, data, **opts)

    def verify_token(self, salt: str, token: str | None, **opts: Any) -> Any:
        """:meth:`Token.verify` with this endpoint's ``secret_key_base``; returns the data.

        ``opts``: ``max_age`` to override the token's own.

        Raises:
            TokenExpired, TokenInvalid (TokenMissing for None): see :meth:`Token.verify`.
            ConfigurationError: the endpoint has no ``secret_key_base``.
        """
        return Token.verify(self._secret_key_base("verify_token"), salt, token, **opts)

    def _secret_key_base(self, caller: str) -> str:
        secret = self.config.secret_key_base
        if not secret:
            msg = (
                f"Endpoint.{caller}() needs a secret: Endpoint(secret_key_base=...), a long "
                "random string kept out of the code, e.g. secrets.token_urlsafe(48) read "
                "from the environment"
            )
            raise ConfigurationError(msg)
        return secret

    # services --------------------------------------------------------------------

    def attach(self, service: RuntimeService) -> None:
        """Attach ``service`` (a ``Presence``): told when each channel ends, stopped with
        the endpoint (before the PubSub, after every channel has terminated)."""
        if service not in self._runtime.services:
            self._runtime.services.append(service)

    # serving -------------------------------------------------------------------

    @property
    def _websockets(self) -> WebSocketService:
        with self._lock:
            if self._service is None:
                self._service = WebSocketService(self)
            return self._service

    def start(
        self,
        host: str = "127.0.0.1",
        port: int = 4000,
        *,
        backlog: int = 1024,
        reuse_port: bool = False,
    ) -> Server:
        """Serve the mounted sockets (and ``http_app``) on background threads.

        Returns the server: ``server.port`` is the real port when 0 was asked,
        ``server.url`` its address, ``server.stop()`` stops this endpoint.
        ``reuse_port=True`` lets other processes listen on the same port
        (``SO_REUSEPORT``), as the workers of ``channels-actor serve`` do.
        """
        if not self.mounts and self.http_app is None:
            msg = "Nothing to serve: mount a socket first with endpoint.socket('/socket', Handler)"
            raise ConfigurationError(msg)
        self.start_runtime()
        server = self._websockets.listen(host, port, backlog, reuse_port=reuse_port)
        logger.info("Serving %s at %s", ", ".join(sorted(self.mounts)) or "HTTP", server.url)
        return server

    def serve(self, host: str = "127.0.0.1", port: int = 4000) -> None:
        """Like :meth:`start`, then block until Ctrl-C (or SIGTERM), then :meth:`stop`."""
        server = self.start(host, port)
        done = threading.Event()
        previous = None
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGTERM, lambda *_: done.set())
        try:
            while not done.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
            logger.info("Stopping %s", server.url)
            self.stop()

    def wsgi_app(self, environ: dict[str, Any], start_response: Any) -> Any:
        """WSGI entry point for werkzeug, Flask or gunicorn (threaded workers).

        WebSocket upgrades to a mounted socket are served here; the request
        thread stays with the WebSocket until it closes. Other requests go to
        ``http_app`` (or 404).
        """
        return serve_wsgi(self._websockets, environ, start_response)

    # lifecycle ------------------------------------------------------------------

    def start_runtime(self) -> None:
        """Start the actors (pool, PubSub registry, supervisor) if they are not running."""
        if not self._runtime.running:
            self._runtime.start()
            _running.add(self)

    def stop(self, timeout: float | None = None) -> None:
        """Drain: terminate every channel with ``("shutdown", "closed")``, close every
        connection (code 1012 on a WebSocket), then stop the actors. Idempotent."""
        timeout = self.config.stop_timeout if timeout is None else timeout
        connections = self._connections.snapshot()
        with self._lock:
            service = self._service
        for connection in connections:
            connection.close(("shutdown", "closed"))
            connection.transport.shutdown()
        self._runtime.stop(timeout)
        if service is not None:
            service.stop(timeout)
        _running.discard(self)

    def __enter__(self) -> Self:
        self.start_runtime()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
