"""Who is present where, on one node: the sans-IO state of a Presence tracker.

Theory of operation
-------------------
An entry is one ``track``: an owner (the channel's actor ref), a topic, a key
(the user id, say) and a meta mapping. An owner tracks a key in a topic at
most once (:class:`AlreadyTracked`); several owners may track the same key,
which is how one user on two devices has two metas. Every entry carries a
unique ``phx_ref`` in its meta and a :class:`Tag` ``(node, clock)``: this
node's name and a counter that grows with each change made here.

The class holds plain dicts and does no I/O and no locking: one thread (the
tracker actor) owns it, and tests drive it directly. Each change returns the
entries that joined and left, which the caller feeds to a
:class:`~.diffs.DiffBuffer`.

Replication: next
-----------------
Each node owns the entries of its own channels, the only ones it changes;
the tag ``(node, clock)`` is what makes their replication an observed-remove
set in the spirit of Phoenix's tracker:

- Every ``broadcast_period`` a heartbeat goes through the PubSub adapter to
  the other nodes with this node's clock and the delta since the last one
  (entries joined, tags removed), so a quiet node still says it is alive.
- A receiver keeps, per remote node, the last clock it applied. A delta
  whose start is that clock is applied (remote entries stored here under
  an owner ``(node,)``, listed like local ones, diffs made as for local
  changes); one with a gap, or a heartbeat from a node never seen, asks that
  node (``direct_broadcast``) for its full state, which replaces what was held
  for it and yields only the difference as a diff. A node that restarts
  comes back under a new name (``RedisPubSub`` claims one), so its old
  entries age out as a dead node's rather than mixing with the new ones.
- A node heard from for no heartbeat in ``down_period`` is down: its entries
  leave in one diff. After a Redis outage both sides resume with a full
  state transfer compared by tag, so what was already known is neither
  joined nor left again (no duplicate join/leave diffs).
"""

from __future__ import annotations

import base64
import itertools
import os
import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import ChannelError

__all__ = ["AlreadyTracked", "Entry", "PresenceState", "Tag", "make_ref"]

#: The metas of one key, in the order they were tracked.
Metas = list[Mapping[str, Any]]

_counter = itertools.count()
_SALT = os.urandom(4)


def make_ref() -> str:
    """A new ``phx_ref``: url-safe base64 of 12 unique bytes.

    A salt drawn once per process (unique across nodes) and the nanosecond
    clock mixed with a counter (unique within this process).
    """
    unique = (time.time_ns() << 16 | (next(_counter) & 0xFFFF)) & (1 << 64) - 1
    return base64.urlsafe_b64encode(_SALT + unique.to_bytes(8, "big")).decode("ascii")


class AlreadyTracked(ChannelError):
    """``track`` of a key that this channel already tracks in this topic (use ``update``)."""


@dataclass(frozen=True, slots=True)
class Tag:
    """Where and when an entry was made: the node's name and its clock then."""

    node: str
    clock: int


@dataclass(frozen=True, slots=True)
class Entry:
    """One tracked presence: ``owner`` tracks ``key`` in ``topic`` with ``meta``."""

    topic: str
    key: str
    owner: Hashable
    meta: Mapping[str, Any]
    """The user's meta with ``phx_ref`` (and ``phx_ref_prev`` after an update)."""
    tag: Tag

    @property
    def phx_ref(self) -> str:
        ref: str = self.meta["phx_ref"]
        return ref


class PresenceState:
    """The entries of one node, indexed by topic and by owner; see the module doc."""

    def __init__(self, node: str) -> None:
        self.node = node
        self.clock = 0
        self._entries: dict[tuple[Hashable, str, str], Entry] = {}
        # topic -> key -> phx_ref -> entry, in the order they were tracked
        self._topics: dict[str, dict[str, dict[str, Entry]]] = {}
        self._owners: dict[Hashable, set[tuple[str, str]]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def _tag(self) -> Tag:
        self.clock += 1
        return Tag(self.node, self.clock)

    def track(self, owner: Hashable, topic: str, key: str, meta: Mapping[str, Any]) -> Entry:
        """Add an entry; return it (its meta carries the new ``phx_ref``).

        Raises:
            AlreadyTracked: ``owner`` already tracks ``key`` in ``topic``.
        """
        if (owner, topic, key) in self._entries:
            msg = (
                f"{key!r:.80} is already tracked in {topic!r:.80} by this channel; "
                "call update() to change its meta, or untrack() first"
            )
            raise AlreadyTracked(msg)
        entry = Entry(topic, key, owner, {**meta, "phx_ref": make_ref()}, self._tag())
        self._add(entry)
        return entry

    def untrack(self, owner: Hashable, topic: str, key: str) -> Entry | None:
        """Remove an entry; return it, or None when it was not tracked."""
        entry = self._entries.get((owner, topic, key))
        if entry is not None:
            self._remove(entry)
            self._tag()
        return entry

    def update(
        self,
        owner: Hashable,
        topic: str,
        key: str,
        meta: Mapping[str, Any] | Callable[[Mapping[str, Any]], Mapping[str, Any]],
    ) -> tuple[Entry, Entry] | None:
        """Replace an entry's meta; return ``(old, new)``, or None when not tracked.

        ``meta`` may be a function of the old meta. The new meta gets a new
        ``phx_ref`` and the old one as ``phx_ref_prev``.
        """
        old = self._entries.get((owner, topic, key))
        if old is None:
            return None
        if callable(meta):
            meta = meta(old.meta)
        self._remove(old)
        new_meta = {**meta, "phx_ref": make_ref(), "phx_ref_prev": old.phx_ref}
        new = Entry(topic, key, owner, new_meta, self._tag())
        self._add(new)
        return old, new

    def untrack_owner(self, owner: Hashable) -> list[Entry]:
        """Remove every entry of ``owner`` (its channel ended); return them."""
        pairs = self._owners.get(owner)
        if not pairs:
            return []
        removed = [self._entries[(owner, topic, key)] for topic, key in list(pairs)]
        for entry in removed:
            self._remove(entry)
        self._tag()
        return removed

    def list(self, topic: str) -> dict[str, dict[str, Metas]]:
        """``{key: {"metas": [meta, ...]}}`` for ``topic``, metas in tracking order."""
        keys = self._topics.get(topic, {})
        return {key: {"metas": [e.meta for e in refs.values()]} for key, refs in keys.items()}

    def get_by_key(self, topic: str, key: str) -> Metas:
        """The metas of ``key`` in ``topic`` (empty when nobody tracks it)."""
        return [entry.meta for entry in self._topics.get(topic, {}).get(key, {}).values()]

    def _add(self, entry: Entry) -> None:
        self._entries[(entry.owner, entry.topic, entry.key)] = entry
        self._topics.setdefault(entry.topic, {}).setdefault(entry.key, {})[entry.phx_ref] = entry
        self._owners.setdefault(entry.owner, set()).add((entry.topic, entry.key))

    def _remove(self, entry: Entry) -> None:
        del self._entries[(entry.owner, entry.topic, entry.key)]
        keys = self._topics[entry.topic]
        refs = keys[entry.key]
        del refs[entry.phx_ref]
        if not refs:
            del keys[entry.key]
            if not keys:
                del self._topics[entry.topic]
        pairs = self._owners[entry.owner]
        pairs.discard((entry.topic, entry.key))
        if not pairs:
            del self._owners[entry.owner]
