"""Bounds on messages a client has started but not finished sending.

Theory of operation
-------------------
A WebSocket message may arrive in many frames (fragments), and one frame in
many reads. Until the last byte, simple-websocket keeps what came so far in
``Server.incoming_message`` (the decoded text of the first read, then a
``bytearray`` it appends every later fragment to). wsproto keeps almost
nothing itself: it hands out each read's share of a data frame's payload at
once, and buffers only an incomplete header (at most 14 bytes) or a control
frame (at most 125 bytes of payload) until it is whole. So the memory an
unfinished message pins is, to within those few bytes, the size of
``incoming_message``.

Two limits keep that memory bounded, both checked by the reactor after each
read and by the idle sweep:

- time: a message must be complete within ``incomplete_message_timeout`` of
  the read that began it, or the connection is closed (1008). Bytes of an
  unfinished message still count as activity for ``heartbeat_timeout`` (a
  large message on a slow link cannot carry heartbeats meanwhile); this
  deadline is what stops a client that trickles one forever.
- space: :class:`IncompleteMessages` sums the bytes held by every
  connection of an endpoint; the connection whose unfinished message would
  take the sum past ``max_incomplete_bytes`` is closed (1013, try again
  later) and its bytes dropped. The other connections are untouched.

The sum can pass the bound by at most one read (64 KiB) for the moment
between the read and the check. Pure bookkeeping; the reactor thread is the
only one that changes it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .._stats import Counters

__all__ = ["IncompleteMessages", "held_size"]

#: The counter that mirrors :attr:`IncompleteMessages.held` in ``Endpoint.stats()``.
HELD_COUNTER = "incomplete_bytes_held"


class IncompleteMessages:
    """The bytes held in unfinished messages across one endpoint's connections.

    Args:
        limit: the most bytes they may hold together.
        counters: the endpoint's counters; ``incomplete_bytes_held`` follows
            :attr:`held` there, so ``Endpoint.stats()`` shows it.
    """

    __slots__ = ("_counters", "_held", "limit")

    def __init__(self, limit: int, counters: Counters | None = None) -> None:
        self.limit = limit
        self._held = 0
        self._counters = counters

    @property
    def held(self) -> int:
        """Bytes held in unfinished messages now."""
        return self._held

    def change(self, old: int, new: int) -> bool:
        """Move one connection's share from ``old`` to ``new`` bytes.

        Returns False, changing nothing, when growing it would pass the limit.
        """
        delta = new - old
        if delta > 0 and self._held + delta > self.limit:
            return False
        if delta:
            self._held += delta
            if self._counters is not None:
                self._counters.incr(HELD_COUNTER, delta)
        return True


def held_size(message: str | bytes | bytearray) -> int:
    """The bytes an unfinished message holds (its UTF-8 size when still text).

    Text is measured in bytes, not characters: simple-websocket turns it into
    UTF-8 on the next fragment, and a character takes up to four.
    """
    if isinstance(message, str):
        return len(message) if message.isascii() else len(message.encode())
    return len(message)
