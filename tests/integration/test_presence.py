"""Presence through real WebSocket clients: raw frames, then phoenix.js's Presence under Node.

The app is Phoenix's documented pattern: ``join`` tells itself ``after_join``, whose
``handle_info`` pushes ``presence_state`` and tracks the user with the device in the meta.
Every wait is on a frame or a subprocess line, with a timeout; nothing is slept on.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pykka
import pytest

from channels_actor import Channel, Endpoint, Socket, SocketHandler, assign, push
from channels_actor.errors import ChannelError
from channels_actor.presence import AlreadyTracked, Presence

from .wsclient import Client

JS_DIR = Path(__file__).resolve().parent.parent / "js"
SCENARIO = JS_DIR / "presence.js"
TOPIC = "rooms:presence"

#: endpoint -> its Presence, for the channel (one Presence per test's endpoint)
PRESENCES: dict[int, Presence] = {}


def presence_of(socket: Socket) -> Presence:
    return PRESENCES[id(socket.endpoint)]


class RoomChannel(Channel):
    def join(self, topic: str, payload: Any, socket: Socket) -> Any:
        socket.channel_ref.tell("after_join")  # type: ignore[union-attr]
        return ("ok", socket)

    def handle_info(self, message: Any, socket: Socket) -> Any:
        if message == "after_join":
            presence = presence_of(socket)
            push(socket, "presence_state", presence.list(socket))
            meta = {"device": socket.assigns["device"], "status": "online"}
            presence.track(socket, socket.assigns["user"], meta)
        return ("noreply", socket)

    def handle_in(self, event: str, payload: Any, socket: Socket) -> Any:
        presence = presence_of(socket)
        user = socket.assigns["user"]
        if event == "update":
            meta = {"device": socket.assigns["device"], "status": payload["status"]}
            return ("reply", ("ok", {"phx_ref": presence.update(socket, user, meta)}), socket)
        if event == "track_again":
            try:
                presence.track(socket, user, {})
            except AlreadyTracked:
                return ("reply", ("error", {"reason": "already_tracked"}), socket)
            return ("reply", "ok", socket)
        if event == "untrack":
            presence.untrack(socket, user)
            return ("reply", "ok", socket)
        if event == "crash":
            raise RuntimeError("boom")
        if event == "stop":
            return ("stop", "normal", socket)
        return ("reply", "error", socket)


class PresenceSocket(SocketHandler):
    channels = {"rooms:*": RoomChannel}

    def connect(self, params: dict[str, Any], socket: Socket, connect_info: dict[str, Any]) -> Any:
        return ("ok", assign(socket, user=params.get("user"), device=params.get("device", "d")))


class Served:
    def __init__(self, endpoint: Endpoint, presence: Presence, port: int) -> None:
        self.endpoint, self.presence, self.port = endpoint, presence, port
        self.clients: list[Client] = []

    def client(self, user: str, device: str = "d") -> Client:
        client = Client(self.port, query=f"vsn=2.0.0&user={user}&device={device}")
        self.clients.append(client)
        return client


@pytest.fixture(params=[0.02])
def served(request: pytest.FixtureRequest, actor_mode: str) -> Iterator[Served]:
    endpoint = Endpoint(actor_mode=actor_mode)
    endpoint.socket("/socket", PresenceSocket)
    presence = Presence(endpoint, broadcast_period=request.param)
    PRESENCES[id(endpoint)] = presence
    server = endpoint.start(host="127.0.0.1", port=0)
    served = Served(endpoint, presence, server.port)
    try:
        yield served
    finally:
        for client in served.clients:
            client.close()
            _STASH.pop(id(client), None)
        endpoint.stop()
        del PRESENCES[id(endpoint)]


#: frames a client received while waiting for another event, by client: read first
_STASH: dict[int, list[Any]] = {}


def recv_event(client: Client, event: str, timeout: float = 3.0) -> Any:
    """The payload of the next ``event`` push; other pushes wait for their turn.

    A channel's ``push`` is written when its callback returns, so the
    ``presence_diff`` of the track that follows it may reach the wire first;
    phoenix.js holds such diffs until the ``presence_state`` too.
    """
    stash = _STASH.setdefault(id(client), [])
    for frame in stash:
        if frame[3] == event:
            stash.remove(frame)
            return frame[4]
    deadline = time.monotonic() + timeout
    while True:
        frame = client.recv(max(0.01, deadline - time.monotonic()))
        if frame[3] == event:
            return frame[4]
        if frame[3] != "phx_reply":
            stash.append(frame)


def recv_reply(client: Client, ref: str, timeout: float = 3.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        frame = client.recv(max(0.01, deadline - time.monotonic()))
        if frame[3] == "phx_reply" and frame[1] == ref:
            return frame[4]


def join(client: Client, join_ref: str = "1") -> dict[str, Any]:
    """Join ``TOPIC``; return its ``presence_state``."""
    client.send([join_ref, join_ref, TOPIC, "phx_join", {}])
    assert recv_reply(client, join_ref)["status"] == "ok"
    state: dict[str, Any] = recv_event(client, "presence_state")
    return state


def devices(presences: dict[str, Any]) -> dict[str, list[str]]:
    return {key: sorted(m["device"] for m in value["metas"]) for key, value in presences.items()}


def test_state_after_join_then_diffs_of_others(served: Served) -> None:
    alice = served.client("alice", "phone")
    assert join(alice) == {}
    own = recv_event(alice, "presence_diff")
    assert devices(own["joins"]) == {"alice": ["phone"]} and own["leaves"] == {}
    [meta] = own["joins"]["alice"]["metas"]
    assert meta["status"] == "online" and isinstance(meta["phx_ref"], str)

    bob = served.client("bob", "desk")
    assert devices(join(bob)) == {"alice": ["phone"]}
    assert devices(recv_event(alice, "presence_diff")["joins"]) == {"bob": ["desk"]}
    assert devices(served.presence.list(TOPIC)) == {"alice": ["phone"], "bob": ["desk"]}
    assert served.presence.get_by_key(TOPIC, "bob")["metas"][0]["device"] == "desk"
    assert served.presence.get_by_key(TOPIC, "carol") == {}


@pytest.mark.parametrize("how", ["leave", "close", "crash", "stop"])
def test_a_channel_that_ends_leaves(served: Served, how: str) -> None:
    watcher = served.client("watcher")
    join(watcher)
    recv_event(watcher, "presence_diff")
    alice = served.client("alice", "phone")
    join(alice)
    joined = recv_event(watcher, "presence_diff")["joins"]["alice"]["metas"][0]
    if how == "leave":
        alice.send(["1", "2", TOPIC, "phx_leave", {}])
    elif how == "close":
        alice.close()
    else:
        alice.send(["1", "2", TOPIC, how, {}])
    diff = recv_event(watcher, "presence_diff")
    assert diff == {"joins": {}, "leaves": {"alice": {"metas": [joined]}}}
    assert devices(served.presence.list(TOPIC)) == {"watcher": ["d"]}


def test_update_is_a_leave_and_a_join_with_phx_ref_prev(served: Served) -> None:
    alice = served.client("alice", "phone")
    join(alice)
    first = recv_event(alice, "presence_diff")["joins"]["alice"]["metas"][0]
    alice.send(["1", "2", TOPIC, "update", {"status": "away"}])
    new_ref = recv_reply(alice, "2")["response"]["phx_ref"]
    diff = recv_event(alice, "presence_diff")
    assert diff["leaves"] == {"alice": {"metas": [first]}}
    assert diff["joins"] == {
        "alice": {
            "metas": [
                {"device": "phone", "status": "away", "phx_ref": new_ref,
                 "phx_ref_prev": first["phx_ref"]}
            ]
        }
    }


def test_tracking_twice_is_refused_and_untrack_leaves(served: Served) -> None:
    alice = served.client("alice")
    join(alice)
    joined = recv_event(alice, "presence_diff")["joins"]
    alice.send(["1", "2", TOPIC, "track_again", {}])
    assert recv_reply(alice, "2") == {"status": "error", "response": {"reason": "already_tracked"}}
    alice.send(["1", "3", TOPIC, "untrack", {}])
    assert recv_reply(alice, "3")["status"] == "ok"
    assert recv_event(alice, "presence_diff") == {"joins": {}, "leaves": joined}
    assert served.presence.list(TOPIC) == {}


def test_bad_input_is_refused_where_it_is_given(served: Served) -> None:
    presence = served.presence
    with pytest.raises(ChannelError, match="JSON"):
        presence.track(object(), TOPIC, "k", {"bad": object()})
    with pytest.raises(ChannelError, match="mapping"):
        presence.track(object(), TOPIC, "k", ["not", "a", "map"])
    with pytest.raises(ChannelError, match="key"):
        presence.track(object(), TOPIC, 1.5, {})
    with pytest.raises(TypeError, match="takes 4 arguments"):
        presence.track(object(), TOPIC, "k")
    with pytest.raises(ChannelError, match="does not track"):
        presence.update(object(), TOPIC, "k", {})
    assert presence.list(TOPIC) == {}


@pytest.mark.parametrize("served", [0.05], indirect=True)
def test_a_thousand_joins_reach_a_client_as_few_diffs(served: Served) -> None:
    watcher = served.client("watcher")
    join(watcher)
    recv_event(watcher, "presence_diff")
    started = time.monotonic()
    for number in range(1000):
        served.presence.track(("owner", number), TOPIC, f"user{number}", {"n": number})
    seen: set[str] = set()
    diffs = 0
    while len(seen) < 1000:
        diff = recv_event(watcher, "presence_diff")
        diffs += 1
        seen.update(diff["joins"])
    elapsed = time.monotonic() - started
    # one diff per window at most, and the windows are 50 ms
    assert diffs <= elapsed / 0.05 + 2, (diffs, elapsed)
    assert diffs < 100
    watcher.nothing(0.1)


@pytest.mark.parametrize("served", [0.0], indirect=True)
def test_broadcast_period_zero_sends_one_diff_per_change(served: Served) -> None:
    watcher = served.client("watcher")
    join(watcher)
    recv_event(watcher, "presence_diff")
    for number in range(50):
        served.presence.track(("owner", number), TOPIC, f"user{number}", {})
    for number in range(50):
        assert list(recv_event(watcher, "presence_diff")["joins"]) == [f"user{number}"]


class EnrichedPresence(Presence):
    def fetch(self, topic: str, presences: dict[str, Any]) -> dict[str, Any]:
        return {key: {**value, "user": {"name": key.upper()}} for key, value in presences.items()}


def test_fetch_adds_data_to_lists_and_diffs(actor_mode: str) -> None:
    endpoint = Endpoint(actor_mode=actor_mode)
    endpoint.socket("/socket", PresenceSocket)
    presence = EnrichedPresence(endpoint, broadcast_period=0)
    PRESENCES[id(endpoint)] = presence
    server = endpoint.start(host="127.0.0.1", port=0)
    alice = Client(server.port, query="vsn=2.0.0&user=alice")
    try:
        join(alice)
        assert recv_event(alice, "presence_diff")["joins"]["alice"]["user"] == {"name": "ALICE"}
        assert presence.list(TOPIC)["alice"]["user"] == {"name": "ALICE"}
        assert presence.get_by_key(TOPIC, "alice")["user"] == {"name": "ALICE"}
    finally:
        alice.close()
        endpoint.stop()
        del PRESENCES[id(endpoint)]


# ---------------------------------------------------------------------------------------
# phoenix.js


def _node() -> str:
    node = shutil.which("node")
    if node is None or not (JS_DIR / "node_modules" / "phoenix" / "package.json").is_file():
        reason = "phoenix.js tests need `node` and tests/js/node_modules (npm ci)"
        if os.environ.get("CHANNELS_ACTOR_REQUIRE_ALL") == "1":
            pytest.fail(f"{reason}; CHANNELS_ACTOR_REQUIRE_ALL=1 forbids skipping")
        pytest.skip(reason)
    return node


def test_phoenix_js_presence_with_devices_update_and_rejoin(served: Served) -> None:
    node = _node()
    url = f"ws://127.0.0.1:{served.port}/socket"
    result = subprocess.run(
        [node, str(SCENARIO), url, TOPIC, "8000"],
        cwd=JS_DIR,
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert result.returncode == 0, (lines, result.stderr[-2000:])
    steps = [line["step"] for line in lines if line["event"] == "step"]
    assert steps == ["alice_phone", "alice_laptop", "bob", "update", "laptop_gone", "rejoined"]
    done = lines[-1]["clients"]
    final = {"alice": [{"device": "phone", "status": "online"}],
             "bob": [{"device": "desk", "status": "online"}]}
    assert done["alice_phone"]["list"] == final
    assert done["bob"]["list"] == final
    phone = done["alice_phone"]
    # alice's second device joined an existing key; the laptop's leave kept one meta
    assert {"key": "alice", "had": 1, "metas": 1} in phone["joins"]
    assert {"key": "alice", "left": 1, "metas": 1} in phone["leaves"]
    # bob's update: a leave of the old meta and a join of the new one, for everyone
    # (joins are applied before leaves, so the old meta is still there when the new joins)
    assert {"key": "bob", "had": 1, "metas": 1} in phone["joins"]
    assert {"key": "bob", "left": 1, "metas": 1} in phone["leaves"]
    # bob's rejoin: his own client started afresh from the new presence_state
    assert done["bob"]["syncs"] >= 2


class _Actor(pykka.ThreadingActor):
    pass


def test_tracking_a_channel_that_has_ended_is_refused(served: Served) -> None:
    ref = _Actor.start()
    ref.stop()
    with pytest.raises(ChannelError, match="ended"):
        served.presence.track(ref, TOPIC, "k", {})
    assert served.presence.list(TOPIC) == {}


class SlowFetch(Presence):
    """Its diffs' fetch waits for ``release``, as a slow database query would."""

    release: threading.Event

    def fetch(self, topic: str, presences: dict[str, Any]) -> dict[str, Any]:
        if threading.current_thread().name.startswith("channels_actor-presence"):
            assert self.release.wait(5)  # a diff's fetch, wherever it runs
        return presences


def test_a_slow_fetch_holds_up_no_track(actor_mode: str) -> None:
    endpoint = Endpoint(actor_mode=actor_mode)
    endpoint.socket("/socket", PresenceSocket)
    presence = SlowFetch(endpoint, broadcast_period=0, timeout=1.0)
    presence.release = threading.Event()
    PRESENCES[id(endpoint)] = presence
    server = endpoint.start(host="127.0.0.1", port=0)
    watcher = Client(server.port, query="vsn=2.0.0&user=watcher")
    try:
        join(watcher)  # its own track's diff is now stuck in fetch
        for number in range(20):
            presence.track(("owner", number), TOPIC, f"user{number}", {})
        assert len(presence.list(TOPIC)) == 21
        presence.release.set()
        seen: set[str] = set()
        while len(seen) < 21:
            seen.update(recv_event(watcher, "presence_diff")["joins"])
    finally:
        presence.release.set()
        watcher.close()
        endpoint.stop()
        del PRESENCES[id(endpoint)]


def test_a_stopped_endpoint_drops_the_state_and_a_restart_starts_afresh() -> None:
    endpoint = Endpoint()
    presence = Presence(endpoint)
    try:
        presence.track(("owner", 1), TOPIC, "alice", {})
        endpoint.stop()  # stops the tracker and publisher too (the leak check would see them)
        assert presence.list(TOPIC) == {}  # starts the runtime and a new tracker
        presence.track(("owner", 1), TOPIC, "alice", {})
        assert list(presence.list(TOPIC)) == ["alice"]
    finally:
        endpoint.stop()
