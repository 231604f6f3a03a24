"""The fanout error hierarchy: one root; stream errors carry the code sent to the client.

``StreamError`` subclasses are what a client did wrong (or what the server could not do
for it); each has the numeric ``code`` of the Alpaca-style error message and its ``msg``.
"""

from __future__ import annotations

from tickerplant.errors import TickerplantError


class FanoutError(TickerplantError):
    """Root of every error raised by the ``fanout`` package."""


class StreamError(FanoutError):
    """An error reported to a stream client as ``{"T":"error","code":…,"msg":…}``."""

    code = 500
    text = "internal error"

    def __init__(self, detail: str | None = None) -> None:
        self.detail = detail
        self.msg = self.text if detail is None else f"{self.text}: {detail}"
        super().__init__(f"{self.code} {self.msg}")


class InvalidSyntaxError(StreamError):
    code = 400
    text = "invalid syntax"


class NotAuthenticatedError(StreamError):
    code = 401
    text = "not authenticated"


class AuthFailedError(StreamError):
    code = 402
    text = "auth failed"


class AlreadyAuthenticatedError(StreamError):
    code = 403
    text = "already authenticated"


class AuthTimeoutError(StreamError):
    code = 404
    text = "auth timeout"


class SymbolLimitExceededError(StreamError):
    code = 405
    text = "symbol limit exceeded"


class ConnectionLimitExceededError(StreamError):
    code = 406
    text = "connection limit exceeded"


class SlowClientError(StreamError):
    code = 407
    text = "slow client"


class InsufficientSubscriptionError(StreamError):
    code = 409
    text = "insufficient subscription"


class InvalidSubscribeActionError(StreamError):
    code = 410
    text = "invalid subscribe action"


class RateLimitedError(StreamError):
    code = 429
    text = "rate limit exceeded"


class InternalStreamError(StreamError):
    code = 500
    text = "internal error"


class InvalidStreamTokenError(FanoutError):
    """A signed stream token that is malformed, forged or expired."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"invalid stream token: {reason}")
