"""The PubSub adapter seam: two real PubSubs in one process, linked as a cluster.

``LinkedAdapter`` is a real implementation of :class:`PubSubAdapter`, not a
mock: the nodes share a ``Wire`` (what a Redis channel is to the Redis
adapter), every message crosses it as bytes and is rebuilt on arrival on the
receiving adapter's own thread, then handed to that node's PubSub. Each node
runs its own registry; subscribers are callbacks putting on queues. To show
that something did *not* arrive, a marker is published after it from the same
publisher: per-publisher order makes the marker the next thing to come.
"""

from __future__ import annotations

import logging
import queue
import re
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from channels_actor.errors import BroadcastError, ConfigurationError
from channels_actor.message import Broadcast
from channels_actor.pubsub import EmbeddedAdapter, PubSub, PubSubAdapter, Subscriber
from channels_actor.pubsub.adapter import Deliver
from channels_actor.serializers import V2JSONSerializer
from channels_actor.serializers.base import decode_json
from channels_actor.transports.frames import SharedFrames

WAIT = 5.0
TOPIC = "room:cluster"

#: What crosses the wire: (topic, event, payload bytes, binary?).
WireMessage = tuple[str, str, bytes, bool]


class Wire:
    """The medium linking the nodes: each running node's inbox, by node name."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._inboxes: dict[str, queue.SimpleQueue[WireMessage | None]] = {}

    def join(self, node_name: str, inbox: queue.SimpleQueue[WireMessage | None]) -> None:
        with self._lock:
            assert node_name not in self._inboxes, f"two nodes named {node_name!r}"
            self._inboxes[node_name] = inbox

    def leave(self, node_name: str) -> None:
        with self._lock:
            self._inboxes.pop(node_name, None)

    def others(self, node_name: str) -> list[queue.SimpleQueue[WireMessage | None]]:
        with self._lock:
            return [inbox for name, inbox in self._inboxes.items() if name != node_name]

    def inbox(self, node_name: str) -> queue.SimpleQueue[WireMessage | None] | None:
        with self._lock:
            return self._inboxes.get(node_name)


class LinkedAdapter:
    """A cluster adapter over a :class:`Wire`, receiving on a thread of its own."""

    def __init__(self, wire: Wire, node_name: str) -> None:
        self._wire = wire
        self._node_name = node_name
        self._inbox: queue.SimpleQueue[WireMessage | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    @property
    def node_name(self) -> str:
        return self._node_name

    def start(self, deliver: Deliver) -> None:
        self._thread = threading.Thread(
            target=self._receive, args=(deliver,), name=f"LinkedAdapter-{self._node_name}"
        )
        self._thread.start()
        self._wire.join(self._node_name, self._inbox)

    def stop(self, timeout: float) -> None:
        self._wire.leave(self._node_name)
        if self._thread is not None:
            self._inbox.put(None)
            self._thread.join(timeout)
            self._thread = None

    def broadcast(self, broadcast: Broadcast) -> None:
        message = _to_wire(broadcast)
        for inbox in self._wire.others(self._node_name):
            inbox.put(message)

    def direct_broadcast(self, node_name: str, broadcast: Broadcast) -> None:
        inbox = self._wire.inbox(node_name)
        if inbox is None:
            raise BroadcastError(f"no node {node_name!r} on the wire")
        inbox.put(_to_wire(broadcast))

    def _receive(self, deliver: Deliver) -> None:
        while (message := self._inbox.get()) is not None:
            deliver(_from_wire(message))

    def __repr__(self) -> str:
        return f"<LinkedAdapter {self._node_name!r}>"


def _to_wire(broadcast: Broadcast) -> WireMessage:
    """The already-encoded payload as it is: JSON bytes, or the binary payload."""
    if broadcast.encoded_payload is None:
        assert isinstance(broadcast.payload, bytes)
        return (broadcast.topic, broadcast.event, broadcast.payload, True)
    return (broadcast.topic, broadcast.event, broadcast.encoded_payload, False)


def _from_wire(message: WireMessage) -> Broadcast:
    """Rebuild the Broadcast: the received JSON stays its ``encoded_payload``."""
    topic, event, data, binary = message
    if binary:
        return Broadcast(topic, event, data)
    return Broadcast(topic, event, decode_json(data), data)


class Inbox:
    """A callback subscriber: what it receives, on a queue.

    Args:
        key: its subscription key (``broadcast_from`` excludes by it); itself by default.
    """

    def __init__(self, key: object = None) -> None:
        self.key = self if key is None else key
        self.received: queue.SimpleQueue[Broadcast] = queue.SimpleQueue()

    def subscribe(self, pubsub: PubSub, topic: str = TOPIC) -> Inbox:
        pubsub.subscribe(topic, Subscriber(key=self.key, callback=self.received.put))
        return self

    def next(self) -> Broadcast:
        return self.received.get(timeout=WAIT)

    def next_event(self) -> str:
        return self.next().event


class Connection:
    """A fastlane subscriber: the frames of its ``send_shared`` calls, on a queue."""

    def __init__(self) -> None:
        self.frames: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def send_shared(self, shared: SharedFrames) -> None:
        for one in shared.frames:
            self.frames.put(one.frame)


@pytest.fixture
def nodes() -> Iterator[tuple[PubSub, PubSub]]:
    wire = Wire()
    a = PubSub(adapter=LinkedAdapter(wire, "a")).start()
    b = PubSub(adapter=LinkedAdapter(wire, "b")).start()
    yield a, b
    a.stop()
    b.stop()


def test_the_linked_adapter_is_a_pubsub_adapter() -> None:
    adapter: PubSubAdapter = LinkedAdapter(Wire(), "x")  # mypy checks the Protocol here
    assert PubSub(adapter=adapter).node_name == "x"


def test_broadcast_reaches_the_subscribers_of_both_nodes(nodes: tuple[PubSub, PubSub]) -> None:
    a, b = nodes
    on_a, on_b = Inbox().subscribe(a), Inbox().subscribe(b)
    a.broadcast(TOPIC, "new_msg", {"body": "hi"})
    here, there = on_a.next(), on_b.next()
    assert (here.topic, here.event, here.payload) == (TOPIC, "new_msg", {"body": "hi"})
    assert (there.topic, there.event, there.payload) == (TOPIC, "new_msg", {"body": "hi"})
    assert there.encoded_payload == here.encoded_payload  # forwarded as encoded, once
    b.broadcast(TOPIC, "back", b"\x00\x01")
    assert on_b.next().payload == b"\x00\x01"
    binary = on_a.next()
    assert (binary.payload, binary.encoded_payload) == (b"\x00\x01", None)


def test_a_remote_broadcast_takes_the_fastlane(nodes: tuple[PubSub, PubSub]) -> None:
    a, b = nodes
    connection = Connection()
    b.subscribe(
        TOPIC, Subscriber(key=connection, connection=connection, serializer=V2JSONSerializer())
    )
    a.broadcast(TOPIC, "new_msg", {"body": "hi"})
    frame = connection.frames.get(timeout=WAIT)
    assert V2JSONSerializer().decode(frame).payload == {"body": "hi"}


def test_local_broadcast_stays_on_its_node(nodes: tuple[PubSub, PubSub]) -> None:
    a, b = nodes
    on_a, on_b = Inbox().subscribe(a), Inbox().subscribe(b)
    a.local_broadcast(TOPIC, "local", {})
    a.local_broadcast_from(object(), TOPIC, "local_from", {})
    a.broadcast(TOPIC, "marker", {})
    assert [on_a.next_event() for _ in range(3)] == ["local", "local_from", "marker"]
    assert on_b.next_event() == "marker"


def test_direct_broadcast_reaches_the_named_node_only(nodes: tuple[PubSub, PubSub]) -> None:
    a, b = nodes
    on_a, on_b = Inbox().subscribe(a), Inbox().subscribe(b)
    a.direct_broadcast("b", TOPIC, "to_b", {"n": 1})
    a.direct_broadcast("a", TOPIC, "to_a", {"n": 2})
    a.broadcast(TOPIC, "marker", {})
    assert on_b.next().payload == {"n": 1}
    assert on_b.next_event() == "marker"
    assert on_a.next().payload == {"n": 2}
    assert on_a.next_event() == "marker"
    with pytest.raises(BroadcastError, match="no node 'c'"):
        a.direct_broadcast("c", TOPIC, "to_c", {})


def test_broadcast_from_excludes_the_sender_on_its_own_node_only(
    nodes: tuple[PubSub, PubSub],
) -> None:
    a, b = nodes
    sender = object()  # the same key on both nodes: still two subscriptions
    sender_on_a, sender_on_b = Inbox(sender).subscribe(a), Inbox(sender).subscribe(b)
    neighbour = Inbox().subscribe(a)
    a.broadcast_from(sender, TOPIC, "from_sender", {})
    a.broadcast(TOPIC, "marker", {})
    assert sender_on_a.next_event() == "marker"
    assert [neighbour.next_event() for _ in range(2)] == ["from_sender", "marker"]
    assert [sender_on_b.next_event() for _ in range(2)] == ["from_sender", "marker"]


def test_each_publishers_order_is_kept_on_every_node(nodes: tuple[PubSub, PubSub]) -> None:
    a, b = nodes
    count = 200
    on_a, on_b = Inbox().subscribe(a), Inbox().subscribe(b)
    publishers = [
        threading.Thread(target=_publish_many, args=(node, name, count), name=f"publisher-{name}")
        for node, name in ((a, "a1"), (a, "a2"), (b, "b1"))
    ]
    for thread in publishers:
        thread.start()
    for thread in publishers:
        thread.join(WAIT)
    for inbox in (on_a, on_b):
        seen: dict[str, list[int]] = {"a1": [], "a2": [], "b1": []}
        for _ in range(3 * count):
            payload = inbox.next().payload
            seen[payload["from"]].append(payload["n"])
        assert seen == {name: list(range(count)) for name in seen}


def _publish_many(pubsub: PubSub, name: str, count: int) -> None:
    for n in range(count):
        pubsub.broadcast(TOPIC, "seq", {"from": name, "n": n})


def test_a_node_that_left_no_longer_receives(nodes: tuple[PubSub, PubSub]) -> None:
    a, b = nodes
    on_a = Inbox().subscribe(a)
    b.stop()
    a.broadcast(TOPIC, "after", {})  # b is gone from the wire: not an error
    assert on_a.next_event() == "after"
    with pytest.raises(BroadcastError, match="no node 'b'"):
        a.direct_broadcast("b", TOPIC, "to_b", {})


# the embedded adapter ---------------------------------------------------------


def test_the_embedded_adapter_names_the_node() -> None:
    assert PubSub("node-1").node_name == "node-1"
    assert PubSub(adapter=EmbeddedAdapter("node-2")).node_name == "node-2"
    assert re.fullmatch(r".+-\d+-\d+", PubSub().node_name)
    assert PubSub().node_name != PubSub().node_name


def test_node_name_and_adapter_together_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="give the name to the adapter"):
        PubSub("n", adapter=EmbeddedAdapter("n"))


def test_the_embedded_adapter_broadcasts_locally_and_knows_no_other_node() -> None:
    pubsub = PubSub("solo").start()
    try:
        inbox = Inbox().subscribe(pubsub)
        pubsub.broadcast(TOPIC, "all", {})
        pubsub.direct_broadcast("solo", TOPIC, "direct", {})
        assert [inbox.next_event() for _ in range(2)] == ["all", "direct"]
        with pytest.raises(
            BroadcastError,
            match="direct_broadcast to node 'other': this PubSub has no cluster adapter "
            "and knows only its own node 'solo'",
        ):
            pubsub.direct_broadcast("other", TOPIC, "direct", {})
    finally:
        pubsub.stop()


# lifecycle --------------------------------------------------------------------


class StartFails(EmbeddedAdapter):
    def start(self, deliver: Deliver) -> None:
        raise BroadcastError("cannot reach the cluster")


class KeepsDeliver(EmbeddedAdapter):
    """Keeps the PubSub's callback, to call it once the PubSub has stopped."""

    def __init__(self, node_name: str) -> None:
        super().__init__(node_name)
        self.delivers: list[Deliver] = []

    def start(self, deliver: Deliver) -> None:
        self.delivers.append(deliver)


def test_an_adapter_that_fails_to_start_leaves_no_registry_running() -> None:
    pubsub = PubSub(adapter=StartFails("n"))
    with pytest.raises(BroadcastError, match="cannot reach the cluster"):
        pubsub.start()
    with pytest.raises(BroadcastError, match="not running"):
        pubsub.broadcast(TOPIC, "e", {})
    # the autouse fixture checks that the registry's thread is gone


def test_a_late_delivery_to_a_stopped_pubsub_is_dropped_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    adapter = KeepsDeliver("n")
    pubsub = PubSub(adapter=adapter).start()
    pubsub.stop()
    with caplog.at_level(logging.WARNING, "channels_actor.pubsub"):
        adapter.delivers[0](Broadcast(TOPIC, "late", {}, b"{}"))
    assert "to a stopped PubSub; dropped" in caplog.text
