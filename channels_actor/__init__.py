"""channels_actor: Phoenix Channels for Python, as an actor runtime on threads.

Each joined channel runs in its own pykka actor under a supervisor; a registry
actor holds PubSub subscriptions; the wire protocol is Phoenix's, so the
official phoenix.js client works unchanged.
"""

from __future__ import annotations

import logging

from .channel import Channel as Channel
from .channel import SocketRef as SocketRef
from .channel import TimerHandle as TimerHandle
from .channel import broadcast as broadcast
from .channel import broadcast_from as broadcast_from
from .channel import push as push
from .channel import reply as reply
from .channel import send_after as send_after
from .channel import socket_ref as socket_ref
from .endpoint import Endpoint as Endpoint
from .errors import BroadcastError as BroadcastError
from .errors import CallbackReturnError as CallbackReturnError
from .errors import ChannelError as ChannelError
from .errors import ChannelsError as ChannelsError
from .errors import ChannelTimeout as ChannelTimeout
from .errors import ConfigurationError as ConfigurationError
from .errors import InvalidMessageError as InvalidMessageError
from .errors import TokenError as TokenError
from .errors import TokenExpired as TokenExpired
from .errors import TokenInvalid as TokenInvalid
from .errors import TokenMissing as TokenMissing
from .handler import SocketHandler as SocketHandler
from .message import Broadcast as Broadcast
from .message import Message as Message
from .message import Reply as Reply
from .presence import AlreadyTracked as AlreadyTracked
from .presence import Presence as Presence
from .pubsub import PubSub as PubSub
from .pubsub.redis_adapter import RedisPubSub as RedisPubSub
from .socket import Socket as Socket
from .socket import assign as assign
from .token import Token as Token

__version__ = "0.1.0"

__all__ = [
    "AlreadyTracked",
    "BroadcastError",
    "Broadcast",
    "CallbackReturnError",
    "Channel",
    "ChannelError",
    "ChannelTimeout",
    "ChannelsError",
    "ConfigurationError",
    "Endpoint",
    "InvalidMessageError",
    "Message",
    "Presence",
    "PubSub",
    "RedisPubSub",
    "Reply",
    "Socket",
    "SocketHandler",
    "SocketRef",
    "TimerHandle",
    "Token",
    "TokenError",
    "TokenExpired",
    "TokenInvalid",
    "TokenMissing",
    "__version__",
    "assign",
    "broadcast",
    "broadcast_from",
    "push",
    "reply",
    "send_after",
    "socket_ref",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())
