"""Fixtures for tests that need a real ``redis-server`` (see :mod:`.redis_server`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from tests.cluster.redis_server import RedisServer, require_redis_server


@pytest.fixture(scope="session")
def redis_session() -> Iterator[RedisServer]:
    server = RedisServer(require_redis_server())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_server(redis_session: RedisServer) -> Iterator[RedisServer]:
    """The session's server, running and empty; restarted if a test killed it."""
    if redis_session.process is None:
        redis_session.start()
    client = redis.Redis.from_url(redis_session.url)
    try:
        client.flushall()
    finally:
        client.close()
    yield redis_session
    if redis_session.process is None:
        redis_session.start()
