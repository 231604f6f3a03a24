"""The live market page served by the HTTP API (watchlist and candlestick chart)."""

from tickerplant.web.routes import STREAM_TOKEN_TTL_S, WEB_DIR, mount_market_page, router

__all__ = ["STREAM_TOKEN_TTL_S", "WEB_DIR", "mount_market_page", "router"]
