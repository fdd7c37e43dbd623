"""Upgrade decisions and frame building, as pure functions (no sockets)."""

from __future__ import annotations

import base64
import struct

import pytest
import wsproto
from wsproto.events import BytesMessage, TextMessage

from channels_actor.transports.frames import SharedFrame, close_frame, frame_message
from channels_actor.transports.handshake import (
    Request,
    auth_token,
    build_connect_info,
    origin_allowed,
    request_from_environ,
)


def _request(**headers: str) -> Request:
    return Request("GET", "/socket/websocket", "vsn=2.0.0&token=t", {k.lower(): v for k, v in headers.items()},
                   peer=("127.0.0.1", 5555))


def test_request_from_environ() -> None:
    req = request_from_environ({
        "REQUEST_METHOD": "get", "PATH_INFO": "/socket/websocket", "QUERY_STRING": "a=1&a=2&b=",
        "HTTP_UPGRADE": "websocket", "HTTP_CONNECTION": "keep-alive, Upgrade",
        "HTTP_SEC_WEBSOCKET_PROTOCOL": "phoenix, x", "REMOTE_ADDR": "10.0.0.1", "REMOTE_PORT": "9",
    })
    assert req.method == "GET" and req.is_websocket
    assert req.params == {"a": "2", "b": ""}
    assert req.subprotocols == ["phoenix", "x"]
    assert req.peer == ("10.0.0.1", 9)


def test_auth_token_from_subprotocols() -> None:
    token = base64.urlsafe_b64encode("tøken/+?".encode()).decode().rstrip("=")
    assert auth_token(_request(**{"Sec-WebSocket-Protocol": f"phoenix, base64url.bearer.phx.{token}"})) == ("tøken/+?", True)
    assert auth_token(_request(**{"Sec-WebSocket-Protocol": "phoenix"})) == (None, False)
    assert auth_token(_request(**{"Sec-WebSocket-Protocol": "base64url.bearer.phx.%%%"})) == (None, True)


def test_connect_info() -> None:
    req = _request(Host="example.com:8080", **{"User-Agent": "ua", "X-Forwarded-For": "1.2.3.4", "traceparent": "00-x"})
    info = build_connect_info(req, "tok", True)
    assert info["peer_data"] == {"address": "127.0.0.1", "port": 5555}
    assert info["uri"] == {"scheme": "http", "host": "example.com", "port": 8080,
                           "path": "/socket/websocket", "query": "vsn=2.0.0&token=t"}
    assert info["x_headers"] == [("x-forwarded-for", "1.2.3.4")]
    assert info["user_agent"] == "ua"
    assert info["trace_context_headers"] == [("traceparent", "00-x")]
    assert info["auth_token"] == "tok"
    assert "auth_token" not in build_connect_info(req, None, False)


@pytest.mark.parametrize(
    ("origin", "check", "host", "allowed"),
    [
        (None, True, "a.com", True),
        ("https://a.com", True, "a.com", True),
        ("https://A.com:8443", True, "a.COM", True),  # Phoenix compares url[:host] only
        ("https://b.com", True, "a.com", False),
        ("https://x.a.com", True, "a.com", False),
        ("https://localhost", True, "a.com", False),  # a configured host replaces loopback
        # no url_host: loopback origins only, whatever the request's Host header says
        ("http://localhost:4000", True, None, True),
        ("http://127.0.0.1:4000", True, None, True),
        ("http://[::1]:4000", True, None, True),
        ("http://evil.example", True, None, False),
        ("http://127.0.0.1.evil.example", True, None, False),
        ("http://localhost.evil.example", True, None, False),
        ("null", True, None, False),
        ("http://[::1", True, None, False),  # unparsable
        ("http://a.com:99999", ["//a.com"], None, False),  # a port out of range
        ("https://b.com", False, "a.com", True),
        ("https://a.com", ["https://a.com"], None, True),
        ("http://a.com", ["https://a.com"], None, False),
        ("https://x.y.a.com", ["//*.a.com"], None, True),
        ("https://a.com", ["//*.a.com"], None, True),
        ("https://evila.com", ["//*.a.com"], None, False),
        ("http://a.com:888", ["//a.com:888"], None, True),
        ("http://a.com", ["//a.com:888"], None, False),
        ("null", ["//a.com"], None, False),
        ("https://a.com", lambda o: o == "https://a.com", None, True),
    ],
)
def test_origin_allowed(origin: str | None, check: object, host: str | None, allowed: bool) -> None:
    assert origin_allowed(origin, check, host) is allowed  # type: ignore[arg-type]


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 200_000])
@pytest.mark.parametrize("kind", ["text", "binary"])
def test_frames_match_what_a_client_parses(size: int, kind: str) -> None:
    data: str | bytes = "é" * (size // 2) if kind == "text" else bytes(size)
    client = wsproto.connection.Connection(wsproto.connection.ConnectionType.CLIENT)
    client.receive_data(frame_message(data))
    events = list(client.events())
    assert len(events) == 1
    event = events[0]
    assert isinstance(event, TextMessage if kind == "text" else BytesMessage)
    assert event.data == data and event.message_finished


def test_close_frame_and_shared_frame() -> None:
    assert close_frame(1012, "bye") == bytes([0x88, 5]) + struct.pack("!H", 1012) + b"bye"
    shared = SharedFrame("[1]")
    assert shared.wire() is shared.wire() and shared.wire() == frame_message("[1]")


# the HTTP head parser and the 101 answer ------------------------------------------------

from channels_actor.transports.http import (  # noqa: E402
    BadRequest,
    accept_key,
    content_length,
    head_end,
    parse_head,
    response,
    switching_protocols,
    valid_websocket_key,
)


def test_accept_key_is_rfc6455s_example() -> None:
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert valid_websocket_key("dGhlIHNhbXBsZSBub25jZQ==")
    assert not valid_websocket_key("c2hvcnQ=") and not valid_websocket_key(None)
    assert not valid_websocket_key("not base64!")


def test_switching_protocols_is_what_a_client_accepts() -> None:
    import h11

    answer = switching_protocols("dGhlIHNhbXBsZSBub25jZQ==", "phoenix")
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method="GET", target="/", headers=[
        ("Host", "x"), ("Upgrade", "websocket"), ("Connection", "Upgrade"),
    ]))
    client.receive_data(answer)
    event = client.next_event()
    assert isinstance(event, h11.InformationalResponse) and event.status_code == 101
    headers = dict(event.headers)
    assert headers[b"sec-websocket-accept"] == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert headers[b"sec-websocket-protocol"] == b"phoenix"


def test_parse_head() -> None:
    head = parse_head(b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\nX-Y:  z \r\n\r\n")
    assert (head.method, head.target, head.version) == ("GET", "/a?b=1", "HTTP/1.1")
    assert head.headers == [("host", "x"), ("x-y", "z")]


@pytest.mark.parametrize(
    "raw",
    [
        b"GET /\r\n\r\n",
        b"GET / HTTP/2\r\n\r\n",
        b"G(T / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nno colon\r\n\r\n",
        b"GET / HTTP/1.1\r\nA: b\r\n  folded\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Name: b\r\n\r\n",
    ],
)
def test_parse_head_refuses_what_it_does_not_understand(raw: bytes) -> None:
    with pytest.raises(BadRequest) as info:
        parse_head(raw)
    assert info.value.status == 400


@pytest.mark.parametrize(
    "raw",
    [
        b"GET /socket/websocket?token=SECRET HTTP/1.1 x\r\n\r\n",
        b"GET /socket/websocket?token=SECRET\r\n\r\n",
        b"G(T /?token=SECRET HTTP/1.1\r\n\r\n",
        b"GET /?token=SECRET HTTP/9 SECRET\r\n\r\n",
        b"GET /?token=SECRET HTTP/SECRET\r\n\r\n",
        b"GET / HTTP/1.1\r\nAuthorization SECRET\r\n\r\n",
    ],
)
def test_bad_request_reasons_give_sizes_not_bytes(raw: bytes) -> None:
    """The reason is logged; the request line carries query strings (tokens)."""
    with pytest.raises(BadRequest) as info:
        parse_head(raw)
    assert info.value.status == 400
    assert "SECRET" not in info.value.reason and "byte" in info.value.reason


@pytest.mark.parametrize(
    ("value", "length"),
    [(None, 0), ("", 0), ("0", 0), ("12", 12), (" 12 ", 12), ("12, 12", 12), ("1048576", 1048576)],
)
def test_content_length(value: str | None, length: int) -> None:
    assert content_length(value, 1048576) == length


@pytest.mark.parametrize(
    ("value", "status"),
    [
        ("-1", 400), ("+5", 400), ("0x10", 400), ("1e3", 400), ("١٢", 400), ("12, 13", 400),
        ("1 2", 400), ("five", 400), ("9" * 40, 400), ("1048577", 413), ("99999999", 413),
    ],
)
def test_malformed_content_length_is_400_and_oversized_is_413(value: str, status: int) -> None:
    with pytest.raises(BadRequest) as info:
        content_length(value, 1048576)
    assert info.value.status == status
    assert value.strip() not in info.value.reason or status == 413


def test_head_end_resumes_a_search_across_chunks() -> None:
    data = b"GET / HTTP/1.1\r\nHost: x\r\n\r"
    assert head_end(data) == -1
    data += b"\nrest"
    assert head_end(data, start=len(data) - 5) == len(data) - 4  # the blank line straddled
    with pytest.raises(BadRequest) as info:
        head_end(b"x" * 101, limit=100)
    assert info.value.status == 431


def test_response_bytes() -> None:
    assert response(404, [("content-type", "text/plain")], b"no") == (
        b"HTTP/1.1 404 Not Found\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n"
        b"connection: close\r\n\r\nno"
    )


# the upgraded server stands in for simple-websocket's -------------------------------------


def test_upgraded_server_has_the_attributes_simple_websocket_sets() -> None:
    """``_UpgradedServer`` skips ``simple_websocket.Server.__init__``; if a release of
    simple-websocket sets other attributes, this fails instead of its methods."""
    import simple_websocket

    from channels_actor.transports.websocket import _NoEvent, _NoThread, _UpgradedServer

    class Sink:
        def __init__(self) -> None:
            self.sent = b""

        def send(self, data: bytes) -> int:
            self.sent += data
            return len(data)

    def environ(sink: Sink) -> dict[str, object]:
        return {
            "HTTP_HOST": "example.com",
            "HTTP_UPGRADE": "websocket",
            "HTTP_CONNECTION": "Upgrade",
            "HTTP_SEC_WEBSOCKET_KEY": "dGhlIHNhbXBsZSBub25jZQ==",
            "HTTP_SEC_WEBSOCKET_VERSION": "13",
            "HTTP_SEC_WEBSOCKET_PROTOCOL": "phoenix",
            "werkzeug.socket": sink,
        }

    theirs_sink, ours_sink = Sink(), Sink()
    theirs = simple_websocket.Server(
        environ(theirs_sink),
        subprotocols=["phoenix"],
        max_message_size=100,
        thread_class=_NoThread,
        event_class=_NoEvent,
    )
    ours = _UpgradedServer(environ(ours_sink), ["phoenix"], 100)
    assert sorted(vars(ours)) == sorted(vars(theirs))
    for name in ("subprotocol", "connected", "is_server", "max_message_size", "mode"):
        assert getattr(ours, name) == getattr(theirs, name), name
    # the same 101 answer (header order aside)
    assert sorted(ours_sink.sent.split(b"\r\n")) == sorted(theirs_sink.sent.split(b"\r\n"))
