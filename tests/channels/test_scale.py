"""Fan-out at scale, terminate under races, and no leaks after many join/leave cycles."""

from __future__ import annotations

import threading
from typing import Any

import pykka
import pytest

from channels_actor import Channel, Endpoint, Message, Socket, SocketHandler, push
from channels_actor import testing as ct
from tests.channels.app import UserSocket
from tests.helpers import Events, Recorder, open_memory_connection


class CountChannel(Channel):
    intercept = ["seq_out"]

    def join(self, topic: str, payload: Any, socket: Socket) -> Any:
        return ("ok", socket)

    def handle_out(self, event: str, payload: Any, socket: Socket) -> Any:
        push(socket, event, payload)
        return ("noreply", socket)


class CountSocket(SocketHandler):
    channels = {"count:*": CountChannel}


def _join_many(endpoint: Endpoint, recorder: Recorder, count: int, topic: str) -> list[Any]:
    handler = CountSocket()
    connections = [open_memory_connection(endpoint, handler, recorder, n) for n in range(count)]
    for n, conn in enumerate(connections):
        conn.receive(Message(topic, "phx_join", {}, f"j{n}", f"j{n}"))
    recorder.wait_total(count)
    assert all(r.status == "ok" for n in range(count) for r in recorder.replies(n))
    return connections


@pytest.mark.parametrize("event", ["seq", "seq_out"], ids=["fastlane", "intercepted"])
def test_1000_channels_get_every_broadcast_once_in_publisher_order(endpoint: Endpoint, event: str) -> None:
    recorder = Recorder()
    count, broadcasts = 1000, 30
    connections = _join_many(endpoint, recorder, count, "count:all")
    endpoint.pubsub.stats()  # every subscription is applied

    def publish(publisher: str) -> None:
        for seq in range(broadcasts):
            endpoint.broadcast("count:all", event, {"publisher": publisher, "seq": seq})

    publishers = [threading.Thread(target=publish, args=(name,)) for name in ("a", "b")]
    for thread in publishers:
        thread.start()
    for thread in publishers:
        thread.join()
    recorder.wait_total(count + count * broadcasts * 2, timeout=30)
    for n in range(count):
        got = recorder.messages(n, event)
        assert len(got) == broadcasts * 2
        for publisher in ("a", "b"):
            seqs = [m.payload["seq"] for m in got if m.payload["publisher"] == publisher]
            assert seqs == list(range(broadcasts)), f"subscriber {n} from {publisher}"
    for conn in connections:
        conn.close()


def _terminations(events: Events, count: int) -> list[tuple[object, ...]]:
    events.wait_for(lambda items: len([i for i in items if i[0] == "terminate"]) >= count)
    return events.of("terminate")


def _assert_exactly_once(endpoint: Endpoint, events: Events, expected: int) -> list[tuple[object, ...]]:
    terms = _terminations(events, expected)
    assert endpoint.channel_count() == 0  # the supervisor has handled every exit
    terms = events.of("terminate")
    assert len(terms) == expected, terms
    return terms


def test_leave_racing_a_crash_terminates_once(endpoint: Endpoint, events: Events) -> None:
    rounds = 100
    sock = ct.socket(UserSocket, None, {"events": events}, endpoint=endpoint)
    for n in range(rounds):
        _, _, room = ct.join(sock, f"rooms:race{n}")
        start = threading.Barrier(2)

        def crash(room: Socket = room) -> None:
            start.wait()
            try:
                room.channel_ref.tell(("info", {"raise": True}))  # type: ignore[union-attr]
            except pykka.ActorDeadError:
                pass  # the leave won the race and the actor already stopped

        thread = threading.Thread(target=crash)
        thread.start()
        start.wait()
        ct.leave(room)
        thread.join()
    terms = _assert_exactly_once(endpoint, events, rounds)
    reasons = [t[2] for t in terms]
    assert all(r == ("shutdown", "left") or r[0] == "error" for r in reasons)  # type: ignore[index]


def test_close_racing_broadcasts_terminates_once(endpoint: Endpoint, events: Events) -> None:
    rounds = 50
    sock = ct.socket(UserSocket, None, {"events": events}, endpoint=endpoint)
    rooms = [ct.join(sock, f"rooms:cb{n}")[2] for n in range(rounds)]
    stop = threading.Event()

    def flood() -> None:
        while not stop.is_set():
            for n in range(rounds):
                endpoint.broadcast(f"rooms:cb{n}", "user:joined", {"n": n})
            # An ask is a barrier: the registry has dispatched this round, so the
            # flood races the closes without piling up an unbounded backlog.
            endpoint.pubsub.stats()

    thread = threading.Thread(target=flood)
    thread.start()
    try:
        for room in rooms:
            ct.close(room)
    finally:
        stop.set()
        thread.join()
    terms = _assert_exactly_once(endpoint, events, rounds)
    assert {t[2] for t in terms} == {("shutdown", "closed")}


def test_connection_close_racing_crashes_and_leaves(actor_mode: str, events: Events) -> None:
    ep = Endpoint(actor_mode=actor_mode)
    recorder = Recorder()
    handler = UserSocket()
    rounds = 100
    for n in range(rounds):
        conn = open_memory_connection(ep, handler, recorder, n, events=events)
        conn.receive(Message("rooms:cc", "phx_join", {}, "1", "1"))
        conn.receive(Message("rooms:cc", "raise", {}, "2", "1"))
        conn.receive(Message("rooms:cc", "phx_leave", {}, "3", "1"))
        conn.close()
    ep.stop()  # returns once every terminate has run
    # A close that overtakes the join ends the channel before join runs: then
    # there is nothing to terminate. Every join that ran is terminated once.
    joins, terms = events.of("join"), events.of("terminate")
    assert len(terms) == len(joins) <= rounds
    assert all(
        t[2] in (("shutdown", "closed"), ("shutdown", "left")) or t[2][0] == "error"  # type: ignore[index]
        for t in terms
    )


def test_duplicate_joins_terminate_each_replaced_channel_once(actor_mode: str, events: Events) -> None:
    ep = Endpoint(actor_mode=actor_mode)
    recorder = Recorder()
    conn = open_memory_connection(ep, UserSocket(), recorder, 0, events=events)
    joins = 50
    for n in range(joins):
        conn.receive(Message("rooms:dup", "phx_join", {}, f"r{n}", f"r{n}"))
    last = f"r{joins - 1}"
    recorder.wait_for(lambda frames: any(getattr(f, "ref", None) == last for f in frames[0]))
    assert conn.topics() == {"rooms:dup": last}
    conn.close()
    ep.stop()
    # A duplicate join may overtake the join it replaces (then that join never
    # runs and has nothing to terminate); every join that ran ends exactly once.
    ran, terms = events.of("join"), events.of("terminate")
    assert len(terms) == len(ran)
    reasons = [t[2] for t in terms]
    assert reasons.count(("shutdown", "closed")) == 1  # the last join, ended by close()
    assert reasons.count(("shutdown", "duplicate_join")) == len(terms) - 1
    # the clients of the replaced joins that ran were told phx_close with their own join_ref
    closes = recorder.messages(0, "phx_close")
    assert {m.join_ref for m in closes} <= {f"r{n}" for n in range(joins - 1)}


def test_endpoint_stop_racing_crashes(actor_mode: str, events: Events) -> None:
    ep = Endpoint(actor_mode=actor_mode)
    sock = ct.socket(UserSocket, None, {"events": events}, endpoint=ep)
    rooms = [ct.join(sock, f"rooms:sr{n}")[2] for n in range(50)]
    for room in rooms[::2]:
        room.channel_ref.tell(("info", {"raise": True}))
    ep.stop()
    terms = events.of("terminate")
    assert sorted(t[1] for t in terms) == sorted(f"rooms:sr{n}" for n in range(50))


def _baseline(endpoint: Endpoint) -> tuple[int, int, tuple[int, int]]:
    return (threading.active_count(), endpoint.channel_count(), endpoint.pubsub.stats())


def test_1000_join_leave_cycles_leave_nothing_behind(endpoint: Endpoint) -> None:
    sock = ct.socket(RoomSocket, endpoint=endpoint)
    ct.join(sock, "warm:0")  # start any lazily created thread first
    ct.assert_reply(ct.leave(ct.join(sock, "warm:1")[2]), "ok")
    threads, actors, registry = _baseline(endpoint)
    for n in range(1000):
        _, _, room = ct.join(sock, f"cycle:{n % 7}")
        ct.assert_reply(ct.leave(room), "ok")
        ct.assert_push("phx_close")
    # the supervisor has run every terminate and the registry applied every unsubscribe
    assert endpoint.channel_count() == actors
    assert endpoint.pubsub.stats() == registry
    _wait_threads(threads)
    assert sock.connection.topics() == {"warm:0": sock.connection.topics()["warm:0"]}


def _wait_threads(expected: int) -> None:
    # ThreadingActor threads end just after their actor stops: join them, do not sleep.
    for thread in threading.enumerate():
        if thread.name.startswith("ChannelServer-cycle"):
            thread.join(timeout=5)
    assert threading.active_count() == expected


class PlainChannel(Channel):
    def join(self, topic: str, payload: Any, socket: Socket) -> Any:
        return ("ok", socket)


class RoomSocket(SocketHandler):
    channels = {"warm:*": PlainChannel, "cycle:*": PlainChannel}


def test_thread_mode_runs_one_thread_per_channel_pool_mode_none() -> None:
    for mode, extra in (("pool", 0), ("thread", 20)):
        ep = Endpoint(actor_mode=mode, pool_size=4)
        ep.start_runtime()
        try:
            before = threading.active_count()
            sock = ct.socket(RoomSocket, endpoint=ep)
            for n in range(20):
                ct.join(sock, f"cycle:t{n}")
            assert threading.active_count() - before == extra
        finally:
            ep.stop()


def test_channel_callbacks_run_on_pool_threads(events: Events) -> None:
    ep = Endpoint(actor_mode="pool", pool_size=3)
    try:
        sock = ct.socket(UserSocket, None, {"events": events}, endpoint=ep)
        ct.join(sock, "rooms:pt")
        (join,) = events.of("join")
        assert str(join[2]).startswith("ChannelPool-")
    finally:
        ep.stop()


