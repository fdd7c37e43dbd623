"""The WSGI side without sockets: environs from parsed heads, apps answered into bytes,
and what ``Endpoint.wsgi_app`` answers before it ever touches a socket."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from channels_actor import Endpoint, SocketHandler
from channels_actor.server import WebSocketService
from channels_actor.transports.http import parse_head
from channels_actor.transports.wsgi import answer, environ_from_head, serve_wsgi

LOCAL = ("127.0.0.1", 4000)


def _environ(raw: bytes) -> dict[str, Any]:
    return environ_from_head(parse_head(raw), ("10.0.0.1", 5555), LOCAL)


def test_environ_from_a_parsed_head() -> None:
    environ = _environ(
        b"POST /a%20b/c?x=1&y=%20 HTTP/1.1\r\nHost: h\r\nContent-Type: text/plain\r\n"
        b"Content-Length: 3\r\nX-A: 1\r\nx-a: 2\r\n\r\n"
    )
    assert environ["REQUEST_METHOD"] == "POST"
    assert environ["PATH_INFO"] == "/a b/c"  # unquoted; the query string is not
    assert environ["QUERY_STRING"] == "x=1&y=%20"
    assert environ["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert (environ["REMOTE_ADDR"], environ["REMOTE_PORT"]) == ("10.0.0.1", "5555")
    assert (environ["SERVER_NAME"], environ["SERVER_PORT"]) == ("127.0.0.1", "4000")
    assert environ["CONTENT_TYPE"] == environ["HTTP_CONTENT_TYPE"] == "text/plain"
    assert environ["CONTENT_LENGTH"] == "3"
    assert environ["HTTP_X_A"] == "1,2"  # repeated headers joined, as WSGI asks
    assert environ["HTTP_HOST"] == "h"


def test_environ_for_a_peer_without_a_host_and_port() -> None:
    environ = environ_from_head(parse_head(b"GET / HTTP/1.0\r\n\r\n"), "", LOCAL)
    assert environ["REMOTE_ADDR"] == environ["REMOTE_PORT"] == ""


class _Chunks:
    """What an app may return: an iterable with ``close()``, failing after ``fail_after``."""

    def __init__(self, chunks: list[bytes], fail_after: int | None = None) -> None:
        self.chunks = chunks
        self.fail_after = fail_after
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        for n, chunk in enumerate(self.chunks):
            if n == self.fail_after:
                raise RuntimeError("the app failed midway")
            yield chunk

    def close(self) -> None:
        self.closed = True


def test_answer_gives_the_app_the_body_and_returns_the_whole_response() -> None:
    seen: dict[str, Any] = {}
    chunks = _Chunks([b"hel", bytearray(b"lo")])  # type: ignore[list-item]

    def app(environ: dict[str, Any], start_response: Any) -> _Chunks:
        seen["body"] = environ["wsgi.input"].read()
        seen["wsgi"] = (
            environ["wsgi.version"],
            environ["SCRIPT_NAME"],
            environ["wsgi.multithread"],
        )
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-Extra", "1")])
        return chunks

    reply = answer(app, _environ(b"POST /p HTTP/1.1\r\nContent-Length: 4\r\n\r\n"), b"data")
    assert seen == {"body": b"data", "wsgi": ((1, 0), "", True)}
    assert chunks.closed
    assert reply == (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nx-extra: 1\r\ncontent-length: 5\r\n"
        b"connection: close\r\n\r\nhello"
    )


def test_an_app_that_never_starts_the_response_answers_500() -> None:
    reply = answer(lambda environ, start_response: [b"x"], _environ(b"GET / HTTP/1.1\r\n\r\n"), b"")
    assert reply.startswith(b"HTTP/1.1 500 Internal Server Error\r\n")


def test_a_head_answer_keeps_the_length_of_the_body_it_drops() -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        environ["REQUEST_METHOD"] = "GET"  # a method-override middleware, say
        start_response("200 OK", [("Content-Length", "999")])
        return [b"hello"]

    reply = answer(app, _environ(b"HEAD / HTTP/1.1\r\n\r\n"), b"")
    assert reply == b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\n"


def test_what_the_app_raises_propagates_and_its_result_is_closed() -> None:
    chunks = _Chunks([b"a", b"b"], fail_after=1)

    def app(environ: dict[str, Any], start_response: Any) -> _Chunks:
        start_response("200 OK", [])
        return chunks

    with pytest.raises(RuntimeError, match="midway"):
        answer(app, _environ(b"GET / HTTP/1.1\r\n\r\n"), b"")
    assert chunks.closed


# Endpoint.wsgi_app, up to the socket ------------------------------------------------------


class _Handler(SocketHandler):
    pass


@pytest.fixture
def served() -> Iterator[tuple[Endpoint, WebSocketService]]:
    endpoint = Endpoint()
    endpoint.socket("/socket", _Handler)
    service = WebSocketService(endpoint)
    yield endpoint, service
    service.stop(1.0)
    endpoint.stop()


def _call(service: WebSocketService, environ: dict[str, Any]) -> tuple[str, list[Any], bytes]:
    started: list[tuple[str, list[Any]]] = []
    body = serve_wsgi(service, environ, lambda status, headers: started.append((status, headers)))
    assert len(started) == 1
    return started[0][0], started[0][1], b"".join(body)


def _upgrade(query: str, method: str = "GET") -> dict[str, Any]:
    return {
        "REQUEST_METHOD": method,
        "PATH_INFO": "/socket/websocket",
        "QUERY_STRING": query,
        "HTTP_UPGRADE": "websocket",
        "HTTP_CONNECTION": "Upgrade",
        "HTTP_SEC_WEBSOCKET_KEY": "dGhlIHNhbXBsZSBub25jZQ==",
        "HTTP_SEC_WEBSOCKET_VERSION": "13",
        "werkzeug.socket": object(),  # never touched: each of these is refused first
    }


def test_other_paths_are_404_or_go_to_http_app(served: tuple[Endpoint, WebSocketService]) -> None:
    endpoint, service = served
    text = [("Content-Type", "text/plain")]
    assert _call(service, {"PATH_INFO": "/page"}) == ("404 Not Found", text, b"Not Found")

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", text)
        return [environ["PATH_INFO"].encode()]

    endpoint.http_app = app
    assert _call(service, {"PATH_INFO": "/page"}) == ("200 OK", text, b"/page")
    assert _call(service, {"PATH_INFO": "/socket"}) == ("200 OK", text, b"/socket")


def test_a_wsgi_server_that_hides_its_socket_gets_500(
    served: tuple[Endpoint, WebSocketService],
) -> None:
    _, service = served
    environ = _upgrade("vsn=2.0.0")
    del environ["werkzeug.socket"]
    status, _, body = _call(service, environ)
    assert status == "500 Internal Server Error"
    assert b"werkzeug.socket" in body and b"Endpoint.start()" in body


@pytest.mark.parametrize(
    ("query", "method", "status"),
    [("vsn=9.0.0", "GET", "403 Forbidden"), ("vsn=2.0.0", "POST", "400 Bad Request")],
)
def test_a_refused_upgrade_is_answered_through_start_response(
    served: tuple[Endpoint, WebSocketService], query: str, method: str, status: str
) -> None:
    _, service = served
    answered, headers, body = _call(service, _upgrade(query, method))
    assert (answered, headers) == (status, [("Content-Type", "text/plain")])
    assert body and b"\n" not in body
