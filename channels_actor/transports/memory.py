"""An in-memory transport: frames go to a callable instead of a network socket.

The testing kit builds on it; so can any in-process client. Frames are the
values the connection's serializer produced (``Message`` / ``Reply`` with the
noop serializer).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..serializers import Frame
    from .frames import SharedFrames

__all__ = ["MemoryTransport"]


class MemoryTransport:
    """Delivers every frame to ``sink`` on the sending thread.

    Args:
        sink: called with each frame; must be thread-safe and quick.
        on_close: called with ``"disconnect"`` when the socket id is told to
            disconnect, or ``"shutdown"`` when the endpoint stops.
    """

    name = "memory"

    def __init__(
        self, sink: Callable[[Frame], Any], on_close: Callable[[str], Any] | None = None
    ) -> None:
        self._sink = sink
        self._on_close = on_close

    def send(self, frame: Frame) -> None:
        self._sink(frame)

    def send_shared(self, shared: SharedFrames) -> None:
        for one in shared.frames:
            self._sink(one.frame)  # type: ignore[arg-type]

    def published(self, backlog: Callable[[], int]) -> None:
        return None  # nothing is read from a socket, so there is nothing to slow down

    def disconnect(self) -> None:
        if self._on_close is not None:
            self._on_close("disconnect")

    def shutdown(self) -> None:
        if self._on_close is not None:
            self._on_close("shutdown")
