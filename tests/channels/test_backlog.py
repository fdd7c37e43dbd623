"""A closed connection's queued pushes are dropped, not run; a channel's mailbox is bounded.

The channel's ``handle_in`` waits for a permit the test hands out, so the test
decides exactly which calls may finish, and counts every call that started.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import pytest

from channels_actor import (
    Channel,
    ChannelError,
    ConfigurationError,
    Endpoint,
    Socket,
    SocketHandler,
    assign,
)
from channels_actor import testing as ct
from channels_actor._messages import GetSocket
from channels_actor.connection import Connection
from tests.helpers import Events
from tests.integration.wsclient import Client

BACKLOG = 20  # pushes each client queues behind the one running


class Probe:
    """What the channels did: handle_in calls started, handle_info calls, terminations."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.calls = 0
        self.infos = 0
        self.terms: list[tuple[str | None, Any]] = []
        self.permits = threading.Semaphore(0)

    def entered(self) -> None:
        with self._cond:
            self.calls += 1
            self._cond.notify_all()

    def info(self) -> None:
        with self._cond:
            self.infos += 1

    def terminated(self, topic: str | None, reason: Any) -> None:
        with self._cond:
            self.terms.append((topic, reason))
            self._cond.notify_all()

    def wait_calls(self, count: int, timeout: float = 3.0) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: self.calls >= count, timeout), self.calls

    def wait_terms(self, count: int, timeout: float = 3.0) -> list[tuple[str | None, Any]]:
        with self._cond:
            ok = self._cond.wait_for(lambda: len(self.terms) >= count, timeout)
            assert ok, (
                f"{len(self.terms)} of {count} channels terminated; handle_in calls: {self.calls}"
            )
            return list(self.terms)


class SlowChannel(Channel):
    def join(self, topic: str, payload: Any, socket: Socket) -> Any:
        return ("ok", socket)

    def handle_in(self, event: str, payload: Any, socket: Socket) -> Any:
        probe: Probe = socket.assigns["probe"]
        probe.entered()
        probe.permits.acquire(timeout=5)  # a call nobody let through holds its thread 5 s
        return ("reply", ("ok", {"n": payload.get("n")}), socket)

    def handle_info(self, message: Any, socket: Socket) -> Any:
        socket.assigns["probe"].info()
        return ("noreply", socket)

    def terminate(self, reason: Any, socket: Socket) -> None:
        socket.assigns["probe"].terminated(socket.topic, reason)


class SlowSocket(SocketHandler):
    channels: ClassVar[dict[str, type[Channel]]] = {"slow:*": SlowChannel}
    probe: Probe | None = None

    def connect(self, params: dict[str, Any], socket: Socket, connect_info: dict[str, Any]) -> Any:
        return ("ok", assign(socket, probe=type(self).probe))


class RawClient:
    """A WebSocket client on a plain socket, so that the test can reset it (RST)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock.sendall(
            (
                f"GET /socket/websocket?vsn=2.0.0 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        assert head.split(b" ", 2)[1] == b"101", head

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        assert chunk, "the server closed the connection"
        self.buf += chunk

    def _take(self, size: int) -> bytes:
        while len(self.buf) < size:
            self._fill()
        out, self.buf = self.buf[:size], self.buf[size:]
        return out

    def send(self, frame: list[Any]) -> None:
        data = json.dumps(frame).encode()
        size = len(data)
        length = (
            bytes([0x80 | size]) if size < 126 else bytes([0x80 | 126]) + size.to_bytes(2, "big")
        )
        # A zero masking key is a legal mask that leaves the payload as it is.
        self.sock.sendall(b"\x81" + length + b"\x00\x00\x00\x00" + data)

    def recv(self) -> Any:
        first, second = self._take(2)
        assert first == 0x81, hex(first)
        size = second & 0x7F
        if size == 126:
            size = int.from_bytes(self._take(2), "big")
        elif size == 127:
            size = int.from_bytes(self._take(8), "big")
        return json.loads(self._take(size))

    def join(self, topic: str) -> None:
        self.send(["1", "1", topic, "phx_join", {}])
        reply = self.recv()
        assert reply[2:] == [topic, "phx_reply", {"status": "ok", "response": {}}], reply

    def sync(self) -> None:
        """The server has read (and dispatched) everything sent before this heartbeat."""
        self.send([None, "hb", "phoenix", "heartbeat", {}])
        assert self.recv()[1] == "hb"

    def reset(self) -> None:
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()


@pytest.fixture
def raw(served: tuple[Endpoint, int]) -> Iterator[Callable[[], RawClient]]:
    """Opens raw clients on the served endpoint; resets any still open at teardown."""
    opened: list[RawClient] = []

    def open_client() -> RawClient:
        opened.append(RawClient(served[1]))
        return opened[-1]

    yield open_client
    for client in opened:
        if client.sock.fileno() != -1:
            client.reset()


@pytest.fixture
def probe() -> Probe:
    return Probe()


@pytest.fixture
def closed(monkeypatch: pytest.MonkeyPatch) -> Events:
    """Records each Connection.close once it has returned (the channels were told)."""
    seen = Events()
    original = Connection.close

    def close(self: Connection, reason: Any = ("shutdown", "closed")) -> None:
        original(self, reason)
        seen.add("closed", self.number)

    monkeypatch.setattr(Connection, "close", close)
    return seen


@pytest.fixture
def served(actor_mode: str, probe: Probe) -> Iterator[tuple[Endpoint, int]]:
    SlowSocket.probe = probe
    ep = Endpoint(actor_mode=actor_mode, pool_size=2, check_origin=False, max_mailbox=100)
    ep.socket("/socket", SlowSocket)
    server = ep.start("127.0.0.1", 0)
    yield ep, server.port
    probe.permits.release(100)  # nothing may hold a thread past the test
    ep.stop()


def _queue_backlog(client: RawClient, topic: str, count: int) -> None:
    for n in range(count):
        client.send(["1", str(n + 2), topic, "work", {"n": n}])


def test_reset_clients_queued_pushes_are_dropped_and_a_new_join_is_served(
    actor_mode: str,
    served: tuple[Endpoint, int],
    raw: Callable[[], RawClient],
    probe: Probe,
    closed: Events,
) -> None:
    ep, port = served
    dead = []
    for n in range(2):  # as many as the pool has workers
        client = raw()
        client.join(f"slow:{n}")
        _queue_backlog(client, f"slow:{n}", BACKLOG)
        client.sync()  # every push is in the channel's mailbox now
        dead.append(client)
    probe.wait_calls(2)  # the first push of each runs (in pool mode: both workers are held)
    for client in dead:
        client.reset()
    closed.wait_for(lambda items: len(items) == 2)
    new = Client(port)
    try:
        new.send(["1", "1", "slow:new", "phx_join", {}])
        if actor_mode == "pool":
            new.nothing()  # no worker is free: the join waits for the calls running now
        probe.permits.release(2)  # exactly the calls running at the close may finish
        assert new.recv()[2:] == ["slow:new", "phx_reply", {"status": "ok", "response": {}}]
        # A join sent now queues behind what is left of the dead channels' mailboxes:
        # it is answered at once because they are dropped, not run.
        new.send(["2", "2", "slow:later", "phx_join", {}])
        assert new.recv()[2:] == ["slow:later", "phx_reply", {"status": "ok", "response": {}}]
        terms = probe.wait_terms(2)
        assert sorted(terms) == [
            ("slow:0", ("shutdown", "closed")),
            ("slow:1", ("shutdown", "closed")),
        ]
        assert probe.calls == 2  # none of the dead clients' queued pushes ran
        assert ep.counters.get("dropped_after_close") == 2 * (BACKLOG - 1)
    finally:
        new.close()


def test_leave_queued_before_a_reset_still_terminates_left(
    served: tuple[Endpoint, int], raw: Callable[[], RawClient], probe: Probe, closed: Events
) -> None:
    ep, _ = served
    client = raw()
    client.join("slow:leave")
    _queue_backlog(client, "slow:leave", 4)
    client.send(["1", "L", "slow:leave", "phx_leave", {}])
    client.sync()
    probe.wait_calls(1)
    client.reset()
    closed.wait_for(lambda items: len(items) == 1)
    probe.permits.release(1)
    assert probe.wait_terms(1) == [("slow:leave", ("shutdown", "left"))]
    assert probe.calls == 1  # the pushes between the running one and the leave were dropped
    assert ep.counters.get("dropped_after_close") == 3


def test_pushes_past_max_mailbox_crash_the_channel_and_the_client_rejoins(
    served: tuple[Endpoint, int], probe: Probe
) -> None:
    ep, port = served  # max_mailbox=100
    client = Client(port)
    try:
        client.join("slow:flood")
        client.send(["1", "2", "slow:flood", "work", {"n": 0}])
        probe.wait_calls(1)
        for n in range(1, 106):  # 100 fit in the mailbox, 5 are refused
            client.send(["1", str(n + 2), "slow:flood", "work", {"n": n}])
        client.send([None, "hb", "phoenix", "heartbeat", {}])
        assert client.recv() == [
            None,
            "hb",
            "phoenix",
            "phx_reply",
            {"status": "ok", "response": {}},
        ]
        assert ep.counters.get("mailbox_overflows") == 5
        probe.permits.release(1)
        assert client.recv() == [
            "1",
            "2",
            "slow:flood",
            "phx_reply",
            {"status": "ok", "response": {"n": 0}},
        ]
        assert client.recv() == ["1", "1", "slow:flood", "phx_error", {"reason": "channel_crash"}]
        ((topic, (kind, error)),) = probe.wait_terms(1)
        assert (topic, kind) == ("slow:flood", "error")
        assert isinstance(error, ChannelError) and "max_mailbox=100" in str(error)
        assert probe.calls == 1  # the channel ended at its next message: the backlog never ran
        assert client.join("slow:flood", ref="9")[2:] == [
            "slow:flood",
            "phx_reply",
            {"status": "ok", "response": {}},
        ]
    finally:
        client.close()


def test_messages_past_max_mailbox_are_dropped_and_end_the_channel_as_a_crash(
    actor_mode: str, probe: Probe
) -> None:
    ep = Endpoint(actor_mode=actor_mode, max_mailbox=5)
    try:
        sock = ct.socket(SlowSocket, None, {"probe": probe}, endpoint=ep)
        _, _, room = ct.join(sock, "slow:full")
        ref = ct.push(room, "work", {"n": 0})
        probe.wait_calls(1)  # handle_in holds the channel; the tells below wait in its mailbox
        for n in range(8):
            room.channel_ref.tell(("info", n))
        assert ep.counters.get("mailbox_overflows") == 3
        late = room.channel_ref.ask(GetSocket(), block=False)
        with pytest.raises(ChannelError, match="max_mailbox=5"):
            late.get(timeout=1)  # an ask past the bound fails at once instead of hanging
        assert ep.counters.get("mailbox_overflows") == 4
        probe.permits.release(1)
        ct.assert_reply(ref, "ok", {"n": 0})  # the callback that was running finishes
        assert ct.assert_push("phx_error") == {"reason": "channel_crash"}
        ((_, (kind, error)),) = probe.wait_terms(1)
        assert kind == "error" and isinstance(error, ChannelError)
        assert "max_mailbox=5" in str(error) and "SlowChannel" in str(error)
        assert probe.infos == 0 and probe.calls == 1  # the 5 queued messages never ran
        assert ct.join(sock, "slow:full")[0] == "ok"  # the client may rejoin
    finally:
        probe.permits.release(10)
        ep.stop()


def test_a_mailbox_below_the_bound_keeps_every_message(actor_mode: str, probe: Probe) -> None:
    ep = Endpoint(actor_mode=actor_mode, max_mailbox=5)
    try:
        sock = ct.socket(SlowSocket, None, {"probe": probe}, endpoint=ep)
        _, _, room = ct.join(sock, "slow:fits")
        first = ct.push(room, "work", {"n": 0})
        probe.wait_calls(1)
        refs = [ct.push(room, "work", {"n": n}) for n in range(1, 6)]  # exactly max_mailbox waiting
        probe.permits.release(6)
        for n, ref in enumerate([first, *refs]):
            ct.assert_reply(ref, "ok", {"n": n})
        assert ep.counters.get("mailbox_overflows") == 0 and probe.calls == 6
    finally:
        ep.stop()


@pytest.mark.parametrize("value", [0, -1, 1.5, True])
def test_max_mailbox_must_be_a_positive_int(value: object) -> None:
    with pytest.raises(ConfigurationError, match="max_mailbox must be a positive int"):
        Endpoint(max_mailbox=value)


def test_max_mailbox_defaults_to_10000() -> None:
    assert Endpoint().config.max_mailbox == 10_000
