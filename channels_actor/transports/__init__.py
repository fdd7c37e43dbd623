"""Transports: the I/O side of connections."""

from __future__ import annotations

from .memory import MemoryTransport as MemoryTransport

__all__ = ["MemoryTransport"]
