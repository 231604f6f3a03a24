"""Latest-value cache per (symbol, channel) and per-subscriber conflation (issue: conflation)."""
