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
from .errors import ConfigurationError

__all__ = ["EndpointConfig"]

CheckOrigin = Union[bool, list[str], tuple[str, ...], Callable[[str], bool]]


@dataclass(frozen=True)
class EndpointConfig:
    """What ``Endpoint(**config)`` accepts. Durations are float seconds.

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
            in Phoenix: it costs ~92 KiB and twice the CPU per connection).
        max_buffer: bytes a connection may have waiting to be written; past
            it the client is considered stuck and is closed with 1008.
        handshake_threads: threads parsing complete HTTP requests and running
            ``connect`` (the reactor reads requests as they arrive).
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
    request_timeout: float = 10.0
    url_host: str | None = None

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
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                msg = f"Endpoint option {name} must be a positive int, got {value!r}"
                raise ConfigurationError(msg)
        for name in ("heartbeat_timeout", "stop_timeout", "request_timeout"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                msg = f"Endpoint option {name} must be positive seconds (float), got {value!r}"
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
