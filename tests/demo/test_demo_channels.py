"""The demo chat: its room channel through the testing kit, its page app, its command.

The kit's mailbox belongs to the thread that built a socket, so "another user"
is a socket built and joined on a short-lived helper thread: what that user
receives lands in their own mailbox, and the test thread's mailbox holds only
what the first user received. That is how "pushed to others, not to the
sender" is checked exactly. No sleeps: every wait is a mailbox wait with a
timeout.
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from channels_actor import Endpoint, Message, Socket
from channels_actor import testing as ct
from channels_actor.__main__ import main as cli_main
from channels_actor.demo import (
    HISTORY_SIZE,
    MAX_ROOMS,
    DemoSocket,
    RoomHistory,
    build_endpoint,
    demo_origins,
    history_for,
)
from channels_actor.demo import main as demo_main
from channels_actor.demo.assets import phoenix_js_path

NAME_REASON = {"reason": "pick a name of 1 to 32 characters"}


@pytest.fixture
def ep(actor_mode: str) -> Iterator[Endpoint]:
    endpoint = build_endpoint(actor_mode=actor_mode)
    yield endpoint
    endpoint.stop()


def _join(ep: Endpoint, name: str, room: str = "lobby") -> Socket:
    result = ct.join(ct.socket(DemoSocket, endpoint=ep), f"room:{room}", {"name": name})
    assert result[0] == "ok", result
    return result[2]  # type: ignore[misc]


def _other_user(ep: Endpoint, name: str, room: str = "lobby") -> tuple[Socket, ct.Mailbox]:
    """Join as another user, whose pushes go to a mailbox of their own."""
    out: list[tuple[Socket, ct.Mailbox]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            out.append((_join(ep, name, room), ct.mailbox()))
        except BaseException as exc:  # re-raised on the test thread
            errors.append(exc)

    thread = threading.Thread(target=run, name=f"user-{name}")
    thread.start()
    thread.join(5)
    if errors:
        raise errors[0]
    return out[0]


def _taken(box: ct.Mailbox, event: str, payload: Any = None, timeout: float = 1.0) -> Any:
    """Take a push of ``event`` from ``box``; None when none came within ``timeout``."""
    found = box.take(
        lambda item: isinstance(item, Message) and item.event == event
        and (payload is None or item.payload == payload),
        timeout,
    )
    return None if found is None else found.payload


# join --------------------------------------------------------------------------------


@pytest.mark.parametrize("payload", [{}, {"name": ""}, {"name": "   "}, {"name": "x" * 33},
                                     {"name": 7}, {"nick": "ann"}])
def test_join_is_refused_without_a_good_name(ep: Endpoint, payload: dict[str, Any]) -> None:
    sock = ct.socket(DemoSocket, endpoint=ep)
    assert ct.join(sock, "room:lobby", payload) == ("error", NAME_REASON)


def test_join_strips_the_name_and_replies_with_it(ep: Endpoint) -> None:
    status, reply, sock = ct.join(ct.socket(DemoSocket, endpoint=ep), "room:lobby",
                                  {"name": "  ann  "})  # type: ignore[misc]
    assert (status, reply) == ("ok", {"name": "ann"})
    assert sock.assigns["name"] == "ann" and sock.assigns["room"] == "lobby"


def test_join_is_refused_for_an_empty_room(ep: Endpoint) -> None:
    status, reply = ct.join(ct.socket(DemoSocket, endpoint=ep), "room:", {"name": "ann"})
    assert status == "error" and "room" in reply["reason"]


def test_history_is_pushed_after_join(ep: Endpoint) -> None:
    ann = _join(ep, "ann")
    ct.assert_push("history", {"messages": []})
    ct.assert_reply(ct.push(ann, "new_msg", {"body": "hello"}), "ok")

    _bob, bob_box = _other_user(ep, "bob")
    history = _taken(bob_box, "history")
    assert history is not None, f"bob got no history: {bob_box.items()}"
    (message,) = history["messages"]
    assert (message["name"], message["body"]) == ("ann", "hello")
    assert message["at"].endswith("+00:00")  # ISO 8601, UTC


def test_history_is_per_room(ep: Endpoint) -> None:
    ann = _join(ep, "ann", "python")
    ct.assert_reply(ct.push(ann, "new_msg", {"body": "in python"}), "ok")
    _join(ep, "bob", "elixir")
    ct.assert_push("history", {"messages": []})


# messages ------------------------------------------------------------------------------


def test_new_msg_is_broadcast_to_everyone_in_the_room_and_replied_ok(ep: Endpoint) -> None:
    ann = _join(ep, "ann")
    _bob, bob_box = _other_user(ep, "bob")
    _carol, carol_box = _other_user(ep, "carol", room="elsewhere")

    ct.assert_reply(ct.push(ann, "new_msg", {"body": "  hi all  "}), "ok")

    mine = ct.assert_push("new_msg")
    assert (mine["name"], mine["body"]) == ("ann", "hi all")
    assert _taken(bob_box, "new_msg") == mine
    assert _taken(carol_box, "new_msg", timeout=0.1) is None


@pytest.mark.parametrize(("body", "reason"), [
    ("x" * 501, "a message is at most 500 characters"),
    ("   ", "a message cannot be empty"),
])
def test_bad_message_is_refused_and_not_broadcast(ep: Endpoint, body: str, reason: str) -> None:
    ann = _join(ep, "ann")
    ct.assert_reply(ct.push(ann, "new_msg", {"body": body}), "error", {"reason": reason})
    ct.refute_push("new_msg")
    assert history_for(ep).recent("lobby") == []


def test_message_of_exactly_500_characters_is_accepted(ep: Endpoint) -> None:
    ann = _join(ep, "ann")
    ct.assert_reply(ct.push(ann, "new_msg", {"body": "x" * 500}), "ok")
    ct.assert_push("new_msg", lambda payload: len(payload["body"]) == 500)


def test_body_that_is_not_a_string_and_unknown_events_are_refused(ep: Endpoint) -> None:
    ann = _join(ep, "ann")
    ct.assert_reply(ct.push(ann, "new_msg", {"body": 5}), "error")
    ct.assert_reply(ct.push(ann, "shout", {}), "error")
    ct.refute_push("new_msg")


# user:joined (the intercept) and user:left ---------------------------------------------


def test_user_joined_goes_to_others_but_not_to_the_joiner(ep: Endpoint) -> None:
    _join(ep, "ann")
    ct.refute_push("user:joined")  # ann alone: her own notice was filtered by handle_out

    _bob, bob_box = _other_user(ep, "bob")
    ct.assert_push("user:joined", {"name": "bob"})
    assert _taken(bob_box, "history") is not None  # bob's after_join ran ...
    assert _taken(bob_box, "user:joined", timeout=0.1) is None  # ... without telling bob


def test_user_left_is_broadcast_when_a_user_leaves(ep: Endpoint) -> None:
    _join(ep, "ann")
    bob, _bob_box = _other_user(ep, "bob")
    ct.assert_push("user:joined", {"name": "bob"})

    ct.leave(bob)
    ct.assert_push("user:left", {"name": "bob"})


def test_user_left_is_broadcast_when_a_connection_closes(ep: Endpoint) -> None:
    _join(ep, "ann")
    bob, _bob_box = _other_user(ep, "bob")
    ct.close(bob)
    ct.assert_push("user:left", {"name": "bob"})


def test_refused_join_announces_nothing(ep: Endpoint) -> None:
    _join(ep, "ann")
    ct.join(ct.socket(DemoSocket, endpoint=ep), "room:lobby", {})
    ct.refute_push("user:left")
    ct.refute_push("user:joined")


# the history store -----------------------------------------------------------------------


def test_room_history_keeps_the_last_messages_and_hands_out_copies() -> None:
    history = RoomHistory(limit=50)
    for i in range(60):
        history.add("lobby", {"body": str(i)})
    recent = history.recent("lobby")
    assert [m["body"] for m in recent] == [str(i) for i in range(10, 60)]
    recent[0]["body"] = "changed"
    assert history.recent("lobby")[0]["body"] == "10"
    assert history.recent("empty") == []


def test_room_history_forgets_the_room_least_recently_written_to() -> None:
    history = RoomHistory(limit=2, max_rooms=3)
    for room in ("a", "b", "c"):
        history.add(room, {"body": room})
    history.add("a", {"body": "a2"})  # a is now the most recent
    history.add("d", {"body": "d"})  # one room too many: b, the oldest, goes
    assert len(history) == 3
    assert history.recent("b") == []
    assert [m["body"] for m in history.recent("a")] == ["a", "a2"]
    for n in range(1000):  # a client writing to ever new rooms
        history.add(f"room-{n}", {"body": "x"})
    assert len(history) == 3
    assert [m["body"] for m in history.recent("room-999")] == ["x"]


def test_an_endpoints_history_is_bounded() -> None:
    history = history_for(Endpoint())
    assert (history.limit, history.max_rooms) == (HISTORY_SIZE, MAX_ROOMS)
    assert HISTORY_SIZE <= 100 and MAX_ROOMS <= 1000


def test_each_endpoint_has_its_own_history() -> None:
    first, second = Endpoint(), Endpoint()
    history_for(first).add("lobby", {"body": "one"})
    assert history_for(first) is history_for(first)
    assert history_for(second).recent("lobby") == []


# the page (WSGI) ----------------------------------------------------------------------------


def _get(
    app: Callable[..., Any], path: str, method: str = "GET"
) -> tuple[str, dict[str, str], bytes]:
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        seen["status"], seen["headers"] = status, dict(headers)

    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": "",
               "SERVER_NAME": "localhost", "SERVER_PORT": "4000", "wsgi.input": io.BytesIO()}
    body = b"".join(app(environ, start_response))
    assert int(seen["headers"]["Content-Length"]) == len(body) or method == "HEAD"
    return seen["status"], seen["headers"], body


@pytest.fixture
def http_app() -> Iterator[Callable[..., Any]]:
    endpoint = build_endpoint()
    assert endpoint.http_app is not None
    yield endpoint.http_app
    endpoint.stop()


def test_endpoint_mounts_the_demo_socket() -> None:
    endpoint = build_endpoint()
    assert isinstance(endpoint.mounts["/socket"].handler, DemoSocket)
    assert endpoint.config.check_origin == [
        "//localhost:4000", "//127.0.0.1:4000", "//[::1]:4000"
    ]


@pytest.mark.parametrize(("host", "url_host", "origins"), [
    ("0.0.0.0", None, ["//localhost:4321", "//127.0.0.1:4321", "//[::1]:4321"]),
    ("::1", None, ["//localhost:4321", "//127.0.0.1:4321", "//[::1]:4321"]),
    ("192.168.1.5", None, ["//192.168.1.5:4321"]),
    ("fe80::1", None, ["//[fe80::1]:4321"]),
    ("0.0.0.0", "chat.lan", ["//chat.lan:4321"]),
])
def test_the_demo_accepts_only_its_own_origins(host: str, url_host: str | None,
                                               origins: list[str]) -> None:
    assert demo_origins(host, 4321, url_host) == origins


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _upgrade_status(port: int, origin: str) -> int:
    request = (
        f"GET /socket/websocket?vsn=2.0.0 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Origin: {origin}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request.encode())
        return int(sock.recv(4096).split(b" ", 2)[1])


def test_the_served_demo_refuses_other_origins() -> None:
    port = _free_port()
    endpoint = build_endpoint(host="127.0.0.1", port=port)
    endpoint.start("127.0.0.1", port)
    try:
        assert _upgrade_status(port, f"http://localhost:{port}") == 101
        assert _upgrade_status(port, f"http://127.0.0.1:{port}") == 101
        assert _upgrade_status(port, "http://evil.example") == 403
        assert _upgrade_status(port, f"http://evil.example:{port}") == 403
        assert _upgrade_status(port, f"http://localhost:{port + 1}") == 403
    finally:
        endpoint.stop()


@pytest.mark.parametrize(("path", "content_type", "marker"), [
    ("/", "text/html", b"/assets/phoenix.js"),
    ("/assets/app.js", "text/javascript", b"new Phoenix.Socket(\"/socket\")"),
    ("/assets/app.css", "text/css", b"#log"),
])
def test_page_and_assets_are_served(http_app: Callable[..., Any], path: str, content_type: str,
                                    marker: bytes) -> None:
    status, headers, body = _get(http_app, path)
    assert status == "200 OK"
    assert headers["Content-Type"].startswith(content_type)
    assert marker in body


def test_head_sends_headers_only(http_app: Callable[..., Any]) -> None:
    status, headers, body = _get(http_app, "/", "HEAD")
    assert status == "200 OK" and body == b"" and int(headers["Content-Length"]) > 0


@pytest.mark.parametrize("path", ["/nope", "/assets/", "/assets/../setup.cfg", "/static/app.js"])
def test_unknown_paths_are_404(http_app: Callable[..., Any], path: str) -> None:
    assert _get(http_app, path)[0] == "404 Not Found"


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_other_methods_are_405(http_app: Callable[..., Any], method: str) -> None:
    status, headers, _body = _get(http_app, "/", method)
    assert status == "405 Method Not Allowed"
    assert headers["Allow"] == "GET, HEAD"


# phoenix.js (needs the npm CLI) --------------------------------------------------------------


@pytest.fixture(scope="module")
def fetched_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache dir holding phoenix.js fetched by npm once for this module."""
    if shutil.which("npm") is None:
        reason = "the npm CLI is not installed, so phoenix.js cannot be fetched (install Node.js)"
        if os.environ.get("CHANNELS_ACTOR_REQUIRE_ALL") == "1":
            pytest.fail(f"CHANNELS_ACTOR_REQUIRE_ALL=1 but {reason}")
        pytest.skip(reason)
    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CHANNELS_ACTOR_CACHE", str(cache))
        phoenix_js_path()
    return cache


def test_phoenix_js_is_fetched_with_npm_and_cached(fetched_cache: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHANNELS_ACTOR_CACHE", str(fetched_cache))
    path = phoenix_js_path()
    assert path.parent == fetched_cache
    assert path.read_text(encoding="utf-8").startswith("var Phoenix = ")
    monkeypatch.setenv("PATH", "")  # cached now: npm is not run again
    assert phoenix_js_path() == path


def test_phoenix_js_is_served(fetched_cache: Path, monkeypatch: pytest.MonkeyPatch,
                              http_app: Callable[..., Any]) -> None:
    monkeypatch.setenv("CHANNELS_ACTOR_CACHE", str(fetched_cache))
    status, headers, body = _get(http_app, "/assets/phoenix.js")
    assert status == "200 OK" and headers["Content-Type"].startswith("text/javascript")
    assert body.startswith(b"var Phoenix = ")


def test_without_npm_the_error_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    http_app: Callable[..., Any]) -> None:
    monkeypatch.setenv("CHANNELS_ACTOR_CACHE", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RuntimeError, match="npm CLI was not found") as info:
        phoenix_js_path()
    assert "npm pack phoenix@~1.8" in str(info.value)
    status, _headers, body = _get(http_app, "/assets/phoenix.js")
    assert status == "503 Service Unavailable" and b"Node.js" in body


# the command ------------------------------------------------------------------------------------


def test_demo_command_serves_until_interrupted(monkeypatch: pytest.MonkeyPatch,
                                               caplog: pytest.LogCaptureFixture) -> None:
    calls: list[dict[str, Any]] = []

    def fake_serve(self: Endpoint, **kwargs: Any) -> None:
        calls.append(kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(Endpoint, "serve", fake_serve, raising=False)
    monkeypatch.setattr("channels_actor.demo.phoenix_js_path", lambda: Path("phoenix.js"))
    caplog.set_level("INFO", logger="channels_actor.demo")
    assert cli_main(["demo", "--host", "0.0.0.0", "--port", "4321"]) == 0
    assert calls == [{"host": "0.0.0.0", "port": 4321}]
    assert "Demo chat at http://0.0.0.0:4321/" in caplog.text


def test_demo_command_fails_clearly_without_phoenix_js(monkeypatch: pytest.MonkeyPatch,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    def missing() -> Path:
        raise RuntimeError("install npm")

    monkeypatch.setattr("channels_actor.demo.phoenix_js_path", missing)
    assert demo_main(["demo"]) == 1
    assert "install npm" in caplog.text


@pytest.mark.parametrize("port", ["70000", "0"])  # 0: the origin check needs the real port
def test_demo_command_rejects_a_bad_port(port: str) -> None:
    with pytest.raises(SystemExit) as info:
        demo_main(["--port", port])
    assert info.value.code == 2


@pytest.mark.parametrize("argv", [[], ["bogus"]])
def test_unknown_command_prints_usage_and_exits_2(argv: list[str],
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: python -m channels_actor {demo,serve,bench}")
