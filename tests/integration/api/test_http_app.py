"""The composed HTTP app against the real PostgreSQL: bearer tokens, roles, health, metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import Depends

from tickerplant.api import create_app
from tickerplant.auth import require_role
from tickerplant.db import connect, open_async_pool
from tickerplant.identity import Role, create_user, revoke_token
from tickerplant.observability import Health, new_registry

pytestmark = pytest.mark.postgres


@pytest.fixture
async def client(migrated_dsn: str) -> AsyncIterator[httpx.AsyncClient]:
    pool = await open_async_pool(migrated_dsn)
    app = create_app(pool=pool, registry=new_registry("test"), health=Health())

    @app.get("/v1/compliance-only")
    async def compliance_only(user=Depends(require_role(Role.COMPLIANCE))) -> dict[str, str]:
        return {"name": user.name}

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
        yield http
    await pool.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_valid_token_identifies_its_user_and_role(client, migrated_dsn):
    """GET /v1/me with alice's token answers 200 with her name and role quant."""
    with connect(migrated_dsn) as conn:
        user, token = create_user(conn, "alice", Role.QUANT)
    response = await client.get("/v1/me", headers=bearer(token))
    assert response.status_code == 200
    assert response.json() == {"id": str(user.id), "name": "alice", "role": "quant"}


async def test_requests_without_a_valid_token_are_refused_with_a_reason(client, migrated_dsn):
    """No header, a non-bearer scheme, an unknown token and a revoked token each get 401."""
    with connect(migrated_dsn) as conn:
        _, token = create_user(conn, "bob", Role.TRADER)
        revoke_token(conn, token)
    cases = [
        ({}, "missing Authorization header: send 'Authorization: Bearer <token>'"),
        ({"Authorization": f"Basic {token}"}, "Authorization header must be 'Bearer <token>'"),
        (bearer("tp_" + "x" * 43), "invalid or revoked token"),
        (bearer(token), "invalid or revoked token"),
    ]
    for headers, detail in cases:
        response = await client.get("/v1/me", headers=headers)
        assert (response.status_code, response.json()) == (401, {"detail": detail})
        assert response.headers["www-authenticate"].startswith("Bearer")


async def test_a_role_guard_lets_through_only_its_role(client, migrated_dsn):
    """A compliance-only route answers 200 for a compliance officer and 403 for a trader."""
    with connect(migrated_dsn) as conn:
        _, officer = create_user(conn, "carol", Role.COMPLIANCE)
        _, trader = create_user(conn, "dave", Role.TRADER)
    allowed = await client.get("/v1/compliance-only", headers=bearer(officer))
    refused = await client.get("/v1/compliance-only", headers=bearer(trader))
    assert (allowed.status_code, allowed.json()) == (200, {"name": "carol"})
    assert (refused.status_code, refused.json()) == (
        403,
        {"detail": "role 'trader' may not do this; needs compliance"},
    )


async def test_health_and_metrics_are_open_and_the_openapi_spec_lists_me(client):
    """/healthz is 200 ok, /metrics carries the build info, /openapi.json documents /v1/me."""
    health = await client.get("/healthz")
    metrics = await client.get("/metrics")
    spec = await client.get("/openapi.json")
    assert (health.status_code, health.json()) == (200, {"status": "ok", "checks": {}})
    assert 'tickerplant_build_info{process="test",version="0.1.0"} 1.0' in metrics.text
    assert "/v1/me" in spec.json()["paths"]
