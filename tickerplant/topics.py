"""Bus topic names, defined once."""

from __future__ import annotations

MD_TRADES = "md.trades"
MD_QUOTES = "md.quotes"
MD_STATUS = "md.status"
MD_BARS = "md.bars"
OMS_ORDERS = "oms.orders"
SURVEILLANCE_FLAGS = "surveillance.flags"

ALL_TOPICS = (MD_TRADES, MD_QUOTES, MD_STATUS, MD_BARS, OMS_ORDERS, SURVEILLANCE_FLAGS)
