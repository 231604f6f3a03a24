"""Bearer-token authentication for the HTTP routers: who is calling, and may they.

Every request under ``/v1`` (but the open ones) carries ``Authorization: Bearer <token>``,
the same token that authenticates WebSocket clients. Tokens are looked up by hash through
``tickerplant.identity``; a missing or unknown token is a 401 with a message saying which.
Routers depend on this module, never on ``tickerplant.api``, so the app can import them.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from psycopg_pool import AsyncConnectionPool

from tickerplant.identity import Role, User, authenticate_async


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
