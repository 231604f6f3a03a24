"""The quants' Python client: historical bars from ``GET /v1/bars`` as Polars frames.

::

    from tickerplant.client import Client

    with Client("http://127.0.0.1:8000", token="tp_…") as client:
        frame = client.bars(["AAPL", "MSFT"], "5Min", "2024-11-20", "2024-11-22")

The transport is Arrow IPC (``format=arrow``): prices arrive as exact ``decimal128(18, 4)``
(VWAP ``decimal128(18, 8)``) and stay decimals in the frame, ``t`` is ``Datetime(ns, UTC)``.
Pages are followed through the ``X-Next-Page-Token`` header until the server has none, so one
call returns every bar of the range (or ``limit`` rows). Any answer other than 200 raises
:class:`ClientError` with the HTTP status and the API's message (which names the bad
parameter); a server that cannot be reached raises it with ``status=None``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from types import TracebackType

import httpx
import polars as pl
import pyarrow as pa

from tickerplant.errors import TickerplantError

__all__ = ["BARS_SCHEMA", "Client", "ClientError"]

ARROW_STREAM = "application/vnd.apache.arrow.stream"
MAX_PAGE_SIZE = 10_000  # the API's largest ``limit``
BARS_SCHEMA = pl.Schema(
    {
        "symbol": pl.String,
        "t": pl.Datetime("ns", "UTC"),
        "o": pl.Decimal(18, 4),
        "h": pl.Decimal(18, 4),
        "l": pl.Decimal(18, 4),
        "c": pl.Decimal(18, 4),
        "v": pl.Int64,
        "n": pl.Int64,
        "vw": pl.Decimal(18, 8),
    }
)
"""Columns of every frame ``Client.bars`` returns, empty or not."""


class ClientError(TickerplantError):
    """The API refused a request (``status``: its HTTP status) or could not be reached
    (``status`` None). ``message`` is the API's ``detail``; for a 400 ``parameter`` names
    the bad parameter (the text before the first colon), else it is None."""

    def __init__(self, status: int | None, message: str) -> None:
        self.status = status
        self.message = message
        head, sep, _ = message.partition(":")
        self.parameter = head if status == 400 and sep and head.isidentifier() else None
        super().__init__(f"{status if status is not None else 'unreachable'}: {message}")


TimeArg = datetime | date | str | None


def _time_param(name: str, value: TimeArg) -> str | None:
    """A ``start``/``end`` argument as the API takes it: RFC 3339 or a date (New York)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"{name}: a datetime needs a time zone, e.g. tzinfo=UTC")
        return value.isoformat()
    return value.isoformat()


class Client:
    """A synchronous client of one tickerplant HTTP API at ``url`` (``http://host:port``).

    ``token``: an API token (``tickerplant users add NAME --role quant``), sent as a bearer
    token. ``http``: an ``httpx.Client`` to use instead of a private one (the caller keeps
    owning it); its ``base_url`` is ignored, ``url`` is used.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        timeout_s: float = 60.0,
        http: httpx.Client | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._headers = {"Accept": ARROW_STREAM}
        if token is not None:
            self._headers["Authorization"] = f"Bearer {token}"
        self._owns_http = http is None
        self._http = http if http is not None else httpx.Client(timeout=timeout_s)

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def bars(
        self,
        symbols: str | Iterable[str],
        timeframe: str,
        start: TimeArg = None,
        end: TimeArg = None,
        *,
        limit: int | None = None,
        sort: str = "asc",
        page_size: int = MAX_PAGE_SIZE,
    ) -> pl.DataFrame:
        """Bars of ``symbols`` (one name or several) at ``timeframe`` (``1Min``, ``5Min``,
        ``1Hour``, ``1Day``, …) with labels in ``[start, end]``, ordered by symbol then time
        (``sort`` = ``asc`` or ``desc``), as a frame of :data:`BARS_SCHEMA`.

        ``start``/``end``: an aware ``datetime``, a ``date`` (that day in New York, as the
        API reads it) or a string the API accepts; None leaves the bound to the server.
        ``limit``: at most that many rows in all (default: every bar); ``page_size``: rows
        per request (1 to 10,000).
        """
        names = [symbols] if isinstance(symbols, str) else list(symbols)
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size: must be between 1 and {MAX_PAGE_SIZE}, got {page_size}")
        if limit is not None and limit < 1:
            raise ValueError(f"limit: must be at least 1 or None, got {limit}")
        params: dict[str, str | int] = {
            "symbols": ",".join(names),
            "timeframe": timeframe,
            "sort": sort,
            "format": "arrow",
        }
        for name, value in (("start", start), ("end", end)):
            text = _time_param(name, value)
            if text is not None:
                params[name] = text
        tables: list[pa.Table] = []
        rows = 0
        token: str | None = None
        while True:
            want = page_size if limit is None else min(page_size, limit - rows)
            page = params | {"limit": want} | ({"page_token": token} if token else {})
            table, token = self._bars_page(page)
            tables.append(table)
            rows += table.num_rows
            if token is None or (limit is not None and rows >= limit):
                break
        return pl.DataFrame(pa.concat_tables(tables)).cast(dict(BARS_SCHEMA))

    def _bars_page(self, params: dict[str, str | int]) -> tuple[pa.Table, str | None]:
        """One request: the page's rows and the next page's token (None: the last page)."""
        response = self._get("/v1/bars", params)
        table = pa.ipc.open_stream(response.content).read_all()
        return table, response.headers.get("X-Next-Page-Token")

    def _get(self, path: str, params: dict[str, str | int]) -> httpx.Response:
        try:
            response = self._http.get(self.url + path, params=params, headers=self._headers)
        except httpx.TransportError as exc:
            raise ClientError(None, f"cannot reach {self.url}: {exc}") from exc
        if response.status_code != 200:
            raise ClientError(response.status_code, _detail(response))
        return response


def _detail(response: httpx.Response) -> str:
    """The API's error message: FastAPI's ``detail`` (a string, or a validation list)."""
    try:
        detail = response.json()["detail"]
    except (ValueError, KeyError, TypeError):
        return response.text.strip() or response.reason_phrase
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list):  # request validation: [{"loc": [...], "msg": ...}, ...]
        parts = []
        for item in detail:
            loc = item.get("loc", []) if isinstance(item, dict) else []
            name = str(loc[-1]) if loc else "request"
            msg = item.get("msg", "") if isinstance(item, dict) else str(item)
            parts.append(f"{name}: {msg}")
        return "; ".join(parts)
    return str(detail)
