"""One node's link to its cluster: which side of it is down, and what outages cost.

A cluster adapter has two sides that each lose the medium on their own: the
side that publishes and the side that receives. An outage begins when the
first side fails and ends when both work again; it is logged once at each
end, with what it cost. The counts (outages, broadcasts refused and lost,
records that could not be read) are what ``Endpoint.stats()`` reports.
Thread-safe: both sides and every publisher call in.
"""

from __future__ import annotations

import logging
import threading
import time

from .._redact import preview

__all__ = ["PUBLISH", "RECEIVE", "Outages"]

PUBLISH = "publish"
RECEIVE = "receive"

#: A record nobody can read is logged at most this often (seconds).
MALFORMED_LOG_EVERY = 60.0


class Outages:
    """The link's state and counts.

    Args:
        where: the medium as a log line may show it (never with a password).
        logger: where the outage lines go.
    """

    def __init__(self, where: str, logger: logging.Logger) -> None:
        self.where = where
        self._logger = logger
        self._lock = threading.Lock()
        self._down: set[str] = set()
        self._since: float | None = None
        self._refused_now = 0
        self._lost_now = 0
        self._counts = {"outages": 0, "refused": 0, "lost": 0, "malformed": 0}
        self._malformed_logged_at = 0.0

    @property
    def connected(self) -> bool:
        """False during an outage (either side has lost the medium)."""
        return not self._down

    @property
    def publishing_down(self) -> bool:
        """True while broadcasts must be refused."""
        return PUBLISH in self._down

    def counts(self) -> dict[str, float]:
        """A copy of the counts."""
        with self._lock:
            return dict(self._counts)

    def fail(self, side: str, exc: BaseException) -> bool:
        """``side`` lost the medium. Returns True when the publishing side should be
        woken to check its own connection (the receiving side saw it first)."""
        with self._lock:
            first = not self._down
            # until the publisher has checked, broadcasts are refused
            wake = side == RECEIVE and PUBLISH not in self._down
            self._down.update((side, PUBLISH))
            if first:
                self._since = time.monotonic()
                self._refused_now = self._lost_now = 0
                self._counts["outages"] += 1
        if first:
            self._logger.warning(
                "Lost %s (%s: %s): broadcasts raise BroadcastError until it is back "
                "(local_broadcast still works); reconnecting",
                self.where,
                type(exc).__name__,
                preview(str(exc)),
            )
        return wake

    def recover(self, side: str) -> None:
        """``side`` works again; the outage ends once both do."""
        with self._lock:
            if side not in self._down:
                return
            self._down.discard(side)
            if self._down or self._since is None:
                return
            seconds = time.monotonic() - self._since
            refused, lost = self._refused_now, self._lost_now
            self._since = None
        self._logger.warning(
            "%s is back after %.1fs: %d broadcasts were refused and %d lost meanwhile "
            "(what other nodes published then did not reach this one)",
            self.where,
            seconds,
            refused,
            lost,
        )

    def refused(self) -> None:
        """A broadcast was refused to its publisher."""
        with self._lock:
            self._counts["refused"] += 1
            self._refused_now += 1

    def lost(self, dropped: int) -> None:
        """``dropped`` accepted broadcasts will never be sent."""
        if dropped:
            with self._lock:
                self._counts["lost"] += dropped
                self._lost_now += dropped

    def malformed(self) -> int | None:
        """Count a record that could not be read; its count if it is due for a log line."""
        now = time.monotonic()
        with self._lock:
            self._counts["malformed"] += 1
            count = self._counts["malformed"]
            if count != 1 and now - self._malformed_logged_at < MALFORMED_LOG_EVERY:
                return None
            self._malformed_logged_at = now
            return count
