"""The registry actor's dispatch: groups, batches, sweeps, exclusions, bad encodings.

Each test drives a real :class:`PubSub` registry. Connection subscribers are
recorders with the transports' ``send_shared`` (they keep the frames of each
call), and batches are made deterministic by holding the registry in a
callback until the broadcasts under test are queued behind it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from channels_actor.message import Broadcast
from channels_actor.pubsub import PubSub, Subscriber
from channels_actor.pubsub import registry as registry_module
from channels_actor.serializers import V1JSONSerializer, V2JSONSerializer
from channels_actor.transports.frames import SharedFrames

WAIT = 10.0


class Recorder:
    """A connection subscriber: keeps the frames of every ``send_shared`` call."""

    def __init__(self, name: str, on_send: Callable[[Recorder], None] | None = None) -> None:
        self.name = name
        self.calls: list[list[Any]] = []
        self.on_send = on_send

    def send_shared(self, shared: SharedFrames) -> None:
        self.calls.append([one.frame for one in shared.frames])
        if self.on_send is not None:
            self.on_send(self)

    @property
    def frames(self) -> list[Any]:
        return [frame for call in self.calls for frame in call]

    def __repr__(self) -> str:
        return f"<Recorder {self.name}>"


class Mailbox:
    """A channel stand-in for intercepted events: ``tell`` puts them on a list."""

    def __init__(self) -> None:
        self.told: list[Any] = []

    def tell(self, message: Any) -> None:
        self.told.append(message)


@pytest.fixture
def pubsub() -> Iterator[PubSub]:
    pubsub = PubSub().start()
    yield pubsub
    pubsub.stop()


def connection_sub(
    connection: Recorder,
    serializer: Any = None,
    intercepts: frozenset[str] = frozenset(),
    channel: Mailbox | None = None,
) -> Subscriber:
    return Subscriber(
        key=connection,
        channel_ref=channel,  # type: ignore[arg-type]
        connection=connection,
        serializer=serializer or V2JSONSerializer(),
        intercepts=intercepts,
    )


class Gate:
    """Holds the registry in a callback so that what is told meanwhile queues up."""

    def __init__(self, pubsub: PubSub) -> None:
        self.pubsub = pubsub
        self.entered = threading.Event()
        self.release = threading.Event()
        pubsub.subscribe_callback("gate", self._hold)

    def _hold(self, broadcast: Broadcast) -> None:
        self.entered.set()
        assert self.release.wait(WAIT)

    def __enter__(self) -> Gate:
        self.pubsub.broadcast("gate", "hold", {})
        assert self.entered.wait(WAIT)
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.pubsub.stats()  # a barrier: everything queued behind the gate is handled


def decoded(frames: list[Any]) -> list[tuple[str, Any]]:
    out = []
    for frame in frames:
        if isinstance(frame, str) and frame.startswith("["):
            message = V2JSONSerializer().decode(frame)
        else:
            message = V1JSONSerializer().decode(frame)
        out.append((message.event, message.payload))
    return out


def test_one_send_per_connection_per_batch_and_frames_in_order(pubsub: PubSub) -> None:
    connections = [Recorder(f"c{i}") for i in range(5)]
    for connection in connections:
        pubsub.subscribe("room", connection_sub(connection))
    with Gate(pubsub):
        for n in range(10):
            pubsub.broadcast("room", "msg", {"n": n})
    for connection in connections:
        assert len(connection.calls) == 1, connection.calls
        assert decoded(connection.frames) == [("msg", {"n": n}) for n in range(10)]


def test_serializers_and_intercepts_each_get_their_own_frames(pubsub: PubSub) -> None:
    v1, v2, icpt = Recorder("v1"), Recorder("v2"), Recorder("intercepting")
    mailbox = Mailbox()
    pubsub.subscribe("room", connection_sub(v1, V1JSONSerializer()))
    pubsub.subscribe("room", connection_sub(v2, V2JSONSerializer()))
    pubsub.subscribe(
        "room", connection_sub(icpt, intercepts=frozenset({"secret"}), channel=mailbox)
    )
    with Gate(pubsub):
        pubsub.broadcast("room", "msg", {"n": 1})
        pubsub.broadcast("room", "secret", {"n": 2})
        pubsub.broadcast("room", "msg", {"n": 3})
    assert v1.frames[0].startswith("{")  # V1 objects
    assert v2.frames[0].startswith("[")  # V2 arrays
    for connection in (v1, v2):
        assert decoded(connection.frames) == [
            ("msg", {"n": 1}),
            ("secret", {"n": 2}),
            ("msg", {"n": 3}),
        ]
    assert decoded(icpt.frames) == [("msg", {"n": 1}), ("msg", {"n": 3})]
    assert [(m.broadcast.event, m.broadcast.payload) for m in mailbox.told] == [
        ("secret", {"n": 2})
    ]


def test_broadcast_from_skips_only_the_sender_within_a_batch(pubsub: PubSub) -> None:
    a, b = Recorder("a"), Recorder("b")
    pubsub.subscribe("room", connection_sub(a))
    pubsub.subscribe("room", connection_sub(b))
    with Gate(pubsub):
        pubsub.broadcast("room", "msg", {"n": 1})
        pubsub.broadcast_from(a, "room", "msg", {"n": 2})
        pubsub.broadcast_from(b, "room", "msg", {"n": 3})
    assert decoded(a.frames) == [("msg", {"n": 1}), ("msg", {"n": 3})]
    assert decoded(b.frames) == [("msg", {"n": 1}), ("msg", {"n": 2})]


def test_a_batch_of_several_topics_keeps_publish_order_per_connection(pubsub: PubSub) -> None:
    both, only_one = Recorder("both"), Recorder("one")
    pubsub.subscribe("t1", connection_sub(both))
    pubsub.subscribe("t2", connection_sub(both, channel=None))
    pubsub.subscribe("t1", connection_sub(only_one))
    calls: list[str] = []
    pubsub.subscribe_callback("t2", lambda broadcast: calls.append(broadcast.event))
    with Gate(pubsub):
        pubsub.broadcast("t1", "a", {})
        pubsub.broadcast("t2", "b", {})
        pubsub.broadcast("t1", "c", {})
    assert [event for event, _ in decoded(both.frames)] == ["a", "b", "c"]
    assert len(both.calls) == 1
    assert [event for event, _ in decoded(only_one.frames)] == ["a", "c"]
    assert calls == ["b"]


def test_broadcasts_arriving_during_a_sweep_join_it(pubsub: PubSub) -> None:
    """The first write publishes two more broadcasts: the subscribers the sweep has
    not reached yet get all three in one write, the ones before get the two late."""
    count = 3 * registry_module.SWEEP_CHECK
    published = threading.Event()

    def publish_more(connection: Recorder) -> None:
        if not published.is_set():
            pubsub.broadcast("room", "msg", {"n": 2})
            pubsub.broadcast("room", "msg", {"n": 3})
            published.set()

    connections = [Recorder("first", publish_more)]
    connections += [Recorder(f"c{i}") for i in range(1, count)]
    for connection in connections:
        pubsub.subscribe("room", connection_sub(connection))
    pubsub.broadcast("room", "msg", {"n": 1})
    # asked only now, so that the barrier queues behind the late broadcasts
    assert published.wait(WAIT)
    pubsub.stats()
    expected = [("msg", {"n": n}) for n in (1, 2, 3)]
    for connection in connections:
        assert decoded(connection.frames) == expected, connection
    check = registry_module.SWEEP_CHECK
    assert [len(call) for call in connections[0].calls] == [1, 2]
    assert [len(call) for call in connections[check - 1].calls] == [1, 2]
    assert [len(call) for call in connections[check].calls] == [3]
    assert [len(call) for call in connections[-1].calls] == [3]


def test_a_subscribe_during_a_sweep_applies_in_order(pubsub: PubSub) -> None:
    """Told after the first broadcast and before the second: gets only the second."""
    late = Recorder("late")
    done = threading.Event()

    def subscribe_then_publish(connection: Recorder) -> None:
        if not done.is_set():
            pubsub.subscribe("room", connection_sub(late))
            pubsub.broadcast("room", "msg", {"n": 2})
            done.set()

    connections = [Recorder("first", subscribe_then_publish)]
    connections += [Recorder(f"c{i}") for i in range(1, 2 * registry_module.SWEEP_CHECK)]
    for connection in connections:
        pubsub.subscribe("room", connection_sub(connection))
    pubsub.broadcast("room", "msg", {"n": 1})
    assert done.wait(WAIT)
    pubsub.stats()
    for connection in connections:
        assert decoded(connection.frames) == [("msg", {"n": 1}), ("msg", {"n": 2})]
        assert len(connection.calls) == 2  # the subscribe ended the run: no sweep took n=2
    assert decoded(late.frames) == [("msg", {"n": 2})]


def test_a_broadcast_that_cannot_be_encoded_is_logged_and_the_rest_delivered(
    pubsub: PubSub, caplog: pytest.LogCaptureFixture
) -> None:
    class Picky(V2JSONSerializer):
        def fastlane(self, broadcast: Broadcast) -> str | bytes:
            if broadcast.event == "bad":
                raise ValueError("cannot encode this one")
            return super().fastlane(broadcast)

    picky, plain = Recorder("picky"), Recorder("plain")
    pubsub.subscribe("room", connection_sub(picky, Picky()))
    pubsub.subscribe("room", connection_sub(plain))
    with caplog.at_level(logging.ERROR, logger="channels_actor.pubsub"), Gate(pubsub):
        pubsub.broadcast("room", "ok", {"n": 1})
        pubsub.broadcast("room", "bad", {"n": 2})
        pubsub.broadcast("room", "ok", {"n": 3})
    assert decoded(picky.frames) == [("ok", {"n": 1}), ("ok", {"n": 3})]
    assert [event for event, _ in decoded(plain.frames)] == ["ok", "bad", "ok"]
    assert "Encoding 'bad' on 'room'" in caplog.text


def test_a_failing_connection_does_not_stop_the_others(
    pubsub: PubSub, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken(Recorder):
        def send_shared(self, shared: SharedFrames) -> None:
            raise OSError("gone")

    broken, fine = Broken("broken"), Recorder("fine")
    pubsub.subscribe("room", connection_sub(broken))
    pubsub.subscribe("room", connection_sub(fine))
    with caplog.at_level(logging.ERROR, logger="channels_actor.pubsub"):
        pubsub.broadcast("room", "msg", {"n": 1})
        pubsub.stats()
    assert decoded(fine.frames) == [("msg", {"n": 1})]
    assert "Writing broadcasts" in caplog.text


def test_unsubscribed_and_resubscribed_members_leave_no_trace(pubsub: PubSub) -> None:
    a, b = Recorder("a"), Recorder("b")
    pubsub.subscribe("room", connection_sub(a))
    pubsub.subscribe("room", connection_sub(b, intercepts=frozenset({"x"}), channel=Mailbox()))
    pubsub.unsubscribe("room", b)
    assert pubsub.stats() == (1, 1)
    pubsub.subscribe("room", connection_sub(b))  # back, in another group
    pubsub.unsubscribe("room", a)
    pubsub.broadcast("room", "msg", {})
    assert pubsub.stats() == (1, 1)
    assert a.frames == [] and len(b.frames) == 1
    pubsub.unsubscribe("room", b)
    assert pubsub.stats() == (0, 0)


def test_sweeps_ended_by_another_topic_over_and_over_keep_the_registry_alive(
    pubsub: PubSub,
) -> None:
    """Each sweep's first write publishes on the other topic, which ends the sweep
    and starts the next batch: a long chain of them is handled in a loop, in order
    (handled by nesting, a chain of a few hundred exhausted the stack)."""
    rounds = 1000
    done = threading.Event()
    sent = [0]

    def publish_on_the_other(connection: Recorder) -> None:
        sent[0] += 1
        if sent[0] < rounds:
            other = "t2" if connection.name.startswith("t1") else "t1"
            pubsub.broadcast(other, "msg", {"n": sent[0]})
        else:
            done.set()

    groups = {}
    for topic in ("t1", "t2"):
        groups[topic] = [Recorder(f"{topic}-first", publish_on_the_other)]
        groups[topic] += [Recorder(f"{topic}-{i}") for i in range(1, registry_module.SWEEP_CHECK)]
        for connection in groups[topic]:
            pubsub.subscribe(topic, connection_sub(connection))
    pubsub.broadcast("t1", "msg", {"n": 0})
    assert done.wait(WAIT)
    assert pubsub.stats() == (2, 2 * registry_module.SWEEP_CHECK)
    for topic, parity in (("t1", 0), ("t2", 1)):
        expected = [("msg", {"n": n}) for n in range(parity, rounds, 2)]
        for connection in groups[topic]:
            assert decoded(connection.frames) == expected, connection
