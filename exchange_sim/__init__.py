"""The exchange simulator: a seeded day of ITCH 5.0 order flow, sent as MoldUDP64 multicast.

``orderflow`` is the pure core (per-symbol limit order books, the session schedule);
``sender`` the feed adapters (multicast sender with fault injection, re-request server);
``service`` the ``exchange-sim`` process (``run_exchange_sim``, ``replay_file``,
``write_file``).
"""

from exchange_sim.errors import ExchangeSimError, InvalidTimeError, OptionError, SymbolSpecError
from exchange_sim.orderflow import DEFAULT_TOTAL_RATE, OrderFlow, SymbolSpec, default_symbols
from exchange_sim.schedule import SYSTEM_EVENTS, SystemEventCode, format_time, parse_time
from exchange_sim.sender import (
    FeedSender,
    FeedSendError,
    RerequestServer,
    RerequestStats,
    SenderStats,
)
from exchange_sim.service import Pacer, SimStats, replay_file, run_exchange_sim, write_file

__all__ = [
    "DEFAULT_TOTAL_RATE",
    "SYSTEM_EVENTS",
    "ExchangeSimError",
    "FeedSendError",
    "FeedSender",
    "InvalidTimeError",
    "OptionError",
    "OrderFlow",
    "Pacer",
    "RerequestServer",
    "RerequestStats",
    "SenderStats",
    "SimStats",
    "SymbolSpec",
    "SymbolSpecError",
    "SystemEventCode",
    "default_symbols",
    "format_time",
    "parse_time",
    "replay_file",
    "run_exchange_sim",
    "write_file",
]
