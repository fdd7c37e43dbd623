"""The reactor's cross-thread calls: one wake-up byte at a time, and none lost."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from channels_actor.transports.reactor import Reactor

WAIT = 10.0


@pytest.fixture
def reactor() -> Iterator[Reactor]:
    reactor = Reactor(name="test-reactor")
    reactor.start()
    yield reactor
    reactor.stop()


def test_calls_from_many_threads_in_lockstep_all_run(reactor: Reactor) -> None:
    """Each thread waits for its call to run before queueing the next one, so a
    wake-up lost between the loop draining its socket and clearing the flag would
    leave a thread waiting (the loop has no timeout: nothing else wakes it)."""
    rounds, threads = 2000, 4
    failures: list[str] = []

    def caller(n: int) -> None:
        for i in range(rounds):
            ran = threading.Event()
            reactor.call_soon(ran.set)
            if not ran.wait(WAIT):
                failures.append(f"thread {n}: call {i} did not run")
                return

    workers = [threading.Thread(target=caller, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(2 * WAIT)
    assert not failures


def test_a_busy_loop_is_woken_once(reactor: Reactor) -> None:
    """Calls queued while a call runs on the loop send no further wake-up bytes."""
    entered, release, done = threading.Event(), threading.Event(), threading.Event()
    ran: list[int] = []

    def block() -> None:
        entered.set()
        assert release.wait(WAIT)

    reactor.call_soon(block)
    assert entered.wait(WAIT)
    sent = 0
    original = reactor._wake_w
    assert original is not None

    class Counting:
        def send(self, data: bytes) -> int:
            nonlocal sent
            sent += 1
            return original.send(data)  # type: ignore[union-attr]

    reactor._wake_w = Counting()  # type: ignore[assignment]
    try:
        for n in range(100):
            reactor.call_soon(lambda n=n: ran.append(n))
        reactor.call_soon(done.set)
        release.set()
        assert done.wait(WAIT)
    finally:
        reactor._wake_w = original
    assert ran == list(range(100))
    assert sent <= 1
