"""Callback return values: the typed tuple forms and their one validator each.

Users return Phoenix's tuples with atoms written as strings. Every result is
checked here, in one place, and turned into a small internal value; anything
else raises :class:`CallbackReturnError` in Phoenix's shape, naming the
callback, the accepted forms and the value received.
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple, Union

from ._redact import preview
from ._types import Payload
from .errors import CallbackReturnError
from .message import is_payload
from .socket import Socket

__all__ = [
    "HandleInResult",
    "HandleInfoResult",
    "HandleOutResult",
    "JoinResult",
    "ReplyT",
    "normalize_handle_in",
    "normalize_handle_out",
    "normalize_join",
    "normalize_reply",
]

ReplyT = Union[str, tuple[str, Payload]]

JoinResult = Union[
    tuple[Literal["ok"], "Socket"],
    tuple[Literal["ok"], Payload, "Socket"],
    tuple[Literal["error"], Payload],
]
HandleInResult = Union[
    tuple[Literal["noreply"], "Socket"],
    tuple[Literal["reply"], ReplyT, "Socket"],
    tuple[Literal["stop"], Any, "Socket"],
    tuple[Literal["stop"], Any, ReplyT, "Socket"],
]
HandleOutResult = Union[
    tuple[Literal["noreply"], "Socket"],
    tuple[Literal["stop"], Any, "Socket"],
]
HandleInfoResult = HandleOutResult

_JOIN_FORMS = ('("ok", socket)', '("ok", reply_map, socket)', '("error", reply_map)')
_IN_FORMS = (
    '("noreply", socket)',
    '("reply", status | (status, payload), socket)',
    '("stop", reason, socket)',
    '("stop", reason, status | (status, payload), socket)',
)
_OUT_FORMS = ('("noreply", socket)', '("stop", reason, socket)')


class Joined(NamedTuple):
    """``join`` accepted: reply ``response`` and continue with ``socket``."""

    response: Payload
    socket: Socket


class JoinRefused(NamedTuple):
    """``join`` refused with ``response``."""

    response: Payload


class Continue(NamedTuple):
    """Keep going with ``socket``, after sending ``reply`` when it is not None."""

    socket: Socket
    reply: tuple[str, Payload] | None = None


class Stop(NamedTuple):
    """Stop the channel with ``reason``, after sending ``reply`` when it is not None."""

    reason: Any
    socket: Socket
    reply: tuple[str, Payload] | None = None


# Enough of a wrong result to see what is wrong with it, but bounded: it is logged.
_GOT_LIMIT = 300


def _fail(
    owner: str, callback: str, forms: tuple[str, ...], got: Any, why: str = ""
) -> CallbackReturnError:
    lines = "\n".join(f"  {form}" for form in forms)
    extra = f"\n{why}" if why else ""
    shown = preview(got, _GOT_LIMIT)
    return CallbackReturnError(
        f"Expected {owner}.{callback}() to return one of:\n{lines}\ngot: {shown}{extra}"
    )


def _is_socket(value: Any) -> bool:
    return isinstance(value, Socket)


def normalize_reply(value: Any) -> tuple[str, Payload] | None:
    """Return ``(status, payload)`` for a valid reply form, else None."""
    if isinstance(value, str):
        return (value, {})
    if (
        isinstance(value, tuple)
        and len(value) == 2
        and isinstance(value[0], str)
        and is_payload(value[1])
    ):
        return (value[0], value[1])
    return None


def normalize_join(owner: str, result: Any) -> Joined | JoinRefused:
    """Validate what ``join`` returned."""
    match result:
        case ("ok", socket) if _is_socket(socket):
            return Joined({}, socket)
        case ("ok", response, socket) if _is_socket(socket) and is_payload(response):
            return Joined(response, socket)
        case ("error", response) if is_payload(response):
            return JoinRefused(response)
    raise _fail(owner, "join", _JOIN_FORMS, result)


def normalize_handle_in(owner: str, result: Any) -> Continue | Stop:
    """Validate what ``handle_in`` returned."""
    match result:
        case ("noreply", socket) if _is_socket(socket):
            return Continue(socket)
        case ("reply", reply, socket) if _is_socket(socket):
            normal = normalize_reply(reply)
            if normal is not None:
                return Continue(socket, normal)
            raise _fail(owner, "handle_in", _IN_FORMS, result, _REPLY_HINT)
        case ("stop", reason, socket) if _is_socket(socket):
            return Stop(reason, socket)
        case ("stop", reason, reply, socket) if _is_socket(socket):
            normal = normalize_reply(reply)
            if normal is not None:
                return Stop(reason, socket, normal)
            raise _fail(owner, "handle_in", _IN_FORMS, result, _REPLY_HINT)
    raise _fail(owner, "handle_in", _IN_FORMS, result)


def normalize_handle_out(owner: str, result: Any, callback: str = "handle_out") -> Continue | Stop:
    """Validate what ``handle_out`` or ``handle_info`` returned."""
    match result:
        case ("noreply", socket) if _is_socket(socket):
            return Continue(socket)
        case ("stop", reason, socket) if _is_socket(socket):
            return Stop(reason, socket)
    raise _fail(owner, callback, _OUT_FORMS, result)


_REPLY_HINT = (
    'A reply is a status string such as "ok" or a (status, payload) tuple whose '
    "payload is a mapping or bytes."
)
