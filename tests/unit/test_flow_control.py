"""FlowControl's decisions, driven step by step: a reactor stand-in runs calls when told.

The real reactor cannot be made to interleave a hold and a resume on demand;
this one queues ``call_soon`` and ``call_later`` calls and runs them in the
order the test chooses, so the interleavings that matter are each run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from channels_actor._flow import FlowControl
from channels_actor._stats import Counters


class StepReactor:
    def __init__(self) -> None:
        self.soon: list[Callable[[], Any]] = []
        self.later: list[Callable[[], Any]] = []

    def call_soon(self, fn: Callable[[], Any]) -> None:
        self.soon.append(fn)

    def call_later(self, delay: float, fn: Callable[[], Any]) -> None:
        self.later.append(fn)

    def run_soon(self) -> None:
        calls, self.soon = self.soon, []
        for fn in calls:
            fn()

    def run_later(self) -> None:
        calls, self.later = self.later, []
        for fn in calls:
            fn()


class Publisher:
    def __init__(self) -> None:
        self.paused = False
        self.taken = 0.0

    def draining(self, horizon: float) -> bool:
        return self.taken >= horizon

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False


def _flow(reactor: StepReactor, depth: list[int]) -> FlowControl:
    return FlowControl(
        reactor,  # type: ignore[arg-type]
        Counters(),
        lambda: depth[0],
        queue_high=4,
        queue_low=2,
    )


def test_a_hold_queued_before_a_resume_does_not_outlive_it() -> None:
    reactor, depth = StepReactor(), [10]
    flow = _flow(reactor, depth)
    first, late = Publisher(), Publisher()
    flow.published(first, lambda: 0)  # over the high mark: pause
    reactor.run_soon()
    assert first.paused
    flow.published(late, lambda: 0)  # a new publisher during the pause: a hold is queued
    depth[0] = 0
    reactor.run_later()  # the resume check runs before the queued hold
    assert not first.paused
    reactor.run_soon()  # then the hold: the pause is over, so it does nothing
    assert not late.paused
    assert flow.counters.get("backpressure_pauses") == 1


def test_a_stalled_congested_connection_does_not_keep_the_pause() -> None:
    reactor, depth = StepReactor(), [0]
    flow = _flow(reactor, depth)
    publisher, slow = Publisher(), Publisher()
    flow.published(publisher, lambda: 0)
    slow.taken = float("inf")  # draining
    flow.congested(slow)
    reactor.run_soon()
    assert publisher.paused
    reactor.run_later()
    assert publisher.paused  # congested and draining: still held
    slow.taken = 0.0  # took nothing for longer than the grace: stalled
    reactor.run_later()
    assert not publisher.paused
