"""The testing kit's own features: payload patterns, per-socket assertions, waiting for
terminate, and the presence helpers, through real channels in both actor modes."""

from __future__ import annotations

import threading
from typing import Any, ClassVar

import pytest

from channels_actor import Channel, Endpoint, Socket, SocketHandler, push
from channels_actor import testing as ct
from channels_actor._patterns import mismatch
from tests.helpers import Events

ANY = ct.ANY
Exact = ct.Exact


class KitChannel(Channel):
    """Pushes and replies whatever the test sends; records terminate with ``joined``."""

    def join(self, topic: str, payload: Any, socket: Socket) -> Any:
        if payload.get("refuse"):
            return ("error", {"reason": "no"})
        return ("ok", socket)

    def handle_in(self, event: str, payload: Any, socket: Socket) -> Any:
        if event == "push":
            push(socket, payload["event"], payload["payload"])
            return ("noreply", socket)
        return ("reply", (payload.get("status", "ok"), payload.get("reply", {})), socket)

    def terminate(self, reason: Any, socket: Socket) -> None:
        gate = socket.assigns.get("gate")
        if gate is not None:
            assert gate.wait(5)
        events = socket.assigns.get("events")
        if events is not None:
            events.add("terminate", socket.topic, reason, socket.joined)


class KitSocket(SocketHandler):
    channels: ClassVar[dict[str, type[Channel]]] = {"kit:*": KitChannel}


def _room(endpoint: Endpoint, topic: str = "kit:1", **assigns: Any) -> Socket:
    result = ct.join(ct.socket(KitSocket, None, assigns, endpoint=endpoint), topic)
    assert result[0] == "ok", result
    return result[2]


def _push(room: Socket, event: str, payload: Any) -> None:
    ct.push(room, "push", {"event": event, "payload": payload})


# patterns -------------------------------------------------------------------------


NESTED = {"a": 1, "b": {"c": 2, "d": [1, 2]}, "list": [{"x": 1, "y": 2}]}


@pytest.mark.parametrize(
    "pattern",
    [
        {"a": 1},
        {"b": {"c": 2}},
        {"b": {"d": [1, 2]}, "list": [{"x": 1}]},
        {"a": ANY, "b": ANY},
        {"a": lambda v: v > 0, "b": {"c": int}},
        Exact({"a": 1, "b": ANY, "list": ANY}),
        Exact({"a": 1, "b": Exact({"c": 2, "d": ANY}), "list": [Exact({"x": 1, "y": 2})]}),
        lambda payload: payload["a"] == 1,
        {},
        None,
    ],
)
def test_assert_push_matches_patterns(endpoint: Endpoint, pattern: Any) -> None:
    _push(_room(endpoint), "ev", NESTED)
    assert ct.assert_push("ev", pattern) == NESTED


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        ({"a": 2}, "payload['a']: expected 2, got 1"),
        ({"b": {"c": 3}}, "payload['b']['c']: expected 3, got 2"),
        ({"zz": ANY}, "payload['zz']: missing (keys: ['a', 'b', 'list'])"),
        ({"b": {"d": [1]}}, "payload['b']['d']: expected a list of 1, got [1, 2]"),
        ({"list": [{"x": 9}]}, "payload['list'][0]['x']: expected 9, got 1"),
        ({"a": lambda v: v > 5}, "payload['a']: predicate <lambda> is false for 1"),
        ({"a": str}, "payload['a']: expected an instance of str, got 1"),
        (Exact({"a": 1}), "payload: unexpected keys ['b', 'list']"),
        ({"b": Exact({"c": 2})}, "payload['b']: unexpected keys ['d']"),
        ({"a": {"x": 1}}, "payload['a']: expected a mapping, got 1"),
    ],
)
def test_assert_push_mismatch_says_where(endpoint: Endpoint, pattern: Any, why: str) -> None:
    _push(_room(endpoint), "ev", NESTED)
    with pytest.raises(AssertionError) as failure:
        ct.assert_push("ev", pattern, timeout=0.05)
    message = str(failure.value)
    assert why in message, message
    assert "got 'ev' with {'a': 1, 'b': {" in message  # what arrived
    ct.assert_push("ev", NESTED)  # a failed assertion takes nothing out


def test_a_predicate_that_raises_does_not_match() -> None:
    def boom(value: Any) -> bool:
        raise KeyError(value)

    assert mismatch({"a": boom}, {"a": 1}) == "payload['a']: predicate boom raised KeyError on 1"
    assert mismatch([1, ANY], (1, "x")) is None
    assert mismatch(b"\x00", b"\x00") is None


def test_refute_push_uses_the_same_patterns(endpoint: Endpoint) -> None:
    room = _room(endpoint)
    _push(room, "ev", {"a": 1, "b": 2})
    ct.assert_push("ev", {"b": 2}, timeout=1.0)  # it has arrived
    _push(room, "ev", {"a": 1, "b": 2})
    ct.refute_push("ev", {"a": 2})
    ct.refute_push("ev", Exact({"a": 1}))
    with pytest.raises(AssertionError, match=r"Expected no push of 'ev' matching \{'a': 1\}"):
        ct.refute_push("ev", {"a": 1})


def test_assert_reply_matches_a_subset_and_says_why(endpoint: Endpoint) -> None:
    room = _room(endpoint)
    ref = ct.push(room, "reply", {"reply": {"user": {"id": 7, "name": "ada"}, "n": 1}})
    assert ct.assert_reply(ref, "ok", {"user": {"id": 7}})["n"] == 1
    ref = ct.push(room, "reply", {"reply": {"n": 1}})
    with pytest.raises(AssertionError, match=r"payload\['n'\]: expected 2, got 1"):
        ct.assert_reply(ref, "ok", {"n": 2})
    ref = ct.push(room, "reply", {"status": "error", "reply": {"n": 1}})
    with pytest.raises(AssertionError, match="status: expected 'ok', got 'error'"):
        ct.assert_reply(ref, "ok", {"n": 1})


def test_assert_broadcast_matches_a_subset(endpoint: Endpoint) -> None:
    sock = ct.socket(KitSocket, None, {}, endpoint=endpoint)
    assert ct.subscribe_and_join(sock, "kit:b")[0] == "ok"
    endpoint.broadcast("kit:b", "news", {"id": 1, "body": "hi"})
    ct.refute_broadcast("news", {"id": 2})
    assert ct.assert_broadcast("news", {"id": 1}) == {"id": 1, "body": "hi"}
    endpoint.broadcast("kit:b", "news", {"id": 1, "body": "hi"})
    with pytest.raises(AssertionError, match=r"payload\['id'\]: expected 3, got 1"):
        ct.assert_broadcast("news", {"id": 3}, timeout=0.05)


def test_failure_messages_are_redacted_and_short(endpoint: Endpoint) -> None:
    room = _room(endpoint)
    _push(room, "ev", {"token": "s3cret-value", "a": 1, "big": "x" * 1_000_000})
    with pytest.raises(AssertionError) as failure:
        ct.assert_push("ev", {"token": "guess"}, timeout=0.05)
    message = str(failure.value)
    assert "s3cret" not in message and "guess" not in message
    assert "payload['token']: expected [REDACTED], got [REDACTED]" in message
    assert len(message) < 1000
    with pytest.raises(AssertionError) as failure:
        ct.assert_push("other", {"a": 1}, timeout=0.05)  # nothing of that event: the mailbox
    message = str(failure.value)
    assert "mailbox: Message('ev', {" in message and "s3cret" not in message
    assert len(message) < 1000


# per-socket assertions ----------------------------------------------------------------


def test_assert_push_for_one_of_two_sockets_in_one_thread(endpoint: Endpoint) -> None:
    alice = _room(endpoint, "kit:shared")
    bob = _room(endpoint, "kit:shared", password="hunter2")
    _push(alice, "ping", {"n": 1})
    ct.refute_push("ping", socket=bob)
    with pytest.raises(AssertionError) as failure:
        ct.assert_push("ping", timeout=0.05, socket=bob)
    message = str(failure.value)
    assert "Expected a push of 'ping' on socket id=None topic='kit:shared'" in message
    assert "hunter2" not in message and "mailbox: (empty)" in message
    assert ct.assert_push("ping", {"n": 1}, socket=alice) == {"n": 1}
    endpoint.broadcast("kit:shared", "all", {"n": 2})
    ct.assert_push("all", {"n": 2}, socket=bob)
    ct.assert_push("all", {"n": 2}, socket=alice)
    ct.refute_push("all")


def test_a_channel_socket_narrows_to_its_topic(endpoint: Endpoint) -> None:
    sock = ct.socket(KitSocket, None, {}, endpoint=endpoint)
    one, two = ct.join(sock, "kit:one")[2], ct.join(sock, "kit:two")[2]  # type: ignore[misc]
    _push(one, "ev", {"n": 1})
    ct.refute_push("ev", socket=two)
    with pytest.raises(AssertionError, match=r"mailbox: Message\('ev', \{'n': 1\}\)$"):
        ct.assert_push("ev", timeout=0.05, socket=two)  # what its connection holds
    ct.assert_push("ev", socket=sock)  # the connection's socket: any of its topics
    _push(one, "ev", {})
    ct.assert_push("ev", socket=one)


# waiting for terminate --------------------------------------------------------------


def test_assert_terminated_returns_after_terminate_ran(endpoint: Endpoint, events: Events) -> None:
    gate = threading.Event()
    room = _room(endpoint, events=events, gate=gate)
    ct.assert_reply(ct.leave(room), "ok")
    returned = threading.Event()

    def wait() -> None:
        ct.assert_terminated(room, timeout=5)
        returned.set()

    waiter = threading.Thread(target=wait)
    waiter.start()
    try:
        assert not returned.wait(0.1), "returned while terminate was still blocked"
    finally:
        gate.set()
        waiter.join(5)
    assert returned.is_set()
    assert events.of("terminate") == [("terminate", "kit:1", ("shutdown", "left"), True)]


def test_assert_terminated_fails_for_a_live_channel(endpoint: Endpoint) -> None:
    room = _room(endpoint)
    with pytest.raises(AssertionError, match="Expected the channel on 'kit:1' to stop"):
        ct.assert_terminated(room, timeout=0.05)
    with pytest.raises(ValueError, match="channel socket returned by join"):
        ct.assert_terminated(ct.socket(KitSocket, None, {}, endpoint=endpoint))
    ct.close(room)


def test_refused_join_terminates_with_bare_shutdown_unjoined(
    endpoint: Endpoint, events: Events
) -> None:
    sock = ct.socket(KitSocket, None, {"events": events}, endpoint=endpoint)
    assert ct.join(sock, "kit:no", {"refuse": True}) == ("error", {"reason": "no"})
    (term,) = events.wait_for(lambda items: items)
    assert term == ("terminate", "kit:no", "shutdown", False)


# presence helpers ---------------------------------------------------------------------


STATE = {
    "u1": {"metas": [{"phx_ref": "F1", "name": "ada"}]},
    "u2": {"metas": [{"phx_ref": "F2", "name": "bob"}, {"phx_ref": "F3", "name": "bob"}]},
}
DIFF = {"joins": {"u3": {"metas": [{"phx_ref": "F4", "name": "cy"}]}}, "leaves": {}}


def test_assert_presence_state(endpoint: Endpoint) -> None:
    room = _room(endpoint)
    _push(room, "presence_state", STATE)
    assert ct.assert_presence_state({"u1": ANY, "u2": {"metas": [ANY, ANY]}}) == STATE
    _push(room, "presence_state", STATE)
    with pytest.raises(AssertionError, match=r"payload: unexpected keys \['u2'\]"):
        ct.assert_presence_state({"u1": ANY}, timeout=0.05)
    with pytest.raises(AssertionError, match=r"payload\['u1'\]\['metas'\]\[0\]\['name'\]"):
        ct.assert_presence_state({"u1": {"metas": [{"name": "eve"}]}, "u2": ANY}, timeout=0.05)
    ct.assert_presence_state(socket=room)


def test_assert_presence_diff(endpoint: Endpoint) -> None:
    room = _room(endpoint)
    _push(room, "presence_diff", DIFF)
    assert ct.assert_presence_diff(joins={"u3": {"metas": [{"name": "cy"}]}}, leaves={}) == DIFF
    _push(room, "presence_diff", DIFF)
    with pytest.raises(AssertionError, match=r"payload\['leaves'\]\['u1'\]: missing"):
        ct.assert_presence_diff(leaves={"u1": ANY}, timeout=0.05)
    with pytest.raises(AssertionError, match=r"payload\['joins'\]: unexpected keys \['u3'\]"):
        ct.assert_presence_diff(joins={}, timeout=0.05)
    ct.assert_presence_diff(joins={"u3": ANY}, socket=room)
