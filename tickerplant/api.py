"""The composed HTTP app: health, metrics, identity; components mount their routers here.

Authentication (bearer tokens, roles) lives in ``tickerplant.auth``, which the routers use.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from psycopg_pool import AsyncConnectionPool

from candles.http import router as candles_router
from ledger.http import router as ledger_router
from tickerplant import __version__
from tickerplant.auth import current_user
from tickerplant.identity import User
from tickerplant.observability import Health, health_response
from tickerplant.web import mount_market_page


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
    app.include_router(ledger_router)
    app.include_router(candles_router)
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
