"""The ``exchange-sim`` process: simulated order flow or a recorded file, onto the feed.

- ``run_exchange_sim`` generates a day of order flow (``OrderFlow``), paces it by exchange
  timestamps divided by ``speed``, sends it as MoldUDP64 on the multicast feed, answers
  re-requests, and can write the very same messages to an ITCH file;
- ``replay_file`` sends an existing ITCH 5.0 file (NASDAQ's 2-byte framing, ``.gz`` too) the
  same way, at its recorded pace or as fast as possible;
- ``write_file`` only writes a generated file (no network), for tests and benchmarks.

Pacing: exchange time ``origin`` (the simulator's ``start_at``; the first message of a
replay unless given) maps to the wall-clock start; a message stamped ``ts`` is due
``(ts - origin) / speed`` seconds later, and messages before ``origin`` are due at once (the
compressed preamble). ``speed`` 0 or infinity sends as fast as possible. A sender that falls
behind (the opening burst) sends immediately rather than sleeping. The partial packet is
flushed before every sleep and whenever its oldest message has waited a millisecond, and a
heartbeat goes out after each idle second. The event loop gets a turn after every packet.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import logging
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import BinaryIO

from exchange_sim.errors import OptionError
from exchange_sim.orderflow import DEFAULT_TOTAL_RATE, OrderFlow, default_symbols
from exchange_sim.schedule import NS_PER_SECOND, parse_time
from exchange_sim.sender import FeedSender, RerequestServer
from normalize.itch import encode
from normalize.itchfile import iter_messages, write_messages
from tickerplant.settings import ExchangeSimSettings, Settings

__all__ = ["Pacer", "SimStats", "replay_file", "run_exchange_sim", "write_file"]

logger = logging.getLogger(__name__)

_DEFAULTS = ExchangeSimSettings.model_fields
HEARTBEAT_INTERVAL = 1.0  # seconds without a packet before a heartbeat
MAX_BATCH_DELAY = 0.001  # seconds the first message of a partial packet may wait
_STOP_POLL = 0.1  # longest sleep between checks of the stop event
_WRITE_BATCH = 4096  # messages gathered per file write
_TIMESTAMP = slice(5, 11)  # type (1) + stock locate (2) + tracking number (2), then 6 bytes


@dataclass(slots=True)
class SimStats:
    """The outcome of a run or a replay. Packets are datagrams; messages are ITCH messages."""

    session: str = ""
    messages: int = 0  # messages sent (and written)
    first_timestamp: int | None = None  # exchange ns since midnight
    last_timestamp: int | None = None
    wall_seconds: float = 0.0  # from the first message to the end of session (no linger)
    stopped: bool = False  # ended early by the stop event
    out_file: Path | None = None
    packets: int = 0
    dropped_packets: int = 0
    dropped_messages: int = 0
    duplicated_packets: int = 0
    reordered_packets: int = 0
    heartbeats: int = 0
    send_failures: int = 0
    requests: int = 0
    requests_answered: int = 0  # in full or in part
    requests_expired: int = 0
    requests_ignored: int = 0  # while the re-request server was disabled
    retransmitted_packets: int = 0
    retransmitted_messages: int = 0

    @property
    def messages_per_second(self) -> float:
        return self.messages / self.wall_seconds if self.wall_seconds > 0 else 0.0


class Pacer:
    """When a message stamped with an exchange time is due on the wall clock. Pure.

    ``origin_ns`` (exchange time) corresponds to ``wall_start`` (seconds on the caller's
    clock); ``None`` adopts the first timestamp asked about. ``due`` returns ``None`` when
    nothing is paced (``speed`` 0 or infinite).
    """

    def __init__(self, speed: float, *, origin_ns: int | None, wall_start: float) -> None:
        if not speed >= 0:
            raise OptionError("speed", speed, "a number >= 0 (0 or inf: as fast as possible)")
        self._unpaced = speed == 0 or math.isinf(speed)
        self._seconds_per_ns = 0.0 if self._unpaced else 1.0 / (speed * NS_PER_SECOND)
        self._origin = origin_ns
        self._wall_start = wall_start

    @property
    def paced(self) -> bool:
        return not self._unpaced

    def due(self, timestamp_ns: int) -> float | None:
        if self._unpaced:
            return None
        if self._origin is None:
            self._origin = timestamp_ns
        ahead = timestamp_ns - self._origin
        if ahead <= 0:
            return self._wall_start
        return self._wall_start + ahead * self._seconds_per_ns


async def run_exchange_sim(
    *,
    settings: Settings,
    symbols: int | None = None,
    seed: int | None = None,
    speed: float | None = None,
    messages: int | None = None,
    out_file: Path | str | None = None,
    send: bool = True,
    drop_rate: float = 0.0,
    duplicate_rate: float = 0.0,
    reorder_rate: float = 0.0,
    rerequest: bool = True,
    start_at: str | None = None,
    burst_multiplier: float | None = None,
    burst_seconds: float | None = None,
    total_rate: float = DEFAULT_TOTAL_RATE,
    linger: float = 0.0,
    stop: asyncio.Event | None = None,
) -> SimStats:
    """Simulate the exchange: generate, pace, send (and/or write) one day of order flow.

    Options left ``None`` come from ``settings.exchange_sim``. Stops after ``messages``
    messages, at the end of the simulated day, or when ``stop`` is set; then flushes and
    sends end of session, and keeps answering re-requests (repeating end of session every
    second) for ``linger`` seconds or until ``stop`` is set. ``send=False`` only writes
    ``out_file`` (paced all the same unless ``speed`` is 0).
    """
    sim = settings.exchange_sim
    seed = sim.seed if seed is None else seed
    flow = OrderFlow(
        default_symbols(
            sim.symbols if symbols is None else symbols, seed=seed, total_rate=total_rate
        ),
        seed=seed,
        start_at=sim.start_at if start_at is None else start_at,
        burst_multiplier=sim.burst_multiplier if burst_multiplier is None else burst_multiplier,
        burst_seconds=sim.burst_seconds if burst_seconds is None else burst_seconds,
    )
    logger.info(
        "exchange simulator: %d symbols, seed %d, start %s, speed %s, %s messages",
        len(flow.symbols),
        seed,
        sim.start_at if start_at is None else start_at,
        sim.speed if speed is None else speed,
        "all" if messages is None else messages,
    )
    stream = ((message.timestamp, encode(message)) for message in flow.generate(messages))
    return await _serve(
        stream,
        settings=settings,
        seed=seed,
        speed=sim.speed if speed is None else speed,
        origin_ns=flow.start_at,
        out_file=out_file,
        send=send,
        drop_rate=drop_rate,
        duplicate_rate=duplicate_rate,
        reorder_rate=reorder_rate,
        rerequest=rerequest,
        linger=linger,
        stop=stop,
    )


async def replay_file(
    path: Path | str,
    *,
    settings: Settings,
    speed: float = 1.0,
    messages: int | None = None,
    start_at: str | None = None,
    drop_rate: float = 0.0,
    duplicate_rate: float = 0.0,
    reorder_rate: float = 0.0,
    rerequest: bool = True,
    linger: float = 0.0,
    stop: asyncio.Event | None = None,
) -> SimStats:
    """Send the ITCH 5.0 file at ``path`` (``.gz`` decompressed) onto the feed.

    ``speed`` 1.0 keeps the recorded pace (from the messages' timestamps), 0 sends as fast
    as possible; pacing starts at ``start_at`` (exchange time; earlier messages go at once)
    or at the first message. Every message is stored for re-requests, as in a live run.
    """
    origin = None if start_at is None else parse_time(start_at)
    logger.info("replaying %s at speed %s", path, speed)
    stream: Iterator[tuple[int, bytes]] = (
        (int.from_bytes(view[_TIMESTAMP], "big"), bytes(view)) for view in iter_messages(path)
    )
    if messages is not None:
        if messages < 0:
            raise OptionError("messages", messages, "a count >= 0 or None")
        stream = islice(stream, messages)
    return await _serve(
        stream,
        settings=settings,
        seed=settings.exchange_sim.seed,
        speed=speed,
        origin_ns=origin,
        out_file=None,
        send=True,
        drop_rate=drop_rate,
        duplicate_rate=duplicate_rate,
        reorder_rate=reorder_rate,
        rerequest=rerequest,
        linger=linger,
        stop=stop,
    )


def write_file(
    path: Path | str,
    *,
    symbols: int = _DEFAULTS["symbols"].default,
    seed: int = _DEFAULTS["seed"].default,
    messages: int | None = None,
    start_at: str = _DEFAULTS["start_at"].default,
    burst_multiplier: float = _DEFAULTS["burst_multiplier"].default,
    burst_seconds: float = _DEFAULTS["burst_seconds"].default,
    total_rate: float = DEFAULT_TOTAL_RATE,
) -> int:
    """Write ``messages`` simulated messages (the whole day when ``None``) to an ITCH file.

    NASDAQ's framing (2-byte length before each message); gzip when ``path`` ends in
    ``.gz``. No network, no pacing. Returns the number of messages written.
    """
    flow = OrderFlow(
        default_symbols(symbols, seed=seed, total_rate=total_rate),
        seed=seed,
        start_at=start_at,
        burst_multiplier=burst_multiplier,
        burst_seconds=burst_seconds,
    )
    with _open_output(path) as file:
        count = write_messages(file, map(encode, flow.generate(messages)), buffer_size=1 << 20)
    logger.info("wrote %d messages to %s", count, path)
    return count


# -- the shared sending loop ------------------------------------------------------------------


async def _serve(
    stream: Iterable[tuple[int, bytes]],
    *,
    settings: Settings,
    seed: int,
    speed: float,
    origin_ns: int | None,
    out_file: Path | str | None,
    send: bool,
    drop_rate: float,
    duplicate_rate: float,
    reorder_rate: float,
    rerequest: bool,
    linger: float,
    stop: asyncio.Event | None,
) -> SimStats:
    if linger < 0:
        raise OptionError("linger", linger, "seconds >= 0")
    feed = settings.feed
    sim = settings.exchange_sim
    stats = SimStats(session=sim.session, out_file=None if out_file is None else Path(out_file))
    loop = asyncio.get_running_loop()
    sender: FeedSender | None = None
    server: RerequestServer | None = None
    with contextlib.ExitStack() as closing:
        writer = None
        if out_file is not None:
            writer = closing.enter_context(_FrameWriter(_open_output(out_file)))
        if send:
            sender = closing.enter_context(
                FeedSender(
                    feed.group,
                    feed.port,
                    interface=feed.interface,
                    ttl=feed.ttl,
                    session=sim.session,
                    drop_rate=drop_rate,
                    duplicate_rate=duplicate_rate,
                    reorder_rate=reorder_rate,
                    seed=seed,
                    retransmit_capacity=sim.retransmit_capacity,
                )
            )
            server = RerequestServer(
                sender.buffer,
                host=feed.interface or "127.0.0.1",
                port=feed.rerequest_port,
                enabled=rerequest,
            )
            await server.start()
            closing.callback(server.close)
            logger.info(
                "sending session %s to %s:%d via %s (ttl %d)",
                sim.session,
                feed.group,
                feed.port,
                feed.interface,
                feed.ttl,
            )
        started = loop.time()
        pacer = Pacer(speed, origin_ns=origin_ns, wall_start=started)
        await _pump(stream, sender=sender, writer=writer, pacer=pacer, stop=stop, stats=stats)
        if writer is not None:
            writer.flush()
        if sender is not None:
            sender.end_of_session()
        stats.wall_seconds = loop.time() - started
        if sender is not None and linger > 0 and not stats.stopped:
            await _linger(sender, linger, stop)
        if sender is not None:
            _collect(stats, sender, server)
    logger.info(
        "session %s: %d messages in %.2f s (%.0f/s), %d packets, %d dropped, "
        "%d re-requests answered, %d expired",
        stats.session,
        stats.messages,
        stats.wall_seconds,
        stats.messages_per_second,
        stats.packets,
        stats.dropped_packets,
        stats.requests_answered,
        stats.requests_expired,
    )
    return stats


async def _pump(
    stream: Iterable[tuple[int, bytes]],
    *,
    sender: FeedSender | None,
    writer: _FrameWriter | None,
    pacer: Pacer,
    stop: asyncio.Event | None,
    stats: SimStats,
) -> None:
    clock = asyncio.get_running_loop().time
    last_packet = clock()
    pending_since = 0.0  # when the partial packet got its first message
    count = 0
    timestamp = None
    paced = pacer.paced
    due = pacer.due
    for timestamp, payload in stream:
        if stop is not None and stop.is_set():
            stats.stopped = True
            break
        if stats.first_timestamp is None:
            stats.first_timestamp = timestamp
        if paced:
            deadline: float = due(timestamp)  # type: ignore[assignment]
            now = clock()
            if deadline - now > MAX_BATCH_DELAY:
                # Idle until the message is due: send what is pending, heartbeat each second.
                if sender is not None and sender.flush():
                    last_packet = now
                while (wait := deadline - (now := clock())) > 0:
                    if sender is not None and now - last_packet >= HEARTBEAT_INTERVAL:
                        sender.heartbeat()
                        last_packet = now
                    nap = min(wait, _STOP_POLL, last_packet + HEARTBEAT_INTERVAL - now)
                    await asyncio.sleep(max(nap, 0.0))
                    if stop is not None and stop.is_set():
                        stats.stopped = True
                        break
                if stats.stopped:
                    break
        if writer is not None:
            writer.write(payload)
        count += 1
        if sender is None:
            if count % 1024 == 0:
                await asyncio.sleep(0)
            continue
        stale = sender.pending and paced and clock() - pending_since > MAX_BATCH_DELAY
        if stale and sender.flush():
            last_packet = clock()
            await asyncio.sleep(0)
        if not sender.pending:
            pending_since = clock() if paced else 0.0
        if sender.send(payload):
            last_packet = clock() if paced else 0.0
            pending_since = last_packet
            await asyncio.sleep(0)  # one turn of the loop per packet: re-requests get served
    stats.messages = count
    stats.last_timestamp = timestamp if count else None


async def _linger(sender: FeedSender, seconds: float, stop: asyncio.Event | None) -> None:
    """Keep serving re-requests after the end of session, repeating it every second."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    next_repeat = loop.time() + HEARTBEAT_INTERVAL
    while (now := loop.time()) < end:
        if stop is not None and stop.is_set():
            return
        if now >= next_repeat:
            sender.end_of_session()
            next_repeat = now + HEARTBEAT_INTERVAL
        await asyncio.sleep(min(_STOP_POLL, end - now, max(next_repeat - now, 0.0)))


def _collect(stats: SimStats, sender: FeedSender, server: RerequestServer | None) -> None:
    sent = sender.stats
    stats.packets = sent.packets
    stats.dropped_packets = sent.dropped_packets
    stats.dropped_messages = sent.dropped_messages
    stats.duplicated_packets = sent.duplicated_packets
    stats.reordered_packets = sent.reordered_packets
    stats.heartbeats = sent.heartbeats
    stats.send_failures = sent.send_failures
    if server is not None:
        served = server.stats
        stats.requests = served.requests
        stats.requests_answered = served.answered + served.clamped
        stats.requests_expired = served.expired
        stats.requests_ignored = served.ignored
        stats.retransmitted_packets = served.packets
        stats.retransmitted_messages = served.messages


def _open_output(path: Path | str) -> BinaryIO:
    """``path`` opened for writing (its folder made); gzip (fast level) for ``.gz``."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if os.fspath(path).endswith(".gz"):
        return gzip.open(path, "wb", compresslevel=1)  # type: ignore[return-value]
    return open(path, "wb")  # the caller closes it


class _FrameWriter:
    """Gathers messages and writes them framed (2-byte lengths) in batches."""

    def __init__(self, file: BinaryIO) -> None:
        self._file = file
        self._batch: list[bytes] = []

    def write(self, message: bytes) -> None:
        batch = self._batch
        batch.append(message)
        if len(batch) >= _WRITE_BATCH:
            self.flush()

    def flush(self) -> None:
        if self._batch:
            write_messages(self._file, self._batch, buffer_size=1 << 20)
            self._batch = []

    def __enter__(self) -> _FrameWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            self.flush()
        finally:
            self._file.close()
