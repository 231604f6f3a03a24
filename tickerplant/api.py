"""The composed HTTP app: health, metrics, identity; components mount their routers here.

Every request under ``/v1`` (but the open ones) carries ``Authorization: Bearer <token>``,
the same token that authenticates WebSocket clients. Tokens are looked up by hash through
``tickerplant.identity``; a missing or unknown token is a 401 with a message saying which.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from psycopg_pool import AsyncConnectionPool

from tickerplant import __version__
from tickerplant.identity import Role, User, authenticate_async
from tickerplant.observability import Health, health_response


async def current_user(request: Request) -> User:
    """The user whose bearer token authenticates this request, else 401."""
    header = request.headers.get("authorization")
    if not header:
        raise HTTPException(
            401,
            "missing Authorization header: send 'Authorization: Bearer <token>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise HTTPException(
            401,
            "Authorization header must be 'Bearer <token>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    pool: AsyncConnectionPool = request.app.state.pool
    async with pool.connection() as conn:
        user = await authenticate_async(conn, token.strip())
    if user is None:
        raise HTTPException(
            401,
            "invalid or revoked token",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
    return user


def require_role(*roles: Role) -> Callable[..., Coroutine[Any, Any, User]]:
    """A dependency that lets through only users holding one of ``roles`` (403 otherwise)."""
    allowed = ", ".join(role.value for role in roles)

    async def dependency(user: Annotated[User, Depends(current_user)]) -> User:
        if user.role not in roles:
            raise HTTPException(403, f"role {user.role.value!r} may not do this; needs {allowed}")
        return user

    return dependency


def create_app(
    *,
    pool: AsyncConnectionPool,
    registry: CollectorRegistry,
    health: Health,
    stream_url: str | None = None,
    token_secret: str | None = None,
) -> FastAPI:
    """The HTTP API over an open connection pool, exposing the process's metrics and health.

    With ``stream_url`` (the WebSocket stream) and ``token_secret`` (``settings.token_secret``)
    the market page at ``/`` can trade its API token for signed stream tokens.
    """
    app = FastAPI(
        title="tickerplant",
        version=__version__,
        description="Market data, bars, orders and accounts. Authenticate with a bearer token "
        "issued by `tickerplant users add`.",
    )
    app.state.pool = pool
    app.state.stream_url = stream_url
    app.state.token_secret = token_secret
    from ledger.http import router as ledger_router  # local: ledger.http imports this module

    app.include_router(ledger_router)
    from candles.http import router as candles_router  # local: candles.http imports this module

    app.include_router(candles_router)
    from tickerplant.web import mount_market_page  # local: tickerplant.web imports this module

    mount_market_page(app)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> Response:
        status, body = health_response(health)
        return Response(body, status_code=status, media_type="application/json")

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/me", summary="The authenticated user")
    async def me(user: Annotated[User, Depends(current_user)]) -> JSONResponse:
        return JSONResponse({"id": str(user.id), "name": user.name, "role": user.role.value})

    return app
