"""The nodes of a Redis cluster: this node's claim to its name, and the others it knows.

A node claims ``<namespace>:node:<name>`` with ``SET NX`` and an expiry that
it renews, so that a second live node with the same name is refused at start,
and a node that died frees its name after ``ttl``. The other nodes are known
from what they publish (every record names its origin; a starting node says
hello, a stopping one goodbye) and from the claimed names, read again at each
renewal: a node that died without a goodbye is forgotten once its name has
expired. Knowing the nodes here is what lets ``direct_broadcast`` answer
without waiting for Redis.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

__all__ = ["NodeNames"]

#: Renew this node's name if it is ours, claim it if it expired (Redis restarted).
#: Returns 1 (ours), 0 (another live node holds it).
_RENEW = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
elseif not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""

#: Give up this node's name if it is still ours.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class NodeNames:
    """This node's name in Redis and the live nodes it has heard of.

    The Redis calls raise redis-py's errors; the adapter decides what an outage means.

    Args:
        client: a redis-py client.
        namespace: the cluster's namespace.
        node_name: this node's name.
        ttl: seconds a name outlives a node that stopped renewing it.
    """

    def __init__(self, client: Any, namespace: str, node_name: str, ttl: float) -> None:
        self._client = client
        self._prefix = f"{namespace}:node:"
        self.node_name = node_name
        self._key = self._prefix + node_name
        self._token = uuid.uuid4().hex  # tells our claim from another process's
        self.ttl_ms = max(1000, int(ttl * 1000))
        #: the other nodes, with when each was last heard of (monotonic)
        self._heard: dict[str, float] = {}

    def key_of(self, node_name: str) -> str:
        """The Redis key a node named ``node_name`` claims."""
        return self._prefix + node_name

    # this node's name -------------------------------------------------------

    def claim(self) -> bool:
        """Claim or renew the name; False when another live node holds it."""
        return bool(self._client.eval(_RENEW, 1, self._key, self._token, self.ttl_ms))

    def release(self) -> None:
        """Give the name back, if it is still ours."""
        self._client.eval(_RELEASE, 1, self._key, self._token)

    # the other nodes ----------------------------------------------------------

    def refresh(self) -> None:
        """Learn the nodes from their names in Redis; forget those gone for a ``ttl``."""
        pattern = _glob_escape(self._prefix) + "*"
        start = len(self._prefix)
        found = {
            key.decode(errors="replace")[start:]
            for key in self._client.scan_iter(match=pattern, count=1000)
        }
        found.discard(self.node_name)
        now = time.monotonic()
        horizon = now - self.ttl_ms / 1000
        heard = self._heard
        for name in found:
            heard[name] = now
        for name, seen in list(heard.items()):
            if name not in found and seen < horizon:
                heard.pop(name, None)

    def heard(self, node_name: str) -> None:
        """``node_name`` published something: it is alive (receiving thread; no lock)."""
        self._heard[node_name] = time.monotonic()

    def left(self, node_name: str) -> None:
        """``node_name`` said goodbye."""
        self._heard.pop(node_name, None)

    def knows(self, node_name: str) -> bool:
        """Whether ``node_name`` is a live node heard of."""
        return node_name in self._heard

    def others(self) -> list[str]:
        """The other live nodes heard of, sorted."""
        return sorted(self._heard)


def _glob_escape(text: str) -> str:
    """``text`` as a literal in a Redis ``MATCH`` pattern."""
    return "".join("\\" + char if char in "*?[]\\" else char for char in text)
