"""``/v1/accounts`` over the composed app: ownership, validation, deposits, withdrawals."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pyotp
import pytest

from ledger import Ledger
from tickerplant.api import create_app
from tickerplant.db import connect, open_async_pool
from tickerplant.identity import Role, create_user
from tickerplant.observability import Health, new_registry

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(60)]


@pytest.fixture
async def client(migrated_dsn: str) -> AsyncIterator[httpx.AsyncClient]:
    pool = await open_async_pool(migrated_dsn)
    app = create_app(pool=pool, registry=new_registry("test"), health=Health())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
        yield http
    await pool.close()


def auth(token: str, key: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {token}"}
    if key:
        headers["Idempotency-Key"] = key
    return headers


async def test_a_user_deposits_sees_balances_and_cannot_see_another_account(client, migrated_dsn):
    """alice deposits $12.34 (twice with one key: once booked), reads 12.34 buying power;
    bob's account is 403 for her."""
    with connect(migrated_dsn) as conn:
        alice, token = create_user(conn, "alice", Role.TRADER)
        bob, _ = create_user(conn, "bob", Role.TRADER)
    for _ in range(2):
        response = await client.post(
            f"/v1/accounts/{alice.id}/deposits", json={"amount": "12.34"}, headers=auth(token, "k1")
        )
        assert response.status_code == 201, response.text
    account = (await client.get(f"/v1/accounts/{alice.id}", headers=auth(token))).json()
    assert account["cash"] == {
        "settled": "12.34", "unsettled": "0.00", "held": "0.00",
        "buying_power": "12.34", "withdrawable": "12.34",
    }  # fmt: skip
    activities = (
        await client.get(f"/v1/accounts/{alice.id}/activities", headers=auth(token))
    ).json()
    assert [a["kind"] for a in activities["activities"]] == ["deposit"]
    forbidden = await client.get(f"/v1/accounts/{bob.id}", headers=auth(token))
    assert (forbidden.status_code, forbidden.json()) == (
        403,
        {"detail": f"account {bob.id} does not belong to you"},
    )
    moved = await client.post(
        f"/v1/accounts/{bob.id}/deposits", json={"amount": "1"}, headers=auth(token, "k2")
    )
    assert moved.status_code == 403


@pytest.mark.parametrize(
    ("amount", "reason"),
    [
        (12.5, 'send a decimal string such as "12.34", not a float'),
        ("1.001", "at most two decimal places for USD"),
        ("-1", "must be positive"),
        ("99999999999", "at most 1000000000.00 per operation"),
    ],
)
async def test_bad_amounts_are_422_naming_the_field(client, migrated_dsn, amount, reason):
    """Each invalid amount answers 422 with field "amount" and the reason."""
    with connect(migrated_dsn) as conn:
        user, token = create_user(conn, "carol", Role.TRADER)
    response = await client.post(
        f"/v1/accounts/{user.id}/deposits", json={"amount": amount}, headers=auth(token, "k")
    )
    assert response.status_code == 422
    assert response.json()["detail"]["field"] == "amount"
    assert response.json()["detail"]["message"].endswith(reason)


async def test_a_withdrawal_needs_a_valid_code_and_funds(client, migrated_dsn):
    """A wrong code is 422 on totp_code; too much is 409; a valid one moves the money."""
    with connect(migrated_dsn) as conn:
        user, token = create_user(conn, "dora", Role.TRADER)
        ledger = Ledger.over_connection(conn)
        ledger.deposit(user.id, 5000, idempotency_key="fund")
        totp = pyotp.TOTP(ledger.enroll_totp(user.id).secret)
    url = f"/v1/accounts/{user.id}/withdrawals"
    wrong = await client.post(
        url, json={"amount": "10", "totp_code": "000000x"}, headers=auth(token, "w1")
    )
    assert (wrong.status_code, wrong.json()["detail"]["field"]) == (422, "totp_code")
    too_much = await client.post(
        url, json={"amount": "50.01", "totp_code": totp.now()}, headers=auth(token, "w2")
    )
    assert too_much.status_code == 409
    assert too_much.json()["detail"].startswith("insufficient withdrawable cash")
    ok = await client.post(
        url, json={"amount": "20", "totp_code": totp.now()}, headers=auth(token, "w3")
    )
    assert ok.status_code == 201
    assert ok.json()["account"]["withdrawable"] == "30.00"
