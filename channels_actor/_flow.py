"""Flow control: overload slows down the connections that publish, not the ones that read.

Theory of operation
-------------------
A broadcast costs one message to publish and one write per subscriber to
deliver. A client pushing as fast as TCP allows, whose ``handle_in``
broadcasts, can therefore make work faster than the registry fans it out;
the registry's inbox and then the subscribers' outgoing buffers grow until
the subscribers, reading as fast as they can, look like clients that
stopped reading. Phoenix has the same shape; there the publisher's process
is slowed by the mailbox of the PubSub. Here the slowing is explicit:

* **Pressure** is on while more than ``publish_queue_high`` broadcasts
  wait to be fanned out: in the registry's inbox, plus the client messages
  waiting in the publishing channels' mailboxes (each may broadcast; a
  client that floods is read ahead of its channel). Or while any
  connection has more than a
  quarter of its ``max_buffer`` waiting (beyond the chunk being written; it
  counts itself as *congested* until it is back under a sixteenth).
* **Publishers** are the connections whose channels have broadcast
  (:meth:`FlowControl.published`, called by ``broadcast``; the reactor also
  looks after each read from one, :meth:`FlowControl.read`, so a flood read
  ahead of a channel that is slow to run is caught too). While pressure
  is on, the reactor stops reading from them (their sockets leave the
  selector's read set), so their kernel buffers fill and TCP slows the
  clients down. Nothing they sent is lost; it is read later. The time they
  are paused does not count as client silence for the heartbeat timeout.
* **Resume**: the reactor looks again every ``check_interval`` while paused
  and resumes every publisher once that queued work is under
  ``publish_queue_low`` and no connection is congested.
* Publishers that are not connections (``Endpoint.broadcast`` from a thread
  of the application) are not slowed: the hard per-connection bound
  (``max_buffer``) applies to what they cause, and a subscriber that falls
  that far behind is closed with 1008.
* A congested client that takes nothing from its queue for ``stall_grace``
  (a second at most) is *stalled*: it has stopped reading rather than
  reading slowly, so it stops holding publishers back (one dead client must
  not freeze every room). Its backlog then grows until it passes
  ``max_buffer`` or ``write_timeout`` runs out, and it is closed with 1008.
  If it starts draining again it is congested again.

Each pause is counted (``backpressure_pauses``) with its duration
(``backpressure_paused_seconds``) in the endpoint's counters. The decisions
take a lock, but only at the edges (a connection becoming congested or
clear, a new publisher, a pause or resume), never per delivery.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ._stats import Counters
    from .transports.reactor import Reactor

__all__ = ["FlowControl", "Pausable"]

logger = logging.getLogger("channels_actor.transport")


class Pausable(Protocol):
    """A connection whose reading can stop; both methods run on the reactor thread."""

    def draining(self, horizon: float) -> bool:
        """True if the client took bytes since ``horizon`` (``time.monotonic()``)."""
        ...

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


class FlowControl:
    """One endpoint's overload state: congested connections, publishers, pauses.

    Args:
        reactor: where pauses and resumes run (they change selector registrations).
        counters: the endpoint's counters.
        queue_depth: the registry inbox's depth now (cheap; called per publish).
        queue_high: pause publishers when the inbox holds more than this.
        queue_low: resume when it holds fewer than this (and nothing is congested).
        check_interval: how often a pause looks whether it can end.
        stall_grace: seconds a congested connection may drain nothing and
            still hold publishers back; past it, it is stalled.
    """

    def __init__(
        self,
        reactor: Reactor,
        counters: Counters,
        queue_depth: Callable[[], int],
        *,
        queue_high: int,
        queue_low: int,
        check_interval: float = 0.001,
        stall_grace: float = 1.0,
    ) -> None:
        self._reactor = reactor
        self.counters = counters
        self._queue_depth = queue_depth
        self._queue_high = queue_high
        self._queue_low = queue_low
        self._interval = check_interval
        self._lock = threading.Lock()
        # each publisher with the mailbox depth of the channel that last broadcast
        self._publishers: dict[Pausable, Callable[[], int]] = {}
        self._stall_grace = stall_grace
        self._congested: set[Pausable] = set()
        self._paused_since: float | None = None

    # any thread ---------------------------------------------------------------

    def published(self, publisher: Pausable, backlog: Callable[[], int]) -> None:
        """``publisher``'s channel has just broadcast: remember it, pause if pressured.

        ``backlog`` says how many of the publisher's messages its channel
        has yet to handle.
        """
        if self._publishers.get(publisher) != backlog:  # a bound method: equal, not identical
            with self._lock:
                new = publisher not in self._publishers
                self._publishers[publisher] = backlog
                paused = self._paused_since is not None
            if new and paused:
                self._reactor.call_soon(functools.partial(self._hold, publisher))
                return
        if self._paused_since is None and (
            self._queue_depth() + backlog() > self._queue_high or self._draining_congested()
        ):
            self._pause()

    def read(self, publisher: Pausable) -> None:
        """The reactor has just read from ``publisher``: pause if pressured (reactor thread).

        ``published`` looks when a channel broadcasts; this looks when the
        reactor reads ahead of it. Without it, a channel whose worker does not
        get to run (a loaded machine) would let the reactor read its client's
        flood into the mailbox unchecked, and the burst that follows could
        overrun the subscribers. Only connections that have published count.
        """
        backlog = self._publishers.get(publisher)
        if backlog is None or self._paused_since is not None:
            return
        if self._queue_depth() + backlog() > self._queue_high:
            self._pause()

    def congested(self, connection: Pausable) -> None:
        """``connection``'s backlog passed its high mark."""
        with self._lock:
            self._congested.add(connection)
        if self._paused_since is None and self._publishers:
            self._pause()

    def clear(self, connection: Pausable) -> None:
        """A congested ``connection`` drained below its low mark, or closed."""
        with self._lock:
            self._congested.discard(connection)

    def _draining_congested(self) -> int:
        """Congested connections that are still taking bytes (not stalled)."""
        if not self._congested:
            return 0
        horizon = time.monotonic() - self._stall_grace
        with self._lock:
            congested = list(self._congested)
        return sum(1 for c in congested if c.draining(horizon))

    def forget(self, publisher: Pausable) -> None:
        """``publisher`` closed."""
        with self._lock:
            self._publishers.pop(publisher, None)

    # the pause ------------------------------------------------------------------

    def _pause(self) -> None:
        with self._lock:
            if self._paused_since is not None:
                return
            self._paused_since = time.monotonic()
            publishers = list(self._publishers)
        self.counters.incr("backpressure_pauses")
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "Pausing %d publishers: %d broadcasts queued, %d clients congested",
                len(publishers),
                self._queued(),
                len(self._congested),
            )
        for publisher in publishers:
            self._reactor.call_soon(functools.partial(self._hold, publisher))
        self._reactor.call_later(self._interval, self._check)

    def _hold(self, publisher: Pausable) -> None:
        """Reactor thread: stop reading ``publisher`` if the pause is still on.

        Checked here, where the pause also ends (``_check``), so a hold queued
        just before a resume cannot outlive it and leave a publisher unread.
        """
        if self._paused_since is not None:
            publisher.pause_reading()

    def _queued(self) -> int:
        with self._lock:
            backlogs = list(self._publishers.values())
        return self._queue_depth() + sum(backlog() for backlog in backlogs)

    def _check(self) -> None:
        """Reactor thread: resume when the pressure is gone, else look again later."""
        if self._draining_congested() or self._queued() >= self._queue_low:
            self._reactor.call_later(self._interval, self._check)
            return
        with self._lock:
            since, self._paused_since = self._paused_since, None
            publishers = list(self._publishers)
        if since is not None:
            paused = time.monotonic() - since
            self.counters.add_seconds("backpressure_paused_seconds", paused)
            logger.debug("Resuming %d publishers after %.3fs", len(publishers), paused)
        for publisher in publishers:
            publisher.resume_reading()
