"""What only the Redis adapter does: node names claimed in Redis, outages, compression,
records it cannot read, and never making a publisher wait. Against a real redis-server.

Outages are real: the test kills the server (SIGKILL) or freezes it (SIGSTOP).
What the adapter logs is the event the tests wait on, never a sleep.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import threading
import uuid
from collections.abc import Iterator

import pytest
import redis

from channels_actor import Endpoint, RedisPubSub
from channels_actor.errors import BroadcastError, ConfigurationError
from channels_actor.pubsub import PubSub
from channels_actor.pubsub import wire
from channels_actor.pubsub.redis_adapter import RedisAdapter
from tests.cluster.linked import TOPIC, WAIT, Inbox
from tests.cluster.redis_server import RedisServer


class LogWaiter(logging.Handler):
    """Hands each record of the Redis adapter's logger to a queue, to wait on."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.append(record.getMessage())
        self.records.put(record)

    def wait_for(self, text: str, count: int = 1, timeout: float = 20.0) -> list[str]:
        """Wait until ``count`` more messages contain ``text``; return them."""
        found: list[str] = []
        while len(found) < count:
            message = self.records.get(timeout=timeout).getMessage()
            if text in message:
                found.append(message)
        return found


@pytest.fixture
def logs() -> Iterator[LogWaiter]:
    waiter = LogWaiter()
    logger = logging.getLogger("channels_actor.pubsub.redis")
    logger.addHandler(waiter)
    previous = logger.level
    logger.setLevel(logging.DEBUG)
    yield waiter
    logger.removeHandler(waiter)
    logger.setLevel(previous)


@pytest.fixture
def namespace() -> str:
    return f"test-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def started(redis_server: RedisServer, namespace: str) -> Iterator[list[PubSub]]:
    nodes: list[PubSub] = []
    yield nodes
    for node in nodes:
        node.stop()


def _node(nodes: list[PubSub], url: str, name: str, namespace: str, **options: object) -> PubSub:
    node = RedisPubSub(url, name, namespace=namespace, **options).start()  # type: ignore[arg-type]
    nodes.append(node)
    return node


# node names -------------------------------------------------------------------


def test_two_live_nodes_with_one_name_is_an_error(
    redis_server: RedisServer, namespace: str, started: list[PubSub]
) -> None:
    _node(started, redis_server.url, "web-1", namespace)
    twin = RedisPubSub(redis_server.url, "web-1", namespace=namespace)
    with pytest.raises(ConfigurationError, match="Another live node is named 'web-1'"):
        twin.start()
    # another namespace is another cluster: the name is free there
    _node(started, redis_server.url, "web-1", namespace + "-other")


def test_a_stopped_node_gives_its_name_back(
    redis_server: RedisServer, namespace: str, started: list[PubSub]
) -> None:
    first = _node(started, redis_server.url, "web-1", namespace)
    first.stop()
    again = _node(started, redis_server.url, "web-1", namespace)
    assert again.node_name == "web-1"


def test_a_started_node_receives_what_is_published_right_after(
    redis_server: RedisServer, namespace: str, started: list[PubSub]
) -> None:
    client = redis.Redis.from_url(redis_server.url)
    client.ping()  # connected before the race
    try:
        for n in range(10):
            late = _node(started, redis_server.url, f"late-{n}", namespace)
            inbox = Inbox().subscribe(late)
            record = wire.encode(wire.ALL_BUT_ORIGIN, "elsewhere", "", topic=TOPIC,
                                 event=f"hello-{n}", payload=b"{}", binary=False)
            assert client.publish(f"{namespace}:broadcasts", record) >= 1
            assert inbox.next_event() == f"hello-{n}"
    finally:
        client.close()


def test_default_node_names_are_unique(
    redis_server: RedisServer, namespace: str, started: list[PubSub]
) -> None:
    a = _node(started, redis_server.url, None, namespace)  # type: ignore[arg-type]
    b = _node(started, redis_server.url, None, namespace)  # type: ignore[arg-type]
    assert a.node_name != b.node_name


# outages ----------------------------------------------------------------------


def test_redis_killed_and_restarted_every_node_recovers_and_counts_the_loss(
    redis_server: RedisServer, namespace: str, started: list[PubSub], logs: LogWaiter
) -> None:
    # renewing names rarely: only the receiver's wake-up makes the publisher check Redis
    a = _node(started, redis_server.url, "a", namespace, name_ttl=600)
    b = _node(started, redis_server.url, "b", namespace, name_ttl=600)
    on_a, on_b = Inbox().subscribe(a), Inbox().subscribe(b)
    a.broadcast(TOPIC, "before", {})
    assert (on_a.next_event(), on_b.next_event()) == ("before", "before")

    redis_server.kill()
    logs.wait_for("Lost redis 127.0.0.1", count=2)  # once per node
    refused = 0
    with pytest.raises(BroadcastError, match="is unreachable"):
        while True:  # until the publisher has seen it too (the first may be queued, then lost)
            a.broadcast(TOPIC, "during", {})
            refused += 1
            assert on_a.next_event() == "during"  # accepted: delivered locally
            assert refused < 1000
    a.local_broadcast(TOPIC, "local", {})  # this node still works alone
    assert on_a.next_event() == "local"

    redis_server.start()
    back = logs.wait_for("is back after", count=2)
    assert all("broadcasts were refused" in line for line in back)
    a.broadcast(TOPIC, "after", {})
    b.broadcast(TOPIC, "after_b", {})
    assert on_a.next_event() == "after"
    assert on_b.next_event() in {"after", "after_b"}
    stats = a.adapter_stats()
    assert stats["outages"] == 1
    assert stats["refused"] >= 1
    assert stats["refused"] + stats["lost"] >= 1
    assert b.adapter_stats()["outages"] == 1


def test_a_node_started_while_redis_is_down_joins_once_it_is_up(
    redis_server: RedisServer, namespace: str, started: list[PubSub], logs: LogWaiter
) -> None:
    a = _node(started, redis_server.url, "a", namespace)
    on_a = Inbox().subscribe(a)
    redis_server.kill()
    logs.wait_for("Lost redis")
    late = _node(started, redis_server.url, "late", namespace)  # does not raise
    with pytest.raises(BroadcastError, match="is unreachable"):
        late.broadcast(TOPIC, "during", {})
    redis_server.start()
    logs.wait_for("is back after", count=2)
    late.broadcast(TOPIC, "joined", {})
    assert on_a.next_event() == "joined"
    # and it claimed its name once Redis was back
    client = redis.Redis.from_url(redis_server.url)
    try:
        assert client.exists(f"{namespace}:node:late") == 1
    finally:
        client.close()


def test_a_frozen_redis_never_makes_a_publisher_wait(
    redis_server: RedisServer, namespace: str, started: list[PubSub], logs: LogWaiter
) -> None:
    a = _node(started, redis_server.url, "a", namespace, socket_timeout=2.0, max_pending=50)
    on_a = Inbox().subscribe(a)
    assert redis_server.process is not None
    pid = redis_server.process.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        done = threading.Event()
        outcomes: list[str] = []

        def publish() -> None:
            for n in range(60):
                try:
                    a.broadcast(TOPIC, "frozen", {"n": n})
                    outcomes.append("queued")
                except BroadcastError as exc:
                    outcomes.append(str(exc))
            done.set()

        thread = threading.Thread(target=publish, name="publisher")
        thread.start()
        # Redis answers nothing: only a queue put stands between the publisher and return
        assert done.wait(1.5), "a broadcast waited for a frozen Redis"
        thread.join(WAIT)
        assert outcomes.count("queued") >= 50
        assert any("broadcasts are already waiting" in line for line in outcomes)
        for _ in range(outcomes.count("queued")):
            assert on_a.next_event() == "frozen"  # local subscribers were not held up
    finally:
        os.kill(pid, signal.SIGCONT)
    assert a.adapter_stats()["refused"] >= 1


def test_the_password_in_the_url_never_reaches_a_log_line(
    namespace: str, logs: LogWaiter, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.cluster.redis_server import free_port

    url = f"redis://:hunter2-secret@127.0.0.1:{free_port()}/3"  # nothing listens there
    node = RedisPubSub(url, "a", namespace=namespace).start()
    try:
        logs.wait_for("Lost redis 127.0.0.1")
        with pytest.raises(BroadcastError) as raised:
            node.broadcast(TOPIC, "e", {})
    finally:
        node.stop(timeout=1.0)
    assert "hunter2" not in str(raised.value)
    assert logs.seen and not any("hunter2" in line for line in logs.seen)
    assert "hunter2" not in repr(node.adapter_stats())


# what crosses Redis ---------------------------------------------------------------


def test_a_large_payload_crosses_compressed_when_asked(
    redis_server: RedisServer, namespace: str, started: list[PubSub]
) -> None:
    spy = redis.Redis.from_url(redis_server.url).pubsub(ignore_subscribe_messages=True)
    spy.subscribe(f"{namespace}:broadcasts")
    assert spy.get_message(timeout=WAIT) is None or True  # the subscription reply
    a = _node(started, redis_server.url, "a", namespace, compress_over=1000)
    b = _node(started, redis_server.url, "b", namespace)
    on_b = Inbox().subscribe(b)
    body = "hello " * 10_000
    a.broadcast(TOPIC, "small", {"body": "hi"})
    a.broadcast(TOPIC, "big", {"body": body})
    assert on_b.next().payload == {"body": "hi"}
    big = on_b.next()
    assert big.payload == {"body": body}
    sizes = []
    while len(sizes) < 2:
        message = spy.get_message(timeout=WAIT)
        if message is not None and wire.route_of(message["data"])[1] == "a":
            record = message["data"]
            if wire.decode(record).event in {"small", "big"}:
                sizes.append(len(record))
    spy.close()
    assert sizes[1] < len(body) // 20  # compressed in Redis
    assert big.encoded_payload == b'{"body":"' + body.encode() + b'"}'  # as the publisher made it


def test_a_record_from_another_program_is_counted_and_the_node_keeps_receiving(
    redis_server: RedisServer, namespace: str, started: list[PubSub], logs: LogWaiter
) -> None:
    a = _node(started, redis_server.url, "a", namespace)
    b = _node(started, redis_server.url, "b", namespace, max_payload=1_000_000)
    on_b = Inbox().subscribe(b)
    client = redis.Redis.from_url(redis_server.url)
    try:
        channel = f"{namespace}:broadcasts"
        client.publish(channel, b"hello from a shell " + b"x" * 5000)
        bomb = wire.encode(wire.ALL_BUT_ORIGIN, "z", "", topic=TOPIC, event="e",
                           payload=b"0" * 5_000_000, binary=False, compress_over=0)
        client.publish(channel, bomb)
        not_an_object = wire.encode(wire.ALL_BUT_ORIGIN, "z", "", topic=TOPIC, event="e",
                                    payload=b"[1, 2]", binary=False)
        client.publish(channel, not_an_object)
    finally:
        client.close()
    a.broadcast(TOPIC, "after", {})
    assert on_b.next_event() == "after"
    assert b.adapter_stats()["malformed"] == 3
    warned = [line for line in logs.seen if "RedisAdapter 'b' on" in line and "dropped" in line]
    assert len(warned) == 1  # one a minute, whatever the count
    assert "xxxxxxxxxx" not in warned[0]


# endpoints --------------------------------------------------------------------------


def test_endpoint_stats_carry_the_adapters_counters(
    redis_server: RedisServer, namespace: str, logs: LogWaiter
) -> None:
    endpoint = Endpoint(pubsub=RedisPubSub(redis_server.url, namespace=namespace))
    endpoint.start_runtime()
    try:
        assert not any(name.startswith("pubsub_") for name in endpoint.stats())
        redis_server.kill()
        logs.wait_for("Lost redis")
        with pytest.raises(BroadcastError):
            for _ in range(1000):
                endpoint.broadcast(TOPIC, "e", {})
        stats = endpoint.stats()
        assert stats["pubsub_outages"] == 1
        assert stats["pubsub_refused"] >= 1
    finally:
        endpoint.stop()


def test_a_redis_pubsub_is_not_single_node() -> None:
    assert not RedisPubSub("redis://127.0.0.1:1/0").single_node
    assert PubSub().single_node
    assert isinstance(RedisPubSub("redis://127.0.0.1:1/0").adapter, RedisAdapter)


# knowing the other nodes ------------------------------------------------------------


def test_nodes_learn_of_each_other_and_of_leaving(
    redis_server: RedisServer, namespace: str, started: list[PubSub]
) -> None:
    a = _node(started, redis_server.url, "a", namespace)
    b = _node(started, redis_server.url, "b", namespace)
    adapter_a, adapter_b = a.adapter, b.adapter  # type: ignore[attr-defined]
    assert adapter_b.nodes() == ["a", "b"]  # a was in Redis when b started
    on_b = Inbox().subscribe(b)
    a.direct_broadcast("b", TOPIC, "to_b", {})  # a asks Redis if it has not heard b's hello yet
    assert on_b.next_event() == "to_b"
    assert adapter_a.nodes() == ["a", "b"]
    b.stop()
    on_a = Inbox().subscribe(a)
    _publish_probe(redis_server, namespace)  # arrives after b's goodbye
    assert on_a.next_event() == "probe"
    assert "b" not in adapter_a.nodes()


def _publish_probe(redis_server: RedisServer, namespace: str) -> None:
    client = redis.Redis.from_url(redis_server.url)
    try:
        record = wire.encode(wire.ALL_BUT_ORIGIN, "probe", "", topic=TOPIC, event="probe",
                             payload=b"{}", binary=False)
        client.publish(f"{namespace}:broadcasts", record)
    finally:
        client.close()


def test_direct_broadcast_never_waits_long_for_a_frozen_redis(
    redis_server: RedisServer, namespace: str, started: list[PubSub]
) -> None:
    a = _node(started, redis_server.url, "a", namespace, socket_timeout=30.0)
    _node(started, redis_server.url, "b", namespace)
    assert a.adapter.nodes() == ["a", "b"]  # type: ignore[attr-defined]
    assert redis_server.process is not None
    pid = redis_server.process.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        outcome: queue.SimpleQueue[str] = queue.SimpleQueue()

        def direct() -> None:
            a.direct_broadcast("b", TOPIC, "to_b", {})  # known: queued at once
            outcome.put("queued")
            try:
                a.direct_broadcast("stranger", TOPIC, "to_c", {})
            except BroadcastError as exc:
                outcome.put(str(exc))

        thread = threading.Thread(target=direct, name="director")
        thread.start()
        # the socket timeout is 30 s: only the short confirmation bound lets these return
        assert outcome.get(timeout=5) == "queued"
        refused = outcome.get(timeout=5)
        thread.join(WAIT)
        assert "did not say within 0.25s whether it is alive" in refused
    finally:
        os.kill(pid, signal.SIGCONT)


def test_what_waits_for_redis_counts_in_the_pubsubs_backlog(
    redis_server: RedisServer, namespace: str, started: list[PubSub]
) -> None:
    # flow control pauses publishing connections on PubSub.backlog(): a node whose
    # Redis cannot keep up must show it there, or a flood overruns max_pending
    a = _node(started, redis_server.url, "a", namespace)
    on_a = Inbox().subscribe(a)
    a.broadcast(TOPIC, "started", {})
    assert on_a.next_event() == "started"
    assert redis_server.process is not None
    pid = redis_server.process.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        for n in range(300):
            a.broadcast(TOPIC, "held", {"n": n})
        for _ in range(300):  # delivered here: the registry's inbox is empty again
            on_a.next()
        # queued for Redis, or taken by the publisher thread and blocked on the write
        waiting = a.adapter.backlog()  # type: ignore[attr-defined]
        assert waiting >= 300  # and "started" if it had not left yet
        assert a.backlog() == waiting
    finally:
        os.kill(pid, signal.SIGCONT)
    a.broadcast(TOPIC, "marker", {})
    assert on_a.next_event() == "marker"
