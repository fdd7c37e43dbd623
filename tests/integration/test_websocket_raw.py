"""Exact frames over a real WebSocket on 127.0.0.1, with a plain client."""

from __future__ import annotations

import base64
import json
import queue
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from channels_actor import Endpoint, Socket, assign
from tests.channels.app import UserSocket
from tests.helpers import Events
from tests.integration.serverframes import RawClient
from tests.integration.wsclient import UPGRADE, Client, http_get

CONNECT_INFOS: queue.Queue[dict[str, Any]] = queue.Queue()


class RawSocket(UserSocket):
    events: Events | None = None

    def connect(self, params: dict[str, Any], socket: Socket, connect_info: dict[str, Any]) -> Any:
        if params.get("token") == "bad":
            return ("error", {"reason": "denied"})
        CONNECT_INFOS.put(connect_info)
        return ("ok", assign(socket, user_id=params.get("user_id"), events=type(self).events))


def _start(events: Events | None = None, **config: Any) -> tuple[Endpoint, int]:
    RawSocket.events = events
    ep = Endpoint(**config)
    ep.socket("/socket", RawSocket)
    server = ep.start("127.0.0.1", 0)
    return ep, server.port


@pytest.fixture
def served(events: Events) -> Iterator[tuple[Endpoint, int]]:
    while not CONNECT_INFOS.empty():
        CONNECT_INFOS.get_nowait()
    ep, port = _start(events, check_origin=False)
    yield ep, port
    ep.stop()


@pytest.fixture
def client(served: tuple[Endpoint, int]) -> Iterator[Client]:
    c = Client(served[1])
    yield c
    c.close()


def _terminations(events: Events, count: int = 1) -> list[tuple[object, ...]]:
    events.wait_for(lambda items: len([i for i in items if i[0] == "terminate"]) >= count, timeout=3)
    return events.of("terminate")


# V2 shapes ---------------------------------------------------------------------------------


def test_v2_join_push_reply_and_broadcast_shapes(client: Client) -> None:
    assert client.join("rooms:1", {"mode": "reply"}, "3") == [
        "3", "3", "rooms:1", "phx_reply", {"status": "ok", "response": {"room": "1"}}
    ]
    client.send(["3", "4", "rooms:1", "reply_map", {"a": 1}])
    assert client.recv() == ["3", "4", "rooms:1", "phx_reply", {"status": "ok", "response": {"echo": {"a": 1}}}]
    client.send(["3", "5", "rooms:1", "push", {"event": "hey", "body": {"b": 2}}])
    assert client.recv() == ["3", None, "rooms:1", "hey", {"b": 2}]
    client.send(["3", "6", "rooms:1", "broadcast", {"event": "news", "body": {"c": 3}}])
    assert client.recv() == [None, None, "rooms:1", "news", {"c": 3}]
    client.send(["3", "7", "rooms:1", "reply_custom", {}])
    assert client.recv() == ["3", "7", "rooms:1", "phx_reply", {"status": "teapot", "response": {"short": True}}]


def test_heartbeat_joined_or_not(client: Client) -> None:
    client.send([None, "9", "phoenix", "heartbeat", {}])
    assert client.recv() == [None, "9", "phoenix", "phx_reply", {"status": "ok", "response": {}}]


def test_unmatched_topic_and_leave_of_unknown_topic(client: Client) -> None:
    assert client.join("nowhere", ref="2") == [
        None, "2", "nowhere", "phx_reply", {"status": "error", "response": {"reason": "unmatched topic"}}
    ]
    client.send(["4", "5", "rooms:x", "new_msg", {}])
    assert client.recv() == [None, "5", "rooms:x", "phx_reply", {"status": "error", "response": {"reason": "unmatched topic"}}]
    client.send(["4", "6", "rooms:x", "phx_leave", {}])
    assert client.recv() == ["4", "6", "rooms:x", "phx_reply", {"status": "ok", "response": {}}]


def test_join_refused_and_crashed(client: Client) -> None:
    assert client.join("rooms:2", {"mode": "refuse"})[4] == {"status": "error", "response": {"reason": "unauthorized"}}
    assert client.join("rooms:2", {"mode": "raise"}, "2")[4] == {"status": "error", "response": {"reason": "join crashed"}}


def test_stale_join_ref_is_ignored(client: Client) -> None:
    client.join("rooms:3", ref="10")
    client.send(["9", "11", "rooms:3", "reply_ok", {}])
    client.send(["10", "12", "rooms:3", "reply_ok", {}])
    assert client.recv()[1] == "12"  # 11 was dropped silently
    client.send([None, "13", "rooms:3", "reply_ok", {}])  # nil join_ref is accepted
    assert client.recv()[1] == "13"


def test_leave_replies_then_closes(client: Client, events: Events) -> None:
    client.join("rooms:4", ref="1")
    client.send(["1", "2", "rooms:4", "phx_leave", {}])
    assert client.recv() == ["1", "2", "rooms:4", "phx_reply", {"status": "ok", "response": {}}]
    assert client.recv() == ["1", "1", "rooms:4", "phx_close", {}]
    assert _terminations(events)[0][2] == ("shutdown", "left")


def test_crash_sends_phx_error_and_rejoin_works(client: Client, events: Events) -> None:
    client.join("rooms:5", ref="1")
    client.send(["1", "2", "rooms:5", "raise", {}])
    assert client.recv() == ["1", "1", "rooms:5", "phx_error", {"reason": "channel_crash"}]
    assert _terminations(events)[0][2][0] == "error"
    assert client.join("rooms:5", ref="3")[4]["status"] == "ok"


def test_stop_normal_sends_phx_close(client: Client) -> None:
    client.join("rooms:6", ref="1")
    client.send(["1", "2", "rooms:6", "stop_with_reply", {}])
    assert client.recv() == ["1", "2", "rooms:6", "phx_reply", {"status": "ok", "response": {"bye": True}}]
    assert client.recv() == ["1", "1", "rooms:6", "phx_close", {}]


def test_duplicate_join_order(client: Client, events: Events) -> None:
    client.join("rooms:7", ref="1")
    client.send(["2", "2", "rooms:7", "phx_join", {}])
    frames = [client.recv(), client.recv()]
    assert ["2", "2", "rooms:7", "phx_reply", {"status": "ok", "response": {}}] in frames
    assert ["1", "1", "rooms:7", "phx_close", {}] in frames
    assert _terminations(events)[0][2] == ("shutdown", "duplicate_join")


def test_max_channels_per_socket() -> None:
    ep, port = _start(max_channels_per_socket=1)
    c = Client(port)
    try:
        c.join("rooms:a", ref="1")
        assert c.join("rooms:b", ref="2") == [
            "2", "2", "rooms:b", "phx_reply", {"status": "error", "response": {"reason": "too many channels joined"}}
        ]
    finally:
        c.close()
        ep.stop()


def test_close_terminates_closed(served: tuple[Endpoint, int], events: Events) -> None:
    c = Client(served[1])
    c.join("rooms:8")
    c.close()
    assert _terminations(events)[0][2] == ("shutdown", "closed")


def test_abrupt_disconnect_terminates_closed(served: tuple[Endpoint, int], events: Events) -> None:
    c = Client(served[1])
    c.join("rooms:9")
    c.ws.sock.shutdown(socket.SHUT_RDWR)
    assert _terminations(events)[0][2] == ("shutdown", "closed")
    c.ws.sock.close()


# binary and V1 -------------------------------------------------------------------------------


def _client_binary_push(join_ref: str, ref: str, topic: str, event: str, data: bytes) -> bytes:
    parts = [p.encode() for p in (join_ref, ref, topic, event)]
    return bytes([0, *[len(p) for p in parts]]) + b"".join(parts) + data


def test_binary_frames_both_ways(client: Client, events: Events) -> None:
    client.join("rooms:b1", ref="1")
    client.send(_client_binary_push("1", "2", "rooms:b1", "echo", b"\x00\xff"))
    assert client.recv_raw() == bytes([1, 1, 1, 8, 2]) + b"12rooms:b1ok" + b"\x00\xff"
    client.send(["1", "3", "rooms:b1", "reply_binary", {}])
    raw = client.recv_raw()
    assert raw == bytes([1, 1, 1, 8, 2]) + b"13rooms:b1ok" + b"\x00\x01"
    client.send(["1", "4", "rooms:b1", "push_binary", {}])
    assert client.recv_raw() == bytes([0, 1, 8, 3]) + b"1rooms:b1bin" + b"\xff\x00"


def test_unencodable_reply_crashes_the_channel_only(client: Client, events: Events, caplog: pytest.LogCaptureFixture) -> None:
    client.join("rooms:b2", ref="1")
    client.send(_client_binary_push("1", "2", "rooms:b2", "reply_map", b"\x00"))
    assert client.recv() == ["1", "1", "rooms:b2", "phx_error", {"reason": "channel_crash"}]
    assert "cannot be encoded" in caplog.text
    assert _terminations(events)[0][2][0] == "error"
    client.send([None, "3", "phoenix", "heartbeat", {}])
    assert client.recv()[1] == "3"


def test_v1_shapes(served: tuple[Endpoint, int]) -> None:
    c = Client(served[1], query="vsn=1.0.0")
    try:
        c.send({"topic": "rooms:v1", "event": "phx_join", "payload": {}, "ref": "1"})
        assert c.recv() == {"topic": "rooms:v1", "event": "phx_reply", "payload": {"status": "ok", "response": {}}, "ref": "1"}
        c.send({"topic": "rooms:v1", "event": "broadcast", "payload": {"event": "n", "body": {"a": 1}}, "ref": "2"})
        assert c.recv() == {"topic": "rooms:v1", "event": "n", "payload": {"a": 1}, "ref": None}
    finally:
        c.close()


def test_missing_vsn_means_v1(served: tuple[Endpoint, int]) -> None:
    c = Client(served[1], query="")
    try:
        c.send({"topic": "phoenix", "event": "heartbeat", "payload": {}, "ref": "1"})
        assert c.recv()["event"] == "phx_reply"
    finally:
        c.close()


# upgrade decisions ---------------------------------------------------------------------------


def test_unknown_vsn_is_403(served: tuple[Endpoint, int]) -> None:
    assert http_get(served[1], "/socket/websocket?vsn=3.0.0", UPGRADE)[0] == 403


def test_connect_refusal_is_403(served: tuple[Endpoint, int]) -> None:
    assert http_get(served[1], "/socket/websocket?vsn=2.0.0&token=bad", UPGRADE)[0] == 403


def test_bad_websocket_handshakes(served: tuple[Endpoint, int]) -> None:
    url = "/socket/websocket?vsn=2.0.0"
    assert http_get(served[1], url, {**UPGRADE, "Sec-WebSocket-Version": "8"})[0] == 426
    assert http_get(served[1], url, {**UPGRADE, "Sec-WebSocket-Key": "c2hvcnQ="})[0] == 400
    assert http_get(served[1], url, {**UPGRADE}, method="POST")[0] == 400


def test_malformed_http_is_400_and_the_server_keeps_serving(served: tuple[Endpoint, int]) -> None:
    with socket.create_connection(("127.0.0.1", served[1]), timeout=5) as raw:
        raw.sendall(b"GARBAGE\r\n\r\n")
        assert raw.recv(4096).startswith(b"HTTP/1.1 400")
    assert Client(served[1]).join("rooms:after")[4]["status"] == "ok"


def test_a_client_that_never_sends_its_request_is_closed_and_frees_the_thread(
    events: Events,
) -> None:
    """One handshake thread; a silent client is closed at the request timeout
    (without an answer: it asked nothing), and the next client is served."""
    ep, port = _start(events, check_origin=False, handshake_threads=1, request_timeout=0.3)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as silent:
            assert silent.recv(4096) == b""  # closed by the server, without an answer
        assert Client(port).join("rooms:after-silent")[4]["status"] == "ok"
    finally:
        ep.stop()


def test_non_upgrade_request_to_the_socket_is_400(served: tuple[Endpoint, int]) -> None:
    assert http_get(served[1], "/socket/websocket?vsn=2.0.0")[0] == 400
    assert http_get(served[1], "/other")[0] == 404


@pytest.mark.parametrize(
    ("check", "origin", "allowed"),
    [
        (True, "http://127.0.0.1:9999", True),
        (True, "http://localhost:9999", True),
        (True, "http://evil.com", False),
        (["https://app.com"], "https://app.com", True),
        (["https://app.com"], "http://app.com", False),
        (["//*.app.com"], "https://x.app.com", True),
        (["//*.app.com"], "https://app.com", True),
        (["//*.app.com"], "https://xapp.com", False),
        (["//app.com:888"], "http://app.com:888", True),
        (["//app.com:888"], "http://app.com:889", False),
        (lambda origin: origin.endswith(".ok"), "http://a.ok", True),
        (lambda origin: origin.endswith(".ok"), "http://a.no", False),
        (False, "http://anything", True),
    ],
)
def test_check_origin(check: Any, origin: str, allowed: bool) -> None:
    ep, port = _start(check_origin=check)
    try:
        status = http_get(port, "/socket/websocket?vsn=2.0.0", {**UPGRADE, "Origin": origin})[0]
        assert status == (101 if allowed else 403)
    finally:
        ep.stop()


def test_auth_token_and_connect_info(served: tuple[Endpoint, int]) -> None:
    token = base64.urlsafe_b64encode(b"s3cret token").decode().rstrip("=")
    c = Client(served[1], query="vsn=2.0.0&user_id=5",
               subprotocols=["phoenix", f"base64url.bearer.phx.{token}"],
               headers={"X-Request-Id": "abc", "User-Agent": "raw-test/1"})
    try:
        assert c.ws.subprotocol == "phoenix"
        info = CONNECT_INFOS.get(timeout=2)
        assert info["auth_token"] == "s3cret token"
        assert info["peer_data"]["address"] == "127.0.0.1"
        assert info["uri"]["path"] == "/socket/websocket" and info["uri"]["host"] == "127.0.0.1"
        assert ("x-request-id", "abc") in info["x_headers"]
        assert info["user_agent"] == "raw-test/1"
    finally:
        c.close()


def test_no_auth_token_key_without_a_token(served: tuple[Endpoint, int]) -> None:
    c = Client(served[1])
    try:
        assert "auth_token" not in CONNECT_INFOS.get(timeout=2)
        assert c.ws.subprotocol is None
    finally:
        c.close()


def test_compression_is_off_by_default_and_optional() -> None:
    offer = {**UPGRADE, "Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits"}
    ep, port = _start()
    try:
        status, headers, _ = http_get(port, "/socket/websocket?vsn=2.0.0", offer)
        assert status == 101 and "sec-websocket-extensions" not in headers
    finally:
        ep.stop()
    ep, port = _start(compress=True)
    try:
        status, headers, _ = http_get(port, "/socket/websocket?vsn=2.0.0", offer)
        assert status == 101 and "permessage-deflate" in headers["sec-websocket-extensions"]
    finally:
        ep.stop()


def test_compressed_connection_round_trip() -> None:
    ep, port = _start(compress=True)
    c = Client(port)  # simple-websocket's client offers deflate
    try:
        assert c.join("rooms:z")[4]["status"] == "ok"
        c.send(["1", "2", "rooms:z", "broadcast", {"event": "n", "body": {"x": "y" * 500}}])
        assert c.recv() == [None, None, "rooms:z", "n", {"x": "y" * 500}]
    finally:
        c.close()
        ep.stop()


# closing -----------------------------------------------------------------------------------------


def test_oversized_frame_closes_1009_and_server_keeps_serving(events: Events) -> None:
    ep, port = _start(events, max_frame_size=1024)
    c = Client(port)
    try:
        c.join("rooms:big")
        c.send(["1", "2", "rooms:big", "reply_map", {"x": "y" * 2000}])
        assert c.wait_closed() == 1009
        assert _terminations(events)[0][2] == ("shutdown", "closed")
        other = Client(port)
        assert other.join("rooms:big")[4]["status"] == "ok"
        other.close()
    finally:
        ep.stop()


@pytest.mark.parametrize("frame", ["not json", "[1,2]", '{"a": 1}', '["1", "1", 5, "x", {}]'])
def test_malformed_frame_closes_that_connection_only(served: tuple[Endpoint, int], frame: str, caplog: pytest.LogCaptureFixture) -> None:
    bad, good = Client(served[1]), Client(served[1])
    try:
        good.join("rooms:m")
        bad.send(frame)
        assert bad.wait_closed() == 1007
        assert "malformed frame" in caplog.text
        good.send(["1", "2", "rooms:m", "reply_ok", {}])
        assert good.recv()[1] == "2"
    finally:
        good.close()


def test_disconnect_by_socket_id_closes_1001(served: tuple[Endpoint, int]) -> None:
    ep, port = served
    a, b = Client(port, query="vsn=2.0.0&user_id=7"), Client(port, query="vsn=2.0.0&user_id=8")
    try:
        a.join("rooms:d")
        b.join("rooms:d")
        ep.broadcast("users_socket:7", "disconnect", {})
        assert a.wait_closed() == 1001
        b.send(["1", "2", "rooms:d", "reply_ok", {}])
        assert b.recv()[1] == "2"
    finally:
        b.close()


def test_endpoint_stop_closes_1012_after_terminating(events: Events) -> None:
    ep, port = _start(events)
    c = Client(port)
    c.join("rooms:s")
    ep.stop()
    assert _terminations(events)[0][2] == ("shutdown", "closed")
    assert c.wait_closed() == 1012


def test_idle_client_is_closed_after_heartbeat_timeout(events: Events) -> None:
    ep, port = _start(events, heartbeat_timeout=0.3)
    c = Client(port)
    try:
        c.join("rooms:idle")
        assert c.wait_closed(timeout=5) == 1001
        assert _terminations(events)[0][2] == ("shutdown", "closed")
    finally:
        ep.stop()


def test_client_that_stops_reading_is_closed_1008(events: Events, caplog: pytest.LogCaptureFixture) -> None:
    ep, port = _start(events, max_buffer=512 * 1024)
    raw = RawClient(port, rcvbuf=4096)
    assert raw.join("rooms:slow")["status"] == "ok"
    healthy = Client(port)
    try:
        healthy.join("rooms:slow")
        # 10 MB to a client that never reads, in lockstep with the healthy one
        # (which therefore never has more than one broadcast waiting)
        for n in range(100):
            ep.broadcast("rooms:slow", "big", {"n": n, "pad": "x" * 100_000})
            assert healthy.recv(timeout=5)[4]["n"] == n
        _terminations(events, 1)
        assert caplog.text.count("stopped reading") == 1  # logged once
        assert ep.counters.get("slow_consumer_closed") == 1
        # what it reads now: whole broadcasts in order, then the close frame
        raw.read_to_eof()
        texts = [json.loads(payload) for opcode, payload in raw.frames if opcode == 1]
        assert [frame[4]["n"] for frame in texts] == list(range(len(texts)))
        assert raw.frames[-1][0] == 8
        assert raw.parser.closed == (1008, "outgoing buffer full")
        assert raw.parser.leftover == 0
    finally:
        raw.close()
        healthy.close()
        ep.stop()


def test_http_app_serves_other_paths() -> None:
    ep = Endpoint()
    ep.socket("/socket", RawSocket)

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [environ["PATH_INFO"].encode()]

    ep.http_app = app
    port = ep.start("127.0.0.1", 0).port
    try:
        assert http_get(port, "/hello") == (200, {"content-type": "text/plain", "content-length": "6", "connection": "close"}, b"/hello")
    finally:
        ep.stop()




def test_intercepted_broadcasts_reach_each_client_in_order(events: Events) -> None:
    # Many broadcasts per channel span several pool batches, whose writes are
    # batched per worker: a later batch must never overtake an earlier one.
    ep, port = _start(events)
    clients = [Client(port) for _ in range(20)]
    try:
        for c in clients:
            assert c.join("rooms:order")[4]["status"] == "ok"
        total = 400
        for n in range(total):
            ep.broadcast("rooms:order", "user:joined", {"n": n})
        for c in clients:
            got = [c.recv(timeout=5)[4]["n"] for _ in range(total)]
            assert got == list(range(total))
    finally:
        for c in clients:
            c.close()
        ep.stop()
