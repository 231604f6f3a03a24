-- OHLCV bars computed by the candles dataflow (1-second and 1-minute; higher timeframes are
-- resampled from the 1-minute bars at query time, see candles/query.py).
--
-- Natively partitioned by time range on `start`. For now only the DEFAULT partition exists:
-- monthly partitions (and moving rows out of the default) are future partition management.
-- TimescaleDB is not used here; with the extension the same table becomes a hypertable.
--
-- Prices are integers with 4 implied decimals, VWAP has 8; `notional` = Σ price·size (4
-- implied decimals) is kept so that resampled VWAPs are exact. No floats anywhere.

CREATE TABLE bars (
    symbol       text        NOT NULL,
    timeframe    text        NOT NULL CHECK (timeframe IN ('1Sec', '1Min')),
    start        timestamptz NOT NULL,
    open         bigint      NOT NULL,
    high         bigint      NOT NULL,
    low          bigint      NOT NULL,
    close        bigint      NOT NULL,
    volume       bigint      NOT NULL CHECK (volume >= 0),
    trade_count  bigint      NOT NULL CHECK (trade_count > 0),
    notional     numeric(38, 0) NOT NULL,
    vwap_e8      bigint      NOT NULL,
    revised      boolean     NOT NULL DEFAULT false,
    last_seq     bigint      NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, timeframe, start),
    CHECK (low <= open AND open <= high AND low <= close AND close <= high)
) PARTITION BY RANGE (start);

CREATE TABLE bars_default PARTITION OF bars DEFAULT;
