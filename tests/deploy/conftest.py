"""Fixtures shared by the deployment tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.cluster.redis_server import RedisServer, require_redis_server


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    """A redis-server of the module's own, for worker processes to meet in."""
    server = RedisServer(require_redis_server())
    server.start()
    try:
        yield server.url
    finally:
        server.stop()
