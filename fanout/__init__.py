"""WebSocket fanout of conflated market data to subscribers.

``protocol`` (client messages in, JSON frames out), ``session`` (auth and subscriptions of
one connection), ``outbox`` (a client's bounded, conflating queue) are pure; ``server`` runs
them on ``websockets``; ``service.run_fanout`` is the ``tickerplant fanout`` process.
"""

from fanout.auth import (
    STREAM_TOKEN_PREFIX,
    Authenticator,
    PoolAuthenticator,
    issue_stream_token,
    verify_stream_token,
)
from fanout.errors import (
    AlreadyAuthenticatedError,
    AuthFailedError,
    AuthTimeoutError,
    ConnectionLimitExceededError,
    FanoutError,
    InternalStreamError,
    InvalidStreamTokenError,
    InvalidSubscribeActionError,
    InvalidSyntaxError,
    NotAuthenticatedError,
    RateLimitedError,
    SlowClientError,
    StreamError,
    SymbolLimitExceededError,
)
from fanout.outbox import Batch, ConflatingOutbox, OutboxStats
from fanout.protocol import (
    Auth,
    Command,
    Subscribe,
    Unsubscribe,
    encode_update,
    parse_client_message,
)
from fanout.server import FanoutServer
from fanout.service import run_fanout
from fanout.session import SessionState, StreamSession, SubscriptionChange, TokenBucket

__all__ = [
    "STREAM_TOKEN_PREFIX",
    "AlreadyAuthenticatedError",
    "Auth",
    "AuthFailedError",
    "AuthTimeoutError",
    "Authenticator",
    "Batch",
    "Command",
    "ConflatingOutbox",
    "ConnectionLimitExceededError",
    "FanoutError",
    "FanoutServer",
    "InternalStreamError",
    "InvalidStreamTokenError",
    "InvalidSubscribeActionError",
    "InvalidSyntaxError",
    "NotAuthenticatedError",
    "OutboxStats",
    "PoolAuthenticator",
    "RateLimitedError",
    "SessionState",
    "SlowClientError",
    "StreamError",
    "StreamSession",
    "Subscribe",
    "SubscriptionChange",
    "SymbolLimitExceededError",
    "TokenBucket",
    "Unsubscribe",
    "encode_update",
    "issue_stream_token",
    "parse_client_message",
    "run_fanout",
    "verify_stream_token",
]
