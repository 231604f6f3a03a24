"""``tickerplant.client.Client`` against a real uvicorn server over the real PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal

import httpx
import polars as pl
import pytest
import uvicorn
from bytewax.testing import run_main

from candles.dataflow import BusBridge, BusSource, build_flow
from candles.storage import read_bars
from tests.unit.candles.reference import polars_bars, simulated_records, trades_frame
from tickerplant.api import create_app
from tickerplant.bus import MemoryBus
from tickerplant.client import BARS_SCHEMA, Client, ClientError
from tickerplant.db import connect, open_async_pool
from tickerplant.identity import Role, create_user
from tickerplant.observability import Health, new_registry
from tickerplant.topics import MD_TRADES

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory) -> tuple[tuple[bytes, bytes], ...]:
    return simulated_records(str(tmp_path_factory.mktemp("sim")))


@pytest.fixture
def loaded(day, migrated_dsn: str) -> str:
    """The simulated day's trades through the live dataflow (MemoryBus) into PostgreSQL."""
    bridge = BusBridge(MemoryBus(partitions=4))
    bridge.run(bridge.bus.start())
    bridge.run(bridge.bus.create_topic(MD_TRADES))
    bridge.run(bridge.bus.publish_many(MD_TRADES, day))
    run_main(
        build_flow(BusSource(bridge, MD_TRADES, until_end=True), dsn=migrated_dsn, bars_sink=None)
    )
    bridge.run(bridge.bus.close())
    bridge.close()
    return migrated_dsn


class _Server(uvicorn.Server):
    """uvicorn without its signal handling: it runs off the main thread, pytest owns signals."""

    def capture_signals(self):  # type: ignore[override]
        return contextlib.nullcontext()


@pytest.fixture
def api(loaded: str) -> Iterator[tuple[str, str]]:
    """``(url, token)`` of the HTTP API served by uvicorn on 127.0.0.1 (a free port), in a
    thread with its own event loop; a quant user's token."""
    with connect(loaded) as conn:
        _, token = create_user(conn, "quinn", Role.QUANT)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    ready = threading.Event()
    box: dict[str, object] = {}

    def serve() -> None:
        async def main() -> None:
            pool = await open_async_pool(loaded)
            app = create_app(pool=pool, registry=new_registry("test"), health=Health())
            server = _Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
            box["server"] = server
            task = asyncio.create_task(server.serve(sockets=[sock]))
            while not server.started and not task.done():
                await asyncio.sleep(0.02)
            ready.set()
            await task
            await pool.close()

        try:
            asyncio.run(main())
        finally:
            ready.set()

    thread = threading.Thread(target=serve, name="test-uvicorn", daemon=True)
    thread.start()
    assert ready.wait(30)
    host, port = sock.getsockname()[:2]
    yield f"http://{host}:{port}", token
    box["server"].should_exit = True  # type: ignore[attr-defined]
    thread.join(30)
    sock.close()


def db_frame(dsn: str, symbols: list[str] | None = None) -> pl.DataFrame:
    """The stored 1-minute bars as the client's frame: exact decimals from the integers."""
    with connect(dsn) as conn:
        rows = read_bars(conn, timeframe="1Min")
    return pl.DataFrame(
        [
            (s, t, *(Decimal(p).scaleb(-4) for p in (o, h, lo, c)), v, n, Decimal(vw).scaleb(-8))
            for s, t, o, h, lo, c, v, n, vw, _ in rows
            if symbols is None or s in symbols
        ],
        schema=BARS_SCHEMA,
        orient="row",
    )


def all_symbols(day) -> list[str]:
    return sorted(trades_frame(day)["symbol"].unique())


def test_one_symbol_of_one_minute_bars_equals_the_rows_the_database_holds(api, loaded, day):
    """`bars("SYM", "1Min")` returns exactly the stored bars of SYM: same rows, same exact
    decimal prices, UTC nanosecond times, and the documented schema."""
    url, token = api
    sym = all_symbols(day)[0]
    with Client(url, token=token) as client:
        frame = client.bars(sym, "1Min", "2024-03-01", "2024-03-01")
    expected = db_frame(loaded, [sym])
    assert frame.schema == BARS_SCHEMA
    assert frame.height == expected.height > 1
    assert frame.equals(expected)
    assert frame["o"][0] == Decimal(expected["o"][0])


def test_many_symbols_in_small_pages_are_followed_to_the_same_frame(api, loaded, day):
    """Every symbol with `page_size=7`: the client follows page tokens through ceil(rows/7)
    requests and returns the same frame as the database, in symbol then time order."""
    url, token = api
    requests: list[httpx.Request] = []
    with (
        httpx.Client(event_hooks={"request": [requests.append]}) as http,
        Client(url, token=token, http=http) as client,
    ):
        frame = client.bars(all_symbols(day), "1Min", page_size=7)
    expected = db_frame(loaded)
    assert frame.equals(expected)
    assert len(requests) == -(-expected.height // 7)
    assert [r.url.params.get("page_token") is None for r in requests[:2]] == [True, False]
    assert {r.url.params["format"] for r in requests} == {"arrow"}


def test_limit_caps_the_rows_and_desc_reverses_time_within_each_symbol(api, loaded, day):
    """`limit=10, page_size=4, sort="desc"` returns exactly the first 10 rows of the
    descending order (pages of 4, 4, then a last request for only 2)."""
    url, token = api
    syms = all_symbols(day)
    with Client(url, token=token) as client:
        frame = client.bars(syms, "1Min", limit=10, page_size=4, sort="desc")
    expected = db_frame(loaded).sort(["symbol", "t"], descending=[False, True]).head(10)
    assert frame.equals(expected)


def test_five_minute_bars_equal_polars_resampling_of_the_trades(api, day):
    """`bars(all, "5Min")` equals Polars' group_by_dynamic over the same trades, exactly."""
    url, token = api
    with Client(url, token=token) as client:
        frame = client.bars(all_symbols(day), "5Min", datetime(2024, 3, 1, tzinfo=UTC))
    want = [
        (s, datetime.fromtimestamp(t // 10**9, UTC), o, h, lo, c, v, n, vw)
        for s, t, o, h, lo, c, v, n, vw in polars_bars(trades_frame(day), "5m")
    ]
    got = [
        (s, t, int(o.scaleb(4)), int(h.scaleb(4)), int(lo.scaleb(4)), int(c.scaleb(4)), v, n,
         int(vw.scaleb(8)))
        for s, t, o, h, lo, c, v, n, vw in frame.iter_rows()
    ]  # fmt: skip
    assert got == want


def test_an_empty_range_is_an_empty_frame_with_the_schema(api, day):
    """A day without bars returns zero rows with the documented column types."""
    url, token = api
    with Client(url, token=token) as client:
        frame = client.bars(all_symbols(day)[0], "1Min", date(2024, 2, 1), date(2024, 2, 1))
    assert (frame.height, frame.schema) == (0, BARS_SCHEMA)


ACCEPTED = "; accepted: [1-59]Min, [1-23]Hour, 1Day, 1Week, [1,2,3,4,6,12]Month"


@pytest.mark.parametrize(
    ("symbols", "timeframe", "start", "end", "status", "parameter", "message"),
    [
        ("ZZZZ", "1Min", None, None, 400, "symbols",
         "symbols: unknown symbol 'ZZZZ': no bars are stored for it"),
        (None, "7Days", None, None, 400, "timeframe",
         f"timeframe: unknown timeframe '7Days'{ACCEPTED}"),
        (None, "1Min", "2024-03-02", "2024-03-01", 400, "start",
         "start: start 2024-03-02T05:00:00Z is after end 2024-03-02T04:59:59.999999Z"),
        (None, "1Min", "yesterday", None, 400, "start", "start: expected RFC 3339 or YYYY-MM-DD"),
    ],
)  # fmt: skip
def test_an_api_error_is_a_client_error_with_status_parameter_and_message(
    api, day, symbols, timeframe, start, end, status, parameter, message
):
    """Each 400 from the API becomes ClientError carrying the status, the parameter it names
    and the API's exact message."""
    url, token = api
    with Client(url, token=token) as client, pytest.raises(ClientError) as raised:
        client.bars(symbols or all_symbols(day)[0], timeframe, start, end)
    err = raised.value
    assert (err.status, err.parameter, err.message) == (status, parameter, message)
    assert str(err) == f"{status}: {message}"


def test_a_bad_token_is_a_401_client_error(api, day):
    """A revoked or unknown token: ClientError(401, "invalid or revoked token")."""
    url, _ = api
    with Client(url, token="tp_nope") as client, pytest.raises(ClientError) as raised:
        client.bars(all_symbols(day)[0], "1Min")
    assert (raised.value.status, raised.value.parameter, raised.value.message) == (
        401,
        None,
        "invalid or revoked token",
    )


def test_no_token_is_a_401_client_error_saying_what_to_send(api, day):
    """Without a token the API's 401 message is carried as is."""
    url, _ = api
    with Client(url) as client, pytest.raises(ClientError) as raised:
        client.bars(all_symbols(day)[0], "1Min")
    assert (raised.value.status, raised.value.message) == (
        401,
        "missing Authorization header: send 'Authorization: Bearer <token>'",
    )


def test_a_server_that_is_not_listening_is_a_client_error_without_status():
    """Connection refused on 127.0.0.1 raises ClientError with status None."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # bound then closed: nothing listens on the port
    with (
        Client(f"http://127.0.0.1:{port}", token="tp_x") as c,
        pytest.raises(ClientError) as raised,
    ):
        c.bars("AAPL", "1Min")
    assert raised.value.status is None
    assert raised.value.message.startswith(f"cannot reach http://127.0.0.1:{port}: ")


def test_a_naive_datetime_is_refused_before_any_request():
    """start=datetime without tzinfo raises ValueError naming start; nothing is sent."""
    with Client("http://127.0.0.1:9", token="tp_x") as client, pytest.raises(ValueError) as raised:
        client.bars("AAPL", "1Min", datetime(2024, 3, 1))
    assert str(raised.value) == "start: a datetime needs a time zone, e.g. tzinfo=UTC"
