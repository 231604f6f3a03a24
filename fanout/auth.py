"""Who a stream client is: API tokens looked up in PostgreSQL, or signed stream tokens.

- API tokens (``tp_…``, the REST bearer tokens) are looked up through a connection pool;
  positive results are cached for ``cache_s`` seconds and concurrent lookups of one token
  share a single query (the opening bell: thousands of clients with few distinct tokens).
  Failures are not cached, so a newly created token works at once; a revoked token keeps
  working on this node for at most ``cache_s``.
- Signed stream tokens (``tps_<payload>.<signature>``) are short-lived and need no database:
  HMAC-SHA256 with ``settings.token_secret`` over a JSON payload naming the user and the
  expiry. The HTTP API can hand one to a web page so the browser never holds the API token.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import time
from collections import OrderedDict
from datetime import UTC, datetime
from typing import Protocol

from psycopg_pool import AsyncConnectionPool

from fanout.errors import InvalidStreamTokenError
from tickerplant.identity import Role, User, UserId, authenticate_async, hash_token

logger = logging.getLogger(__name__)

STREAM_TOKEN_PREFIX = "tps_"


class Authenticator(Protocol):
    async def authenticate(self, token: str) -> User | None:
        """The user ``token`` belongs to, ``None`` when it is unknown, revoked or expired.

        Raises when the lookup itself failed (the client gets 500, not 402).
        """
        ...


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def issue_stream_token(secret: str, user: User, *, now_s: float, ttl_s: float) -> str:
    """A signed token for ``user`` valid until ``now_s + ttl_s``. Pure."""
    payload = json.dumps(
        {
            "u": int(user.id),
            "n": user.name,
            "r": user.role.value,
            "iat": int(now_s),
            "exp": int(now_s + ttl_s),
        },
        separators=(",", ":"),
    ).encode()
    body = _b64(payload)
    signature = hmac.new(secret.encode(), body.encode(), hashlib.sha256).digest()
    return f"{STREAM_TOKEN_PREFIX}{body}.{_b64(signature)}"


def verify_stream_token(secret: str, token: str, *, now_s: float) -> User:
    """The user a signed token names; raises ``InvalidStreamTokenError``. Pure."""
    if not token.startswith(STREAM_TOKEN_PREFIX) or len(token) > 2048:
        raise InvalidStreamTokenError("not a stream token")
    body, dot, signature = token[len(STREAM_TOKEN_PREFIX) :].partition(".")
    if not dot:
        raise InvalidStreamTokenError("no signature")
    expected = hmac.new(secret.encode(), body.encode(), hashlib.sha256).digest()
    try:
        given = _unb64(signature)
    except ValueError:
        raise InvalidStreamTokenError("malformed signature") from None
    if not hmac.compare_digest(expected, given):
        raise InvalidStreamTokenError("bad signature")
    try:
        payload = json.loads(_unb64(body))
        user = User(
            id=UserId(int(payload["u"])),
            name=str(payload["n"]),
            role=Role(payload["r"]),
            created_at=datetime.fromtimestamp(int(payload["iat"]), UTC),
        )
        expires = int(payload["exp"])
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidStreamTokenError("malformed payload") from exc
    if now_s >= expires:
        raise InvalidStreamTokenError("expired")
    return user


class PoolAuthenticator:
    """API tokens through a pool, signed stream tokens through ``secret``."""

    def __init__(
        self,
        pool: AsyncConnectionPool | None,
        *,
        secret: str | None = None,
        cache_s: float = 30.0,
        cache_size: int = 10_000,
    ) -> None:
        self._pool = pool
        self._secret = secret
        self._cache_s = cache_s
        self._cache_size = cache_size
        self._cache: OrderedDict[bytes, tuple[User, float]] = OrderedDict()
        self._inflight: dict[bytes, asyncio.Future[User | None]] = {}
        self.lookups = 0  # database queries made

    async def authenticate(self, token: str) -> User | None:
        if token.startswith(STREAM_TOKEN_PREFIX):
            if self._secret is None:
                return None
            try:
                return verify_stream_token(self._secret, token, now_s=time.time())
            except InvalidStreamTokenError:
                return None
        if self._pool is None:
            return None
        digest = hash_token(token)
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached[1] > now:
            return cached[0]
        pending = self._inflight.get(digest)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[User | None] = asyncio.get_running_loop().create_future()
        self._inflight[digest] = future
        try:
            self.lookups += 1
            async with self._pool.connection() as conn:
                user = await authenticate_async(conn, token)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it, nobody logs it as lost
            raise
        finally:
            del self._inflight[digest]
        future.set_result(user)
        if user is not None and self._cache_s > 0:
            self._cache[digest] = (user, now + self._cache_s)
            self._cache.move_to_end(digest)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return user
