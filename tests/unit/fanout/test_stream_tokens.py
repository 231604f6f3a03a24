"""Signed stream tokens: HMAC-SHA256 over the user and expiry; no database needed."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from fanout.auth import PoolAuthenticator, issue_stream_token, verify_stream_token
from fanout.errors import InvalidStreamTokenError
from tickerplant.identity import Role, User, UserId

BOB = User(UserId(42), "bob", Role.QUANT, datetime(2024, 1, 1, tzinfo=UTC))


def test_a_signed_token_verifies_to_its_user_until_it_expires():
    """Issued at 1000 for 60 s: valid at 1059 naming bob (quant), expired at 1060."""
    token = issue_stream_token("k", BOB, now_s=1000, ttl_s=60)
    assert token.startswith("tps_")
    user = verify_stream_token("k", token, now_s=1059)
    assert (user.id, user.name, user.role) == (42, "bob", Role.QUANT)
    with pytest.raises(InvalidStreamTokenError, match="invalid stream token: expired"):
        verify_stream_token("k", token, now_s=1060)


@pytest.mark.parametrize(
    ("mangle", "reason"),
    [
        (lambda tok: tok.replace("tps_", "tpx_"), "not a stream token"),
        (lambda tok: tok.split(".")[0], "no signature"),
        (lambda tok: tok[:-2] + ("AA" if tok[-2:] != "AA" else "BB"), "bad signature"),
        (lambda tok: "tps_e30." + tok.split(".")[1], "bad signature"),
    ],
)
def test_forged_or_mangled_tokens_are_refused_with_the_reason(mangle, reason):
    """Any change to payload or signature fails verification."""
    token = issue_stream_token("k", BOB, now_s=1000, ttl_s=60)
    with pytest.raises(InvalidStreamTokenError, match=f"invalid stream token: {reason}"):
        verify_stream_token("k", mangle(token), now_s=1001)


def test_a_token_signed_with_another_secret_is_refused():
    """The secret is the key: a token from another key does not verify."""
    token = issue_stream_token("other", BOB, now_s=1000, ttl_s=60)
    with pytest.raises(InvalidStreamTokenError, match="bad signature"):
        verify_stream_token("k", token, now_s=1001)


async def test_the_authenticator_accepts_signed_tokens_and_refuses_api_tokens_without_a_pool():
    """No pool: a signed token authenticates, an API token or garbage gives None."""
    import time

    auth = PoolAuthenticator(None, secret="k")
    token = issue_stream_token("k", BOB, now_s=time.time(), ttl_s=60)
    assert (await auth.authenticate(token)).name == "bob"
    assert await auth.authenticate("tp_" + "a" * 43) is None
    assert await auth.authenticate("tps_garbage") is None
    assert await PoolAuthenticator(None).authenticate(token) is None
