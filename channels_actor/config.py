"""Endpoint configuration: the recognised keys, their defaults and their checks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, Union

from ._constants import (
    DEFAULT_HEARTBEAT_TIMEOUT,
    DEFAULT_MAX_CHANNELS,
    DEFAULT_MAX_FRAME_SIZE,
    DEFAULT_POOL_SIZE,
    DEFAULT_STOP_TIMEOUT,
)
from ._redact import DEFAULT_REDACT_KEYS, Redactor, redactor
from .errors import ConfigurationError

__all__ = ["EndpointConfig"]

CheckOrigin = Union[bool, list[str], tuple[str, ...], Callable[[str], bool]]


@dataclass(frozen=True)
class EndpointConfig:
    """What ``Endpoint(**config)`` accepts. Durations are float seconds.

    Slow clients, fast publishers and large messages:

    * A single message may be as large as ``max_frame_size`` in either
      direction. A bigger outgoing one is refused where it is sent:
      ``push`` and ``reply`` raise ``ChannelError``, a broadcast
      (``broadcast``, ``Endpoint.broadcast`` once the endpoint serves
      WebSockets) raises ``BroadcastError``. One large message never makes
      a client "slow", however long it takes to read it.
    * A client is slow when what waits for it *beyond the chunk being
      written* (one message, or the broadcasts written to it together)
      passes ``max_buffer``, or when it has bytes waiting and takes none
      for ``write_timeout``. It gets the frames already started, whole,
      then a close frame with 1008 and the reason "outgoing buffer full" or
      "stopped reading" (phoenix.js sees the code, so it can tell this from
      a network failure); logged once and counted as
      ``slow_consumer_closed``. Memory per connection is therefore at most
      ``max_buffer`` plus the chunk being written (for broadcasts, bytes
      shared by every subscriber).
    * A fast publisher is slowed down, not its subscribers: when more than
      ``publish_queue_high`` broadcasts wait to be fanned out (in the PubSub
      registry, plus the client messages waiting for the channels that
      broadcast), or a client has more than a quarter of ``max_buffer``
      waiting, the server stops reading from the connections whose
      channels broadcast, until that queue is under ``publish_queue_low``
      and every client is under a sixteenth of ``max_buffer``. TCP then
      slows those clients down; nothing they send is lost. Counted as
      ``backpressure_pauses`` and ``backpressure_paused_seconds``; paused
      time is not client silence. ``Endpoint.broadcast`` from application
      threads is not slowed: its subscribers are protected only by the
      ``max_buffer`` bound above. A client that stopped reading holds
      publishers back until it is closed, at most ``write_timeout``.

    Attributes:
        check_origin: ``False`` (allow any), ``True`` (the origin's host must be
            ``url_host``; without one, only the loopback names ``localhost``,
            ``127.0.0.1`` and ``[::1]`` are accepted), a list of origins
            (``"https://a.com"``, ``"//*.b.com"``) or a callable taking the
            origin and returning a bool. ``True`` never trusts the request's own
            ``Host`` header: a DNS-rebinding page sends its own name in both.
        max_frame_size: bytes; a bigger client frame closes the connection (1009).
        heartbeat_timeout: seconds of client silence before the socket closes.
        max_channels_per_socket: joins one connection may hold at once.
        secret_key_base: secret for tokens signed by the endpoint.
        actor_mode: ``"pool"`` (channel actors share ``pool_size`` worker
            threads) or ``"thread"`` (one thread per channel actor).
        pool_size: worker threads in ``"pool"`` mode.
        stop_timeout: how long ``stop()`` waits for channels to terminate.
        compress: accept permessage-deflate when a client offers it (off, as
            in Phoenix: it costs zlib state and framing CPU per connection).
        max_buffer: bytes a connection may have waiting to be written beyond
            the message being written; past it the client is closed with 1008.
        handshake_threads: threads parsing complete HTTP requests and running
            ``connect`` (the reactor reads requests as they arrive).
        incomplete_message_timeout: seconds a client has to finish a message
            from the read that began it (30); past it the connection is closed
            with 1008. Bytes of an unfinished message count as activity for
            ``heartbeat_timeout``: this deadline is what stops a client that
            trickles one. At the default ``max_frame_size`` it asks for about
            2.2 Mbit/s.
        max_incomplete_bytes: bytes all of the endpoint's connections together
            may hold in messages they have begun but not finished (64 MiB, at
            least ``max_frame_size``); the connection whose message would pass
            it is closed with 1013 (try again later), the others are untouched.
        redact_keys: words that mark a key as secret in log lines and error
            messages: the values of matching keys (in payloads, frames, query
            strings, headers) are shown as ``[REDACTED]``. Matched
            case-insensitively as substrings, ignoring ``_``, ``-`` and spaces
            (``"token"`` also hides ``auth_token``). Giving a list replaces the
            default, which is ``("password", "passwd", "secret", "token",
            "authorization", "cookie", "api_key", "private_key", "credential",
            "session")``.
        max_topic_size: bytes (UTF-8) a topic may have; a longer ``phx_join``
            is refused with ``{"reason": "topic too long"}`` (default 1 KiB).
        write_timeout: seconds a client with bytes waiting may take none of
            them before it is closed with 1008 "stopped reading" (30 s).
        publish_queue_high: broadcasts waiting to be fanned out past which
            connections that publish stop being read (64).
        publish_queue_low: queued broadcasts under which they are read again (16).
        max_mailbox: messages one channel may have waiting (client pushes,
            intercepted broadcasts, ``handle_info`` messages; default 10,000).
            A message past it is dropped (counted as ``mailbox_overflows``) and
            the channel is overloaded: it ends as a crash, ``terminate`` gets
            ``("error", ChannelError)`` naming ``max_mailbox``, and the client
            gets ``phx_error`` and may rejoin.
        request_timeout: seconds a client has, from its connection, to send its
            whole request (the head, and a body for ``http_app``); past it the
            connection is closed, with a 408 if part of a request came (10.0).
        url_host: the host name clients reach this endpoint by, as Phoenix's
            ``url: [host: ...]``; what ``check_origin=True`` compares an
            origin's host with (None: only loopback origins pass).
    """

    check_origin: CheckOrigin = True
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE
    heartbeat_timeout: float = DEFAULT_HEARTBEAT_TIMEOUT
    max_channels_per_socket: int = DEFAULT_MAX_CHANNELS
    secret_key_base: str | None = None
    actor_mode: str = "pool"
    pool_size: int = DEFAULT_POOL_SIZE
    stop_timeout: float = DEFAULT_STOP_TIMEOUT
    compress: bool = False
    max_buffer: int = 1024 * 1024
    handshake_threads: int = 4
    incomplete_message_timeout: float = 30.0
    max_incomplete_bytes: int = 64 * 1024 * 1024
    redact_keys: tuple[str, ...] | list[str] = DEFAULT_REDACT_KEYS
    # Phoenix's binary frames cap a topic at 255 bytes; text frames have no cap
    # of their own, and a topic is held per join and shown in log lines.
    max_topic_size: int = 1024
    write_timeout: float = 30.0
    publish_queue_high: int = 64
    publish_queue_low: int = 16
    max_mailbox: int = 10_000
    request_timeout: float = 10.0
    url_host: str | None = None

    @property
    def redactor(self) -> Redactor:
        """Renders values for log lines with ``redact_keys`` hidden (built once)."""
        return redactor(tuple(self.redact_keys))

    @classmethod
    def from_kwargs(cls, config: dict[str, Any]) -> EndpointConfig:
        """Build from ``Endpoint(**config)``, naming unknown keys and the valid ones."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(config) - known)
        if unknown:
            msg = (
                f"Unknown Endpoint option(s) {', '.join(unknown)}; "
                f"the options are: {', '.join(sorted(known))}"
            )
            raise ConfigurationError(msg)
        result = cls(**config)
        result._check()
        return result

    def _check(self) -> None:
        for name in (
            "max_frame_size",
            "max_channels_per_socket",
            "pool_size",
            "max_buffer",
            "handshake_threads",
            "max_incomplete_bytes",
            "max_topic_size",
            "publish_queue_high",
            "publish_queue_low",
            "max_mailbox",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                msg = f"Endpoint option {name} must be a positive int, got {value!r}"
                raise ConfigurationError(msg)
        if self.publish_queue_low > self.publish_queue_high:
            msg = (
                f"Endpoint option publish_queue_low ({self.publish_queue_low}) must not exceed "
                f"publish_queue_high ({self.publish_queue_high})"
            )
            raise ConfigurationError(msg)
        for name in (
            "heartbeat_timeout",
            "stop_timeout",
            "incomplete_message_timeout",
            "write_timeout",
            "request_timeout",
        ):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                msg = f"Endpoint option {name} must be positive seconds (float), got {value!r}"
                raise ConfigurationError(msg)
        if self.max_incomplete_bytes < self.max_frame_size:
            msg = (
                f"Endpoint option max_incomplete_bytes ({self.max_incomplete_bytes}) is below "
                f"max_frame_size ({self.max_frame_size}), so a message of max_frame_size could "
                "never arrive; raise max_incomplete_bytes or lower max_frame_size"
            )
            raise ConfigurationError(msg)
        keys = self.redact_keys
        if not isinstance(keys, (list, tuple)) or not all(isinstance(k, str) for k in keys):
            msg = (
                "Endpoint option redact_keys must be a list of key names such as "
                f"['password', 'token'], got {keys!r}"
            )
            raise ConfigurationError(msg)
        host = self.url_host
        if host is not None and (not isinstance(host, str) or not host or "/" in host):
            msg = (
                "Endpoint option url_host must be a host name such as 'example.com' "
                f"(no scheme, no path), or None, got {host!r}"
            )
            raise ConfigurationError(msg)
        origin = self.check_origin
        if not (isinstance(origin, (bool, list, tuple)) or callable(origin)):
            msg = (
                "Endpoint option check_origin must be True, False, a list of origins such as "
                f"['https://example.com', '//*.example.com'] or a callable, got {origin!r}"
            )
            raise ConfigurationError(msg)
