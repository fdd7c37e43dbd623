"""Unfinished (fragmented) client messages: a deadline per message and a bound per endpoint.

Plain sockets write the frames by hand; a ping answered by the server is the
barrier that says it has read everything sent before it.
"""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage

from channels_actor import Endpoint
from channels_actor.errors import ConfigurationError
from tests.channels.app import UserSocket
from tests.integration.rawframes import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_TEXT,
    RawWebSocket,
    client_frame,
)
from tests.integration.wsclient import Client


class Harness:
    """Endpoints and sockets a test opened, closed after it whatever happens."""

    def __init__(self) -> None:
        self.endpoints: list[Endpoint] = []
        self.sockets: list[RawWebSocket | Client] = []

    def start(self, **config: Any) -> tuple[Endpoint, int]:
        ep = Endpoint(check_origin=False, **config)
        ep.socket("/socket", UserSocket)
        self.endpoints.append(ep)
        return ep, ep.start("127.0.0.1", 0).port

    def raw(self, port: int) -> RawWebSocket:
        raw = RawWebSocket.connect(port)
        self.sockets.append(raw)
        return raw

    def client(self, port: int) -> Client:
        client = Client(port)
        self.sockets.append(client)
        return client


@pytest.fixture
def harness() -> Iterator[Harness]:
    h = Harness()
    yield h
    for sock in h.sockets:
        sock.close()
    for ep in h.endpoints:
        ep.stop()


def _held(ep: Endpoint) -> float:
    return ep.stats().get("incomplete_bytes_held", 0)


def _reply(raw: RawWebSocket, ref: str, timeout: float = 3.0) -> Any:
    while True:
        opcode, payload = raw.recv_frame(timeout)
        if opcode == OP_TEXT:
            message = json.loads(payload)
            if message[1] == ref and message[3] == "phx_reply":
                return message[4]


def test_wsproto_hands_out_a_partial_frame_at_once() -> None:
    """The accounting counts simple-websocket's ``incoming_message`` only: that
    holds because wsproto keeps no data-frame payload back, only a header."""
    conn = Connection(ConnectionType.SERVER)
    frame = client_frame(OP_BINARY, b"x" * 100_000)
    header = frame[:14]  # 2 + 8 (length) + 4 (mask)
    conn.receive_data(header)
    assert list(conn.events()) == []
    conn.receive_data(frame[14:1014])
    events = list(conn.events())
    assert len(events) == 1
    assert isinstance(events[0], BytesMessage)
    assert (len(events[0].data), events[0].frame_finished) == (1000, False)


def test_trickled_message_is_closed_at_its_deadline_while_another_client_is_served(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="channels_actor.transport")
    # the trickle's bytes come faster than heartbeat_timeout: they count as
    # activity, so it is the message deadline that closes the connection
    ep, port = harness.start(heartbeat_timeout=0.6, incomplete_message_timeout=1.2)
    other = harness.client(port)
    other.join("rooms:served")
    trickler = harness.raw(port)
    started = time.monotonic()
    trickler.send(OP_TEXT, b'["1","1",', fin=False)
    sent = 0
    code = None
    while code is None:
        assert time.monotonic() - started < 5, "the unfinished message was never closed"
        # the recv timeout is the trickle's interval: one byte every 0.1 s
        trickler.sock.settimeout(0.1)
        try:
            code = trickler.close_code(timeout=0.1)
        except TimeoutError:
            trickler.send(OP_CONT, b" ", fin=False)
            sent += 1
            other.send(["1", str(sent + 1), "rooms:served", "reply_ok", {}])
            assert other.recv()[1] == str(sent + 1)
    elapsed = time.monotonic() - started
    assert code == (1008, "message not finished in time")
    assert elapsed >= 1.2
    assert sent >= 6  # it kept trickling well past heartbeat_timeout
    assert ep.stats()["incomplete_message_timeouts"] == 1
    assert _held(ep) == 0
    assert "still unfinished" in caplog.text
    other.send(["1", "99", "rooms:served", "reply_ok", {}])
    assert other.recv()[1] == "99"


def test_a_message_left_unfinished_is_closed_by_the_sweep(harness: Harness) -> None:
    ep, port = harness.start(incomplete_message_timeout=0.3)
    raw = harness.raw(port)
    started = time.monotonic()
    raw.send(OP_BINARY, b"\0" * 100, fin=False)
    assert raw.close_code(timeout=3) == (1008, "message not finished in time")
    assert time.monotonic() - started >= 0.3
    assert ep.stats()["incomplete_message_timeouts"] == 1


@pytest.mark.parametrize("together", [False, True], ids=["apart", "in-one-write"])
def test_fragmented_messages_finished_in_time_are_served(harness: Harness, together: bool) -> None:
    """Each message has its own deadline: three that take most of it each, back
    to back, are all served (the clock starts again with every message, also
    when one message ends and the next begins in the same read)."""
    ep, port = harness.start(incomplete_message_timeout=0.5)
    raw = harness.raw(port)
    messages = [
        json.dumps(["1", ref, "rooms:frag", event, {}]).encode()
        for ref, event in (("1", "phx_join"), ("2", "reply_ok"), ("3", "reply_ok"))
    ]
    carry = b""
    for number, text in enumerate(messages, 1):
        parts = [text[:5], text[5:10], text[10:]]
        frames = [
            client_frame(OP_TEXT if n == 0 else OP_CONT, part, fin=n == 2)
            for n, part in enumerate(parts)
        ]
        raw.sock.sendall(carry + frames[0])
        time.sleep(0.15)  # a slow client: the trickle is what is tested
        raw.sock.sendall(frames[1])
        time.sleep(0.15)
        if together and number < len(messages):
            carry = frames[2]  # goes out with the next message's first fragment
            continue
        raw.sock.sendall(frames[2])
        carry = b""
    for number in range(1, len(messages) + 1):
        assert _reply(raw, str(number))["status"] == "ok"
    raw.ping()
    assert _held(ep) == 0
    assert "incomplete_message_timeouts" not in ep.stats()


def test_the_connection_that_passes_the_endpoint_bound_is_closed_and_the_rest_go_on(
    harness: Harness,
) -> None:
    ep, port = harness.start(max_frame_size=4096, max_incomplete_bytes=10_000)
    head = b'["1","1","rooms:big","phx_join",{"pad":"' + b"x" * 3000
    size = len(head)
    assert 3 * size <= 10_000 < 4 * size

    holders = [harness.raw(port) for _ in range(3)]
    for raw in holders:
        raw.send(OP_TEXT, head, fin=False)
        raw.ping()  # a control frame may come between fragments
    raw.ping()  # its feed ran after the one that accounted the fragment
    assert _held(ep) == 3 * size

    passer = harness.raw(port)
    passer.send(OP_TEXT, head, fin=False)
    assert passer.close_code() == (1013, "too many unfinished messages")
    assert _held(ep) == 3 * size
    assert ep.stats()["incomplete_bytes_refused"] == 1

    for raw in holders:  # untouched: they finish their messages and are answered
        raw.send(OP_CONT, b'"}]')
        assert _reply(raw, "1")["status"] == "ok"
        raw.ping()
    assert _held(ep) == 0

    # the bound is free again for others, and closing gives their bytes back
    later = [harness.raw(port) for _ in range(3)]
    for raw in later:
        raw.send(OP_TEXT, head, fin=False)
        raw.ping()
    later[-1].ping()
    assert _held(ep) == 3 * size
    for raw in later:
        raw.send(OP_CLOSE, b"\x03\xe8")
        assert raw.close_code() == (1000, "")
        raw.wait_eof()
    assert _held(ep) == 0
    assert ep.stats()["incomplete_bytes_refused"] == 1


def test_end_of_stream_gives_the_bytes_back(harness: Harness) -> None:
    ep, port = harness.start()
    raw = harness.raw(port)
    raw.send(OP_BINARY, b"\0" * 5000, fin=False)
    raw.ping()
    raw.ping()
    assert _held(ep) == 5000
    raw.sock.shutdown(socket.SHUT_WR)  # EOF with the message unfinished, no close frame
    raw.wait_eof()  # the server closes its socket only after giving the bytes back
    assert _held(ep) == 0


@pytest.mark.parametrize(
    ("config", "fix"),
    [
        ({"max_incomplete_bytes": 1000, "max_frame_size": 2000}, "raise max_incomplete_bytes"),
        ({"max_incomplete_bytes": 0}, "positive int"),
        ({"incomplete_message_timeout": 0}, "positive seconds"),
    ],
)
def test_bad_limits_are_refused(config: dict[str, Any], fix: str) -> None:
    with pytest.raises(ConfigurationError, match=fix):
        Endpoint(**config)
