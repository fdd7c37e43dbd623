"""Wire event names and defaults shared by the protocol, channels and transports."""

from __future__ import annotations

PHX_JOIN = "phx_join"
PHX_LEAVE = "phx_leave"
PHX_REPLY = "phx_reply"
PHX_ERROR = "phx_error"
PHX_CLOSE = "phx_close"
HEARTBEAT = "heartbeat"
HEARTBEAT_TOPIC = "phoenix"
DISCONNECT = "disconnect"

#: Events a client may not broadcast or push as its own: they drive the protocol.
RESERVED_EVENTS = frozenset({PHX_JOIN, PHX_LEAVE, PHX_REPLY, PHX_ERROR, PHX_CLOSE})

DEFAULT_MAX_CHANNELS = 100
DEFAULT_MAX_FRAME_SIZE = 8 * 1024 * 1024
DEFAULT_HEARTBEAT_TIMEOUT = 60.0
DEFAULT_POOL_SIZE = 8
DEFAULT_STOP_TIMEOUT = 5.0
