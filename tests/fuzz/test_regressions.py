"""The exact inputs fuzzing found, each a plain test of the fix it led to."""

from __future__ import annotations

import struct

import pytest

from channels_actor import Endpoint
from channels_actor.transports.http import BadRequest, parse_head
from tests.fuzz.test_websocket_fuzz import HEARTBEAT, FuzzSocket, Raw, client_frame


@pytest.mark.parametrize(
    "head",
    [
        b"GET / HTTP/1.\x80\r\n\r\n",  # raised UnicodeDecodeError, not BadRequest
        b"GET / HTTP/1.\r\n\r\n",  # any "HTTP/1." prefix passed as a version
        b"GET / HTTP/1.1x\r\n\r\n",
    ],
)
def test_a_version_other_than_http_1_x_is_a_bad_request(head: bytes) -> None:
    with pytest.raises(BadRequest) as refused:
        parse_head(head)
    assert refused.value.status == 400


@pytest.mark.parametrize(
    "head",
    [
        b"GET\n / HTTP/1.1\r\n\r\n",  # "$" let a token end in a newline
        b"GET / HTTP/1.1\r\nHost\n: x\r\n\r\n",
    ],
)
def test_a_token_ending_in_a_newline_is_a_bad_request(head: bytes) -> None:
    with pytest.raises(BadRequest):
        parse_head(head)


@pytest.mark.parametrize(
    "head",
    [
        b"GET / HTTP/1.1\r\nX-Smuggle: a\nTransfer-Encoding: chunked\r\n\r\n",
        b"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n",
        b"GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n",
        b"GET /a\nb HTTP/1.1\r\n\r\n",
        b"GET /a\x00 HTTP/1.1\r\n\r\n",
    ],
)
def test_cr_lf_or_nul_inside_a_target_or_value_is_a_bad_request(head: bytes) -> None:
    # RFC 9110 5.5: a recipient must reject them (or replace them with spaces).
    with pytest.raises(BadRequest) as refused:
        parse_head(head)
    assert refused.value.status == 400


@pytest.mark.parametrize(
    "last",
    [
        client_frame(0x3, b""),  # a protocol error: simple-websocket closes 1002
        client_frame(0x8, struct.pack("!H", 1000)),  # an ordinary close, answered with one
    ],
    ids=["bad-opcode", "close"],
)
def test_nothing_follows_the_close_frame(last: bytes) -> None:
    # A heartbeat and a frame that ends the connection in one read: the
    # heartbeat's reply was written after the close frame (RFC 6455 5.5.1).
    endpoint = Endpoint(check_origin=False)
    endpoint.socket("/socket", FuzzSocket)
    port = endpoint.start("127.0.0.1", 0).port
    raw = Raw(port)
    try:
        raw.send(HEARTBEAT + last)
        frames = list(raw.frames())
        assert [opcode for opcode, _ in frames] == [0x8], frames
        assert endpoint.connection_count == 0
    finally:
        raw.close()
        endpoint.stop()
