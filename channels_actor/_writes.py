"""Write batching per thread: frames written during one unit of work leave together.

A pool worker handles up to a batch of one channel's messages at a time.
Under load those are often several intercepted broadcasts, each pushing a
frame to the same client; written one by one, that is a system call (and a
GIL round trip) per frame. Between :func:`start` and :func:`flush`,
transports that support it hand their bytes to :func:`defer` instead, and
:func:`flush` writes each transport's bytes with a single call, in order.
"""

from __future__ import annotations

import logging
import threading
from typing import Protocol

__all__ = ["Target", "defer", "flush", "start"]

logger = logging.getLogger("channels_actor.transport")

_local = threading.local()


class Target(Protocol):
    """A transport whose raw writes can be batched."""

    def write_now(self, data: bytes) -> None:
        """Write ``data`` (whole frames) now, bypassing the batch."""


def start() -> None:
    """Begin batching the writes made on this thread."""
    _local.pending = {}


def defer(target: Target, data: bytes) -> bool:
    """Keep ``data`` for ``target`` until :func:`flush`; False when not batching."""
    pending: dict[Target, list[bytes]] | None = getattr(_local, "pending", None)
    if pending is None:
        return False
    chunks = pending.get(target)
    if chunks is None:
        pending[target] = [data]
    else:
        chunks.append(data)
    return True


def flush() -> None:
    """Write what was deferred on this thread, one call per target, and stop batching."""
    pending: dict[Target, list[bytes]] | None = getattr(_local, "pending", None)
    _local.pending = None
    if not pending:
        return
    for target, chunks in pending.items():
        try:
            target.write_now(chunks[0] if len(chunks) == 1 else b"".join(chunks))
        except Exception:
            logger.exception("Writing batched frames to %r failed", target)
