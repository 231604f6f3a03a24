-- Stored higher-timeframe bars (5Min, 15Min, 1Hour, 1Day), resampled from the 1-minute rows
-- of `bars` exactly as candles/query.py resamples at query time (same bucket expressions,
-- same open/close/high/low/volume/trade_count/notional/VWAP rules), so reading a row here
-- equals resampling on the fly.
--
-- Maintained by candles/storage.py: `upsert_bars` recomputes every bucket its batch touched
-- from the 1-minute rows, in the batch's transaction (a bucket left without 1-minute rows
-- is deleted). Rows written to `bars` by any other path (COPY, manual DELETE) are not
-- reflected until `candles.storage.rebuild_bar_aggregates` runs.
--
-- Not partitioned: a year of one symbol is ~25,000 rows over the four timeframes.

CREATE TABLE bar_aggregates (
    symbol       text        NOT NULL,
    timeframe    text        NOT NULL CHECK (timeframe IN ('5Min', '15Min', '1Hour', '1Day')),
    start        timestamptz NOT NULL,
    open         bigint      NOT NULL,
    high         bigint      NOT NULL,
    low          bigint      NOT NULL,
    close        bigint      NOT NULL,
    volume       bigint      NOT NULL CHECK (volume >= 0),
    trade_count  bigint      NOT NULL CHECK (trade_count > 0),
    notional     numeric(38, 0) NOT NULL,
    vwap_e8      bigint      NOT NULL,
    PRIMARY KEY (symbol, timeframe, start)
);

-- Bars already stored when this migration runs.
INSERT INTO bar_aggregates (symbol, timeframe, start, open, high, low, close, volume,
                            trade_count, notional, vwap_e8)
SELECT symbol, timeframe, t,
       (array_agg(open ORDER BY start ASC))[1], max(high), min(low),
       (array_agg(close ORDER BY start DESC))[1],
       sum(volume)::bigint, sum(trade_count)::bigint, sum(notional),
       div(sum(notional) * 20000 + sum(volume), 2 * sum(volume))::bigint
FROM (
    SELECT b.symbol, b.start, b.open, b.high, b.low, b.close, b.volume, b.trade_count,
           b.notional, tf.timeframe,
           CASE tf.timeframe
               WHEN '1Day' THEN
                   (date_trunc('day', (b.start AT TIME ZONE 'America/New_York'))
                    AT TIME ZONE 'America/New_York')
               ELSE
                   date_bin(tf.width, b.start,
                            (date_trunc('day', (b.start AT TIME ZONE 'America/New_York'))
                             AT TIME ZONE 'America/New_York'))
           END AS t
    FROM bars AS b
    CROSS JOIN (VALUES ('5Min', interval '5 minutes'), ('15Min', interval '15 minutes'),
                       ('1Hour', interval '1 hours'), ('1Day', NULL)) AS tf (timeframe, width)
    WHERE b.timeframe = '1Min'
) AS m
GROUP BY symbol, timeframe, t;
