"""The protocol core against random message sequences, checked against a model of its rules.

``ConnectionProtocol`` is driven by a hypothesis state machine: joins (routed,
unrouted, explicit channel, duplicate), leaves, pushes and heartbeats on a few
topics with current, stale and null join_refs, and ``channel_exited`` for the
current channel of a topic. After every step the actions returned must be
exactly what a model written from the rules in protocol.py's "Theory of
operation" predicts, and the invariants hold: a heartbeat is always answered
ok with its ref, no more than ``max_channels`` topics are ever joined, a stale
join_ref gets no action at all, a leave of an unknown topic is answered ok.
"""

from __future__ import annotations

from typing import Any, ClassVar

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from channels_actor import Channel, Message, Reply, SocketHandler
from channels_actor.protocol import (
    Action,
    ConnectionProtocol,
    DeliverLeave,
    DeliverToChannel,
    SendReply,
    ShutdownDuplicate,
    StartChannel,
)
from tests.fuzz import FED, fuzz_settings


class Room(Channel):
    def join(self, topic: str, payload: Any, socket: Any) -> Any:
        return ("ok", socket)


class Vip(Room):
    pass


class Handler(SocketHandler):
    channels: ClassVar[dict[str, type[Channel]]] = {"room:*": Room, "room:vip": Vip}


def route(topic: str) -> type[Channel] | None:
    """The model's router: ``room:vip`` exactly, then the ``room:`` prefix."""
    if topic == "room:vip":
        return Vip
    return Room if topic.startswith("room:") else None


# "phoenix" is the heartbeat topic (no route); "lobby" has none either.
_topics = st.sampled_from(["room:1", "room:2", "room:3", "room:vip", "lobby", "phoenix", ""])
_events = st.sampled_from(["new_msg", "heartbeat", "phx_reply", "phx_close", "", "PHX_JOIN"])
_refs = st.none() | st.sampled_from(["1", "2", "3", "4", ""])
_payloads = st.sampled_from([{}, {"a": 1}, None, [], "x", b"\x00bin"])


def unmatched(message: Message, join_ref: str | None) -> Reply:
    return Reply(message.topic, "error", {"reason": "unmatched topic"}, message.ref, join_ref)


class ProtocolMachine(RuleBasedStateMachine):
    """Random client traffic on one connection, against a dict model of the joined topics."""

    def __init__(self) -> None:
        super().__init__()
        self.max_channels = 1
        self.proto = ConnectionProtocol(Handler(), max_channels=1)
        self.model: dict[str, str | None] = {}

    @initialize(max_channels=st.integers(0, 4))
    def start(self, max_channels: int) -> None:
        self.max_channels = max_channels
        self.proto = ConnectionProtocol(Handler(), max_channels=max_channels)

    # the model --------------------------------------------------------------------------

    def expect_join(self, message: Message, channel: type[Channel] | None) -> list[Action]:
        actions: list[Action] = []
        topic = message.topic
        if topic in self.model:
            actions.append(ShutdownDuplicate(topic, self.model.pop(topic)))
        target = channel or route(topic)
        if target is None:
            return [*actions, SendReply(unmatched(message, None))]
        if len(self.model) >= self.max_channels:
            reply = Reply(
                topic,
                "error",
                {"reason": "too many channels joined"},
                message.ref,
                message.join_ref,
            )
            return [*actions, SendReply(reply)]
        self.model[topic] = message.join_ref
        return [*actions, StartChannel(target, message)]

    def expect(self, message: Message) -> list[Action]:
        topic, event = message.topic, message.event
        if topic == "phoenix" and event == "heartbeat":
            return [SendReply(Reply("phoenix", "ok", {}, message.ref, None))]
        if event == "phx_join":
            return self.expect_join(message, None)
        if topic in self.model:
            if message.join_ref is not None and message.join_ref != self.model[topic]:
                return []  # stale: ignored silently
            if event == "phx_leave":
                return [DeliverLeave(message)]
            return [DeliverToChannel(message)]
        if event == "phx_leave":
            return [SendReply(Reply(topic, "ok", {}, message.ref, message.join_ref))]
        return [SendReply(unmatched(message, None))]

    def feed(self, message: Message, channel: type[Channel] | None = None) -> list[Action]:
        FED["ConnectionProtocol.receive"] += 1
        expected = self.expect_join(message, channel) if channel else self.expect(message)
        got = self.proto.receive(message, channel)
        assert got == expected, f"{message} with {self.model}"
        return got

    # rules ------------------------------------------------------------------------------

    @rule(topic=_topics, ref=_refs, join_ref=_refs, payload=_payloads)
    def join(self, topic: str, ref: str | None, join_ref: str | None, payload: Any) -> None:
        self.feed(Message(topic, "phx_join", payload, ref, join_ref))

    @rule(topic=_topics, ref=_refs, join_ref=_refs)
    def join_explicit_channel(self, topic: str, ref: str | None, join_ref: str | None) -> None:
        self.feed(Message(topic, "phx_join", {}, ref, join_ref), Vip)

    @rule(topic=_topics, ref=_refs, join_ref=_refs)
    def leave(self, topic: str, ref: str | None, join_ref: str | None) -> None:
        actions = self.feed(Message(topic, "phx_leave", {}, ref, join_ref))
        assert len(actions) <= 1

    @rule(topic=_topics, event=_events, ref=_refs, join_ref=_refs, payload=_payloads)
    def push(
        self, topic: str, event: str, ref: str | None, join_ref: str | None, payload: Any
    ) -> None:
        self.feed(Message(topic, event, payload, ref, join_ref))

    @rule(topic=_topics, event=_events, ref=_refs)
    def push_with_current_join_ref(self, topic: str, event: str, ref: str | None) -> None:
        # The one join_ref a random draw rarely hits: the current one.
        message = Message(topic, event, {}, ref, self.model.get(topic))
        actions = self.feed(message)
        if topic in self.model and not (topic == "phoenix" and event == "heartbeat"):
            assert actions == [DeliverToChannel(message)]

    @rule(ref=_refs, join_ref=_refs, payload=_payloads)
    def heartbeat(self, ref: str | None, join_ref: str | None, payload: Any) -> None:
        actions = self.feed(Message("phoenix", "heartbeat", payload, ref, join_ref))
        assert actions == [SendReply(Reply("phoenix", "ok", {}, ref, None))]

    @rule(topic=_topics, ref=_refs)
    def stale(self, topic: str, ref: str | None) -> None:
        current = self.model.get(topic)
        if topic not in self.model or topic == "phoenix":
            return
        stale = (current or "") + "-old"
        assert self.feed(Message(topic, "new_msg", {}, ref, stale)) == []
        assert self.feed(Message(topic, "phx_leave", {}, ref, stale)) == []

    @rule(topic=_topics)
    def channel_exited(self, topic: str) -> None:
        FED["ConnectionProtocol.channel_exited"] += 1
        self.proto.channel_exited(topic)
        self.model.pop(topic, None)

    # invariants ---------------------------------------------------------------------------

    @invariant()
    def state_matches_the_model(self) -> None:
        assert self.proto.topics == self.model
        for topic, join_ref in self.model.items():
            assert self.proto.join_ref(topic) == join_ref

    @invariant()
    def never_more_than_max_channels(self) -> None:
        assert len(self.proto.topics) <= self.max_channels


ProtocolMachine.TestCase.settings = fuzz_settings(200, weight=0.05, stateful_step_count=50)
test_protocol_against_its_model = ProtocolMachine.TestCase
