"""The exception hierarchy.

Programmer faults (a bad callback return, pushing before the join finished, an
unserializable message) raise at once in the caller. Peer faults (a malformed
frame, an unknown topic) never raise into user code: they become an error reply,
a closed connection or a WARNING log.
"""

from __future__ import annotations

__all__ = [
    "BroadcastError",
    "CallbackReturnError",
    "ChannelError",
    "ChannelTimeout",
    "ChannelsError",
    "ConfigurationError",
    "InvalidMessageError",
    "TokenError",
    "TokenExpired",
    "TokenInvalid",
    "TokenMissing",
]


class ChannelsError(Exception):
    """Root of every error raised by channels_actor."""


class ChannelError(ChannelsError):
    """A channel operation that cannot be done in the channel's current state.

    Raised by ``push`` before the channel has joined, or with a message that
    cannot be serialized.
    """


class BroadcastError(ChannelError):
    """A broadcast failed: its message cannot be serialized, or the PubSub is down."""


class CallbackReturnError(ChannelsError, TypeError):
    """A channel callback returned a value outside its documented forms."""


class InvalidMessageError(ChannelsError, ValueError):
    """A frame from a peer is malformed; the connection that sent it is closed."""


class ConfigurationError(ChannelsError, ValueError):
    """The endpoint, socket handler or channel is misconfigured."""


class ChannelTimeout(ChannelsError, TimeoutError):
    """Waiting on a channel or the runtime took longer than the given timeout."""


class TokenError(ChannelsError):
    """A token did not verify (see :class:`channels_actor.Token`).

    ``reason`` is Phoenix's: ``"invalid"``, ``"expired"`` or ``"missing"``,
    so ``connect`` can answer ``("error", {"reason": exc.reason})``.
    """

    reason = "invalid"


class TokenInvalid(TokenError):
    """Not a token, tampered with, signed with another secret or salt, or in the future."""


class TokenMissing(TokenInvalid):
    """No token was given (``None``); a TokenInvalid whose reason is ``"missing"``."""

    reason = "missing"


class TokenExpired(TokenError):
    """A genuine token signed longer ago than its ``max_age``."""

    reason = "expired"
