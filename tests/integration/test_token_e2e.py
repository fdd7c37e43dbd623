"""Tokens end to end: a page signs a user id, phoenix.js connects with it, ``connect`` verifies.

One endpoint on 127.0.0.1 serves both: its ``http_app`` answers ``GET /token?user=<id>``
with a token from :meth:`Endpoint.sign_token` (``&expired=1``: one signed two days ago),
and :class:`TokenSocket` at ``/socket`` verifies the token it is sent, as ``params.token``
or as phoenix.js ``authToken`` (``connect_info["auth_token"]``). ``tests/js/token_client.js``
plays the browser: it fetches a token, joins with it both ways, and is refused (HTTP 403)
with an expired, a tampered and no token. What ``connect`` decided is recorded before the
client can see it, so it is complete once the script is.
"""

from __future__ import annotations

import json
import logging
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any, ClassVar
from urllib.parse import parse_qs

import pytest

from channels_actor import Channel, Endpoint, Socket, SocketHandler, TokenError, assign
from tests.integration.test_phoenix_js import (
    JS_DIR,
    js_client,  # noqa: F401 (autouse: node + node_modules)
)

DRIVER = JS_DIR / "token_client.js"
NODE_TIMEOUT = 20.0
SCRIPT_TIMEOUT_MS = 10_000
SECRET = "test-secret-key-base-" + "x" * 43
SALT = "user socket"


class UserChannel(Channel):
    def join(self, topic: str, payload: Any, socket: Socket) -> Any:
        return ("ok", {"user_id": socket.assigns["user_id"]}, socket)


class TokenSocket(SocketHandler):
    """Accepts a token signed by this endpoint; records each decision in ``decisions``."""

    channels: ClassVar[dict[str, type[Channel]]] = {"users:me": UserChannel}
    decisions: ClassVar[list[tuple[str, Any]]]
    lock: ClassVar[threading.Lock]

    def connect(self, params: dict[str, Any], socket: Socket, connect_info: dict[str, Any]) -> Any:
        token = params.get("token") or connect_info.get("auth_token")
        via = "params" if params.get("token") else "authToken"
        try:
            user_id = socket.endpoint.verify_token(SALT, token)
        except TokenError as exc:
            with self.lock:
                self.decisions.append(("refused", exc.reason))
            return "error"
        with self.lock:
            self.decisions.append((via, user_id))
        return ("ok", assign(socket, user_id=user_id))


def token_page(endpoint: Endpoint) -> Any:
    """The app's page that hands the logged-in user a token (here: whoever it names)."""

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        query = parse_qs(environ.get("QUERY_STRING", ""))
        if environ.get("PATH_INFO") != "/token" or "user" not in query:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found"]
        signed_at = time.time() - 2 * 86_400 if query.get("expired") else None
        token = endpoint.sign_token(SALT, query["user"][0], signed_at=signed_at)
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps({"token": token}).encode()]

    return app


@pytest.fixture
def served() -> Iterator[tuple[Endpoint, int, list[tuple[str, Any]]]]:
    decisions: list[tuple[str, Any]] = []
    handler = type(
        "TokenSocket", (TokenSocket,), {"decisions": decisions, "lock": threading.Lock()}
    )
    endpoint = Endpoint(secret_key_base=SECRET)
    endpoint.socket("/socket", handler)
    endpoint.http_app = token_page(endpoint)
    server = endpoint.start(host="127.0.0.1", port=0)
    try:
        yield endpoint, server.port, decisions
    finally:
        endpoint.stop()


def run_driver(port: int) -> list[dict[str, Any]]:
    """Run token_client.js to its end (killed past NODE_TIMEOUT); its observations."""
    base, url = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}/socket"
    try:
        result = subprocess.run(
            ["node", str(DRIVER), base, url, str(SCRIPT_TIMEOUT_MS)],
            cwd=JS_DIR,
            capture_output=True,
            text=True,
            timeout=NODE_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:  # run() has killed it
        pytest.fail(f"token_client.js did not finish in {NODE_TIMEOUT}s: {exc.stdout!r}")
    seen = [json.loads(line) for line in result.stdout.splitlines()]
    assert result.returncode == 0, f"exit {result.returncode}: {seen}\n{result.stderr}"
    assert seen[-1] == {"event": "done"}, seen
    return seen


def test_phoenix_js_connects_with_a_signed_token_and_is_refused_without_one(
    served: tuple[Endpoint, int, list[tuple[str, Any]]], caplog: pytest.LogCaptureFixture
) -> None:
    endpoint, port, decisions = served
    caplog.set_level(logging.DEBUG, logger="channels_actor")
    seen = run_driver(port)
    joined = [obs for obs in seen if obs["event"] == "joined"]
    assert joined == [
        {"event": "joined", "via": "params", "status": "ok", "response": {"user_id": "u42"}},
        {"event": "joined", "via": "authToken", "status": "ok", "response": {"user_id": "u42"}},
    ]
    refused = [obs for obs in seen if obs["event"] == "refused"]
    forbidden = "Unexpected server response: 403"
    assert refused == [
        {"event": "refused", "case": case, "opens": 0, "message": forbidden}
        for case in ("expired", "tampered", "missing")
    ]
    assert decisions == [
        ("params", "u42"),
        ("authToken", "u42"),
        ("refused", "expired"),
        ("refused", "invalid"),
        ("refused", "missing"),
    ]
    assert SECRET not in caplog.text
    assert endpoint.verify_token(SALT, endpoint.sign_token(SALT, "u42")) == "u42"
