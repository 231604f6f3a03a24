"""API tokens from PostgreSQL authenticate the stream; /metrics and /healthz on its port."""

from __future__ import annotations

import asyncio
import json
import urllib.request

import psycopg
import pytest
from websockets.exceptions import ConnectionClosed

from tests.integration.fanout.conftest import open_client, recv_json, send, stream_token
from tests.unit.conflate.builders import quote, record
from tickerplant.db import open_async_pool
from tickerplant.identity import create_user
from tickerplant.topics import MD_QUOTES

pytestmark = pytest.mark.timeout(60)


@pytest.mark.postgres
async def test_an_api_token_from_postgres_authenticates_and_is_cached_a_bad_one_is_402(
    start_server, migrated_dsn
):
    """erin's token: authenticated twice with one database query; a well-formed unknown
    token: 402; with the pool closed, a new token: 500 internal error."""
    with psycopg.connect(migrated_dsn) as conn:
        _, token = create_user(conn, "erin", "trader")
    pool = await open_async_pool(migrated_dsn, min_size=1, max_size=2, timeout_s=2)
    try:
        server = await start_server(pool=pool)
        async with asyncio.timeout(20):
            first = await open_client(server, token=token)
            second = await open_client(server, token=token)
            assert server._auth.lookups == 1
            bad = await open_client(server)
            await send(bad, action="auth", token="tp_" + "A" * 43)
            assert await recv_json(bad) == [{"T": "error", "code": 402, "msg": "auth failed"}]
            with pytest.raises(ConnectionClosed):
                await recv_json(bad)
            await pool.close()
            down = await open_client(server)
            await send(down, action="auth", token="tp_" + "B" * 43)
            assert await recv_json(down) == [
                {
                    "T": "error",
                    "code": 500,
                    "msg": "internal error: authentication is unavailable, retry later",
                }
            ]
            for ws in (first, second, down):
                await ws.close()
    finally:
        await pool.close()


async def test_metrics_and_healthz_answer_plain_http_on_the_stream_port(start_server, memory_bus):
    """After one subscriber got 3 quotes: /healthz is ok, /metrics counts the connection,
    its 1 subscription, messages out and the conflation counters; other paths are 404."""
    server = await start_server(interval_ms=20)
    base = f"http://127.0.0.1:{server.port}"
    async with asyncio.timeout(20):
        ws = await open_client(server, token=stream_token())
        await send(ws, action="subscribe", quotes=["AAPL"])
        await recv_json(ws)
        for seq in (1, 2, 3):
            await memory_bus.publish(MD_QUOTES, *record("AAPL", quote("AAPL", seq)))
            await asyncio.sleep(0.1)
        got = []
        while len(got) < 3:
            got += await recv_json(ws)

        def fetch(path: str) -> tuple[int, str]:
            try:
                with urllib.request.urlopen(base + path, timeout=5) as response:
                    return response.status, response.read().decode()
            except urllib.error.HTTPError as exc:
                return exc.code, exc.read().decode()

        health = await asyncio.to_thread(fetch, "/healthz")
        assert health[0] == 200
        assert json.loads(health[1]) == {"status": "ok", "checks": {"bus reader": "ok"}}
        status, metrics = await asyncio.to_thread(fetch, "/metrics")
        assert status == 200
        lines = set(metrics.splitlines())
        assert 'tp_fanout_connections{tier="20ms"} 1.0' in lines
        assert 'tp_fanout_subscriptions{tier="20ms"} 1.0' in lines
        assert "tp_fanout_messages_out_total 3.0" in lines
        assert 'tp_conflate_events_in_total{channel="quotes",tier="realtime"} 3.0' in lines
        assert 'tp_conflate_updates_out_total{channel="quotes",tier="20ms"} 3.0' in lines
        assert "tp_fanout_publish_to_send_seconds_count 3.0" in lines
        assert (await asyncio.to_thread(fetch, "/nope"))[0] == 404
        await ws.close()
