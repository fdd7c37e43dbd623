"""Frames that break RFC 6455: the close code each gets, one INFO line, and the server goes on."""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterator

import pytest

from channels_actor import Endpoint
from tests.channels.app import UserSocket
from tests.integration.rawframes import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_TEXT,
    RawWebSocket,
    client_frame,
)
from tests.integration.wsclient import Client

# (frame, the code wsproto closes with, what the log line says)
CASES = {
    "unmasked": (client_frame(OP_TEXT, b"[]", mask=False), 1002, "unexpected unmasked frame"),
    "bad opcode": (client_frame(0x3, b"x"), 1002, "Invalid opcode 0x3"),
    "fragmented ping": (client_frame(OP_PING, b"x", fin=False), 1002, "fragment control frame"),
    "reserved bit": (client_frame(OP_TEXT, b"x", rsv=0x40), 1002, "Reserved bit set"),
    "continuation first": (client_frame(OP_CONT, b"x"), 1002, "unexpected CONTINUATION"),
    "text inside a fragmented message": (
        client_frame(OP_BINARY, b"a", fin=False) + client_frame(OP_TEXT, b"b"),
        1002,
        "expected CONTINUATION",
    ),
    "close code out of range": (
        client_frame(OP_CLOSE, struct.pack("!H", 999)),
        1002,
        "invalid code",
    ),
    # not 1002: wsproto gives invalid UTF-8 1007, and its reason quotes the byte
    "invalid UTF-8 text": (client_frame(OP_TEXT, b'["\xff\xfe"]'), 1007, "invalid UTF-8"),
    "invalid UTF-8 across fragments": (
        client_frame(OP_TEXT, b'["\xe2\x82', fin=False) + client_frame(OP_CONT, b'("]'),
        1007,
        "invalid UTF-8",
    ),
}


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    ep = Endpoint(check_origin=False)
    ep.socket("/socket", UserSocket)
    yield ep
    ep.stop()


@pytest.fixture
def served(endpoint: Endpoint) -> int:
    return endpoint.start("127.0.0.1", 0).port


@pytest.mark.parametrize("case", list(CASES))
def test_protocol_error_is_logged_once_and_the_server_keeps_serving(
    endpoint: Endpoint, served: int, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    frame, code, said = CASES[case]
    caplog.set_level(logging.INFO, logger="channels_actor.transport")
    good = Client(served)
    bad = RawWebSocket.connect(served)
    try:
        good.join("rooms:proto")
        bad.sock.sendall(frame)
        assert bad.close_code()[0] == code
        bad.wait_eof()  # the line is written before the server closes its socket
        lines = [r for r in caplog.records if "protocol error" in r.getMessage()]
        assert len(lines) == 1, [r.getMessage() for r in lines]
        line = lines[0]
        assert line.levelno == logging.INFO
        assert f"protocol error ({code})" in line.getMessage()
        assert said in line.getMessage()
        assert "WebSocketTransport ('127.0.0.1'" in line.getMessage()
        assert "0xff" not in caplog.text  # the client's bytes stay out of the log
        assert "\\xff" not in caplog.text
        assert endpoint.stats()["protocol_error_closes"] == 1
        good.send(["1", "2", "rooms:proto", "reply_ok", {}])
        assert good.recv()[1] == "2"
        fresh = Client(served)
        assert fresh.join("rooms:proto")[4]["status"] == "ok"
        fresh.close()
    finally:
        bad.close()
        good.close()


def test_a_peer_closing_with_1002_is_not_our_protocol_error(
    endpoint: Endpoint, served: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="channels_actor.transport")
    raw = RawWebSocket.connect(served)
    try:
        raw.send(OP_CLOSE, struct.pack("!H", 1002) + b"client says so")
        assert raw.close_code()[0] == 1002  # echoed, as RFC 6455 asks
        raw.wait_eof()
        assert "protocol error" not in caplog.text
        assert "protocol_error_closes" not in endpoint.stats()
    finally:
        raw.close()
