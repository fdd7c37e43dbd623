"""The pooled actor keeps pykka's semantics, and says so when pykka changes under it.

``channels_actor._pool`` cannot run pykka's actor loop as it is (a pool worker
handles a batch of one actor's messages, then moves on), so it mirrors the
loop's rules in ``handle_envelope``, ``_PoolInbox.run`` / ``_drain`` and
``PooledActor.__init__``. ``setup.cfg`` pins pykka below 5; within 4.x these
tests fail as soon as one of the mirrored pykka methods changes, so that a
pykka upgrade is read against ``_pool.py`` instead of breaking it silently.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import textwrap
import threading
from collections.abc import Callable, Iterator
from importlib.metadata import version
from typing import Any

import pykka
import pytest

from channels_actor._pool import ActorPool, PooledActor

# The pykka 4.5.0 code that _pool.py mirrors, fingerprinted without docstrings
# and comments. When one changes: read the new pykka method, bring _pool.py in
# line (or confirm it needs nothing), then record the new fingerprint here.
MIRRORED = {
    (pykka.Actor, "__init__"): "PooledActor.__init__ sets the same fields",
    (pykka.Actor, "_actor_loop_setup"): "_PoolInbox.run calls it for the first run",
    (pykka.Actor, "_actor_loop_running"): "handle_envelope mirrors one iteration",
    (pykka.Actor, "_actor_loop_teardown"): "_PoolInbox._drain mirrors it",
    (pykka.Actor, "_handle_failure"): "handle_envelope calls it",
    (pykka.Actor, "_stop"): "the channel server calls it for an immediate stop",
    (pykka.Actor, "_handle_receive"): "the channel server bypasses it for its own messages",
    (pykka.ThreadingActor, "_create_actor_inbox"): "PooledActor overrides it",
    (pykka.ThreadingActor, "_create_future"): "PooledActor overrides it",
    (pykka.ThreadingActor, "_start_actor_loop"): "PooledActor overrides it",
}
FINGERPRINTS = {
    "Actor.__init__": "f4ef9a75d9a602f9",
    "Actor._actor_loop_setup": "bcb1ba0b94c8ba4d",
    "Actor._actor_loop_running": "408d2207fb077787",
    "Actor._actor_loop_teardown": "d1c7755953915831",
    "Actor._handle_failure": "feea9a5bc5be3315",
    "Actor._stop": "aef29f447b056e33",
    "Actor._handle_receive": "81b59c482bef70a2",
    "ThreadingActor._create_actor_inbox": "3798f9bc3e13511e",
    "ThreadingActor._create_future": "15ef86fc47eb47de",
    "ThreadingActor._start_actor_loop": "0fb7051cc8199f2e",
}


def fingerprint(function: Callable[..., Any]) -> str:
    """A hash of the function's code without its docstring, comments or layout."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    node = tree.body[0]
    assert isinstance(node, ast.FunctionDef)
    body = node.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        node.body = body[1:] or [ast.Pass()]
    return hashlib.sha256(ast.dump(node).encode()).hexdigest()[:16]


@pytest.mark.parametrize(("owner", "name"), list(MIRRORED), ids=lambda v: getattr(v, "__name__", v))
def test_the_mirrored_pykka_code_is_the_code_read(owner: type, name: str) -> None:
    key = f"{owner.__name__}.{name}"
    got = fingerprint(getattr(owner, name))
    assert got == FINGERPRINTS[key], (
        f"pykka {version('pykka')} changed {key} ({MIRRORED[(owner, name)]}): read it against "
        f"channels_actor/_pool.py, then set FINGERPRINTS[{key!r}] = {got!r}"
    )


def test_pooled_actor_init_sets_the_fields_pykka_sets() -> None:
    """PooledActor skips Actor.__init__ (a uuid4 and an Event per actor), so it sets its fields."""
    threading_actor = pykka.ThreadingActor()
    with ActorPool(1) as pool:
        pooled = PooledActor(pool)
    ours = {"_actor_pool", "_mailbox_limit"}  # what PooledActor adds for the pool
    assert set(vars(threading_actor)) == set(vars(pooled)) - ours


class _Events:
    def __init__(self) -> None:
        self.log: list[str] = []
        self.done = threading.Event()


class _Script:
    """The behaviour under comparison, mixed into a threading and a pooled actor."""

    events: _Events

    def on_start(self) -> None:
        self.events.log.append("on_start")

    def on_stop(self) -> None:
        self.events.log.append("on_stop")
        self.events.done.set()

    def on_failure(self, exception_type: Any, exception_value: Any, traceback: Any) -> None:
        self.events.log.append(f"on_failure:{exception_value}")
        self.events.done.set()

    def on_receive(self, message: Any) -> Any:
        if message == "raise":
            raise ValueError("boom")
        self.events.log.append(f"got:{message}")
        return message.upper()


class _Threaded(_Script, pykka.ThreadingActor):
    def __init__(self, events: _Events) -> None:
        super().__init__()
        self.events = events


class _Pooled(_Script, PooledActor):
    def __init__(self, pool: ActorPool, events: _Events) -> None:
        super().__init__(pool)
        self.events = events


@pytest.fixture
def pool() -> Iterator[ActorPool]:
    with ActorPool(2) as p:
        yield p


def _start(kind: str, pool: ActorPool, events: _Events) -> pykka.ActorRef[Any]:
    return _Threaded.start(events) if kind == "thread" else _Pooled.start(pool, events)


Scenario = Callable[[pykka.ActorRef[Any]], list[str]]


def _run(scenario: Scenario, kind: str, pool: ActorPool) -> list[str]:
    events = _Events()
    ref = _start(kind, pool, events)
    outcomes = scenario(ref)
    assert events.done.wait(5), f"{kind}: the actor did not end"
    return events.log + outcomes


def _asks_then_stop(ref: pykka.ActorRef[Any]) -> list[str]:
    out = [ref.ask("a", timeout=5)]
    try:
        ref.ask("raise", timeout=5)
    except ValueError as exc:
        out.append(f"ask raised:{exc}")
    out.append(f"alive:{ref.is_alive()}")
    ref.stop(timeout=5)
    try:
        ref.ask("late", timeout=5)
    except pykka.ActorDeadError:
        out.append("late ask: dead")
    return out


def _failing_tell(ref: pykka.ActorRef[Any]) -> list[str]:
    ref.tell("x")
    ref.tell("raise")
    try:
        ref.tell("never")  # queued behind the failure, or refused after it: never handled
    except pykka.ActorDeadError:
        pass
    assert ref.actor_stopped.wait(5)
    return [f"alive:{ref.is_alive()}"]


def _asks_queued_behind_a_stop(ref: pykka.ActorRef[Any]) -> list[str]:
    ref.tell("first")
    stop = ref.ask(pykka.messages._ActorStop(), block=False)
    behind = ref.ask("behind", block=False)
    out = [f"stop:{stop.get(timeout=5)}"]
    try:
        behind.get(timeout=5)
    except pykka.ActorDeadError:
        out.append("behind: dead")
    return out


@pytest.mark.parametrize("scenario", [_asks_then_stop, _failing_tell, _asks_queued_behind_a_stop])
def test_a_pooled_actor_behaves_as_a_threading_actor(scenario: Any, pool: ActorPool) -> None:
    threaded = _run(scenario, "thread", pool)
    pooled = _run(scenario, "pool", pool)
    assert pooled == threaded
