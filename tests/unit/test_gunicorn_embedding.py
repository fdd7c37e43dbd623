"""``transports/gunicorn.py`` without gunicorn processes: finding the worker, the
warnings, the drain on exit, and what ``wsgi_app`` answers a stopping worker.

The real processes are in ``tests/deploy/test_gunicorn.py``; here the worker
is a real ``gunicorn.workers`` class that is never started, installed as the
SIGTERM handler the way gunicorn installs it.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from gunicorn.workers.base import Worker
from gunicorn.workers.gthread import ThreadWorker
from gunicorn.workers.sync import SyncWorker

from channels_actor import Endpoint, SocketHandler
from channels_actor.server import WebSocketService
from channels_actor.transports import gunicorn
from channels_actor.transports.wsgi import serve_wsgi


def _worker(cls: type[Worker], alive: bool = True, **cfg: Any) -> Any:
    worker = cls.__new__(cls)  # not started: only what the module reads
    worker.alive = alive
    worker.age = cfg.pop("age", 1)
    worker.cfg = SimpleNamespace(**{"workers": 1, "threads": 1, "graceful_timeout": 30, **cfg})
    return worker


@pytest.fixture
def installed() -> Iterator[Any]:
    """Install a worker's handler as SIGTERM's, as gunicorn's init_signals does."""
    previous = signal.getsignal(signal.SIGTERM)

    def install(worker: Any) -> Any:
        signal.signal(signal.SIGTERM, worker.handle_exit)
        return worker

    yield install
    signal.signal(signal.SIGTERM, previous)


def test_the_worker_is_found_from_its_sigterm_handler_on_any_thread(installed: Any) -> None:
    assert gunicorn.current_worker() is None  # pytest's own handler: not a worker
    worker = installed(_worker(ThreadWorker))
    found: list[Any] = []
    thread = threading.Thread(target=lambda: found.append(gunicorn.current_worker()))
    thread.start()
    thread.join(5)
    assert found == [worker]
    signal.signal(signal.SIGTERM, lambda *_: None)  # replaced by someone else
    assert gunicorn.current_worker() is None


def test_the_worker_kind_comes_from_its_class_or_bases() -> None:
    class Custom(ThreadWorker):
        pass

    assert gunicorn.worker_kind(_worker(ThreadWorker)) == "gthread"
    assert gunicorn.worker_kind(_worker(Custom)) == "gthread"
    assert gunicorn.worker_kind(_worker(SyncWorker)) == "sync"
    assert gunicorn.worker_kind(object()) == "object"


@pytest.mark.parametrize(
    ("kind", "threads", "workers", "single_node", "says"),
    [
        ("gthread", 1, 1, True, ["--threads 1"]),
        ("gthread", 8, 1, True, []),
        ("sync", 1, 1, True, ["sync worker"]),
        ("gthread", 8, 2, True, ["-w 2"]),
        ("gthread", 8, 2, False, []),  # a cluster PubSub: nothing to say
        ("sync", 1, 4, True, ["sync worker", "-w 4"]),
        ("gevent", 1, 1, True, []),
    ],
)
def test_warnings_for_each_deployment(
    kind: str, threads: int, workers: int, single_node: bool, says: list[str]
) -> None:
    found = gunicorn.warnings_for(kind, threads, workers, single_node)
    assert len(found) == len(says)
    for text, what in zip(found, says, strict=True):
        assert what in text


class _Endpoint:
    """What the drain needs from an endpoint."""

    def __init__(self, single_node: bool = True) -> None:
        self.config = SimpleNamespace(stop_timeout=5.0)
        self.pubsub = SimpleNamespace(single_node=single_node)
        self.stopped = threading.Event()
        self.timeout: float | None = None

    def stop(self, timeout: float | None = None) -> None:
        self.timeout = timeout
        self.stopped.set()


def test_the_worker_exit_drains_each_endpoint_once_the_worker_stops() -> None:
    worker = _worker(ThreadWorker, graceful_timeout=6)
    watch = gunicorn.WorkerExit(worker, interval=0.01)
    endpoints = [_Endpoint(), _Endpoint()]
    for endpoint in endpoints:
        watch.add(endpoint)
    assert not endpoints[0].stopped.wait(0.05)  # alive: nothing happens
    worker.alive = False
    for endpoint in endpoints:
        assert endpoint.stopped.wait(5)
        assert endpoint.timeout == 2.0  # a third of the grace, under stop_timeout
    assert watch.join(5)
    assert len(watch.drains) == 2
    watch.add(_Endpoint())  # built after the drain: nothing more starts
    assert watch.join(5) and len(watch.drains) == 2


def test_closing_the_watch_ends_its_thread_without_a_drain() -> None:
    worker = _worker(ThreadWorker)
    watch = gunicorn.WorkerExit(worker, interval=0.01)
    endpoint = _Endpoint()
    watch.add(endpoint)
    watch.close()
    assert not watch.drains and not endpoint.stopped.is_set()


class _Handler(SocketHandler):
    pass


@pytest.fixture
def service() -> Iterator[WebSocketService]:
    endpoint = Endpoint()
    endpoint.socket("/socket", _Handler)
    service = WebSocketService(endpoint)
    yield service
    service.stop(1.0)
    endpoint.stop()


def _upgrade(**extra: Any) -> dict[str, Any]:
    return {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/socket/websocket",
        "QUERY_STRING": "vsn=9.0.0",  # refused (403) once it is looked at
        "HTTP_UPGRADE": "websocket",
        "HTTP_CONNECTION": "Upgrade",
        "HTTP_SEC_WEBSOCKET_KEY": "dGhlIHNhbXBsZSBub25jZQ==",
        "HTTP_SEC_WEBSOCKET_VERSION": "13",
        "gunicorn.socket": object(),  # never touched
        **extra,
    }


def _status(service: WebSocketService, environ: dict[str, Any]) -> str:
    started: list[str] = []
    b"".join(serve_wsgi(service, environ, lambda status, headers: started.append(status)))
    return started[0]


def _drained(worker: Any) -> None:
    """Stop ``worker`` and wait for its watcher to drain what it embeds."""
    worker.alive = False
    watch = gunicorn.watcher()
    assert watch is not None and watch.worker is worker
    assert watch.join(5)


def test_a_stopping_worker_sends_new_websockets_elsewhere(
    service: WebSocketService, installed: Any
) -> None:
    worker = installed(_worker(ThreadWorker, threads=8))
    assert _status(service, _upgrade()) == "403 Forbidden"  # alive: the upgrade is looked at
    _drained(worker)
    assert _status(service, _upgrade()) == "503 Service Unavailable"


def test_warnings_are_logged_once_per_endpoint_by_the_first_worker_only(
    service: WebSocketService, installed: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("WARNING", "channels_actor.gunicorn")
    second = installed(_worker(ThreadWorker, threads=1, workers=3, age=2))
    _status(service, _upgrade())
    said = [r.getMessage() for r in caplog.records if r.name == "channels_actor.gunicorn"]
    assert not said  # the second worker: the first one says it
    _drained(second)
    first = installed(_worker(ThreadWorker, threads=1, workers=3))
    for _ in range(3):
        _status(service, _upgrade())
    said = [r.getMessage() for r in caplog.records if r.name == "channels_actor.gunicorn"]
    assert [text.split(":")[0] for text in said] == [
        "gunicorn's gthread worker runs with --threads 1",
        "gunicorn runs 3 workers (-w 3) and this endpoint's PubSub is the embedded one",
    ]
    _drained(first)


@pytest.mark.parametrize(
    ("script_name", "path_info", "status"),
    [
        ("", "/socket/websocket", "403 Forbidden"),
        ("/chat", "/socket/websocket", "403 Forbidden"),  # under the mount point
        ("/socket", "/websocket", "403 Forbidden"),  # the whole path
        ("/chat", "/websocket", "404 Not Found"),
        ("/chat", "/other/websocket", "404 Not Found"),
    ],
)
def test_mounted_under_a_prefix(
    service: WebSocketService, script_name: str, path_info: str, status: str
) -> None:
    environ = _upgrade(SCRIPT_NAME=script_name, PATH_INFO=path_info)
    del environ["gunicorn.socket"]
    environ["werkzeug.socket"] = object()
    assert _status(service, environ) == status


def test_an_upgrade_that_matches_no_socket_says_why_once(
    service: WebSocketService, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("WARNING", "channels_actor.transport")
    for _ in range(3):
        environ = _upgrade(SCRIPT_NAME="/chat", PATH_INFO="/websocket")
        assert _status(service, environ) == "404 Not Found"
    said = [r.getMessage() for r in caplog.records if "no mounted socket" in r.getMessage()]
    assert len(said) == 1
    message = said[0]
    assert "'/chat'" in message and "'/websocket'" in message and "/socket/websocket" in message
