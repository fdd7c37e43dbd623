"""The WebSocket upgrade decisions, as pure functions over the request.

Everything Phoenix checks before it answers ``101 Switching Protocols``:
the serializer version, the origin, the auth token carried in
``Sec-WebSocket-Protocol`` and the ``connect_info`` handed to ``connect``.
No sockets here, so each rule is tested on plain dictionaries.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

__all__ = [
    "LOOPBACK_HOSTS",
    "Request",
    "auth_token",
    "build_connect_info",
    "origin_allowed",
    "request_from_environ",
]

TOKEN_PREFIX = "base64url.bearer.phx."


@dataclass(frozen=True)
class Request:
    """The parts of an upgrade request the decisions need.

    ``headers`` maps lower-case names to values.
    """

    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    scheme: str = "http"
    peer: tuple[str, int] | None = None

    @property
    def params(self) -> dict[str, str]:
        """Query parameters (the last value wins for repeated keys)."""
        return dict(parse_qsl(self.query, keep_blank_values=True))

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)

    @property
    def subprotocols(self) -> list[str]:
        value = self.header("sec-websocket-protocol") or ""
        return [item.strip() for item in value.split(",") if item.strip()]

    @property
    def is_websocket(self) -> bool:
        upgrade = (self.header("upgrade") or "").lower()
        connection = (self.header("connection") or "").lower()
        return upgrade == "websocket" and "upgrade" in connection


def request_from_environ(environ: Mapping[str, Any]) -> Request:
    """Build a :class:`Request` from a WSGI environ."""
    headers = {
        key[5:].replace("_", "-").lower(): str(value)
        for key, value in environ.items()
        if key.startswith("HTTP_")
    }
    if "CONTENT_TYPE" in environ:
        headers.setdefault("content-type", str(environ["CONTENT_TYPE"]))
    peer = None
    if environ.get("REMOTE_ADDR"):
        try:
            peer = (str(environ["REMOTE_ADDR"]), int(environ.get("REMOTE_PORT") or 0))
        except ValueError:
            peer = (str(environ["REMOTE_ADDR"]), 0)
    return Request(
        method=str(environ.get("REQUEST_METHOD", "GET")).upper(),
        # the path the client asked for, whatever prefix the app is mounted under
        path=str(environ.get("SCRIPT_NAME", "")) + str(environ.get("PATH_INFO", "/")),
        query=str(environ.get("QUERY_STRING", "")),
        headers=headers,
        scheme=str(environ.get("wsgi.url_scheme", "http")),
        peer=peer,
    )


def auth_token(request: Request) -> tuple[str | None, bool]:
    """Return ``(token, token_sent)`` from phoenix.js ``authToken``.

    phoenix.js sends ``Sec-WebSocket-Protocol: phoenix,
    base64url.bearer.phx.<base64url(token) without padding>``. A malformed
    token is treated as absent.
    """
    for item in request.subprotocols:
        if item.startswith(TOKEN_PREFIX):
            encoded = item[len(TOKEN_PREFIX) :]
            try:
                standard = encoded.replace("-", "+").replace("_", "/")
                raw = base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True)
                return raw.decode(), True
            except (binascii.Error, UnicodeDecodeError, ValueError):
                return None, True
    return None, False


LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def origin_allowed(
    origin: str | None,
    check: bool | Sequence[str] | Callable[[str], bool],
    url_host: str | None = None,
) -> bool:
    """Phoenix's ``check_origin``: allow when no ``Origin`` header was sent.

    ``True`` requires the origin's host to equal ``url_host`` (the endpoint's
    configured host, compared without scheme or port, as Phoenix compares
    ``url[:host]``); with no ``url_host``, only the loopback names in
    :data:`LOOPBACK_HOSTS` pass. The request's own ``Host`` header is never
    the reference: a DNS-rebinding page controls both it and the origin.
    A list allows each ``"scheme://host:port"`` entry where scheme and port
    are compared only when given and ``//*.example.com`` matches the host and
    its subdomains; a callable decides itself.
    """
    if origin is None or check is False:
        return True
    try:
        parsed = urlsplit(origin)
        host = (parsed.hostname or "").lower()
    except ValueError:  # "http://[::1": not a URL
        return False
    if not host:
        return False
    if check is True:
        if url_host is None:
            return host in LOOPBACK_HOSTS
        return host == url_host.strip("[]").lower()
    if callable(check):
        return bool(check(origin))
    try:
        port = parsed.port
    except ValueError:  # a port that is not a number, or out of range
        return False
    return any(_origin_matches(parsed.scheme, host, port, allowed) for allowed in check)


def _origin_matches(scheme: str, host: str, port: int | None, allowed: str) -> bool:
    spec = urlsplit(allowed if "//" in allowed else "//" + allowed)
    want_host = (spec.hostname or "").lower()
    if spec.scheme and spec.scheme != scheme:
        return False
    if spec.port is not None and spec.port != port:
        return False
    if want_host.startswith("*."):
        base = want_host[2:]
        return host == base or host.endswith("." + base)
    return host == want_host


def build_connect_info(request: Request, token: str | None, token_sent: bool) -> dict[str, Any]:
    """What ``connect(params, socket, connect_info)`` receives, as Phoenix builds it."""
    host = request.header("host") or ""
    uri = {
        "scheme": request.scheme,
        "host": host.rsplit(":", 1)[0] if host and not host.endswith("]") else host,
        "port": _port(host, request.scheme),
        "path": request.path,
        "query": request.query,
    }
    peer = {"address": request.peer[0], "port": request.peer[1]} if request.peer else None
    info: dict[str, Any] = {
        "peer_data": peer,
        "uri": uri,
        "x_headers": [
            (name, value) for name, value in request.headers.items() if name.startswith("x-")
        ],
        "user_agent": request.header("user-agent"),
        "trace_context_headers": [
            (name, value)
            for name, value in request.headers.items()
            if name in ("traceparent", "tracestate")
        ],
        "sec_websocket_headers": [
            (name, value)
            for name, value in request.headers.items()
            if name.startswith("sec-websocket")
        ],
    }
    if token_sent:
        info["auth_token"] = token
    return info


def _port(host: str, scheme: str) -> int:
    if host and not host.endswith("]") and ":" in host:
        try:
            return int(host.rsplit(":", 1)[1])
        except ValueError:
            pass
    return 443 if scheme in ("https", "wss") else 80
