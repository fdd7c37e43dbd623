"""Slow and malformed HTTP requests over real sockets: one deadline per request, and
new clients served while tricklers hold connections open."""

from __future__ import annotations

import json
import logging
import select
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Message, Request, TextMessage

from channels_actor import Endpoint
from tests.channels.app import UserSocket

TRICKLERS = 20
NEW_CLIENTS = 20
INTERVAL = 0.2  # seconds between two bytes of a trickler
# A head far longer than a trickler can send before the deadline.
SLOW_HEAD = b"GET /socket/websocket?vsn=2.0.0 HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: y\r\n" * 50


def _start(**config: Any) -> tuple[Endpoint, int]:
    ep = Endpoint(check_origin=False, **config)
    ep.socket("/socket", UserSocket)
    return ep, ep.start("127.0.0.1", 0).port


def _ok_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    body = environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]


def _connect_and_join(port: int, topic: str, timeout: float = 5.0) -> dict[str, Any]:
    """Upgrade and join over a plain socket (every wait bounded); return the join reply."""
    ws = WSConnection(ConnectionType.CLIENT)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(ws.send(Request(host="127.0.0.1", target="/socket/websocket?vsn=2.0.0")))
        joined = False
        while True:
            data = sock.recv(65536)
            assert data, "closed by the server"
            ws.receive_data(data)
            for event in ws.events():
                if isinstance(event, AcceptConnection) and not joined:
                    joined = True
                    frame = json.dumps(["1", "1", topic, "phx_join", {}])
                    sock.sendall(ws.send(Message(data=frame)))
                elif isinstance(event, TextMessage):
                    reply: dict[str, Any] = json.loads(event.data)[4]
                    return reply


class Trickler(threading.Thread):
    """Sends ``SLOW_HEAD`` one byte per ``INTERVAL`` (the attack under test) until the
    server answers or closes; records what it saw and when."""

    def __init__(self, port: int, started: threading.Barrier) -> None:
        super().__init__(name="test-trickler", daemon=True)
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.started = started
        self.answer: bytes | None = None
        self.outcome = ""
        self.closed_at = 0.0

    def run(self) -> None:
        sock = self.sock
        try:
            for index in range(len(SLOW_HEAD)):
                sock.send(SLOW_HEAD[index : index + 1])
                if index == 0:
                    self.started.wait(5)
                readable, _, _ = select.select([sock], [], [], INTERVAL)
                if readable:
                    break
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
            self.answer = answer
            self.outcome = "408" if answer.startswith(b"HTTP/1.1 408") else "eof"
        except (ConnectionResetError, BrokenPipeError):
            self.outcome = "reset"  # the server closed first; a byte we sent after it reset
        finally:
            self.closed_at = time.monotonic()
            sock.close()


@pytest.fixture
def tricklers_ep() -> Iterator[tuple[Endpoint, int]]:
    ep, port = _start(handshake_threads=2, request_timeout=1.5)
    yield ep, port
    ep.stop()


def test_new_clients_are_served_while_tricklers_hold_connections(
    tricklers_ep: tuple[Endpoint, int], caplog: pytest.LogCaptureFixture
) -> None:
    """20 tricklers against 2 handshake threads: 20 new clients still connect and
    join at once; the tricklers are closed at the request deadline, each counted
    and logged once."""
    caplog.set_level(logging.INFO, logger="channels_actor.server")
    ep, port = tricklers_ep
    started = threading.Barrier(TRICKLERS + 1)
    tricklers = [Trickler(port, started) for _ in range(TRICKLERS)]
    began = time.monotonic()
    for trickler in tricklers:
        trickler.start()
    started.wait(5)  # every trickler has sent its first byte

    t0 = time.monotonic()
    replies = [_connect_and_join(port, f"rooms:new-{n}") for n in range(NEW_CLIENTS)]
    served_in = time.monotonic() - t0
    assert [reply["status"] for reply in replies] == ["ok"] * NEW_CLIENTS
    still_open = sum(1 for trickler in tricklers if trickler.is_alive())
    assert still_open == TRICKLERS, "new clients were served only after tricklers were closed"

    for trickler in tricklers:
        trickler.join(5)
    assert not any(trickler.is_alive() for trickler in tricklers)
    outcomes = {trickler.outcome for trickler in tricklers}
    assert outcomes <= {"408", "eof", "reset"} and "408" in outcomes, outcomes
    held = [trickler.closed_at - began for trickler in tricklers]
    assert min(held) >= 1.5 - 0.1 and max(held) < 1.5 + 1.5, held  # at the deadline (+ sweep)
    assert ep.counters.get("request_timeouts") == TRICKLERS
    timeouts = [r for r in caplog.records if "request was not complete" in r.getMessage()]
    assert len(timeouts) == TRICKLERS and all(r.levelno == logging.INFO for r in timeouts)
    assert all("X-Pad" not in r.getMessage() for r in timeouts)
    logging.getLogger(__name__).info("%d new clients joined in %.3fs", NEW_CLIENTS, served_in)


def test_a_slow_body_for_http_app_has_the_same_deadline() -> None:
    """A POST to ``http_app`` whose body trickles is closed with 408 at the deadline."""
    ep, port = _start(handshake_threads=1, request_timeout=0.6)
    ep.http_app = _ok_app
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"POST /form HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
            began = time.monotonic()
            answer = b""
            for _ in range(100):
                sock.send(b"a")
                readable, _, _ = select.select([sock], [], [], INTERVAL)
                if readable:
                    answer = sock.recv(65536)
                    break
            assert answer.startswith(b"HTTP/1.1 408"), answer
            assert time.monotonic() - began < 0.6 + 1.0
        assert ep.counters.get("request_timeouts") == 1
        assert _connect_and_join(port, "rooms:after-slow-body")["status"] == "ok"
        # and a body that arrives in time, in pieces, reaches the app
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"POST /form HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nab")
            sock.sendall(b"cd")
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
    finally:
        ep.stop()


@pytest.mark.parametrize(
    ("length", "status"),
    [("-1", 400), ("+4", 400), ("4, 5", 400), ("0x4", 400), ("abc", 400), ("1048577", 413)],
)
def test_content_length_malformed_is_400_oversized_is_413(length: str, status: int) -> None:
    ep, port = _start()
    ep.http_app = _ok_app
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(
                f"POST /form HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\nabcd".encode()
            )
            assert sock.recv(65536).startswith(f"HTTP/1.1 {status} ".encode())
        assert _connect_and_join(port, "rooms:after-length")["status"] == "ok"
    finally:
        ep.stop()


def test_an_oversized_head_is_431_without_waiting_for_its_end() -> None:
    ep, port = _start(request_timeout=5.0)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nX-Big: " + b"x" * (65 * 1024))
            assert sock.recv(65536).startswith(b"HTTP/1.1 431 ")
    finally:
        ep.stop()


def test_a_bad_request_line_does_not_put_its_query_into_the_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    ep, port = _start()
    try:
        for line in (b"GET /socket/websocket?token=SECRET HTTP/1.1 extra", b"GET /?token=SECRET"):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.sendall(line + b"\r\nHost: x\r\n\r\n")
                assert sock.recv(65536).startswith(b"HTTP/1.1 400 ")
    finally:
        ep.stop()
    bad = [r for r in caplog.records if "Bad HTTP request" in r.getMessage()]
    assert len(bad) == 2
    assert not [r for r in caplog.records if "SECRET" in r.getMessage()]


def test_a_huge_vsn_is_refused_with_a_short_log_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    ep, port = _start()
    vsn = "9" * 20_000
    request = (
        f"GET /socket/websocket?vsn={vsn} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    )
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(request.encode())
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 403 ") and len(answer) < 500
    finally:
        ep.stop()
    refused = [r.getMessage() for r in caplog.records if "vsn" in r.getMessage()]
    assert len(refused) == 1 and len(refused[0]) < 200


def test_stopping_closes_the_requests_still_arriving() -> None:
    ep, port = _start(request_timeout=30.0)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /socket/websocket?vsn=2.0.0 HTTP/1.1\r\nHost: x\r\n")
        assert _connect_and_join(port, "rooms:later")["status"] == "ok"  # ours was accepted first
        ep.stop()
        assert sock.recv(65536) == b""  # closed by stop(), not left to the deadline
    assert ep.counters.get("request_timeouts") == 0
