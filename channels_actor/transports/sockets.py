"""Socket calls shared by the transports: non-blocking flags and kernel timeouts.

Sockets stay in blocking mode. Reads on the reactor and WebSocket writes (from
any thread) must never wait, so they pass flags that make that one call return
at once; a handshake thread, which may wait, bounds the wait with
:func:`set_io_timeout`.
"""

from __future__ import annotations

import socket
import struct

__all__ = ["RECV_FLAGS", "SEND_FLAGS", "set_io_timeout"]

#: ``recv`` that returns at once (``BlockingIOError`` when nothing has arrived).
RECV_FLAGS = getattr(socket, "MSG_DONTWAIT", 0)
#: ``send`` that returns at once, and no ``SIGPIPE`` when the peer has gone.
SEND_FLAGS = getattr(socket, "MSG_DONTWAIT", 0) | getattr(socket, "MSG_NOSIGNAL", 0)


def set_io_timeout(sock: socket.socket, seconds: float) -> None:
    """Time out blocking reads and writes on ``sock`` after ``seconds`` (0: never).

    Kernel timeouts (``SO_RCVTIMEO``/``SO_SNDTIMEO``) instead of
    ``socket.settimeout``: that one releases the GIL for its ``ioctl`` and makes
    every ``recv`` a ``poll`` plus a ``recv``, and on a busy server each release
    costs the handshake thread a wait to get the GIL back. A timed-out call
    raises ``BlockingIOError``.
    """
    whole = int(seconds)
    value = struct.pack("ll", whole, int((seconds - whole) * 1e6))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, value)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, value)
