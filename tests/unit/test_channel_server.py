"""The channel host's logic, driven directly: no actor, no thread, no socket.

``ChannelServer`` is handed one message at a time, as its actor would; its
collaborators here are small recording objects standing for the host actor,
the connection, the PubSub and the supervisor.
"""

from __future__ import annotations

from typing import Any

import pytest

from channels_actor import Channel, Message, Reply, Socket, assign
from channels_actor._channel_server import ChannelServer
from channels_actor._messages import (
    ChannelExited,
    ChannelHandle,
    DispatchIn,
    DispatchOut,
    GetSocket,
    JoinChannel,
    LeaveChannel,
    NoChannel,
    ShutdownChannel,
    ShutdownSignal,
)
from channels_actor._stats import Counters
from channels_actor.message import Broadcast
from channels_actor.serializers.noop import NoopSerializer


class Ref:
    """Stands for the host's ActorRef: records what is told to it."""

    def __init__(self) -> None:
        self.told: list[Any] = []

    def tell(self, message: Any) -> None:
        self.told.append(message)


class Host:
    def __init__(self) -> None:
        self.actor_ref: Any = Ref()
        self.stopped = 0

    def stop_now(self) -> None:
        self.stopped += 1


class Wire:
    """Stands for the connection: frames written and channels that exited."""

    max_frame_size = 1 << 20
    transport = None

    def __init__(self) -> None:
        self.frames: list[Any] = []
        self.exits: list[tuple[str | None, Any]] = []

    def send(self, frame: Any) -> None:
        self.frames.append(frame)

    def channel_exited(self, topic: str | None, ref: Any) -> None:
        self.exits.append((topic, ref))


class Subscriptions:
    def __init__(self) -> None:
        self.subscribed: list[tuple[str, Any]] = []
        self.unsubscribed: list[Any] = []

    def subscribe(self, topic: str, subscriber: Any) -> None:
        self.subscribed.append((topic, subscriber))

    def unsubscribe_all(self, key: Any) -> None:
        self.unsubscribed.append(key)


class Room(Channel):
    intercept = ("shout",)

    def join(self, topic: str, payload: Any, socket: Socket) -> Any:
        if payload.get("refuse"):
            return ("error", {"reason": "no"})
        return ("ok", {"hello": 1}, assign(socket, "n", 0))

    def handle_in(self, event: str, payload: Any, socket: Socket) -> Any:
        if event == "boom":
            raise RuntimeError("boom")
        if event == "stop":
            return ("stop", "normal", socket)
        n = socket.assigns["n"] + 1
        return ("reply", ("ok", {"n": n}), assign(socket, "n", n))

    def handle_out(self, event: str, payload: Any, socket: Socket) -> Any:
        return ("noreply", assign(socket, "last_out", payload))


class Server:
    """A ChannelServer with its recorders."""

    def __init__(self) -> None:
        self.host = Host()
        self.wire = Wire()
        self.pubsub = Subscriptions()
        self.exited: list[ChannelExited] = []
        self.signal = ShutdownSignal()
        self.counters = Counters()
        socket = Socket(serializer=NoopSerializer(), pubsub=self.pubsub, connection=self.wire)
        self.server = ChannelServer(
            self.host,
            Room,
            socket,
            ("room:1", "j1"),
            signal=self.signal,
            exited=self.exited.append,
            counters=self.counters,
            mailbox_limit=10,
        )

    def join(self, **payload: Any) -> None:
        self.server.receive(JoinChannel(payload, "r1"))

    def shutdown(self, reason: Any, *, urgent: bool) -> None:
        ChannelHandle(self.host.actor_ref, self.signal).request_shutdown(reason, urgent=urgent)


@pytest.fixture
def s() -> Server:
    return Server()


def test_join_replies_subscribes_and_keeps_the_new_socket(s: Server) -> None:
    s.join()
    assert s.wire.frames == [Reply("room:1", "ok", {"hello": 1}, "r1", "j1")]
    [(topic, subscriber)] = s.pubsub.subscribed
    assert topic == "room:1" and subscriber.key is s.host.actor_ref
    assert subscriber.intercepts == frozenset({"shout"})
    socket = s.server.receive(GetSocket())
    assert socket.joined and socket.assigns == {"n": 0}
    assert socket.channel_ref is s.host.actor_ref and socket.join_ref == "j1"


def test_pushes_run_in_order_and_reply(s: Server) -> None:
    s.join()
    for ref in ("2", "3"):
        s.server.receive(DispatchIn("inc", {}, ref))
    assert s.wire.frames[1:] == [
        Reply("room:1", "ok", {"n": 1}, "2", "j1"),
        Reply("room:1", "ok", {"n": 2}, "3", "j1"),
    ]


def test_intercepted_broadcast_reaches_handle_out(s: Server) -> None:
    s.join()
    s.server.receive(DispatchOut(Broadcast("room:1", "shout", {"a": 1}, b'{"a":1}')))
    assert s.server.receive(GetSocket()).assigns["last_out"] == {"a": 1}


def test_leave_replies_closes_and_ends_exactly_once(s: Server) -> None:
    s.join()
    s.server.receive(LeaveChannel("9"))
    assert s.wire.frames[1:] == [
        Reply("room:1", "ok", {}, "9", "j1"),
        Message("room:1", "phx_close", {}, "j1", "j1"),
    ]
    [exit_] = s.exited
    assert exit_.reason == ("shutdown", "left") and isinstance(exit_.channel, Room)
    assert s.pubsub.unsubscribed == [s.host.actor_ref]
    assert s.wire.exits == [("room:1", s.host.actor_ref)]
    assert s.host.stopped == 1
    s.server.receive(DispatchIn("inc", {}, "10"))  # after the end: dropped
    assert len(s.wire.frames) == 3 and len(s.exited) == 1


def test_crash_sends_phx_error_and_reports_the_exception(s: Server) -> None:
    s.join()
    s.server.receive(DispatchIn("boom", {}, "2"))
    assert s.wire.frames[-1] == Message(
        "room:1", "phx_error", {"reason": "channel_crash"}, "j1", "j1"
    )
    [exit_] = s.exited
    assert exit_.reason[0] == "error" and isinstance(exit_.reason[1], RuntimeError)


def test_refused_join_replies_error_and_ends_without_frames(s: Server) -> None:
    s.join(refuse=True)
    assert s.wire.frames == [Reply("room:1", "error", {"reason": "no"}, "r1", "j1")]
    assert s.exited[0].reason == "shutdown" and not s.pubsub.subscribed


def test_urgent_shutdown_ends_at_the_next_message_whatever_it_is(s: Server) -> None:
    s.join()
    s.shutdown(("shutdown", "duplicate_join"), urgent=True)
    s.server.receive(DispatchIn("inc", {}, "2"))  # queued before the shutdown message
    assert [e.reason for e in s.exited] == [("shutdown", "duplicate_join")]
    assert len(s.wire.frames) == 1  # handle_in did not run, no frames were asked for


def test_closed_connection_drops_queued_pushes_but_handles_a_leave(s: Server) -> None:
    s.join()
    s.shutdown(("shutdown", "closed"), urgent=False)
    s.server.receive(DispatchIn("inc", {}, "2"))
    s.server.receive(DispatchIn("inc", {}, "3"))
    assert not s.exited and len(s.wire.frames) == 1
    s.server.receive(LeaveChannel("4"))
    assert [e.reason for e in s.exited] == [("shutdown", "left")]
    assert s.counters.get("dropped_after_close") == 2
    [told] = s.host.actor_ref.told
    assert told == ShutdownChannel(("shutdown", "closed"), False, False)
    s.server.receive(told)  # its own message arrives after the end: nothing more
    assert len(s.exited) == 1


def test_the_first_shutdown_request_wins(s: Server) -> None:
    s.join()
    s.shutdown(("shutdown", "closed"), urgent=False)
    s.shutdown(("shutdown", "duplicate_join"), urgent=True)
    assert s.signal.request == ShutdownChannel(("shutdown", "closed"), False, False)
    assert s.host.actor_ref.told == [s.signal.request, s.signal.request]


def test_shutdown_before_the_join_ran_ends_without_a_channel(s: Server) -> None:
    s.shutdown(("shutdown", "closed"), urgent=False)
    s.join()
    [exit_] = s.exited
    assert exit_.reason == ("shutdown", "closed") and isinstance(exit_.channel, NoChannel)


def test_full_mailbox_ends_the_channel_as_a_crash(s: Server) -> None:
    s.join()
    envelope = type("Envelope", (), {"reply_to": None, "message": DispatchIn("x", {}, "5")})()
    s.server.mailbox_full(envelope)  # type: ignore[arg-type]
    assert s.counters.get("mailbox_overflows") == 1
    request = s.signal.request
    assert request is not None and request.urgent and request.send_close
    assert "max_mailbox=10" in str(request.reason[1])
    s.server.receive(request)
    assert s.exited[0].reason is request.reason
    assert s.wire.frames[-1].event == "phx_error"
