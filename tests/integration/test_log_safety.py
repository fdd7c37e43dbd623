"""No secret and no megabyte reaches a log line, over a real WebSocket on 127.0.0.1.

Each case replays one way the issue's probe got a secret or a huge value into
the logs. Every record the library writes, its message and its formatted
traceback, must be free of the secret and short.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from channels_actor import Channel, Endpoint, Socket, SocketHandler
from tests.integration.wsclient import UPGRADE, Client, http_get

SECRET = "SECRET_PW_7f3a9c"
MIB = 1024 * 1024
MAX_RECORD = 2000


class _Unencodable:
    """Not JSON: a reply carrying one cannot be encoded."""


class LoggedChannel(Channel):
    def join(self, topic: str, payload: Any, socket: Socket) -> Any:
        return ("ok", socket)

    def handle_in(self, event: str, payload: Any, socket: Socket) -> Any:
        if event == "bad_reply":
            reply = {"password": SECRET, "blob": "x" * (5 * MIB), "obj": _Unencodable()}
            return ("reply", ("ok", reply), socket)
        if event == "tell_self":
            assert socket.channel_ref is not None
            socket.channel_ref.tell({"token": SECRET, "data": "y" * (5 * MIB)})
        return ("reply", "ok", socket)


class LoggedSocket(SocketHandler):
    channels = {"room:*": LoggedChannel}  # noqa: RUF012

    def connect(self, params: dict[str, Any], socket: Socket, connect_info: dict[str, Any]) -> Any:
        if params.get("garbage"):
            return ("okay", {"auth_token": SECRET, "padding": "z" * MIB})
        return ("ok", socket)


@pytest.fixture
def served(request: pytest.FixtureRequest) -> Iterator[tuple[Endpoint, int]]:
    # max_buffer: the unmatched-topic reply echoes its 7 MiB topic back; this
    # test is about the logs, not about the outgoing buffer's bound.
    config = CONFIG.get(request.node.callspec.params["case"], {})
    endpoint = Endpoint(check_origin=False, max_buffer=16 * MIB, **config)
    endpoint.socket("/socket", LoggedSocket)
    server = endpoint.start("127.0.0.1", 0)
    yield endpoint, server.port
    endpoint.stop()


def _malformed_frame(endpoint: Endpoint, port: int) -> str:
    client = Client(port)
    client.send('["1","1","room:a","phx_join",{"password":"' + SECRET + '","x":"' + "A" * MIB)
    assert client.wait_closed() == 1007
    return "malformed frame"


def _unencodable_reply(endpoint: Endpoint, port: int) -> str:
    client = Client(port)
    try:
        assert client.join("room:b")[4]["status"] == "ok"
        client.send(["1", "2", "room:b", "bad_reply", {}])
        assert client.recv()[3] == "phx_error"
    finally:
        client.close()
    return "cannot be encoded"


def _unroutable_topic(endpoint: Endpoint, port: int) -> str:
    client = Client(port)
    try:
        topic = "nowhere:" + "t" * (7 * MIB) + SECRET  # shown only if shown whole
        client.send(["1", "1", topic, "new_msg", {}])
        reply = client.recv(timeout=10)
        assert reply[4] == {"status": "error", "response": {"reason": "unmatched topic"}}
    finally:
        client.close()
    return "the topic is not joined"


def _megabyte_topic_join(endpoint: Endpoint, port: int) -> str:
    client = Client(port)
    try:
        reply = client.join("room:" + "m" * MIB + SECRET)
        assert reply[4] == {"status": "error", "response": {"reason": "topic too long"}}
        assert reply[:3] == ["1", "1", "room:" + "m" * MIB + SECRET]  # phoenix.js routes it
        # The connection still serves: a join of a sane topic works after it.
        assert client.join("room:fine", ref="2")[4]["status"] == "ok"
        assert endpoint.counters.get("joins_refused_topic_too_long") == 1
    finally:
        client.close()
    return "max_topic_size"


def _joined_long_topic(endpoint: Endpoint, port: int) -> str:
    client = Client(port)
    try:
        assert client.join("room:" + "j" * MIB + SECRET)[4]["status"] == "ok"
    finally:
        client.close()
    return "JOINED"


def _handle_info_default(endpoint: Endpoint, port: int) -> str:
    client = Client(port)
    try:
        assert client.join("room:c")[4]["status"] == "ok"
        client.send(["1", "2", "room:c", "tell_self", {}])
        assert client.recv()[1] == "2"
        # The mailbox is FIFO: this reply comes after handle_info ran.
        client.send(["1", "3", "room:c", "ping", {}])
        assert client.recv()[1] == "3"
    finally:
        client.close()
    return "unexpected message in handle_info"


def _connect_garbage(endpoint: Endpoint, port: int) -> str:
    status, _, _ = http_get(port, "/socket/websocket?vsn=2.0.0&garbage=1", UPGRADE)
    assert status == 403
    return "connect() to return one of"


CASES: dict[str, Callable[[Endpoint, int], str]] = {
    "malformed frame": _malformed_frame,
    "unencodable reply": _unencodable_reply,
    "7 MiB unroutable topic": _unroutable_topic,
    "join of a megabyte topic": _megabyte_topic_join,
    "JOINED line of a long topic": _joined_long_topic,
    "handle_info default warning": _handle_info_default,
    "connect returns garbage": _connect_garbage,
}

# Endpoint options per case: a long topic is only joined when the bound allows it.
CONFIG: dict[str, dict[str, Any]] = {"JOINED line of a long topic": {"max_topic_size": 2 * MIB}}


@pytest.mark.parametrize("case", list(CASES))
def test_no_secret_and_no_huge_record_in_the_logs(
    served: tuple[Endpoint, int], case: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="channels_actor")
    expected = CASES[case](*served)
    served[0].stop()  # drains: the records written as channels end are in too
    records = [r for r in caplog.records if r.name.startswith("channels_actor")]
    assert any(expected in r.getMessage() for r in records), f"no record says {expected!r}"
    formatter = logging.Formatter()
    for record in records:
        message = record.getMessage()
        text = formatter.format(record)  # the message and the traceback, as a handler writes it
        assert SECRET not in text, f"secret in {record.name}: {text[:300]!r}"
        assert len(text) < MAX_RECORD, f"{len(text)} characters in {record.name}: {text[:300]!r}"
        assert len(message) < MAX_RECORD
