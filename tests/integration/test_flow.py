"""Outgoing flow over real sockets: large messages, slow clients, floods, byte for byte."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest

from channels_actor import (
    BroadcastError,
    Channel,
    ChannelError,
    ConfigurationError,
    Endpoint,
    Socket,
    SocketHandler,
    broadcast_from,
    push,
)
from tests.integration import rawframes
from tests.integration.serverframes import OP_CLOSE, OP_TEXT, RawClient, message
from tests.integration.wsclient import Client


class FlowChannel(Channel):
    gate: ClassVar[threading.Event] = threading.Event()

    def join(self, topic: str, payload: Any, socket: Socket) -> Any:
        return ("ok", socket)

    def handle_in(self, event: str, payload: Any, socket: Socket) -> Any:
        if event == "flood":
            broadcast_from(socket, "msg", payload)
            return ("noreply", socket)
        if event == "hold":  # the channel's worker is busy until the test lets it go
            assert FlowChannel.gate.wait(10)
            return ("noreply", socket)
        if event == "big":
            try:
                push(socket, "big", {"pad": "x" * payload["size"]})
            except ChannelError as exc:
                return ("reply", ("error", {"reason": str(exc)[:120]}), socket)
            return ("reply", "ok", socket)
        return ("noreply", socket)


class FlowSocket(SocketHandler):
    channels: ClassVar[dict[str, type[Channel]]] = {"flow:*": FlowChannel}

    def connect(self, params: dict[str, Any], socket: Socket, connect_info: dict[str, Any]) -> Any:
        return ("ok", socket)


@pytest.fixture
def start() -> Iterator[Any]:
    endpoints: list[Endpoint] = []

    def run(**config: Any) -> tuple[Endpoint, int]:
        ep = Endpoint(check_origin=False, **config)
        ep.socket("/socket", FlowSocket)
        endpoints.append(ep)
        return ep, ep.start("127.0.0.1", 0).port

    yield run
    for ep in endpoints:
        ep.stop()


class _LogEvent(logging.Handler):
    """Sets ``event`` when a record containing ``text`` is logged."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text
        self.event = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.event.set()


def _log_event(text: str) -> Iterator[threading.Event]:
    handler = _LogEvent(text)
    logger = logging.getLogger("channels_actor.transport")
    level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    yield handler.event
    logger.removeHandler(handler)
    logger.setLevel(level)


@pytest.fixture
def closed_slow() -> Iterator[threading.Event]:
    """Set once the server logs that it closes a slow client."""
    yield from _log_event("closing it (1008)")


@pytest.fixture
def paused() -> Iterator[threading.Event]:
    """Set once flow control pauses the publishers."""
    yield from _log_event("Pausing")


def _broadcast_frame(topic: str, event: str, payload: Any) -> list[Any]:
    return [None, None, topic, event, payload]


# one large message is not a slow client ---------------------------------------------


def test_a_6mb_broadcast_reaches_every_reading_subscriber(start: Any) -> None:
    ep, port = start()
    clients = [Client(port) for _ in range(5)]
    try:
        for c in clients:
            assert c.join("flow:big")[4]["status"] == "ok"
        pad = "x" * 6_000_000
        ep.broadcast("flow:big", "big", {"pad": pad})
        ep.broadcast("flow:big", "after", {})
        for c in clients:
            assert c.recv(timeout=10) == _broadcast_frame("flow:big", "big", {"pad": pad})
            assert c.recv(timeout=5) == _broadcast_frame("flow:big", "after", {})
        assert ep.counters.get("slow_consumer_closed") == 0
    finally:
        for c in clients:
            c.close()


def test_a_6mb_push_reaches_a_reading_client(start: Any) -> None:
    ep, port = start()
    c = Client(port)
    try:
        c.join("flow:push")
        c.send(["1", "2", "flow:push", "big", {"size": 6_000_000}])
        assert c.recv(timeout=10) == ["1", None, "flow:push", "big", {"pad": "x" * 6_000_000}]
        assert c.recv(timeout=5)[4] == {"status": "ok", "response": {}}
        assert ep.counters.get("slow_consumer_closed") == 0
    finally:
        c.close()


def test_a_message_larger_than_max_frame_size_is_refused_at_the_sender(start: Any) -> None:
    ep, port = start(max_frame_size=64 * 1024)
    c = Client(port)
    try:
        c.join("flow:huge")
        with pytest.raises(BroadcastError, match="max_frame_size"):
            ep.broadcast("flow:huge", "huge", {"pad": "x" * 100_000})
        c.send(["1", "2", "flow:huge", "big", {"size": 100_000}])
        reply = c.recv()
        assert reply[4]["status"] == "error"
        assert "max_frame_size" in reply[4]["response"]["reason"]
        ep.broadcast("flow:huge", "fits", {"pad": "x" * 60_000})  # the connection is fine
        assert c.recv() == _broadcast_frame("flow:huge", "fits", {"pad": "x" * 60_000})
    finally:
        c.close()


# slow clients: whole frames, then a close frame with 1008 ---------------------------------


def _check_prefix(client: RawClient, topic: str, pad: str) -> int:
    """The client got broadcasts 0..k-1 intact and in order; return k."""
    count = 0
    for opcode, payload in client.frames:
        if opcode == OP_CLOSE:
            break
        assert opcode == OP_TEXT
        assert json.loads(payload) == _broadcast_frame(topic, "m", {"n": count, "pad": pad})
        count += 1
    return count


def _trickle(clients: list[RawClient], stop: threading.Event, errors: list[BaseException]) -> None:
    """Read a little from each client now and then: far slower than they are written to.

    Reading is what lets bytes written after an overflow reach the client,
    so a stream spliced at the overflow would show here.
    """
    try:
        while not stop.is_set():
            for c in clients:
                if not c.eof:
                    c.read_some(4096)
            time.sleep(0.002)  # the slowness is the behaviour under test
    except BaseException as exc:  # handed to the test thread
        errors.append(exc)


def test_many_clients_overflowing_at_once_get_whole_frames_then_1008(start: Any) -> None:
    ep, port = start(max_buffer=256 * 1024)
    topic = "flow:splice"
    readers = [RawClient(port) for _ in range(5)]
    slow = [RawClient(port, rcvbuf=4096) for _ in range(10)]
    stop, errors = threading.Event(), []
    trickler = threading.Thread(target=_trickle, args=(slow, stop, errors), name="test-trickle")
    try:
        for c in readers + slow:
            assert c.join(topic)["status"] == "ok"
            c.sock.setblocking(False)
        for c in readers:
            c.sock.settimeout(5)
        trickler.start()
        pad = "p" * 10_000
        total, per_round = 1000, 100
        got = [0] * len(readers)
        for first in range(0, total, per_round):
            for n in range(first, first + per_round):
                ep.broadcast(topic, "m", {"n": n, "pad": pad})
            for index, reader in enumerate(readers):
                while got[index] < first + per_round:
                    frame = reader.next_json()
                    assert frame == _broadcast_frame(topic, "m", {"n": got[index], "pad": pad})
                    got[index] += 1
        stop.set()
        trickler.join(5)
        assert not errors, errors
        assert got == [total] * len(readers)
        for reader in readers:
            assert reader.frames == []
        # every slow client overflowed while the others were still being written to
        assert ep.counters.get("slow_consumer_closed") == len(slow)
        counts = []
        for c in slow:
            c.sock.settimeout(5)
            c.read_to_eof()
            assert c.parser.closed == (1008, "outgoing buffer full")
            assert c.parser.leftover == 0
            counts.append(_check_prefix(c, topic, pad))
            assert c.frames[counts[-1] :] == [(OP_CLOSE, c.frames[counts[-1]][1])]
        # the race: broadcasts kept coming for every one of them after its overflow
        assert 0 < max(counts) < total - per_round
    finally:
        stop.set()
        if trickler.is_alive():
            trickler.join(5)
        for c in readers + slow:
            c.close()


def test_a_client_that_takes_nothing_for_write_timeout_is_closed_1008(
    start: Any, closed_slow: threading.Event
) -> None:
    # One message bigger than what the kernel buffers: no backlog beyond it,
    # so only the write timeout can tell that the client stopped reading.
    ep, port = start(write_timeout=0.3)
    c = RawClient(port, rcvbuf=4096)
    try:
        assert c.join("flow:stall")["status"] == "ok"
        pad = "s" * 6_000_000
        started = time.monotonic()
        ep.broadcast("flow:stall", "m", {"n": 0, "pad": pad})
        assert closed_slow.wait(5)  # the client reads nothing until then
        c.read_to_eof()
        assert time.monotonic() - started >= 0.3
        assert _check_prefix(c, "flow:stall", pad) == 1
        assert c.parser.closed == (1008, "stopped reading")
        assert ep.counters.get("slow_consumer_closed") == 1
    finally:
        c.close()


# a flooding publisher is slowed down; its subscribers all get everything ---------------------


def test_a_flooding_publisher_is_paused_and_no_subscriber_is_dropped(
    start: Any, actor_mode: str
) -> None:
    # Default limits; 6 MB to each of 50 subscribers parsed in Python (in a
    # process of their own, tests/integration/flood_reader.py), which falls
    # behind the server's fan-out: without flow control most of them pass
    # max_buffer and are closed.
    ep, port = start(actor_mode=actor_mode)
    topic = "flow:flood"
    total, pad_size = 3000, 2000
    reader = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.flood_reader", str(port), topic, "50",
         str(total), str(pad_size)],
        stdout=subprocess.PIPE, text=True,
    )
    publisher = RawClient(port)
    try:
        assert reader.stdout is not None
        assert reader.stdout.readline().strip() == "ready"
        assert publisher.join(topic)["status"] == "ok"
        # as fast as TCP allows: one buffer, no waiting for anything
        pad = "f" * pad_size
        blob = b"".join(
            message("1", str(i), topic, "flood", {"seq": i, "pad": pad}) for i in range(total)
        )
        sender = threading.Thread(target=publisher.sock.sendall, args=(blob,), name="test-flooder")
        sender.start()
        outcome = json.loads(reader.stdout.readline())
        assert outcome == {"done": 50, "problem": None}
        assert reader.wait(10) == 0
        sender.join(10)
        assert not sender.is_alive()
        assert ep.counters.get("slow_consumer_closed") == 0
        assert ep.counters.get("backpressure_pauses") > 0  # the flood did outrun the subscribers
        assert ep.counters.get("backpressure_paused_seconds") > 0
    finally:
        publisher.close()
        if reader.poll() is None:
            reader.kill()
            reader.wait(10)
        if reader.stdout is not None:
            reader.stdout.close()


def test_a_flood_read_ahead_of_a_busy_channel_is_paused(
    start: Any, actor_mode: str, paused: threading.Event
) -> None:
    # The channel cannot run (its worker is held, as on a loaded machine), so
    # it broadcasts nothing: only the reactor's look after each read can see
    # that the client's messages pile up in the mailbox, and stop reading.
    FlowChannel.gate.clear()
    ep, port = start(actor_mode=actor_mode)
    topic = "flow:readahead"
    subscriber, flooder = Client(port), RawClient(port)
    try:
        subscriber.join(topic)
        assert flooder.join(topic)["status"] == "ok"
        flooder.send("1", "2", topic, "flood", {"seq": -1})  # it has published once
        assert subscriber.recv(5)[4] == {"seq": -1}
        total, pad = 2000, "r" * 500
        blob = message("1", "3", topic, "hold", {}) + b"".join(
            message("1", str(i), topic, "flood", {"seq": i, "pad": pad}) for i in range(total)
        )
        sender = threading.Thread(target=flooder.sock.sendall, args=(blob,), name="test-flooder")
        sender.start()
        assert paused.wait(10), "the reactor read the flood into a mailbox nobody was taking"
        FlowChannel.gate.set()
        for i in range(total):  # then everything, in order
            assert subscriber.recv(10)[4] == {"seq": i, "pad": pad}
        sender.join(10)
        assert not sender.is_alive()
        assert ep.counters.get("slow_consumer_closed") == 0
    finally:
        FlowChannel.gate.set()
        subscriber.close()
        flooder.close()


def _congest(ep: Endpoint, topic: str, slow: RawClient, publisher: RawClient) -> None:
    """Join both to ``topic`` and congest ``slow`` (which does not read): one message
    it cannot finish reading, then a backlog past a quarter of ``max_buffer``,
    congested, not yet full. One at a time, each seen by ``publisher``: broadcasts
    queued together leave as one chunk."""
    assert slow.join(topic)["status"] == "ok"
    assert publisher.join(topic)["status"] == "ok"
    ep.broadcast(topic, "big", {"pad": "b" * 8_000_000})
    assert publisher.next_json()[3] == "big"
    ep.broadcast(topic, "more", {"pad": "m" * 100_000})
    assert publisher.next_json()[3] == "more"


def _read_slowly(client: RawClient) -> tuple[threading.Thread, threading.Event]:
    """Start a thread that reads ``client`` slowly (16 KiB every 10 ms) until the
    returned event is set: a congested client that still drains, which keeps a
    pause on. Returns once it has read once."""
    stop, reading = threading.Event(), threading.Event()

    def read() -> None:
        while not stop.is_set():
            try:
                client.sock.recv(16384)
            except OSError:
                return
            reading.set()
            time.sleep(0.01)  # a slow reader is the behaviour under test

    reader = threading.Thread(target=read, name="test-slow-reader")
    reader.start()
    assert reading.wait(5)
    return reader, stop


def test_paused_time_is_not_client_silence(start: Any, paused: threading.Event) -> None:
    ep, port = start(heartbeat_timeout=0.4, max_buffer=256 * 1024)
    topic = "flow:pause"
    stuck = RawClient(port, rcvbuf=4096)
    publisher = RawClient(port)
    try:
        _congest(ep, topic, stuck, publisher)
        # It reads, slowly: congested and draining, so it keeps publishers paused
        # (a client that drained nothing would count as stalled after a second).
        reader, stop = _read_slowly(stuck)
        publisher.send("1", "2", topic, "flood", {"seq": 0})  # a publisher now: paused
        assert paused.wait(5)
        publisher.sock.setblocking(False)
        # three heartbeat timeouts while paused; both clients keep sending heartbeats
        for n in range(12):
            stuck.send(None, f"s{n}", "phoenix", "heartbeat", {})
            publisher.send(None, f"p{n}", "phoenix", "heartbeat", {})
            time.sleep(0.1)  # time passing while paused is the behaviour under test
            publisher.read_some()
            assert not publisher.eof
            assert publisher.frames == []  # not read while paused, so not answered
        assert ep.counters.get("backpressure_pauses") == 1
        stop.set()
        reader.join(5)
        stuck.close()  # its backlog is gone: the pause ends
        publisher.sock.settimeout(5)
        replies = [publisher.next_json() for _ in range(12)]
        assert [r[1] for r in replies] == [f"p{n}" for n in range(12)]
        assert all(r[4]["status"] == "ok" for r in replies)
        assert ep.counters.get("backpressure_paused_seconds") >= 1.2
    finally:
        stuck.close()
        publisher.close()


def test_paused_time_does_not_count_against_an_unfinished_message(
    start: Any, paused: threading.Event
) -> None:
    # A publisher paused in the middle of a fragmented message could not send
    # the rest meanwhile: the pause must not run out incomplete_message_timeout.
    ep, port = start(incomplete_message_timeout=0.4, max_buffer=256 * 1024)
    topic = "flow:fragment"
    stuck = RawClient(port, rcvbuf=4096)
    publisher = RawClient(port)
    reader, stop = None, threading.Event()
    try:
        _congest(ep, topic, stuck, publisher)
        reader, stop = _read_slowly(stuck)  # congested but draining: the pause stays on
        heartbeat = json.dumps([None, "hb", "phoenix", "heartbeat", {}]).encode()
        # in one write: a broadcast (the publisher is paused) and the first half of a message
        publisher.sock.sendall(
            message("1", "2", topic, "flood", {"seq": 0})
            + rawframes.client_frame(OP_TEXT, heartbeat[:10], fin=False)
        )
        assert paused.wait(5)
        time.sleep(1.0)  # paused for more than twice the deadline: the behaviour under test
        publisher.sock.setblocking(False)
        publisher.read_some()
        assert not publisher.eof, "closed while paused"
        stop.set()
        reader.join(5)
        stuck.close()  # the pause ends
        publisher.sock.setblocking(True)
        publisher.sock.sendall(rawframes.client_frame(0x0, heartbeat[10:]))
        while True:
            frame = publisher.next_json()
            if frame[1] == "hb":
                break
        assert frame[4]["status"] == "ok"
        assert ep.counters.get("incomplete_message_timeouts") == 0
        assert ep.counters.get("backpressure_paused_seconds") >= 0.8
    finally:
        stop.set()
        if reader is not None:
            reader.join(5)
        stuck.close()
        publisher.close()


def test_a_stalled_client_does_not_hold_publishers_back(
    start: Any, paused: threading.Event
) -> None:
    # A client that drains nothing for the stall grace (a quarter of
    # write_timeout here) has stopped reading: publishers resume, and the
    # stalled client is closed once its backlog passes max_buffer, long
    # before write_timeout.
    ep, port = start(write_timeout=8.0, max_buffer=256 * 1024)
    topic = "flow:stalled"
    dead = RawClient(port, rcvbuf=4096)
    publisher = RawClient(port)
    try:
        _congest(ep, topic, dead, publisher)
        started = time.monotonic()
        for n in range(40):
            publisher.send("1", str(n), topic, "flood", {"seq": n, "pad": "p" * 10_000})
        assert paused.wait(5)
        # the publisher keeps being read: a heartbeat after the flood is answered
        publisher.send(None, "hb", "phoenix", "heartbeat", {})
        while True:
            frame = publisher.next_json()
            if frame[1] == "hb":
                break
        resumed_after = time.monotonic() - started
        assert resumed_after < 8.0, resumed_after  # not held for write_timeout
        dead.read_to_eof()
        assert dead.parser.closed == (1008, "outgoing buffer full")
        assert ep.counters.get("slow_consumer_closed") == 1
        assert 0 < ep.counters.get("backpressure_paused_seconds") < 8.0
    finally:
        dead.close()
        publisher.close()


def test_flow_options_are_checked() -> None:
    with pytest.raises(ConfigurationError, match="publish_queue_low"):
        Endpoint(publish_queue_high=8, publish_queue_low=9)
    with pytest.raises(ConfigurationError, match="write_timeout"):
        Endpoint(write_timeout=0)
