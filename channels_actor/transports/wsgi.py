"""WSGI both ways: the standalone server calling ``http_app``, the endpoint inside a WSGI server.

Calling an app (standalone server): :func:`environ_from_head` turns a parsed
request head into a WSGI environ and :func:`answer` calls the app with the
whole body and returns the bytes of the response. The body is read before the
app runs and the answer collected before it is sent, so the app never touches
the socket and these are plain functions over bytes; ``http_app`` serves
pages and assets beside the sockets, not streams.

Inside a WSGI server (``Endpoint.wsgi_app``, see :func:`serve_wsgi`): the web
server's request thread runs the same upgrade checks, lends the connection to
the reactor, and waits until the WebSocket has closed, because a WSGI server
must not touch the socket before the app returns. That costs the server one
of its threads per open WebSocket (``transports/gunicorn.py`` warns where
that cannot work, and drains when a gunicorn worker stops).

Lending, not giving: the reactor gets a duplicate of the server's socket and
closes only that. When the WebSocket is over, the request thread shuts the
connection down and answers ``101`` with no body; the server's write of that
answer fails as on any dropped connection (``EPIPE``), which werkzeug,
``flask run --debug`` and gunicorn all pass over without an error line, and
the server closes its own socket as after any request. (Raising instead, or
leaving the server a socket closed under it, logged a traceback or ``Bad file
descriptor`` on every normal close.)

Mounted under a prefix (werkzeug's ``DispatcherMiddleware``), the socket path
is looked up under the mount point (``PATH_INFO``) first, then as the whole
path (``SCRIPT_NAME`` + ``PATH_INFO``): ``/socket`` mounted at ``/chat`` is
``/chat/socket/websocket``, and the endpoint mounted at ``/socket`` itself
serves ``/socket/websocket``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import socket
import sys
import threading
import weakref
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from ..upgrade import Rejected
from .gunicorn import embed, serving_worker
from .handshake import request_from_environ
from .http import response, status_line

if TYPE_CHECKING:
    from ..handler import Mount
    from ..upgrade import Upgrader
    from .http import RequestHead
    from .served import WSGIApp

__all__ = ["NoResponse", "answer", "environ_from_head", "serve_wsgi"]

logger = logging.getLogger("channels_actor.transport")
_unmatched_lock = threading.Lock()
_unmatched: weakref.WeakSet[Any] = weakref.WeakSet()  # endpoints told why an upgrade was 404


def environ_from_head(head: RequestHead, address: Any, local: tuple[str, int]) -> dict[str, Any]:
    """The CGI part of a WSGI environ for ``head``, from ``address`` to ``local``.

    ``local`` is the listening address (``SERVER_NAME``/``SERVER_PORT``);
    repeated headers are joined with commas, as WSGI asks.
    """
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


def answer(app: WSGIApp, environ: dict[str, Any], body: bytes) -> bytes:
    """Call ``app`` on a complete request and return its whole response.

    ``environ`` (from :func:`environ_from_head`) gets the ``wsgi.*`` keys, with
    ``body`` as ``wsgi.input``. An app that never calls ``start_response``
    answers 500; a ``HEAD`` answer keeps the length of the body it drops. What
    the app raises propagates.
    """
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
    method = environ["REQUEST_METHOD"]  # before the app, which may rewrite it
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
    if method == "HEAD":
        headers = [(k, v) for k, v in headers if k != "content-length"]
        headers.append(("content-length", str(len(payload))))
        payload = b""
    return response(status, headers, payload)


class NoResponse(list[bytes]):
    """What the WSGI server gets after a WebSocket ends: no body to write.

    With the ``101`` status, werkzeug and gunicorn write no body framing; the
    connection is already shut down, so they drop it as a client gone away.
    """


_SWITCHED = "101 Switching Protocols"
_TEXT = [("Content-Type", "text/plain")]


def serve_wsgi(upgrader: Upgrader, environ: dict[str, Any], start_response: Any) -> Any:
    """``Endpoint.wsgi_app``: serve a WebSocket upgrade on the WSGI server's request thread.

    Upgrades to a mounted socket are served here and the request thread stays
    with the WebSocket until it closes; other requests go to ``http_app`` (or
    404). The socket comes from ``werkzeug.socket`` or ``gunicorn.socket``.
    """
    endpoint = upgrader.endpoint
    mount = _mount(upgrader, environ)
    if mount is None:
        app = endpoint.http_app
        if app is not None:
            return app(environ, start_response)
        if str(environ.get("HTTP_UPGRADE", "")).lower() == "websocket":
            _say_unmatched(upgrader, environ)
        start_response("404 Not Found", _TEXT)
        return [b"Not Found"]
    sock = environ.get("werkzeug.socket") or environ.get("gunicorn.socket")
    if sock is None:
        start_response("500 Internal Server Error", _TEXT)
        return [
            b"This WSGI server does not expose its socket (werkzeug.socket or "
            b"gunicorn.socket); use Endpoint.start() instead"
        ]
    worker = serving_worker(environ)
    if worker is not None:
        if not worker.alive:  # drained or being drained: reconnect to another worker
            start_response("503 Service Unavailable", _TEXT)
            return [b"This worker is stopping"]
        embed(endpoint, worker)
    endpoint.start_runtime()
    request = request_from_environ(environ)
    result = upgrader.upgrade(mount, request, dict(environ), sock, lent=True)
    if isinstance(result, Rejected):
        start_response(status_line(result.status), _TEXT)
        return [result.body.encode()]
    result.closed_event.wait()
    with contextlib.suppress(OSError):  # the peer may have reset it already
        sock.shutdown(socket.SHUT_RDWR)
    start_response(_SWITCHED, [])
    return NoResponse()


def _mount(upgrader: Upgrader, environ: dict[str, Any]) -> Mount | None:
    """The socket this request upgrades to: under the mount point, else by the whole path."""
    path = str(environ.get("PATH_INFO", ""))
    mount = upgrader.mount_for(path)
    prefix = str(environ.get("SCRIPT_NAME", ""))
    if mount is None and prefix:
        mount = upgrader.mount_for(prefix + path)
    return mount


def _say_unmatched(upgrader: Upgrader, environ: dict[str, Any]) -> None:
    """Once per endpoint, why a WebSocket upgrade was answered 404."""
    endpoint = upgrader.endpoint
    with _unmatched_lock:
        if endpoint in _unmatched:
            return
        _unmatched.add(endpoint)
    preview = endpoint.config.redactor.preview
    paths = [mounted.rstrip("/") + "/websocket" for mounted in sorted(endpoint.mounts)]
    logger.warning(
        "A WebSocket upgrade (SCRIPT_NAME %s, PATH_INFO %s) matches no mounted socket and "
        "was answered 404; the sockets are at %s, under the mount point or as whole paths",
        preview(environ.get("SCRIPT_NAME", "")),
        preview(environ.get("PATH_INFO", "")),
        ", ".join(paths) or "(none)",
    )
