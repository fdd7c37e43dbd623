"""The demo chat: ``python -m channels_actor demo`` serves it at http://127.0.0.1:4000/.

It exists to show, in a browser and in a few screens of code, what the library
is for: every joined ``room:*`` topic is a channel actor, the official
phoenix.js client talks to it unchanged, and the usual Phoenix idioms work
(``after_join`` through ``handle_info``, broadcasts, an ``intercept`` with
``handle_out``, cleanup in ``terminate``). It is also the example users copy,
so it stays small and plain: an in-memory history (bounded: the last
``HISTORY_SIZE`` messages of the ``MAX_ROOMS`` rooms most recently written to),
a stdlib WSGI app for the page, no build step for the JavaScript. It checks
origins: a WebSocket is accepted only from a page of the host and port it
serves on (``--url-host`` names the host when it listens on every interface).
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import weakref
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from importlib import resources
from typing import TYPE_CHECKING, Any, ClassVar

from channels_actor import (
    BroadcastError,
    Channel,
    ChannelError,
    Endpoint,
    Socket,
    SocketHandler,
    assign,
    broadcast,
    push,
)

from .assets import phoenix_js_path

if TYPE_CHECKING:
    from channels_actor._types import EndpointRef
    from channels_actor.results import HandleInfoResult, HandleInResult, HandleOutResult, JoinResult

__all__ = [
    "DemoSocket",
    "RoomChannel",
    "RoomHistory",
    "StaticApp",
    "build_endpoint",
    "demo_origins",
    "history_for",
    "main",
]

logger = logging.getLogger("channels_actor.demo")

MAX_NAME = 32
MAX_BODY = 500
HISTORY_SIZE = 50
MAX_ROOMS = 100
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")


# the shared history -----------------------------------------------------------------


class RoomHistory:
    """The last ``limit`` messages of each of the ``max_rooms`` rooms most recently
    written to, safe to use from every channel actor.

    Both bounds matter: anyone may join any ``room:*``, so without ``max_rooms``
    a client writing to ever new rooms would grow the history without end.
    """

    def __init__(self, limit: int = HISTORY_SIZE, max_rooms: int = MAX_ROOMS) -> None:
        self.limit = limit
        self.max_rooms = max_rooms
        self._rooms: OrderedDict[str, deque[dict[str, Any]]] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, room: str, message: Mapping[str, Any]) -> None:
        """Remember ``message``; the oldest one goes once the room holds ``limit``, and
        the room least recently written to is forgotten once there are ``max_rooms``."""
        with self._lock:
            messages = self._rooms.get(room)
            if messages is None:
                messages = self._rooms[room] = deque(maxlen=self.limit)
                while len(self._rooms) > self.max_rooms:
                    self._rooms.popitem(last=False)
            else:
                self._rooms.move_to_end(room)
            messages.append(dict(message))

    def __len__(self) -> int:
        """How many rooms have a history."""
        with self._lock:
            return len(self._rooms)

    def recent(self, room: str) -> list[dict[str, Any]]:
        """A copy of the room's messages, oldest first."""
        with self._lock:
            return [dict(message) for message in self._rooms.get(room, ())]


# One history per endpoint: channels reach it through socket.endpoint, and two
# endpoints (two tests, say) never see each other's rooms.
_histories: weakref.WeakKeyDictionary[EndpointRef, RoomHistory] = weakref.WeakKeyDictionary()
_histories_lock = threading.Lock()
_detached_history = RoomHistory()


def history_for(endpoint: EndpointRef | None) -> RoomHistory:
    """The history shared by the demo channels of ``endpoint``."""
    if endpoint is None:  # a bare Socket() in a unit test of one callback
        return _detached_history
    with _histories_lock:
        history = _histories.get(endpoint)
        if history is None:
            history = _histories[endpoint] = RoomHistory()
        return history


# the channel and the socket ---------------------------------------------------------


def _error(reason: str) -> tuple[str, dict[str, str]]:
    return ("error", {"reason": reason})


class RoomChannel(Channel):
    """``room:<room>``: join with ``{"name": ...}``, then ``new_msg`` with ``{"body": ...}``.

    Pushes ``history`` after the join; broadcasts ``new_msg``, ``user:joined``
    and ``user:left``. ``user:joined`` is intercepted so that nobody is told
    about their own arrival.
    """

    intercept: ClassVar[Sequence[str]] = ["user:joined"]

    def join(self, topic: str, payload: Any, socket: Socket) -> JoinResult:
        room = topic.split(":", 1)[1].strip()
        if not 1 <= len(room) <= MAX_NAME:
            return ("error", {"reason": f"pick a room of 1 to {MAX_NAME} characters"})
        raw = payload.get("name") if isinstance(payload, Mapping) else None
        name = raw.strip() if isinstance(raw, str) else ""
        if not 1 <= len(name) <= MAX_NAME:
            return ("error", {"reason": f"pick a name of 1 to {MAX_NAME} characters"})
        assert socket.channel_ref is not None
        socket.channel_ref.tell("after_join")  # push and broadcast wait until we have joined
        return ("ok", {"name": name}, assign(socket, name=name, room=room))

    def handle_info(self, message: Any, socket: Socket) -> HandleInfoResult:
        if message != "after_join":
            return super().handle_info(message, socket)
        room, name = socket.assigns["room"], socket.assigns["name"]
        push(socket, "history", {"messages": history_for(socket.endpoint).recent(room)})
        broadcast(socket, "user:joined", {"name": name})
        logger.info("%s joined room %s", name, room)
        return ("noreply", socket)

    def handle_in(self, event: str, payload: Any, socket: Socket) -> HandleInResult:
        if event != "new_msg":
            return ("reply", _error(f"unknown event {event!r}; send new_msg"), socket)
        raw = payload.get("body") if isinstance(payload, Mapping) else None
        if not isinstance(raw, str):
            return ("reply", _error('send {"body": "your message"}'), socket)
        body = raw.strip()
        if not body:
            return ("reply", _error("a message cannot be empty"), socket)
        if len(body) > MAX_BODY:
            return ("reply", _error(f"a message is at most {MAX_BODY} characters"), socket)
        message = {
            "name": socket.assigns["name"],
            "body": body,
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        history_for(socket.endpoint).add(socket.assigns["room"], message)
        broadcast(socket, "new_msg", message)
        return ("reply", "ok", socket)

    def handle_out(self, event: str, payload: Any, socket: Socket) -> HandleOutResult:
        # Only "user:joined" is intercepted: skip our own arrival, pass on others'.
        if payload.get("name") != socket.assigns.get("name"):
            push(socket, event, payload)
        return ("noreply", socket)

    def terminate(self, reason: Any, socket: Socket) -> None:
        name = socket.assigns.get("name")
        if not socket.joined or name is None:
            return  # the join was refused: nobody was told about us
        try:
            broadcast(socket, "user:left", {"name": name})
        except (BroadcastError, ChannelError):
            logger.warning("Could not announce that %s left %s", name, socket.topic, exc_info=True)
        logger.info("%s left room %s (%r)", name, socket.assigns.get("room"), reason)


class DemoSocket(SocketHandler):
    """Every connection is welcome; names are chosen per room, at join."""

    channels: ClassVar[Mapping[str, type[Channel]]] = {"room:*": RoomChannel}


# the page ---------------------------------------------------------------------------

StartResponse = Callable[..., Any]

_ASSETS = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/assets/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/assets/app.css": ("app.css", "text/css; charset=utf-8"),
    "/assets/phoenix.js": (None, "text/javascript; charset=utf-8"),
}
_SECURITY_HEADERS = [
    ("X-Content-Type-Options", "nosniff"),
    ("Content-Security-Policy", "default-src 'self'; connect-src 'self' ws: wss:"),
    ("Cache-Control", "no-cache"),
]


class StaticApp:
    """A WSGI app for the chat page and its assets; stdlib only, GET and HEAD only."""

    def __call__(
        self, environ: Mapping[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        method = environ.get("REQUEST_METHOD", "GET")
        asset = _ASSETS.get(path)
        if asset is None:
            return self._text(start_response, "404 Not Found", f"Not found: {path}\n")
        if method not in ("GET", "HEAD"):
            return self._text(
                start_response, "405 Method Not Allowed", "Use GET.\n", [("Allow", "GET, HEAD")]
            )
        filename, content_type = asset
        try:
            body = self._read(filename)
        except RuntimeError as exc:  # npm missing or failing: say how to fix it
            logger.error("Cannot serve phoenix.js: %s", exc)
            return self._text(start_response, "503 Service Unavailable", f"{exc}\n")
        start_response(
            "200 OK",
            [
                ("Content-Type", content_type),
                ("Content-Length", str(len(body))),
                *_SECURITY_HEADERS,
            ],
        )
        return [] if method == "HEAD" else [body]

    @staticmethod
    def _read(filename: str | None) -> bytes:
        if filename is None:
            return phoenix_js_path().read_bytes()
        return (resources.files(__name__) / "static" / filename).read_bytes()

    @staticmethod
    def _text(
        start_response: StartResponse,
        status: str,
        text: str,
        extra: Sequence[tuple[str, str]] = (),
    ) -> list[bytes]:
        body = text.encode()
        start_response(
            status,
            [
                ("Content-Type", "text/plain; charset=utf-8"),
                ("Content-Length", str(len(body))),
                *extra,
            ],
        )
        return [body]


def demo_origins(host: str, port: int, url_host: str | None = None) -> list[str]:
    """The origins the demo's own page has when served on ``host:port``.

    ``url_host`` is the name browsers use; without one, a loopback or
    every-interface ``host`` (``0.0.0.0``, ``::``) means the loopback names, and
    another ``host`` means itself. Scheme aside, only these pass ``check_origin``.
    """
    if url_host:
        names: Sequence[str] = [url_host]
    elif host in ("", "0.0.0.0", "::") or host.strip("[]") in ("localhost", "127.0.0.1", "::1"):
        names = LOOPBACK_NAMES
    else:
        names = [f"[{host}]" if ":" in host else host]
    return [f"//{name}:{port}" for name in names]


def build_endpoint(
    *, host: str = "127.0.0.1", port: int = 4000, url_host: str | None = None, **config: Any
) -> Endpoint:
    """The demo's endpoint: ``DemoSocket`` at ``/socket`` and the page for other requests.

    ``host``, ``port`` and ``url_host`` say where the page is served, so that
    only the demo's own page may open its WebSocket (:func:`demo_origins`);
    ``config`` goes to :class:`Endpoint` (tests pick ``actor_mode``, say).
    """
    origins = demo_origins(host, port, url_host)
    endpoint = Endpoint(**{"check_origin": origins, **config})
    endpoint.socket("/socket", DemoSocket)
    endpoint.http_app = StaticApp()
    return endpoint


# the command ------------------------------------------------------------------------


def _port(text: str) -> int:
    port = int(text)
    if not 1 <= port <= 65535:  # not 0 either: the origin check needs the real port
        msg = f"{port} is not a TCP port (1 to 65535)"
        raise argparse.ArgumentTypeError(msg)
    return port


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo chat until Ctrl-C: ``channels-actor demo [--host H] [--port P]``.

    ``argv`` is what follows ``demo`` (a leading ``"demo"`` is skipped too, so
    this works as a console-script entry point itself). Returns the exit status.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["demo"]:
        args = args[1:]
    parser = argparse.ArgumentParser(
        prog="channels-actor demo",
        description="Serve the demo chat: Phoenix Channels rooms, with the official phoenix.js.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (127.0.0.1)")
    parser.add_argument("--port", type=_port, default=4000, help="TCP port (4000)")
    parser.add_argument(
        "--url-host",
        default=None,
        help="the host name browsers use to reach the demo, when it is not --host "
        "(with --host 0.0.0.0, say); only pages from it may open the WebSocket",
    )
    options = parser.parse_args(args)

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        phoenix_js_path()
    except RuntimeError as exc:
        logger.error("%s", exc)
        return 1
    endpoint = build_endpoint(host=options.host, port=options.port, url_host=options.url_host)
    logger.info("Demo chat at http://%s:%d/", options.host, options.port)
    try:
        endpoint.serve(host=options.host, port=options.port)
    except KeyboardInterrupt:
        pass
    finally:
        endpoint.stop()
    return 0
