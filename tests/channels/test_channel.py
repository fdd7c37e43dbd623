"""Every API.md behaviour that needs no network, through the testing kit, in both actor modes."""

from __future__ import annotations

import copy
import threading
from typing import Any, ClassVar

import pytest

from channels_actor import (
    Broadcast,
    BroadcastError,
    Channel,
    Endpoint,
    Message,
    Reply,
    Socket,
    push,
)
from channels_actor import testing as ct
from tests.channels.app import RoomChannel, UserSocket
from tests.helpers import Events, Recorder, open_memory_connection


def _sock(endpoint: Endpoint, events: Events | None = None, **assigns: Any):  # type: ignore[no-untyped-def]
    return ct.socket(UserSocket, None, {"events": events, **assigns}, endpoint=endpoint)


def _join(endpoint: Endpoint, topic: str, events: Events | None = None, payload: Any = None, **assigns: Any):  # type: ignore[no-untyped-def]
    result = ct.join(_sock(endpoint, events, **assigns), topic, payload or {})
    assert result[0] == "ok", result
    return result[2]


# join ------------------------------------------------------------------------------


def test_join_ok_returns_reply_and_socket_with_assigns(endpoint: Endpoint) -> None:
    status, reply, sock = ct.join(_sock(endpoint), "rooms:a1", {"mode": "reply"})
    assert (status, reply) == ("ok", {"room": "a1"})
    assert sock.joined and sock.topic == "rooms:a1"
    assert sock.assigns["room"] == "rooms:a1"
    assert sock.channel_ref is not None and sock.join_ref is not None
    assert sock.endpoint is endpoint and sock.pubsub is endpoint.pubsub
    assert sock.transport == "memory"


def test_join_ok_without_reply_map_replies_empty(endpoint: Endpoint) -> None:
    assert ct.join(_sock(endpoint), "rooms:a2")[:2] == ("ok", {})


def test_join_refused_and_terminate_gets_shutdown(endpoint: Endpoint, events: Events) -> None:
    sock = _sock(endpoint, events)
    assert ct.join(sock, "rooms:a3", {"mode": "refuse"}) == ("error", {"reason": "unauthorized"})
    events.wait_for(lambda items: any(i[0] == "terminate" for i in items))
    assert [i[2] for i in events.of("terminate")] == ["shutdown"]
    assert sock.connection.topics() == {}


@pytest.mark.parametrize("mode", ["raise", "garbage", "push_in_join", "refuse_badly"])
def test_join_crash_becomes_join_crashed(endpoint: Endpoint, events: Events, mode: str, caplog: pytest.LogCaptureFixture) -> None:
    sock = _sock(endpoint, events)
    assert ct.join(sock, "rooms:a4", {"mode": mode}) == ("error", {"reason": "join crashed"})
    events.wait_for(lambda items: any(i[0] == "terminate" for i in items))
    (term,) = events.of("terminate")
    assert term[2][0] == "error"
    assert "RoomChannel.join" in caplog.text
    if mode == "garbage":
        assert "Expected RoomChannel.join() to return one of" in caplog.text
        assert "got: ('okay'" in caplog.text
    # the socket keeps working
    assert ct.join(sock, "rooms:a4")[0] == "ok"


def test_channel_without_join_fails_clearly(endpoint: Endpoint, caplog: pytest.LogCaptureFixture) -> None:
    assert ct.join(_sock(endpoint), "nojoin") == ("error", {"reason": "join crashed"})
    assert "NoJoinChannel does not define join" in caplog.text


def test_routing_exact_beats_prefix_and_longest_prefix_wins(endpoint: Endpoint) -> None:
    sock = _sock(endpoint)
    assert ct.join(sock, "rooms:lobby")[1] == {"lobby": True}
    assert ct.join(sock, "rooms:special:1")[1] == {"lobby": True}
    assert ct.join(sock, "rooms:other", {"mode": "reply"})[1] == {"room": "other"}


def test_unmatched_topic(endpoint: Endpoint) -> None:
    assert ct.join(_sock(endpoint), "nowhere:1") == ("error", {"reason": "unmatched topic"})


def test_join_with_explicit_channel_class(endpoint: Endpoint) -> None:
    status, reply, sock = ct.join(_sock(endpoint), RoomChannel, "elsewhere:1", {"mode": "reply"})
    assert (status, reply) == ("ok", {"room": "1"})


def test_max_channels_per_socket() -> None:
    ep = Endpoint(max_channels_per_socket=2)
    try:
        sock = _sock(ep)
        assert ct.join(sock, "rooms:m1")[0] == "ok"
        assert ct.join(sock, "rooms:m2")[0] == "ok"
        assert ct.join(sock, "rooms:m3") == ("error", {"reason": "too many channels joined"})
    finally:
        ep.stop()


# handle_in replies --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "status", "payload"),
    [
        ("reply_ok", "ok", {}),
        ("reply_map", "ok", {"echo": {"x": 1}}),
        ("reply_custom", "teapot", {"short": True}),
        ("reply_error", "error", {}),
        ("reply_binary", "ok", b"\x00\x01"),
    ],
)
def test_reply_forms(endpoint: Endpoint, event: str, status: str, payload: Any) -> None:
    sock = _join(endpoint, "rooms:r1")
    ref = ct.push(sock, event, {"x": 1})
    assert ct.assert_reply(ref, status, payload) == payload


def test_noreply_sends_nothing(endpoint: Endpoint) -> None:
    sock = _join(endpoint, "rooms:r2")
    ref = ct.push(sock, "noreply")
    ct.refute_reply(ref)
    # the channel is alive: a later message is answered
    ct.assert_reply(ct.push(sock, "reply_ok"), "ok")


def test_assigns_persist_between_callbacks(endpoint: Endpoint) -> None:
    sock = _join(endpoint, "rooms:r3")
    ct.assert_reply(ct.push(sock, "assign", {"color": "blue"}), "ok")
    ct.assert_reply(ct.push(sock, "get_assign", {"key": "color"}), "ok", {"value": "blue"})


def test_connect_assigns_are_copied_into_every_channel(endpoint: Endpoint) -> None:
    sock = ct.connect(UserSocket, {"user_id": 7}, endpoint=endpoint)
    assert not isinstance(sock, ct.Refused) if hasattr(ct, "Refused") else True
    _, _, room = ct.join(sock, "rooms:r4")
    ct.assert_reply(ct.push(room, "get_assign", {"key": "user_id"}), "ok", {"value": 7})
    assert room.id == "users_socket:7"


def test_delayed_reply_with_socket_ref(endpoint: Endpoint) -> None:
    sock = _join(endpoint, "rooms:r5")
    ct.assert_reply(ct.push(sock, "later"), "ok", {"later": True})


def test_messages_are_handled_one_at_a_time_in_order(endpoint: Endpoint, events: Events) -> None:
    sock = _join(endpoint, "rooms:r6", events)
    refs = [ct.push(sock, "reply_map", {"n": n}) for n in range(50)]
    for n, ref in enumerate(refs):
        ct.assert_reply(ref, "ok", {"echo": {"n": n}})
    assert [i[2]["n"] for i in events.of("in")] == list(range(50))


# push, broadcast ----------------------------------------------------------------------


def _has_reply(frames: list[Any], ref: str) -> bool:
    return any(isinstance(f, Reply) and f.ref == ref for f in frames)


def test_push_goes_to_this_socket_only(endpoint: Endpoint) -> None:
    # Two connections, each with its own recorder, join the same topic.
    recorder = Recorder()
    conns = [open_memory_connection(endpoint, UserSocket(), recorder, n) for n in range(2)]
    for n, conn in enumerate(conns):
        conn.receive(Message("rooms:p1", "phx_join", {}, f"j{n}", f"j{n}"))
        recorder.wait_for(lambda frames, n=n: _has_reply(frames[n], f"j{n}"))
    conns[0].receive(Message("rooms:p1", "push", {"event": "hello", "body": {"n": 1}}, "p", "j0"))
    # Barriers: channel 0 has run the push; the registry has dispatched anything
    # it was given; channel 1 has handled anything the registry told it.
    for n, conn in enumerate(conns):
        conn.receive(Message("rooms:p1", "reply_ok", {}, "sync", f"j{n}"))
        recorder.wait_for(lambda frames, n=n: _has_reply(frames[n], "sync"))
        endpoint.pubsub.stats()
    assert recorder.messages(0, "hello") == [Message("rooms:p1", "hello", {"n": 1}, None, "j0")]
    assert recorder.messages(1, "hello") == []
    for conn in conns:
        conn.close()


def test_binary_push(endpoint: Endpoint) -> None:
    sock = _join(endpoint, "rooms:p2")
    ct.push(sock, "push_binary")
    assert ct.assert_push("bin") == b"\xff\x00"


def test_push_and_broadcast_reject_bad_messages(endpoint: Endpoint) -> None:
    sock = _join(endpoint, "rooms:p3")
    msg = ct.assert_reply(ct.push(sock, "push_bad"), "error")
    assert msg["error"] == "ChannelError" and "mapping" in msg["msg"] and "list" in msg["msg"]
    msg = ct.assert_reply(ct.push(sock, "broadcast_bad"), "error")
    assert msg["error"] == "BroadcastError" and "serialize" in msg["msg"]
    # nothing was lost: the channel still answers
    ct.assert_reply(ct.push(sock, "reply_ok"), "ok")


def test_push_before_join_raises_with_hint(endpoint: Endpoint, caplog: pytest.LogCaptureFixture) -> None:
    assert ct.join(_sock(endpoint), "rooms:p4", {"mode": "push_in_join"}) == ("error", {"reason": "join crashed"})
    assert "has not joined yet" in caplog.text and "after_join" in caplog.text


def test_after_join_push(endpoint: Endpoint) -> None:
    _join(endpoint, "rooms:p5", payload={"mode": "after_join"})
    ct.assert_push("welcome", {"room": "rooms:p5"})


def test_broadcast_reaches_every_subscriber_including_sender(endpoint: Endpoint) -> None:
    a = _join(endpoint, "rooms:b1")
    _join(endpoint, "rooms:b1")
    ct.push(a, "broadcast", {"event": "news", "body": {"n": 1}})
    ct.assert_push("news", {"n": 1})
    ct.assert_push("news", {"n": 1})
    ct.refute_push("news")


def test_broadcast_from_skips_the_sender(endpoint: Endpoint, events: Events) -> None:
    a = _join(endpoint, "rooms:b2", name="a")
    _join(endpoint, "rooms:b2", name="b")
    ct.push(a, "broadcast_from", {"event": "news", "body": {"n": 2}})
    ct.assert_push("news", {"n": 2})
    ct.refute_push("news")
    # intercepted broadcast_from skips the sender's handle_out too
    ct.push(a, "broadcast_from", {"event": "filtered", "body": {"n": 3}})
    assert ct.assert_push("filtered")["seen_by"] == "b"
    ct.refute_push("filtered")


def test_fastlane_frames_are_encoded_once_and_skip_the_channel(endpoint: Endpoint, events: Events) -> None:
    _join(endpoint, "rooms:f1", events)
    _join(endpoint, "rooms:f1", events)
    endpoint.broadcast("rooms:f1", "plain", {"n": 1})
    first = ct.mailbox().take(lambda m: isinstance(m, Message) and m.event == "plain", 1.0)
    second = ct.mailbox().take(lambda m: isinstance(m, Message) and m.event == "plain", 1.0)
    assert first is second  # one frame object for both subscribers
    assert first.ref is None and first.join_ref is None
    assert events.of("out") == []  # no handle_out for a non-intercepted event


def test_intercepted_events_go_through_handle_out(endpoint: Endpoint, events: Events) -> None:
    _join(endpoint, "rooms:f2", events, name="a")
    _join(endpoint, "rooms:f2", events, name="b")
    endpoint.broadcast("rooms:f2", "filtered", {"skip": "a"})
    assert ct.assert_push("filtered")["seen_by"] == "b"
    ct.refute_push("filtered")
    events.wait_for(lambda items: len([i for i in items if i[0] == "out"]) == 2)


class CopyChannel(Channel):
    """The subscriber named "first" changes its payload; "second" reads its own only after."""

    intercept: ClassVar[list[str]] = ["copy"]

    def join(self, topic: str, payload: Any, socket: Socket) -> Any:
        return ("ok", socket)

    def handle_out(self, event: str, payload: Any, socket: Socket) -> Any:
        order = socket.assigns["order"]
        if socket.assigns["name"] == "first":
            payload["changed_by"] = "first"
            payload["nested"]["x"] = "first"
            order["first_done"].set()
        elif order["first_done"].wait(2):
            order["second_saw"].append(copy.deepcopy(payload))
        push(socket, event, payload)
        return ("noreply", socket)


def test_each_subscriber_gets_its_own_copy_in_handle_out(endpoint: Endpoint) -> None:
    order: dict[str, Any] = {"first_done": threading.Event(), "second_saw": []}
    for name in ("second", "first"):
        sock = ct.socket(UserSocket, None, {"name": name, "order": order}, endpoint=endpoint)
        assert ct.join(sock, CopyChannel, "copies:1", {})[0] == "ok"
    original = {"n": 1, "nested": {"x": 0}}
    endpoint.broadcast("copies:1", "copy", original)
    pushed = [ct.assert_push("copy"), ct.assert_push("copy")]
    # The first subscriber changed its copy before the second read its own.
    assert order["second_saw"] == [{"n": 1, "nested": {"x": 0}}]
    assert {"n": 1, "nested": {"x": "first"}, "changed_by": "first"} in pushed
    assert original == {"n": 1, "nested": {"x": 0}}  # nor did the publisher's dict change


def test_default_handle_out_pushes_unchanged(endpoint: Endpoint) -> None:
    _join(endpoint, "rooms:f3")
    endpoint.broadcast("rooms:f3", "user:joined", {"user_id": 1})
    pushed = ct.mailbox().take(lambda m: isinstance(m, Message) and m.event == "user:joined", 1.0)
    assert pushed is not None and pushed.payload == {"user_id": 1}
    assert pushed.join_ref is not None  # a push from the channel, not a fastlane frame


def test_endpoint_broadcast_errors(endpoint: Endpoint) -> None:
    with pytest.raises(BroadcastError, match="mapping"):
        endpoint.broadcast("rooms:x", "ev", "not a map")  # type: ignore[arg-type]
    with pytest.raises(BroadcastError, match="serialize"):
        endpoint.broadcast("rooms:x", "ev", {"set": {1, 2}})


def test_subscribe_and_unsubscribe_callbacks(endpoint: Endpoint) -> None:
    got: list[Broadcast] = []
    arrived = threading.Event()

    def callback(item: Broadcast) -> None:
        got.append(item)
        arrived.set()

    endpoint.subscribe("news:1", callback)
    endpoint.broadcast("news:1", "ev", {"n": 1})
    assert arrived.wait(2)
    assert got == [Broadcast("news:1", "ev", {"n": 1})]
    endpoint.unsubscribe("news:1", callback)
    endpoint.broadcast("news:1", "ev", {"n": 2})
    assert endpoint.pubsub.stats() == (0, 0)  # barrier: the registry applied both
    assert len(got) == 1


def test_local_broadcast_and_broadcast_from_endpoint(endpoint: Endpoint) -> None:
    a = _join(endpoint, "rooms:e1")
    _join(endpoint, "rooms:e1")
    endpoint.local_broadcast("rooms:e1", "loc", {"n": 1})
    ct.assert_push("loc")
    ct.assert_push("loc")
    endpoint.broadcast_from(a.channel_ref, "rooms:e1", "from", {"n": 1})
    ct.assert_push("from")
    ct.refute_push("from")


def test_assert_broadcast_with_subscribe_and_join(endpoint: Endpoint) -> None:
    sock = _sock(endpoint)
    _, _, room = ct.subscribe_and_join(sock, "rooms:s1")
    ct.push(room, "broadcast", {"event": "shout", "body": {"n": 1}})
    ct.assert_broadcast("shout", {"n": 1})
    ct.broadcast_from(room, "quiet", {"n": 2})
    ct.refute_broadcast("quiet")  # the test's own subscription is skipped
    ct.assert_push("quiet", {"n": 2})  # but the channel's client got it


# handle_info, send_after --------------------------------------------------------------


def test_tell_to_channel_ref_reaches_handle_info(endpoint: Endpoint) -> None:
    sock = _join(endpoint, "rooms:i1")
    sock.channel_ref.tell(("info", {"n": 1}))
    ct.assert_push("info", {"n": 1})
    ct.push(sock, "tell_self", {"n": 2})
    ct.assert_push("info", {"n": 2})


def test_send_after(endpoint: Endpoint) -> None:
    sock = _join(endpoint, "rooms:i2")
    ct.push(sock, "send_after", {"n": 3, "seconds": 0.05})
    ct.assert_push("info", {"n": 3, "seconds": 0.05})


def test_default_handle_info_logs_and_keeps_going(endpoint: Endpoint, caplog: pytest.LogCaptureFixture) -> None:
    _, _, sock = ct.join(_sock(endpoint), "rooms:lobby")
    sock.channel_ref.tell("unexpected")
    ct.assert_reply(ct.push(sock, "x"), "ok", {"channel": "lobby"})
    assert "unexpected" in caplog.text


# stop, crash, terminate ---------------------------------------------------------------


def _terminations(events: Events, count: int = 1) -> list[tuple[object, ...]]:
    events.wait_for(lambda items: len([i for i in items if i[0] == "terminate"]) >= count)
    return events.of("terminate")


@pytest.mark.parametrize(
    ("event", "reason", "frame"),
    [
        ("stop_normal", "normal", "phx_close"),
        ("stop_shutdown_tuple", ("shutdown", "bye"), "phx_close"),
        ("stop_custom", "weird", "phx_error"),
    ],
)
def test_stop_sends_close_or_error(endpoint: Endpoint, events: Events, event: str, reason: Any, frame: str) -> None:
    sock = _join(endpoint, "rooms:t1", events)
    ct.push(sock, event)
    closed = ct.mailbox().take(lambda m: isinstance(m, Message) and m.event == frame, 1.0)
    assert closed is not None
    assert closed.ref == closed.join_ref == sock.join_ref
    assert _terminations(events)[0][2] == reason
    # the topic is free again on this connection
    assert sock.connection.topics() == {}


def test_stop_with_reply_replies_first(endpoint: Endpoint, events: Events) -> None:
    sock = _join(endpoint, "rooms:t2", events)
    ref = ct.push(sock, "stop_with_reply")
    ct.assert_reply(ref, "ok", {"bye": True})
    ct.assert_push("phx_close", ct.Exact({}))
    assert _terminations(events)[0][2] == "normal"


@pytest.mark.parametrize("event", ["raise", "garbage", "bad_reply"])
def test_crash_in_handle_in_is_isolated(endpoint: Endpoint, events: Events, event: str, caplog: pytest.LogCaptureFixture) -> None:
    sock = _sock(endpoint, events)
    _, _, crashing = ct.join(sock, "rooms:c1")
    _, _, other = ct.join(sock, "rooms:c2")
    ct.push(crashing, event)
    assert ct.assert_push("phx_error") == {"reason": "channel_crash"}
    (term,) = _terminations(events)
    assert term[1] == "rooms:c1" and term[2][0] == "error"
    assert isinstance(term[2][1], Exception)
    assert "RoomChannel" in caplog.text
    if event == "garbage":
        assert "Expected RoomChannel.handle_in() to return one of" in caplog.text
        assert "('norply'" in caplog.text
    # the other channel and the socket keep working; the client can rejoin
    ct.assert_reply(ct.push(other, "reply_ok"), "ok")
    assert ct.join(sock, "rooms:c1")[0] == "ok"


@pytest.mark.parametrize("body", [{"raise": True}, {"garbage": True}])
def test_crash_in_handle_out_and_handle_info(endpoint: Endpoint, events: Events, body: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    sock = _join(endpoint, "rooms:c3", events)
    endpoint.broadcast("rooms:c3", "user:joined", body)
    ct.assert_push("phx_error")
    assert _terminations(events)[0][2][0] == "error"
    assert "RoomChannel" in caplog.text
    sock2 = _join(endpoint, "rooms:c4", events)
    sock2.channel_ref.tell(("info", body))
    ct.assert_push("phx_error")
    assert _terminations(events, 2)[1][2][0] == "error"


def test_stop_from_handle_out_and_handle_info(endpoint: Endpoint, events: Events) -> None:
    _join(endpoint, "rooms:c5", events)
    endpoint.broadcast("rooms:c5", "user:joined", {"stop": True})
    ct.assert_push("phx_close")
    sock = _join(endpoint, "rooms:c6", events)
    sock.channel_ref.tell(("info", {"stop": "custom"}))
    ct.assert_push("phx_error")
    assert [t[2] for t in _terminations(events, 2)] == ["shutdown", "custom"]


def test_leave_replies_ok_then_closes_and_terminates_left(endpoint: Endpoint, events: Events) -> None:
    sock = _join(endpoint, "rooms:l1", events, push_in_terminate=True)
    ref = ct.leave(sock)
    ct.assert_reply(ref, "ok", ct.Exact({}))
    ct.assert_push("phx_close")
    (term,) = _terminations(events)
    assert term[2] == ("shutdown", "left")
    assert term[3].startswith("channels_actor-supervisor")  # the supervisor runs terminate
    ct.assert_push("goodbye")  # pushes from terminate still reach the transport


def test_close_terminates_closed(endpoint: Endpoint, events: Events) -> None:
    sock = _join(endpoint, "rooms:l2", events)
    ct.close(sock)
    assert [t[2] for t in events.of("terminate")] == [("shutdown", "closed")]
    ct.refute_push("phx_close")


def test_duplicate_join_terminates_old_with_duplicate_join(endpoint: Endpoint, events: Events) -> None:
    sock = _sock(endpoint, events)
    _, _, first = ct.join(sock, "rooms:d1")
    _, _, second = ct.join(sock, "rooms:d1")
    (term,) = _terminations(events)
    assert term[2] == ("shutdown", "duplicate_join")
    closed = ct.mailbox().take(lambda m: isinstance(m, Message) and m.event == "phx_close", 1.0)
    assert closed is not None and closed.join_ref == first.join_ref
    # the new join is current; the old join_ref is stale and ignored
    ct.assert_reply(ct.push(second, "reply_ok"), "ok")
    ct.refute_reply(ct.push(first, "reply_ok"))
    assert sock.connection.topics() == {"rooms:d1": second.join_ref}


def test_messages_for_unjoined_topics(endpoint: Endpoint) -> None:
    sock = _sock(endpoint)
    conn = sock.connection
    conn.receive(Message("rooms:u1", "anything", {}, "900", "901"))
    assert ct.assert_reply("900", "error", {"reason": "unmatched topic"})
    conn.receive(Message("rooms:u1", "phx_leave", {}, "902", "903"))
    ct.assert_reply("902", "ok", ct.Exact({}))
    conn.receive(Message("phoenix", "heartbeat", {}, "904", None))
    ct.assert_reply("904", "ok", ct.Exact({}))


def test_endpoint_stop_drains_every_channel_with_closed(actor_mode: str, events: Events) -> None:
    ep = Endpoint(actor_mode=actor_mode)
    sock = _sock(ep, events)
    for n in range(5):
        ct.join(sock, f"rooms:z{n}")
    ep.stop()
    assert sorted(t[1] for t in events.of("terminate")) == [f"rooms:z{n}" for n in range(5)]
    assert {t[2] for t in events.of("terminate")} == {("shutdown", "closed")}
    assert ct.mailbox().disconnects == ["shutdown"]
    assert ep.connection_count == 0


def test_disconnect_by_socket_id(endpoint: Endpoint) -> None:
    sock = ct.connect(UserSocket, {"user_id": 42}, endpoint=endpoint)
    ct.join(sock, "rooms:id1")
    ct.mailbox().disconnects.clear()
    endpoint.broadcast("users_socket:42", "other", {})
    endpoint.broadcast("users_socket:42", "disconnect", {})
    endpoint.pubsub.stats()  # barrier
    assert ct.mailbox().disconnects == ["disconnect"]


def test_connect_refusals(endpoint: Endpoint, caplog: pytest.LogCaptureFixture) -> None:
    from channels_actor.endpoint import Refused

    assert ct.connect(UserSocket, {"token": "bad"}, endpoint=endpoint) == Refused()
    assert ct.connect(UserSocket, {"token": "bad_map"}, endpoint=endpoint) == Refused({"reason": "nope"})
    assert ct.connect(UserSocket, {"token": "garbage"}, endpoint=endpoint) == Refused()
    assert "Expected UserSocket.connect() to return one of" in caplog.text


def test_blocking_callback_holds_only_its_channel(endpoint: Endpoint) -> None:
    gate = threading.Event()
    blocked = _join(endpoint, "rooms:k1", gate=gate)
    free = _join(endpoint, "rooms:k2")
    ref = ct.push(blocked, "block")
    ct.assert_reply(ct.push(free, "reply_ok"), "ok")
    ct.refute_reply(ref)
    gate.set()
    ct.assert_reply(ref, "ok")


def test_reply_frames_are_values_with_the_noop_serializer(endpoint: Endpoint) -> None:
    sock = _join(endpoint, "rooms:v1")
    ref = ct.push(sock, "reply_ok")
    item = ct.mailbox().take(lambda m: isinstance(m, Reply) and m.ref == ref, 1.0)
    assert item == Reply("rooms:v1", "ok", {}, ref, sock.join_ref)


def test_pending_send_after_does_not_outlive_the_endpoint(actor_mode: str) -> None:
    ep = Endpoint(actor_mode=actor_mode)
    sock = ct.join(_sock(ep), "rooms:timer")[2]
    ct.push(sock, "send_after", {"n": 1, "seconds": 60})
    ct.assert_reply(ct.push(sock, "reply_ok"), "ok")  # the send_after is scheduled
    assert any(t.name == "channels_actor-timer" for t in threading.enumerate())
    ep.stop()
    # the autouse fixture then checks that the timer thread, like every other, is gone
