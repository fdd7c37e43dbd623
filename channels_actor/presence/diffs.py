"""Coalescing presence changes into one ``presence_diff`` per topic per window.

Theory of operation
-------------------
Between two flushes (``broadcast_period``), the changes of each topic pile up
here as the metas that joined and left, keyed by ``phx_ref``. A meta that
joins and leaves within one window cancels out: clients never saw it, so the
diff does not carry it. ``update`` is a leave of the old meta and a join of
the new one, each under its own ``phx_ref``, so both survive. A flush takes
every topic's diff, in the order the topics first changed, and starts afresh.

phoenix.js applies a diff's joins, then its leaves, each matched by
``phx_ref``; as refs are unique, applying a diff twice, or one whose joins a
``presence_state`` already holds, changes nothing: what makes the window safe.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .state import Entry

__all__ = ["DiffBuffer", "Presences", "Publish"]

#: ``{key: {"metas": [meta, ...]}}``, the shape of ``presence_state`` and of each side of a diff.
Presences = dict[str, dict[str, list[Mapping[str, Any]]]]

#: ``publish(topic, joins, leaves)``: hand on one topic's diff.
Publish = Callable[[str, Presences, Presences], Any]


class _TopicDiff:
    __slots__ = ("joins", "leaves")

    def __init__(self) -> None:
        self.joins: dict[str, Entry] = {}
        self.leaves: dict[str, Entry] = {}


class DiffBuffer:
    """Pending joins and leaves per topic, coalesced until :meth:`take`."""

    def __init__(self) -> None:
        self._topics: dict[str, _TopicDiff] = {}

    def __bool__(self) -> bool:
        return bool(self._topics)

    def add(self, joined: Iterable[Entry] = (), left: Iterable[Entry] = ()) -> None:
        """Record entries that joined and left (in that order)."""
        for entry in joined:
            self._topic(entry.topic).joins[entry.phx_ref] = entry
        for entry in left:
            pending = self._topic(entry.topic)
            if pending.joins.pop(entry.phx_ref, None) is None:
                pending.leaves[entry.phx_ref] = entry
            elif not pending.joins and not pending.leaves:
                del self._topics[entry.topic]  # joined and left unseen: nothing to say

    def _topic(self, topic: str) -> _TopicDiff:
        pending = self._topics.get(topic)
        if pending is None:
            pending = self._topics[topic] = _TopicDiff()
        return pending

    def take(self) -> list[tuple[str, Presences, Presences]]:
        """Every pending ``(topic, joins, leaves)``, emptying the buffer."""
        taken = [
            (topic, _grouped(pending.joins.values()), _grouped(pending.leaves.values()))
            for topic, pending in self._topics.items()
        ]
        self._topics = {}
        return taken


def _grouped(entries: Iterable[Entry]) -> Presences:
    grouped: Presences = {}
    for entry in entries:
        grouped.setdefault(entry.key, {"metas": []})["metas"].append(entry.meta)
    return grouped
