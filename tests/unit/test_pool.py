"""Pooled pykka actors keep pykka's semantics: order, one at a time, asks, failures."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pykka
import pytest

from channels_actor._pool import ActorPool, BoundedInbox, MailboxBound, PooledActor


class Recorder(PooledActor):
    def __init__(self, pool: ActorPool, log: list[Any], started: threading.Event | None = None) -> None:
        super().__init__(pool)
        self.log = log
        self.started = started
        self.running = 0
        self.overlaps = 0

    def on_start(self) -> None:
        self.log.append("start")
        if self.started is not None:
            self.started.set()

    def on_receive(self, message: Any) -> Any:
        self.running += 1
        if self.running > 1:
            self.overlaps += 1
        try:
            if message == "boom":
                raise ValueError("boom")
            if message == "overlaps":
                return self.overlaps
            self.log.append(message)
            return message
        finally:
            self.running -= 1

    def on_stop(self) -> None:
        self.log.append("stop")

    def on_failure(self, *exc_info: Any) -> None:
        self.log.append("failure")


@pytest.fixture
def pool() -> Iterator[ActorPool]:
    with ActorPool(4, batch=8) as p:
        yield p


def test_messages_in_order_and_never_concurrent(pool: ActorPool) -> None:
    log: list[Any] = []
    ref = Recorder.start(pool, log)
    senders = [
        threading.Thread(target=lambda k=k: [ref.tell((k, n)) for n in range(500)]) for k in range(4)
    ]
    for t in senders:
        t.start()
    for t in senders:
        t.join()
    assert ref.ask("overlaps", timeout=5) == 0
    for k in range(4):
        assert [n for (kk, n) in log[1:] if kk == k] == list(range(500))
    ref.stop(timeout=5)
    assert log[0] == "start" and log[-1] == "stop"


def test_ask_returns_and_failures_follow_pykka(pool: ActorPool) -> None:
    log: list[Any] = []
    ref = Recorder.start(pool, log)
    assert ref.ask("hello", timeout=5) == "hello"
    with pytest.raises(ValueError, match="boom"):
        ref.ask("boom", timeout=5)
    assert ref.is_alive()  # a failing ask leaves the actor running
    ref.tell("boom")  # a failing tell stops it and calls on_failure
    assert ref.actor_stopped.wait(5)
    assert "failure" in log
    with pytest.raises(pykka.ActorDeadError):
        ref.tell("more")


def test_asks_after_stop_fail_with_actor_dead(pool: ActorPool) -> None:
    ref = Recorder.start(pool, [])
    ref.stop(timeout=5)
    with pytest.raises(pykka.ActorDeadError):
        ref.ask("late", timeout=5)


def test_many_actors_share_the_pool_threads(pool: ActorPool) -> None:
    before = threading.active_count()
    refs = [Recorder.start(pool, []) for _ in range(300)]
    assert [r.ask(n, timeout=5) for n, r in enumerate(refs)] == list(range(300))
    assert threading.active_count() == before
    for r in refs:
        r.stop(timeout=5)


def test_pooled_actors_stay_out_of_the_global_registry(pool: ActorPool) -> None:
    ref = Recorder.start(pool, [])
    assert ref not in pykka.ActorRegistry.get_all()
    ref.stop(timeout=5)


def test_pool_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        ActorPool(0)




class _GateLog(MailboxBound):
    """Blocks in its "hold" message until ``gate`` is set; logs what it handled and refused."""

    gate: threading.Event
    entered: threading.Event
    log: list[Any]

    def on_receive(self, message: Any) -> Any:
        if message == "hold":
            self.entered.set()
            self.gate.wait(5)
        self.log.append(message)
        return message

    def on_mailbox_full(self, envelope: Any) -> None:
        self.log.append(("refused", envelope.message))
        super().on_mailbox_full(envelope)


class Gated(_GateLog, PooledActor):
    def __init__(
        self, pool: ActorPool, gate: threading.Event, entered: threading.Event, log: list[Any]
    ) -> None:
        super().__init__(pool, max_mailbox=3)
        self.gate, self.entered, self.log = gate, entered, log


class GatedThread(_GateLog, pykka.ThreadingActor):
    """The same on a thread of its own, over a BoundedInbox."""

    use_daemon_thread = True

    def __init__(self, gate: threading.Event, entered: threading.Event, log: list[Any]) -> None:
        super().__init__()
        self.gate, self.entered, self.log = gate, entered, log

    def _create_actor_inbox(self) -> BoundedInbox:  # type: ignore[override]
        return BoundedInbox(self, 3)


@pytest.mark.parametrize("kind", ["pooled", "threaded"])
def test_a_bounded_inbox_refuses_past_its_limit_and_is_still_stoppable(
    pool: ActorPool, kind: str
) -> None:
    gate, entered = threading.Event(), threading.Event()
    log: list[Any] = []
    if kind == "pooled":
        ref: pykka.ActorRef[Any] = Gated.start(pool, gate, entered, log)
    else:
        ref = GatedThread.start(gate, entered, log)
    try:
        ref.tell("hold")
        assert entered.wait(5)  # taken out of the inbox: the next 3 fit
        for n in range(3):
            ref.tell(n)
        ref.tell("refused")  # dropped: a tell never blocks or raises
        with pytest.raises(pykka.ActorDeadError, match="full mailbox"):
            ref.ask("asked", timeout=1)  # failed at once, not after the timeout
        stopped = ref.stop(block=False)  # pykka's stop is always queued
    finally:
        gate.set()
    stopped.get(timeout=5)
    assert log == [("refused", "refused"), ("refused", "asked"), "hold", 0, 1, 2]
