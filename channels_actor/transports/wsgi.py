"""WSGI both ways: the standalone server calling ``http_app``, the endpoint inside a WSGI server.

Calling an app (standalone server): :func:`environ_from_head` turns a parsed
request head into a WSGI environ and :func:`answer` calls the app with the
whole body and returns the bytes of the response. The body is read before the
app runs and the answer collected before it is sent, so the app never touches
the socket and these are plain functions over bytes; ``http_app`` serves
pages and assets beside the sockets, not streams.

Inside a WSGI server (``Endpoint.wsgi_app``, see :func:`serve_wsgi`): the web
server's request thread runs the same upgrade checks, hands the socket to the
reactor, and waits until the WebSocket has closed, because a WSGI server must
not touch the socket before the app returns. That costs the server one of its
threads per open WebSocket.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from ..upgrade import Rejected
from .handshake import request_from_environ
from .http import response, status_line

if TYPE_CHECKING:
    from ..upgrade import Upgrader
    from .http import RequestHead
    from .served import WSGIApp

__all__ = ["NoResponse", "answer", "environ_from_head", "serve_wsgi"]


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
    """What gunicorn gets after a WebSocket ends: nothing more to write.

    gunicorn has sent no headers for this request; an empty body with
    ``close()`` ending the iteration lets its worker drop the connection.
    """


def serve_wsgi(upgrader: Upgrader, environ: dict[str, Any], start_response: Any) -> Any:
    """``Endpoint.wsgi_app``: serve a WebSocket upgrade on the WSGI server's request thread.

    Upgrades to a mounted socket are served here and the request thread stays
    with the WebSocket until it closes; other requests go to ``http_app`` (or
    404). The socket comes from ``werkzeug.socket`` or ``gunicorn.socket``.
    """
    endpoint = upgrader.endpoint
    path = str(environ.get("PATH_INFO", ""))
    mount = upgrader.mount_for(path)
    if mount is None:
        app = endpoint.http_app
        if app is not None:
            return app(environ, start_response)
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"Not Found"]
    sock = environ.get("werkzeug.socket") or environ.get("gunicorn.socket")
    if sock is None:
        start_response("500 Internal Server Error", [("Content-Type", "text/plain")])
        return [
            b"This WSGI server does not expose its socket (werkzeug.socket or "
            b"gunicorn.socket); use Endpoint.start() instead"
        ]
    endpoint.start_runtime()
    result = upgrader.upgrade(mount, request_from_environ(environ), dict(environ), sock)
    if isinstance(result, Rejected):
        start_response(status_line(result.status), [("Content-Type", "text/plain")])
        return [result.body.encode()]
    result.closed_event.wait()
    if "werkzeug.socket" in environ:
        # werkzeug treats this as a dropped connection and writes nothing.
        raise ConnectionError("WebSocket closed")
    start_response("200 OK", [])
    return NoResponse()
