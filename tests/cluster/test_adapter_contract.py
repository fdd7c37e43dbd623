"""The contract every PubSub adapter keeps, run against each one (as phoenix_pubsub's
shared tests are run against each of its adapters).

The cluster tests run two real nodes in this process: linked by the in-process
``LinkedAdapter`` (tests/cluster/linked.py), and through a real ``redis-server``
with the ``RedisAdapter``. The single-node tests run against those and the
embedded adapter. Nodes are PubSubs with their own registries; subscribers
are queues. To show that something did *not* arrive, a marker is published
after it by the same publisher: per-publisher order makes it the next to come.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator

import pytest
import redis

from channels_actor.errors import BroadcastError
from channels_actor.pubsub import wire
from channels_actor.pubsub import EmbeddedAdapter, PubSub, PubSubAdapter, Subscriber
from channels_actor.pubsub.redis_adapter import RedisAdapter
from channels_actor.serializers import V2JSONSerializer
from tests.cluster.linked import TOPIC, WAIT, Connection, Inbox, LinkedAdapter, Wire

MakeNode = Callable[[str], PubSub]


class Cluster:
    """Makes the nodes of one cluster of ``kind``; ``settle`` waits for what is in flight."""

    def __init__(self, kind: str, request: pytest.FixtureRequest) -> None:
        self.kind = kind
        self.started: list[PubSub] = []
        self.wire = Wire()
        self.namespace = f"test-{uuid.uuid4().hex[:8]}"
        self.url = request.getfixturevalue("redis_server").url if kind == "redis" else ""

    def __call__(self, name: str) -> PubSub:
        adapter: PubSubAdapter
        if self.kind == "linked":
            adapter = LinkedAdapter(self.wire, name)
        elif self.kind == "redis":
            adapter = RedisAdapter(self.url, name, namespace=self.namespace)
        else:
            adapter = EmbeddedAdapter(name)
        node = PubSub(adapter=adapter).start()
        self.started.append(node)
        return node

    def settle(self, node: PubSub) -> None:
        """Return once ``node`` has received what was published to it before this call.

        The linked wire hands everything over at once. Redis delivers to a
        subscriber in the order it took the PUBLISH commands, so a probe
        published now arrives after all of it.
        """
        if self.kind != "redis":
            return
        probe = Inbox().subscribe(node, "probe:settle")
        client = redis.Redis.from_url(self.url)
        try:
            record = wire.encode(wire.ALL_BUT_ORIGIN, "probe", "", topic="probe:settle",
                                 event="settled", payload=b"{}", binary=False)
            client.publish(f"{self.namespace}:broadcasts", record)
        finally:
            client.close()
        assert probe.next_event() == "settled"
        node.unsubscribe("probe:settle", probe.key)

    def stop(self) -> None:
        for node in self.started:
            node.stop()


def _factory(kind: str, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    cluster = Cluster(kind, request)
    yield cluster
    cluster.stop()


@pytest.fixture(params=["linked", "redis"])
def make_node(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    yield from _factory(request.param, request)


@pytest.fixture(params=["embedded", "linked", "redis"])
def make_single(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    yield from _factory(request.param, request)


@pytest.fixture
def nodes(make_node: Cluster) -> tuple[PubSub, PubSub]:
    return make_node("a"), make_node("b")


def test_each_adapter_is_a_pubsub_adapter() -> None:
    adapters: list[PubSubAdapter] = [  # mypy checks the Protocol here
        EmbeddedAdapter("e"),
        LinkedAdapter(Wire(), "l"),
        RedisAdapter("redis://127.0.0.1:1/0", "r"),
    ]
    assert [PubSub(adapter=adapter).node_name for adapter in adapters] == ["e", "l", "r"]


# one node ---------------------------------------------------------------------


def test_one_node_broadcasts_to_its_own_subscribers(make_single: MakeNode) -> None:
    node = make_single("solo")
    inbox, other_topic = Inbox().subscribe(node), Inbox().subscribe(node, "room:other")
    sender = Inbox().subscribe(node)
    node.broadcast(TOPIC, "all", {"n": 1})
    node.broadcast_from(sender.key, TOPIC, "from", {"n": 2})
    node.local_broadcast(TOPIC, "local", {"n": 3})
    node.direct_broadcast("solo", TOPIC, "direct", b"\x00")
    node.broadcast("room:other", "marker", {})
    assert [inbox.next_event() for _ in range(4)] == ["all", "from", "local", "direct"]
    assert [sender.next_event() for _ in range(3)] == ["all", "local", "direct"]
    assert other_topic.next_event() == "marker"


def test_one_node_stops_delivering_to_an_unsubscribed_key(make_single: MakeNode) -> None:
    node = make_single("solo")
    gone, stays = Inbox().subscribe(node), Inbox().subscribe(node)
    node.unsubscribe(TOPIC, gone.key)
    node.broadcast(TOPIC, "after", {})
    assert stays.next_event() == "after"
    assert node.stats() == (1, 1)
    assert gone.received.empty()


def test_one_node_counts_nothing_while_healthy(make_single: MakeNode) -> None:
    node = make_single("solo")
    inbox = Inbox().subscribe(node)
    node.broadcast(TOPIC, "e", {})
    inbox.next()
    assert not any(node.adapter_stats().get(name) for name in ("outages", "refused", "lost"))


# a cluster --------------------------------------------------------------------


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
    with pytest.raises(BroadcastError, match="node 'c'"):
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


def test_a_node_that_left_no_longer_receives(make_node: Cluster) -> None:
    a, b = make_node("a"), make_node("b")
    on_a = Inbox().subscribe(a)
    b.stop()
    make_node.settle(a)  # its leaving has reached a
    a.broadcast(TOPIC, "after", {})  # b is gone: not an error
    assert on_a.next_event() == "after"
    with pytest.raises(BroadcastError, match="node 'b'"):
        a.direct_broadcast("b", TOPIC, "to_b", {})




def test_an_unsubscribed_remote_key_gets_nothing(nodes: tuple[PubSub, PubSub]) -> None:
    a, b = nodes
    gone, stays = Inbox().subscribe(b), Inbox().subscribe(b)
    b.unsubscribe(TOPIC, gone.key)
    a.broadcast(TOPIC, "after", {})
    assert stays.next_event() == "after"
    assert gone.received.empty()


def test_a_large_payload_crosses_whole(nodes: tuple[PubSub, PubSub]) -> None:
    a, b = nodes
    on_b = Inbox().subscribe(b)
    body = "é" * 300_000
    a.broadcast(TOPIC, "big", {"body": body})
    a.broadcast(TOPIC, "big_binary", bytes(range(256)) * 4000)
    assert on_b.next().payload == {"body": body}
    assert on_b.next().payload == bytes(range(256)) * 4000


def test_three_nodes_each_get_every_other_nodes_broadcasts(make_node: MakeNode) -> None:
    a, b, c = make_node("a"), make_node("b"), make_node("c")
    inboxes = [Inbox().subscribe(node) for node in (a, b, c)]
    for node, name in ((a, "a"), (b, "b"), (c, "c")):
        node.broadcast(TOPIC, name, {})
    for inbox in inboxes:
        assert sorted(inbox.next_event() for _ in range(3)) == ["a", "b", "c"]
