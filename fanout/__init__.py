"""WebSocket fanout of conflated market data to subscribers (issue: conflation and fanout)."""
