"""HTTP requests to the standalone server: read on the reactor, served on handshake threads.

Theory of operation
-------------------
Each accepted socket is read at once without blocking (on loopback the head
has usually arrived already); a head still on its way is accumulated by the
reactor until its blank line. Only a complete request goes to the handshake
threads, which parse it and run ``connect`` (user code that may block, so
never on the reactor). They either upgrade it (the socket then belongs to the
reactor, and no thread is spent on the connection) or answer a plain HTTP
request with ``http_app``, whose body the reactor reads too.

The whole request has one deadline, ``request_timeout`` from the accept; a
periodic sweep closes what is past it. A client that trickles its request one
byte at a time so holds a few bytes of memory until the deadline, never a
handshake thread, and clients behind it keep being served.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import socket
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from ..upgrade import Rejected
from .handshake import request_from_environ
from .http import BadRequest, RequestHead, content_length, head_end, parse_head, response
from .sockets import RECV_FLAGS, SEND_FLAGS, set_io_timeout
from .wsgi import answer, environ_from_head

if TYPE_CHECKING:
    from ..upgrade import Upgrader
    from .reactor import Reactor

__all__ = ["MAX_BODY", "HandshakeThreads", "PendingRequest", "RequestReader"]

# The logger these messages have always had (the standalone server's).
logger = logging.getLogger("channels_actor.server")

MAX_BODY = 1024 * 1024
_TEXT = [("content-type", "text/plain")]


class PendingRequest:
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
        "reader",
        "searched",
        "sock",
    )

    def __init__(
        self,
        reader: RequestReader,
        sock: socket.socket,
        address: Any,
        local: tuple[str, int],
        deadline: float,
    ) -> None:
        self.reader = reader
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
        self.reader.receive(self, registered=True)

    def on_writable(self) -> None:
        return None


class HandshakeThreads:
    """Threads that serve complete HTTP requests, fed by the reactor.

    A bare queue and loop: ``ThreadPoolExecutor.submit`` made a future, a
    condition and a semaphore round per accepted socket, which showed in the
    rate of new connections.
    """

    def __init__(self, count: int, serve: Callable[[PendingRequest], None]) -> None:
        self._queue: queue.SimpleQueue[PendingRequest | None] = queue.SimpleQueue()
        self._serve = serve
        self._closed = False
        self._threads = [
            threading.Thread(target=self._loop, name=f"channels_actor-http_{n}", daemon=True)
            for n in range(count)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, request: PendingRequest) -> None:
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
            self._serve(item)


class RequestReader:
    """The requests arriving at one run of the WebSocket service, and its handshake threads.

    Args:
        reactor: reads the requests still arriving (and the bodies of plain ones).
        upgrader: the WebSocket service: upgrades, mounts, the endpoint's
            ``http_app``, ``config`` and ``counters``.
    """

    def __init__(self, reactor: Reactor, upgrader: Upgrader) -> None:
        endpoint = upgrader.endpoint
        self.reactor = reactor
        self.upgrader = upgrader
        self.request_timeout = endpoint.config.request_timeout
        self._counters = endpoint.counters
        self._incoming: set[PendingRequest] = set()  # still arriving (reactor thread only)
        self._waiting = True
        self._pool: HandshakeThreads | None = HandshakeThreads(
            endpoint.config.handshake_threads, self.serve
        )

    def close(self) -> None:
        """Wait for no more requests: those still arriving from now on are closed."""
        self._waiting = False

    def shutdown(self) -> None:
        """Let the handshakes in progress finish, then close every request still open."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        self.reactor.call_soon(self._close_incoming)  # after what the pool queued, if anything

    # reading (reactor thread) -----------------------------------------------------

    def accepted(self, sock: socket.socket, address: Any, local: tuple[str, int]) -> None:
        """A new connection on ``local``: read its request, serve it once complete."""
        deadline = time.monotonic() + self.request_timeout
        self.receive(PendingRequest(self, sock, address, local, deadline), registered=False)

    def receive(self, request: PendingRequest, *, registered: bool) -> None:
        """Read what has arrived; hand a complete request to the pool, else wait for more."""
        try:
            chunk: bytes | None = request.sock.recv(65536, RECV_FLAGS)
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
            self.wait(request)

    def wait(self, request: PendingRequest) -> None:
        """Read ``request`` when more of it arrives."""
        if not self._waiting:
            request.sock.close()
            return
        self.reactor.register(request.sock, request)
        self._incoming.add(request)

    def _forget(self, request: PendingRequest, *, registered: bool) -> None:
        if registered:
            self.reactor.unregister(request.sock)
            self._incoming.discard(request)

    def sweep(self) -> None:
        """Close the requests past their deadline (periodic)."""
        if not self._incoming:
            return
        now = time.monotonic()
        for request in [item for item in self._incoming if item.deadline <= now]:
            self._forget(request, registered=True)
            self._timed_out(request)

    def _timed_out(self, request: PendingRequest) -> None:
        self._counters.incr("request_timeouts")
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
                    if not sock.recv(65536, RECV_FLAGS):
                        break
            with contextlib.suppress(OSError):
                sock.send(response(408, _TEXT, b""), SEND_FLAGS)
        sock.close()

    def _close_incoming(self) -> None:
        for request in list(self._incoming):
            self._forget(request, registered=True)
            request.sock.close()

    # serving (handshake thread) ---------------------------------------------------

    def serve(self, request: PendingRequest) -> None:
        """Serve a complete request: upgrade it or answer it."""
        sock = request.sock
        try:
            if request.head is None:
                self._serve_head(request)
            else:
                self._serve_app(request)
        except BadRequest as exc:
            logger.info("Bad HTTP request from %s: %s", request.address, exc.reason)
            self._reply_and_close(request, response(exc.status, _TEXT, exc.reason.encode()))
        except OSError:  # includes timeouts and resets
            sock.close()
        except Exception:
            logger.exception("Serving %s failed", request.address)
            sock.close()

    def _serve_head(self, request: PendingRequest) -> None:
        """Parse the head; upgrade, or read the body on the reactor, or answer ``http_app``."""
        data, end = request.data, request.head_end
        head = parse_head(bytes(data[:end]))
        rest = bytes(data[end:])
        environ = environ_from_head(head, request.address, request.local)
        parsed = request_from_environ(environ)
        mount = self.upgrader.mount_for(parsed.path)
        if mount is not None:
            result = self.upgrader.upgrade(mount, parsed, environ, request.sock, rest)
            if isinstance(result, Rejected):
                reply = response(result.status, _TEXT, result.body.encode())
                self._reply_and_close(request, reply)
            return
        if "HTTP_TRANSFER_ENCODING" in environ:
            raise BadRequest(501, "request bodies with Transfer-Encoding are not supported")
        request.head, request.environ, request.data = head, environ, rest
        request.body_length = content_length(environ.get("CONTENT_LENGTH"), MAX_BODY)
        if len(rest) < request.body_length:
            # The reactor reads the rest, within the same deadline, then hands it back.
            self.reactor.call_soon(partial(self.wait, request))
            return
        self._serve_app(request)

    def _serve_app(self, request: PendingRequest) -> None:
        """Answer a complete plain request with ``http_app``."""
        body = bytes(request.data[: request.body_length])
        app = self.upgrader.endpoint.http_app
        if app is None:
            self._reply_and_close(request, response(404, _TEXT, b"Not Found"))
            return
        self._reply_and_close(request, answer(app, request.environ, body))

    def _reply_and_close(self, request: PendingRequest, reply: bytes) -> None:
        """Send ``reply``, giving up after ``request_timeout``, and close.

        One deadline for the whole answer, not a timeout per ``send``: a client
        that reads a byte now and then would otherwise hold the thread for as long
        as it likes.
        """
        sock = request.sock
        view = memoryview(reply)
        deadline = time.monotonic() + self.request_timeout
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


def _refuse_now(request: PendingRequest, exc: BadRequest) -> None:
    """Answer a request refused while it arrived, without blocking (reactor thread)."""
    logger.info("Bad HTTP request from %s: %s", request.address, exc.reason)
    reply = response(exc.status, _TEXT, exc.reason.encode())
    with contextlib.suppress(OSError):
        request.sock.send(reply, SEND_FLAGS)
    request.sock.close()
