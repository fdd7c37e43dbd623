"""Shared fixtures: an endpoint per test in each actor mode, and a thread-leak check."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from channels_actor import Endpoint
from channels_actor import testing as ct
from tests.helpers import Events


def _library_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t is not threading.main_thread() and t.is_alive()}


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Every thread a test started must be gone once its endpoint has stopped."""
    before = _library_threads()
    yield
    ct.mailbox().clear()
    leftover = [t for t in _library_threads() - before]
    for thread in leftover:
        thread.join(timeout=5)
    alive = [t.name for t in leftover if t.is_alive()]
    assert not alive, f"threads left running after the test: {alive}"


@pytest.fixture(params=["pool", "thread"])
def actor_mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def endpoint(actor_mode: str) -> Iterator[Endpoint]:
    """A running endpoint, stopped (and drained) after the test."""
    ep = Endpoint(actor_mode=actor_mode)
    ep.start_runtime()
    yield ep
    ep.stop()


@pytest.fixture
def events() -> Events:
    return Events()
