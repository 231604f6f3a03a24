"""``/v1/accounts/…``: a user's balances, statement, deposits and withdrawals over HTTP.

The account id in the path is the owning user's id (one brokerage account per user, holding
its cash and positions). A user sees and moves only their own account: 403 otherwise. The
router runs the sync :class:`Ledger` in a worker thread on a connection of its own, opened
from the app's pool's conninfo for the request.
"""

from __future__ import annotations

from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from ledger.errors import (
    IdempotencyConflictError,
    InsufficientFundsError,
    InvalidAmountError,
    InvalidTotpError,
    LedgerError,
)
from ledger.money import USD, format_usd, parse_usd
from ledger.rules import AssetBalances
from ledger.service import Activity, Ledger, Receipt
from tickerplant.auth import current_user
from tickerplant.identity import User

router = APIRouter(prefix="/v1/accounts", tags=["accounts"])


class DepositRequest(BaseModel):
    amount: Any = None  # a decimal string like "12.34"; validated by ledger.money.parse_usd


class WithdrawalRequest(BaseModel):
    amount: Any = None
    totp_code: Any = None


def _own(user: User, account_id: int) -> int:
    if int(user.id) != account_id:
        raise HTTPException(403, f"account {account_id} does not belong to you")
    return account_id


def _field_error(field: str, message: str) -> HTTPException:
    return HTTPException(422, {"field": field, "message": message})


async def _call(request: Request, work):
    """Run ``work(ledger)`` in a thread on a fresh connection; map ledger errors to 4xx."""
    conninfo = request.app.state.pool.conninfo

    def run():
        with psycopg.connect(conninfo) as conn:
            return work(Ledger.over_connection(conn))

    try:
        return await run_in_threadpool(run)
    except InvalidAmountError as exc:
        raise _field_error(exc.field, str(exc)) from exc
    except InvalidTotpError as exc:
        raise _field_error("totp_code", str(exc)) from exc
    except (InsufficientFundsError, IdempotencyConflictError) as exc:
        raise HTTPException(409, str(exc)) from exc
    except LedgerError as exc:
        raise HTTPException(400, str(exc)) from exc


def _cash(b: AssetBalances) -> dict[str, str]:
    return {
        "settled": format_usd(b.settled),
        "unsettled": format_usd(b.unsettled),
        "held": format_usd(b.held),
        "buying_power": format_usd(b.buying_power),
        "withdrawable": format_usd(b.withdrawable),
    }


def _account_body(ledger: Ledger, account_id: int) -> dict[str, Any]:
    balances = ledger.balances(account_id)
    positions = {
        asset: {
            "settled": b.settled,
            "unsettled": b.unsettled,
            "held": b.held,
            "available": b.buying_power,
        }
        for asset, b in balances.assets.items()
        if asset != USD
    }
    return {
        "id": str(account_id),
        "currency": "USD",
        "cash": _cash(balances.cash),
        "buying_power": format_usd(balances.cash.buying_power),
        "withdrawable": format_usd(balances.cash.withdrawable),
        "positions": positions,
    }


def _receipt(receipt: Receipt) -> dict[str, Any]:
    return receipt.to_json()


def _activity(item: Activity) -> dict[str, Any]:
    return {
        "transaction_id": str(item.transaction_id),
        "seq": item.seq,
        "kind": item.kind.value,
        "effective_at": item.effective_at.isoformat(),
        "settlement_date": item.settlement_date.isoformat() if item.settlement_date else None,
        "metadata": item.metadata,
        "changes": item.changes,
    }


def _key(idempotency_key: str | None) -> str:
    if not idempotency_key:
        raise _field_error("Idempotency-Key", "header Idempotency-Key is required (1-200 chars)")
    return idempotency_key


@router.get("/{account_id}", summary="Balances, buying power and withdrawable cash")
async def get_account(
    account_id: int, request: Request, user: Annotated[User, Depends(current_user)]
) -> JSONResponse:
    _own(user, account_id)
    body = await _call(request, lambda ledger: _account_body(ledger, account_id))
    return JSONResponse(body)


@router.get("/{account_id}/activities", summary="The account statement, newest first")
async def get_activities(
    account_id: int,
    request: Request,
    user: Annotated[User, Depends(current_user)],
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    before: Annotated[int | None, Query(ge=1)] = None,
) -> JSONResponse:
    _own(user, account_id)
    page = await _call(
        request, lambda ledger: ledger.activities(account_id, limit=limit, before=before)
    )
    return JSONResponse(
        {"activities": [_activity(i) for i in page.items], "next_before": page.next_before}
    )


@router.post("/{account_id}/deposits", status_code=201, summary="Add funds from the bank")
async def post_deposit(
    account_id: int,
    body: DepositRequest,
    request: Request,
    user: Annotated[User, Depends(current_user)],
    idempotency_key: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    _own(user, account_id)
    key = _key(idempotency_key)

    def work(ledger: Ledger) -> dict[str, Any]:
        cents = parse_usd("amount", body.amount)
        receipt = ledger.deposit(account_id, cents, idempotency_key=key)
        return {"receipt": _receipt(receipt), "account": _account_body(ledger, account_id)}

    return JSONResponse(await _call(request, work), status_code=201)


@router.post("/{account_id}/withdrawals", status_code=201, summary="Send settled cash to the bank")
async def post_withdrawal(
    account_id: int,
    body: WithdrawalRequest,
    request: Request,
    user: Annotated[User, Depends(current_user)],
    idempotency_key: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    _own(user, account_id)
    key = _key(idempotency_key)

    def work(ledger: Ledger) -> dict[str, Any]:
        cents = parse_usd("amount", body.amount)
        receipt = ledger.withdraw(account_id, cents, totp_code=body.totp_code, idempotency_key=key)
        return {"receipt": _receipt(receipt), "account": _account_body(ledger, account_id)}

    return JSONResponse(await _call(request, work), status_code=201)
