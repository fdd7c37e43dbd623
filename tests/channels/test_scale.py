"""Fan-out at scale, terminate under races, and no leaks after many join/leave cycles."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import Any, ClassVar

import pykka
import pytest

from channels_actor import Channel, Endpoint, Message, Reply, Socket, SocketHandler, push
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


class RaceChannel(Channel):
    """Records each join and terminate with the join_ref; crashes on "raise"."""

    def join(self, topic: str, payload: Any, socket: Socket) -> Any:
        socket.assigns["events"].add("join", topic, socket.join_ref)
        return ("ok", socket)

    def handle_in(self, event: str, payload: Any, socket: Socket) -> Any:
        if event == "raise":
            raise ValueError("crash racing a close")
        return ("reply", "ok", socket)

    def terminate(self, reason: Any, socket: Socket) -> None:
        socket.assigns["events"].add("terminate", socket.topic, socket.join_ref, reason)


class RaceSocket(SocketHandler):
    channels: ClassVar[dict[str, type[Channel]]] = {"race:*": RaceChannel}


def _reply_to(recorder: Recorder, number: int, ref: str) -> Callable[[dict[int, list[Any]]], bool]:
    return lambda frames: any(isinstance(f, Reply) and f.ref == ref for f in frames[number])


def _outcome(reason: Any) -> str:
    if reason == ("shutdown", "left"):
        return "left"
    if reason == ("shutdown", "closed"):
        return "closed"
    assert reason[0] == "error" and str(reason[1]) == "crash racing a close", reason
    return "crashed"


def test_connection_close_racing_crashes_and_leaves(actor_mode: str, events: Events) -> None:
    ep = Endpoint(actor_mode=actor_mode)
    recorder = Recorder()
    handler = RaceSocket()
    rounds = 120
    try:
        for n in range(rounds):
            conn = open_memory_connection(ep, handler, recorder, n, events=events)
            topic = f"race:{n}"
            conn.receive(Message(topic, "phx_join", {}, "1", "1"))
            recorder.wait_for(_reply_to(recorder, n, "1"))  # the join ran: terminate must follow
            crash = Message(topic, "raise", {}, "2", "1")
            leave = Message(topic, "phx_leave", {}, "3", "1")
            ops: list[Callable[[], None]] = [
                lambda conn=conn, crash=crash: conn.receive(crash),
                lambda conn=conn, leave=leave: conn.receive(leave),
                conn.close,
            ]
            ops = ops[n % 3 :] + ops[: n % 3]  # each op starts first in a third of the rounds
            start = threading.Barrier(len(ops))
            threads = [threading.Thread(target=lambda op=op: (start.wait(), op())) for op in ops]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
    finally:
        ep.stop()  # returns once every terminate has run
    joins, terms = events.of("join"), events.of("terminate")
    assert len(joins) == rounds
    # terminate ran exactly once for every channel that joined, and for nothing else
    assert sorted((t[1], t[2]) for t in terms) == sorted((j[1], j[2]) for j in joins)
    outcomes = Counter(_outcome(t[3]) for t in terms)
    # The race happened: the crash, the leave and the close each won some rounds
    # (about 15-25, 45-60 and 45-55 of 120), and in some a crash queued before
    # the close was dropped by it instead of running.
    assert set(outcomes) == {"crashed", "left", "closed"}, outcomes
    assert ep.counters.get("dropped_after_close") > 0
    for n in range(rounds):
        reason = next(t[3] for t in terms if t[1] == f"race:{n}")
        errors = recorder.messages(n, "phx_error")
        # phx_error was written exactly when the crash won
        assert len(errors) == (1 if _outcome(reason) == "crashed" else 0), (n, reason, errors)


def test_duplicate_joins_terminate_each_replaced_channel_once(
    actor_mode: str, events: Events
) -> None:
    ep = Endpoint(actor_mode=actor_mode)
    recorder = Recorder()
    conn = open_memory_connection(ep, RaceSocket(), recorder, 0, events=events)
    joins = 50
    last = f"r{joins - 1}"
    try:
        for n in range(joins):
            conn.receive(Message("race:dup", "phx_join", {}, f"r{n}", f"r{n}"))
            if n % 2 == 0:
                # This join runs before the next one replaces it. The odd ones
                # are replaced at once: before their join ran (pool mode, where
                # the worker has not taken the actor yet) or just after it.
                recorder.wait_for(_reply_to(recorder, 0, f"r{n}"))
        recorder.wait_for(_reply_to(recorder, 0, last))
        assert conn.topics() == {"race:dup": last}
        conn.close()
    finally:
        ep.stop()
    ran = {j[2] for j in events.of("join")}
    assert {f"r{n}" for n in range(0, joins, 2)} | {last} <= ran
    terms = events.of("terminate")
    # every join that ran ended exactly once: the replaced ones with
    # duplicate_join, the last with closed
    assert sorted(t[2] for t in terms) == sorted(ran)
    replaced, closed = ("shutdown", "duplicate_join"), ("shutdown", "closed")
    assert {t[2]: t[3] for t in terms} == {ref: closed if ref == last else replaced for ref in ran}
    # each replaced join's client was told phx_close once, with its own join_ref
    closes = recorder.messages(0, "phx_close")
    assert sorted(m.join_ref for m in closes) == sorted(f"r{n}" for n in range(joins - 1))


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


