"""The diff publisher: runs ``fetch`` and sends each ``presence_diff``, off the tracker.

Phoenix fetches a diff's user data in a task, one after another, so that a
slow ``fetch`` (a database query) holds up neither tracks nor lists. This
actor plays that part: the tracker tells it each flushed diff and goes on;
here they are fetched and broadcast in the order they came, so one topic's
diffs still reach clients in the order they were made.
"""

from __future__ import annotations

import logging
from typing import Any, NamedTuple

from .._pool import ServiceActor
from .._redact import preview
from .diffs import Presences, Publish

__all__ = ["Diff", "DiffPublisher"]

logger = logging.getLogger("channels_actor.presence")


class Diff(NamedTuple):
    """Told by the tracker: one topic's coalesced changes."""

    topic: str
    joins: Presences
    leaves: Presences


class DiffPublisher(ServiceActor):
    """Hands each :class:`Diff` to ``send``, in order; a failure is logged, not fatal."""

    thread_name = "channels_actor-presence-diffs"

    def __init__(self, send: Publish) -> None:
        """``send`` fetches and broadcasts one diff, on this actor's thread."""
        super().__init__()
        self._send = send

    def on_receive(self, message: Any) -> Any:
        if type(message) is Diff:
            try:
                self._send(message.topic, message.joins, message.leaves)
            except Exception:
                logger.exception("Sending the presence_diff of %s failed", preview(message.topic))
            return None
        return super().on_receive(message)
