"""OHLCV bars from trades (Bytewax), their storage, the bars API and the Parquet archive."""
