"""One timer thread for every ``send_after``, alive only while timers are pending.

A ``threading.Timer`` per call would be one thread per pending message; with
thousands of channels that is thousands of threads. Here a heap holds the due
times and a single thread sleeps until the next one, exiting when the heap is
empty so that nothing of the library lingers after the last timer.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["TimerHandle", "call_later", "discard_stopped"]

logger = logging.getLogger("channels_actor.timer")


class TimerHandle:
    """A pending ``send_after``; ``cancel()`` stops it if it has not fired."""

    __slots__ = ("_cancelled", "due", "target")

    def __init__(self, due: float, target: Any = None) -> None:
        self.due = due
        self.target = target  # the actor ref it will tell, if any
        self._cancelled = False

    def cancel(self) -> None:
        """Do not fire (no effect once fired)."""
        self._cancelled = True

    @property
    def cancelled(self) -> bool:
        return self._cancelled


_lock = threading.Condition()
_heap: list[tuple[float, int, TimerHandle, Callable[[], Any]]] = []
_seq = itertools.count()
_thread: threading.Thread | None = None


def call_later(delay: float, action: Callable[[], Any], target: Any = None) -> TimerHandle:
    """Run ``action`` on the timer thread after ``delay`` seconds.

    ``target`` is the actor ref the action tells: once it has stopped,
    :func:`discard_stopped` may drop the timer early.
    """
    global _thread
    due = time.monotonic() + max(0.0, delay)
    handle = TimerHandle(due, target)
    with _lock:
        heapq.heappush(_heap, (due, next(_seq), handle, action))
        if _thread is None:
            _thread = threading.Thread(target=_run, name="channels_actor-timer", daemon=True)
            _thread.start()
        else:
            _lock.notify()
    return handle


def discard_stopped() -> None:
    """Drop pending timers whose target actor has stopped (``Endpoint.stop``), so
    the timer thread ends as soon as nothing else is pending."""
    with _lock:
        kept = [
            item
            for item in _heap
            if item[2].target is None or not item[2].target.actor_stopped.is_set()
        ]
        if len(kept) != len(_heap):
            _heap[:] = kept
            heapq.heapify(_heap)
            _lock.notify()


def _run() -> None:
    global _thread
    while True:
        with _lock:
            while True:
                if not _heap:
                    _thread = None
                    return
                due, _, handle, action = _heap[0]
                wait = due - time.monotonic()
                if wait <= 0:
                    heapq.heappop(_heap)
                    break
                _lock.wait(wait)
        if handle.cancelled:
            continue
        try:
            action()
        except Exception:
            logger.exception("A send_after action failed")
