"""The latest value per (channel, symbol): what a new subscriber gets as its snapshot. Pure."""

from __future__ import annotations

from collections.abc import Iterable

from conflate.updates import BarUpdate, Channel, Update


class LatestValueCache:
    """Latest update per ``(channel, symbol)``.

    Bars keep the one with the latest start (a revision of an older bar does not replace a
    newer bar); every other channel keeps the last update put. Market-wide statuses are
    stored under the empty symbol.
    """

    __slots__ = ("_values",)

    def __init__(self) -> None:
        self._values: dict[Channel, dict[str, Update]] = {channel: {} for channel in Channel}

    def put(self, update: Update) -> None:
        values = self._values[update.channel]
        if isinstance(update, BarUpdate):
            current = values.get(update.symbol)
            if current is not None and current.bar.start_ts_ns > update.bar.start_ts_ns:  # type: ignore[union-attr]
                return
        values[update.symbol] = update

    def get(self, channel: Channel, symbol: str) -> Update | None:
        return self._values[channel].get(symbol)

    def symbols(self, channel: Channel) -> list[str]:
        """Symbols with a value on ``channel``, sorted."""
        return sorted(self._values[channel])

    def snapshot(self, channel: Channel, symbols: Iterable[str] | None = None) -> list[Update]:
        """Values of ``symbols`` (all when ``None``) on ``channel``, sorted by symbol.

        Symbols without a value yet are skipped; their first update is live.
        """
        values = self._values[channel]
        names = sorted(values) if symbols is None else sorted(set(symbols))
        return [values[name] for name in names if name in values]

    def __len__(self) -> int:
        return sum(len(values) for values in self._values.values())
