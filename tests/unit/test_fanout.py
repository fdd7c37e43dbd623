"""The fan-out arithmetic without actors: ranges, exclusions, groups, encodings, growing runs.

:class:`Subscriptions` is driven directly on the test's thread. Connections are
recorders that keep every ``SharedFrames`` object they are sent (so a test can
check that a group's members share one), hand-overs go to a list, and the
serializers are the real ones, counting their encodings.
"""

from __future__ import annotations

import ast
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from channels_actor.message import Broadcast
from channels_actor.pubsub.fanout import SWEEP_CHECK, Run, Subscriptions
from channels_actor.serializers import Serializer, V1JSONSerializer, V2JSONSerializer
from channels_actor.transports.frames import SharedFrames


class Counting(V2JSONSerializer):
    """The V2 serializer, counting its fastlane encodings (and refusing event "bad")."""

    def __init__(self) -> None:
        self.encoded: list[str] = []

    def fastlane(self, broadcast: Broadcast) -> str | bytes:
        self.encoded.append(broadcast.event)
        if broadcast.event == "bad":
            raise ValueError("cannot encode this one")
        return super().fastlane(broadcast)


class CountingV1(V1JSONSerializer):
    def __init__(self) -> None:
        self.encoded: list[str] = []

    def fastlane(self, broadcast: Broadcast) -> str:
        self.encoded.append(broadcast.event)
        return super().fastlane(broadcast)


class Recorder:
    """A connection: keeps each ``SharedFrames`` it is sent."""

    def __init__(self, name: str, on_send: Callable[[], None] | None = None) -> None:
        self.name = name
        self.sent: list[SharedFrames] = []
        self.on_send = on_send

    def send_shared(self, shared: SharedFrames) -> None:
        self.sent.append(shared)
        if self.on_send is not None:
            self.on_send()

    @property
    def calls(self) -> list[list[tuple[str, Any]]]:
        """The (event, payload) of the frames of each send."""
        return [[decode(one.frame) for one in shared.frames] for shared in self.sent]

    @property
    def events(self) -> list[str]:
        return [event for call in self.calls for event, _ in call]

    def __repr__(self) -> str:
        return f"<Recorder {self.name}>"


@dataclass(eq=False)
class Member:
    """A subscription as the fan-out reads it."""

    key: Any
    connection: Recorder | None = None
    serializer: Serializer | None = None
    intercepts: frozenset[str] = frozenset()


class Pub(NamedTuple):
    broadcast: Broadcast
    from_key: Any = None


def pub(topic: str, event: str, from_key: Any = None, **payload: Any) -> Pub:
    return Pub(Broadcast(topic, event, payload), from_key)


def decode(frame: Any) -> tuple[str, Any]:
    serializer = V2JSONSerializer() if frame.startswith("[") else V1JSONSerializer()
    message = serializer.decode(frame)
    return (message.event, message.payload)


class Sink:
    """The hand-over door: records (member key, event) in order."""

    def __init__(self) -> None:
        self.handed: list[tuple[Any, str]] = []

    def __call__(self, member: Member, out: Any) -> None:
        self.handed.append((member.key, out.broadcast.event))


@pytest.fixture
def sink() -> Sink:
    return Sink()


@pytest.fixture
def subs(sink: Sink) -> Subscriptions[Member]:
    return Subscriptions(sink)


def connections(
    subs: Subscriptions[Member], topic: str, count: int, serializer: Serializer, **kw: Any
) -> list[Recorder]:
    recorders = [Recorder(f"{topic}-{n}") for n in range(count)]
    for recorder in recorders:
        subs.subscribe(topic, Member(recorder, recorder, serializer, **kw))
    return recorders


def test_a_group_shares_one_payload_encoded_once_per_serializer(
    subs: Subscriptions[Member], sink: Sink
) -> None:
    v2, v1 = Counting(), CountingV1()
    plain = connections(subs, "room", 40, v2)
    old = connections(subs, "room", 3, v1)
    icpt = connections(subs, "room", 5, v2, intercepts=frozenset({"secret"}))
    subs.dispatch([pub("room", "a", n=1), pub("room", "secret", n=2), pub("room", "b", n=3)])

    # one send each, the same object for the whole group
    for group in (plain, old, icpt):
        assert all(len(r.sent) == 1 for r in group)
        assert len({id(r.sent[0]) for r in group}) == 1
    assert plain[0].calls == [[("a", {"n": 1}), ("secret", {"n": 2}), ("b", {"n": 3})]]
    assert old[0].calls == plain[0].calls and old[0].sent[0].frames[0].frame.startswith("{")
    assert icpt[0].events == ["a", "b"]
    # the intercepting group reuses the plain group's encodings: same serializer
    assert icpt[0].sent[0].frames[0] is plain[0].sent[0].frames[0]
    assert v2.encoded == ["a", "secret", "b"]
    assert v1.encoded == ["a", "secret", "b"]
    assert sink.handed == [(r, "secret") for r in icpt]


def test_broadcast_from_excludes_only_its_sender(subs: Subscriptions[Member], sink: Sink) -> None:
    v2 = Counting()
    a, b, c = connections(subs, "room", 3, v2)
    callback = Member("callback")
    subs.subscribe("room", callback)
    subs.dispatch([pub("room", "x", n=1), pub("room", "y", a, n=2), pub("room", "z", "callback")])
    assert a.events == ["x", "z"]
    assert b.events == c.events == ["x", "y", "z"]
    assert b.sent[0] is c.sent[0] and a.sent[0] is not b.sent[0]
    assert v2.encoded == ["x", "y", "z"]  # the excluded member's own list reuses the frames
    assert sink.handed == [("callback", "x"), ("callback", "y")]


def test_members_without_a_connection_get_every_broadcast_handed_over(
    subs: Subscriptions[Member], sink: Sink
) -> None:
    subs.subscribe("room", Member("one"))
    subs.subscribe("room", Member("two"))
    subs.dispatch([pub("room", "x"), pub("room", "y")])
    assert sink.handed == [("one", "x"), ("two", "x"), ("one", "y"), ("two", "y")]


def test_a_run_grows_between_blocks_and_the_blocks_behind_catch_up(
    subs: Subscriptions[Member], sink: Sink
) -> None:
    """The first grow adds two broadcasts: the first block gets them in a second
    pass, the blocks after the first check in the same pass as the first one."""
    v2 = Counting()
    recorders = connections(subs, "room", 3 * SWEEP_CHECK + 2, v2)
    subs.subscribe("room", Member("callback"))
    grown: list[int] = []

    def grow(run: Run[Member]) -> bool:
        grown.append(len(run))
        if len(grown) == 1:
            run.extend([pub("room", "b"), pub("room", "c", "callback")])
            assert sink.handed == [("callback", "a"), ("callback", "b")]  # at once
        return len(grown) < 4

    subs.dispatch([pub("room", "a")], grow)
    # a check after each full block: three in the first pass, one more in the second
    assert grown == [1, 3, 3, 3]
    first_block, rest = recorders[:SWEEP_CHECK], recorders[SWEEP_CHECK:]
    for recorder in first_block:
        assert [len(shared.frames) for shared in recorder.sent] == [1, 2], recorder
    for recorder in rest:
        assert [len(shared.frames) for shared in recorder.sent] == [3], recorder
    for recorder in recorders:
        assert recorder.events == ["a", "b", "c"]
    assert v2.encoded == ["a", "b", "c"]
    assert len({id(r.sent[-1]) for r in rest}) == 1  # one payload per group and range


def test_a_run_stops_growing_when_grow_says_so(subs: Subscriptions[Member]) -> None:
    recorders = connections(subs, "room", 4 * SWEEP_CHECK, Counting())
    calls: list[int] = []

    def grow(run: Run[Member]) -> bool:
        calls.append(len(run))
        run.extend([pub("room", f"late{len(calls)}")])
        return False

    subs.dispatch([pub("room", "a")], grow)
    assert calls == [1]
    assert recorders[0].events == recorders[-1].events == ["a", "late1"]


def test_without_grow_a_sweep_is_one_pass(subs: Subscriptions[Member]) -> None:
    recorders = connections(subs, "room", 2 * SWEEP_CHECK, Counting())
    subs.dispatch([pub("room", "a"), pub("room", "b")])
    assert all(len(r.sent) == 1 for r in recorders)


def test_a_batch_of_several_topics_is_one_send_per_connection_in_order(
    subs: Subscriptions[Member], sink: Sink
) -> None:
    v2 = Counting()
    both = Recorder("both")
    only = Recorder("only")
    subs.subscribe("t1", Member(both, both, v2))
    subs.subscribe("t2", Member(both, both, v2))
    subs.subscribe("t1", Member(only, only, v2))
    subs.subscribe("t2", Member("callback"))
    grew: list[object] = []
    subs.dispatch(
        [pub("t1", "a"), pub("t2", "b"), pub("t1", "c", only), pub("t3", "nobody")],
        lambda run: grew.append(run) or True,
    )
    assert both.calls and len(both.sent) == 1
    assert both.events == ["a", "b", "c"]
    assert only.events == ["a"]
    assert sink.handed == [("callback", "b")]
    assert grew == []  # only a sweep grows


def test_failures_are_logged_and_the_rest_delivered(
    subs: Subscriptions[Member], caplog: pytest.LogCaptureFixture
) -> None:
    class Broken(Recorder):
        def send_shared(self, shared: SharedFrames) -> None:
            raise OSError("gone")

    picky = Counting()
    broken, fine = Broken("broken"), Recorder("fine")
    subs.subscribe("room", Member(broken, broken, picky))
    subs.subscribe("room", Member(fine, fine, picky))
    with caplog.at_level(logging.ERROR, logger="channels_actor.pubsub"):
        subs.dispatch([pub("room", "ok"), pub("room", "bad"), pub("room", "ok2")])
    assert fine.events == ["ok", "ok2"]
    assert picky.encoded == ["ok", "bad", "ok2"]
    assert "Encoding 'bad' on 'room'" in caplog.text
    assert "Writing broadcasts with" in caplog.text


def test_membership_changes_apply_to_the_next_dispatch(subs: Subscriptions[Member]) -> None:
    v2 = Counting()
    a, b = Recorder("a"), Recorder("b")
    subs.subscribe("room", Member(a, a, v2))
    subs.subscribe("other", Member(a, a, v2))
    subs.dispatch([pub("room", "1")])
    subs.subscribe("room", Member(b, b, v2))  # new
    subs.dispatch([pub("room", "2")])
    subs.subscribe("room", Member(a, a, v2, frozenset({"3"})))  # replaced, in another group
    subs.dispatch([pub("room", "3")])
    assert a.events == ["1", "2"] and b.events == ["2", "3"]
    assert subs.counts() == (2, 3)
    subs.unsubscribe("room", b)
    subs.dispatch([pub("room", "4")])
    subs.unsubscribe_all(a)
    subs.dispatch([pub("room", "5")])
    assert a.events == ["1", "2", "4"] and b.events == ["2", "3"]
    assert subs.counts() == (0, 0)


def test_the_fanout_module_imports_no_threads_or_actors() -> None:
    source = (Path(__file__).parents[2] / "channels_actor" / "pubsub" / "fanout.py").read_text()
    imported: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add(("." * node.level) + (node.module or ""))
    assert not imported & {"threading", "queue", "pykka", "socket", "select", "asyncio"}
    assert not {name for name in imported if "registry" in name or "_pool" in name}
