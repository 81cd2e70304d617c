"""RedisTestServer: a real redis-server on loopback, started and stopped by tests."""

from __future__ import annotations

import os

import pytest

from processpype.testing.redis import RedisTestServer, find_redis_server

pytestmark = pytest.mark.skipif(
    find_redis_server() is None, reason="redis-server is not installed (apt-get redis-server)"
)


def test_server_answers_ping_on_loopback_and_stops() -> None:
    with RedisTestServer() as server:
        assert server.ping()
        assert server.url == f"redis://127.0.0.1:{server.port}/0"
    assert not server.running
    assert not server.ping()


def test_restart_comes_back_on_the_same_port_with_no_data() -> None:
    with RedisTestServer() as server:
        port = server.port
        server.kill()
        assert not server.ping()
        server.start()
        assert server.port == port
        assert server.ping()


def test_password_is_required_when_set() -> None:
    with RedisTestServer(password="s3cret-pass") as server:
        assert server.url.startswith("redis://:s3cret-pass@127.0.0.1:")
        assert server.ping()


def test_fixture_gives_a_running_server(processpype_redis: RedisTestServer) -> None:
    assert processpype_redis.running
    assert processpype_redis.ping()


def test_restart_without_keep_data_starts_empty() -> None:
    redis = pytest.importorskip("redis")
    with RedisTestServer() as server:
        redis.Redis.from_url(server.url).set("k", "v")
        server.restart()
        assert redis.Redis.from_url(server.url).get("k") is None


def test_restart_keeping_data_brings_back_streams_and_pending_entries() -> None:
    redis = pytest.importorskip("redis")
    with RedisTestServer(password="s3cret-pass") as server:
        db = redis.Redis.from_url(server.url, decode_responses=True)
        entry = db.xadd("s", {"f": "v"})
        db.xgroup_create("s", "g", id="0")
        db.xreadgroup("g", "c", {"s": ">"})
        db.close()
        server.restart(keep_data=True)
        db = redis.Redis.from_url(server.url, decode_responses=True)
        assert [e[0] for e in db.xrange("s")] == [entry]
        assert db.xpending("s", "g")["pending"] == 1
        db.close()
        directory = server.data_dir
    assert directory is not None
    assert not os.path.exists(directory)
