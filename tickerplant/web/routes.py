"""The live market page: ``/`` (the page), ``/static/…`` (its files), ``/v1/stream-token``.

The page is plain HTML, CSS and ES modules with no build step, served from this package
(``tickerplant/web/``, shipped as package data). It authenticates once: the API token
arrives in the URL fragment (``/#token=tp_…``, never sent to the server by the browser),
the page trades it for a short-lived signed stream token (``tps_…``, see
``fanout.auth.issue_stream_token``) at ``GET /v1/stream-token``, and sends only that one over
the WebSocket, whose URL the same answer carries (``create_app(stream_url=…)``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from fanout.auth import issue_stream_token
from fanout.protocol import rfc3339
from tickerplant.auth import current_user
from tickerplant.identity import User

__all__ = ["STREAM_TOKEN_TTL_S", "WEB_DIR", "mount_market_page", "router"]

WEB_DIR = Path(__file__).resolve().parent
STREAM_TOKEN_TTL_S = 600.0
"""How long a stream token may be used to *open* a connection; an open one stays open."""

# What /static/ serves out of WEB_DIR: the page's files, never the package's Python.
_ASSET_SUFFIXES = frozenset({".html", ".js", ".css", ".md"})

router = APIRouter()


class _PageAssets(StaticFiles):
    """``StaticFiles`` over the package directory, limited to the page's own file types."""

    async def get_response(self, path: str, scope: Scope):  # type: ignore[override]
        name = Path(path).name
        if Path(path).suffix not in _ASSET_SUFFIXES and not name.startswith("LICENSE"):
            raise HTTPException(404, f"no page asset {path!r}")
        return await super().get_response(path, scope)


@router.get("/", include_in_schema=False)
def market_page() -> FileResponse:
    # no-cache: a new release's page is picked up on reload (it revalidates, by ETag).
    return FileResponse(WEB_DIR / "index.html", headers={"Cache-Control": "no-cache"})


@router.get("/v1/stream-token", summary="A short-lived token for the WebSocket stream")
async def stream_token(
    request: Request, user: Annotated[User, Depends(current_user)]
) -> JSONResponse:
    """A signed stream token (``tps_…``) for the caller and the stream URL to use it on.

    The token opens a stream connection until ``expires_at``; a connection opened with it
    stays open past that. 503 when this API was started without a stream to point at.
    """
    state = request.app.state
    stream_url: str | None = getattr(state, "stream_url", None)
    secret: str | None = getattr(state, "token_secret", None)
    if stream_url is None or secret is None:
        raise HTTPException(
            503, "no stream configured: this API was started without stream_url and token_secret"
        )
    now = time.time()
    token = issue_stream_token(secret, user, now_s=now, ttl_s=STREAM_TOKEN_TTL_S)
    return JSONResponse(
        {
            "token": token,
            "expires_at": rfc3339(int(now + STREAM_TOKEN_TTL_S) * 1_000_000_000),
            "stream_url": stream_url,
            "user": user.name,
        },
        headers={"Cache-Control": "no-store"},
    )


def mount_market_page(app: FastAPI) -> None:
    """Serve the page at ``/``, its files under ``/static/`` and ``/v1/stream-token``."""
    app.include_router(router)
    app.mount("/static", _PageAssets(directory=WEB_DIR), name="static")
