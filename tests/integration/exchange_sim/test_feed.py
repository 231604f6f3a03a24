"""The simulator on a real (private, loopback-only) network: multicast, re-requests, replay.

Each test runs ``run_exchange_sim`` or ``replay_file`` in the event loop while a receiver
thread does what ``ingest`` does: joins the group, decodes MoldUDP64 packets, feeds them to
a ``GapRecoverer`` and sends its re-requests, unicast, to the simulator's re-request server.
"""

from __future__ import annotations

import asyncio
import select
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from exchange_sim import SimStats, replay_file, run_exchange_sim, write_file
from exchange_sim.schedule import parse_time
from ingest.moldudp64 import PacketKind, Request, decode_packet, encode_request
from ingest.multicast import open_receiver
from ingest.sequencer import Deliver, EndOfSession, GapRecoverer, Unrecoverable
from normalize.itch import SystemEvent, encode
from normalize.itchfile import iter_messages, write_messages
from tickerplant.settings import ExchangeSimSettings, FeedSettings, Settings

pytestmark = pytest.mark.multicast

GROUP = "239.255.42.1"
RUN_TIMEOUT = 60.0


def feed_settings(port: int) -> Settings:
    """The defaults, with the feed on ``GROUP:port`` and re-requests on ``port + 1``."""
    return Settings(
        feed=FeedSettings(group=GROUP, port=port, rerequest_port=port + 1),
        exchange_sim=ExchangeSimSettings(session="ITEST0001"),
    )


class FeedClient(threading.Thread):
    """A receiver thread: multicast in, GapRecoverer, re-requests out; records deliveries.

    ``done`` is set (and ``on_done`` called) at the end of session, once every message has
    been delivered or declared unrecoverable.
    """

    def __init__(self, settings: Settings, *, recoverer: GapRecoverer | None = None) -> None:
        super().__init__(daemon=True)
        feed = settings.feed
        self.multicast = open_receiver(feed.group, feed.port, interface=feed.interface)
        self.unicast = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.unicast.bind(("127.0.0.1", 0))
        self.server = ("127.0.0.1", feed.rerequest_port)
        self.recoverer = recoverer or GapRecoverer()
        self.messages: list[bytes] = []
        self.unrecoverable = 0
        self.requests = 0
        self.datagrams = 0
        self.done = threading.Event()
        self.on_done: list[Callable[[], object]] = []
        self._closing = threading.Event()

    def run(self) -> None:
        sockets = [self.multicast, self.unicast]
        while not self._closing.is_set():
            deadline = self.recoverer.next_deadline_ns
            timeout = 0.05
            if deadline is not None:
                timeout = min(timeout, max(0.0, (deadline - time.monotonic_ns()) / 1e9))
            readable, _, _ = select.select(sockets, [], [], timeout)
            for sock in readable:
                datagram = sock.recv(65535)
                self.datagrams += 1
                self._apply(self.recoverer.on_packet(decode_packet(datagram), time.monotonic_ns()))
            self._apply(self.recoverer.on_timer(time.monotonic_ns()))

    def _apply(self, actions: list[object]) -> None:
        for action in actions:
            if isinstance(action, Deliver):
                self.messages.extend(action.messages)
            elif isinstance(action, Request):
                self.requests += 1
                self.unicast.sendto(encode_request(action), self.server)
            elif isinstance(action, Unrecoverable):
                self.unrecoverable += action.count
            elif isinstance(action, EndOfSession):
                self.done.set()
                for callback in self.on_done:
                    callback()

    def close(self) -> None:
        self._closing.set()
        self.join(timeout=5)
        self.multicast.close()
        self.unicast.close()


async def run_with_client(
    settings: Settings, client: FeedClient, run: Callable[[asyncio.Event], Awaitable[SimStats]]
) -> SimStats:
    """Start ``client``, run ``run(stop)`` (a coroutine factory) until the client is done."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    client.on_done.append(lambda: loop.call_soon_threadsafe(stop.set))
    client.start()
    try:
        async with asyncio.timeout(RUN_TIMEOUT):
            stats = await run(stop)
        assert await asyncio.to_thread(client.done.wait, 10.0), "no end of session reached"
    finally:
        client.close()
    return stats


async def test_a_receiver_reassembles_exactly_the_messages_written_to_the_itch_file(
    private_netns, tmp_path: Path
):
    """20,000 messages sent as fast as possible arrive as the same 20,000 messages, in order,
    that the same run wrote to its ITCH file; nothing was dropped on purpose."""
    settings = feed_settings(26610)
    out = tmp_path / "run.itch"
    client = FeedClient(settings)

    stats = await run_with_client(
        settings,
        client,
        lambda stop: run_exchange_sim(
            settings=settings, speed=0, messages=20_000, out_file=out, linger=10.0, stop=stop
        ),
    )

    written = [bytes(message) for message in iter_messages(out)]
    assert stats.messages == 20_000
    assert len(written) == 20_000
    assert client.messages == written
    assert (stats.dropped_packets, client.unrecoverable) == (0, 0)
    assert client.recoverer.stats.duplicates == 0
    print(
        f"\n{stats.packets} packets, {stats.wall_seconds:.3f} s, "
        f"{stats.messages_per_second:,.0f} messages/s, "
        f"gaps {client.recoverer.stats.gaps} (kernel drops recovered by re-request)"
    )


async def test_every_dropped_message_is_recovered_by_re_request(private_netns, tmp_path: Path):
    """With 5 % of packets dropped and 2 % duplicated, the receiver still delivers exactly
    the written messages, each once: every drop is re-requested and answered."""
    settings = feed_settings(26620)
    out = tmp_path / "lossy.itch"
    client = FeedClient(settings)

    stats = await run_with_client(
        settings,
        client,
        lambda stop: run_exchange_sim(
            settings=settings,
            speed=0,
            messages=20_000,
            out_file=out,
            drop_rate=0.05,
            duplicate_rate=0.02,
            linger=20.0,
            stop=stop,
        ),
    )

    written = [bytes(message) for message in iter_messages(out)]
    assert client.messages == written
    assert client.unrecoverable == 0
    assert stats.dropped_packets > 0
    assert stats.duplicated_packets > 0
    assert stats.requests_answered >= 1
    assert stats.requests_expired == 0
    assert stats.retransmitted_messages >= stats.dropped_messages
    assert client.recoverer.stats.recovered == client.recoverer.stats.gaps
    print(
        f"\ndropped {stats.dropped_packets} packets ({stats.dropped_messages} messages), "
        f"{client.recoverer.stats.gaps} gaps, {stats.requests} requests, "
        f"{stats.retransmitted_messages} messages retransmitted"
    )


async def test_reordered_packets_are_delivered_in_sequence(private_netns, tmp_path: Path):
    """With 5 % of packets swapped with their successor, the receiver buffers the early
    ones and delivers exactly the written messages, in order."""
    settings = feed_settings(26625)
    out = tmp_path / "reordered.itch"
    client = FeedClient(settings)

    stats = await run_with_client(
        settings,
        client,
        lambda stop: run_exchange_sim(
            settings=settings,
            speed=0,
            messages=20_000,
            out_file=out,
            reorder_rate=0.05,
            linger=20.0,
            stop=stop,
        ),
    )

    assert client.messages == [bytes(message) for message in iter_messages(out)]
    assert client.unrecoverable == 0
    assert stats.reordered_packets > 0
    assert stats.dropped_packets == 0
    assert client.recoverer.stats.reordered > 0


async def test_with_re_requests_disabled_the_dropped_messages_are_unrecoverable(
    private_netns, tmp_path: Path
):
    """With the re-request server disabled, exactly the dropped messages are declared
    unrecoverable and every other message is delivered."""
    settings = feed_settings(26630)
    out = tmp_path / "unrecoverable.itch"
    client = FeedClient(
        settings, recoverer=GapRecoverer(request_timeout_ns=20_000_000, max_retries=1)
    )

    stats = await run_with_client(
        settings,
        client,
        lambda stop: run_exchange_sim(
            settings=settings,
            speed=0,
            messages=5_000,
            out_file=out,
            drop_rate=0.05,
            rerequest=False,
            linger=20.0,
            stop=stop,
        ),
    )

    written = [bytes(message) for message in iter_messages(out)]
    assert stats.dropped_messages > 0
    assert stats.requests_answered == 0
    assert stats.requests_ignored == stats.requests > 0
    assert client.unrecoverable == stats.dropped_messages
    assert len(client.messages) == len(written) - stats.dropped_messages
    assert set(client.messages) <= set(written)


async def test_replay_file_resends_the_messages_of_a_recorded_file(private_netns, tmp_path: Path):
    """A gzipped file written by ``write_file`` and replayed as fast as possible reaches the
    receiver as exactly the file's messages."""
    settings = feed_settings(26640)
    path = tmp_path / "recorded.itch.gz"
    assert write_file(path, symbols=20, seed=7, messages=10_000) == 10_000
    client = FeedClient(settings)

    stats = await run_with_client(
        settings,
        client,
        lambda stop: replay_file(path, settings=settings, speed=0, linger=10.0, stop=stop),
    )

    assert stats.messages == 10_000
    assert client.messages == [bytes(message) for message in iter_messages(path)]


async def test_replay_at_recorded_pace_takes_the_recorded_time_divided_by_speed(
    private_netns, tmp_path: Path
):
    """Replaying the messages up to 2 s of exchange time after 09:29:00 at speed 4 takes at
    least 0.5 s of wall time (the earlier preamble goes at once) and delivers them all."""
    settings = feed_settings(26650)
    path = tmp_path / "paced.itch"
    write_file(path, symbols=20, seed=3, messages=50_000)
    start = 9 * 3600 + 29 * 60
    messages = [bytes(message) for message in iter_messages(path)]
    within = [m for m in messages if int.from_bytes(m[5:11], "big") < (start + 2) * 10**9]
    span_ns = int.from_bytes(within[-1][5:11], "big") - start * 10**9
    client = FeedClient(settings)

    stats = await run_with_client(
        settings,
        client,
        lambda stop: replay_file(
            path,
            settings=settings,
            speed=4.0,
            start_at="09:29:00",
            messages=len(within),
            linger=10.0,
            stop=stop,
        ),
    )

    assert client.messages == within
    assert stats.wall_seconds >= span_ns / 4e9 - 0.01
    assert stats.wall_seconds < span_ns / 4e9 + 1.0


async def test_an_idle_feed_sends_a_heartbeat_each_second_with_the_next_sequence(
    private_netns, tmp_path: Path
):
    """Two messages 2.5 s apart replayed at speed 1: between them the receiver gets two
    heartbeats announcing sequence 2, then the second message and end of session at 3."""
    settings = feed_settings(26660)
    path = tmp_path / "quiet.itch"
    t0 = parse_time("09:30:00")
    with path.open("wb") as file:
        write_messages(
            file,
            [
                encode(SystemEvent(0, 0, t0, "O")),
                encode(SystemEvent(0, 0, t0 + 2_500_000_000, "S")),
            ],
        )
    receiver = open_receiver(GROUP, settings.feed.port)
    receiver.settimeout(5.0)
    try:
        async with asyncio.timeout(RUN_TIMEOUT):
            stats = await replay_file(path, settings=settings, speed=1.0)
        received = []
        while not received or received[-1].kind is not PacketKind.END_OF_SESSION:
            received.append(decode_packet(receiver.recv(65535)))
    finally:
        receiver.close()
    kinds = [(packet.kind.value, packet.sequence) for packet in received]
    assert kinds == [
        ("data", 1),
        ("heartbeat", 2),
        ("heartbeat", 2),
        ("data", 2),
        ("end_of_session", 3),
    ]
    assert stats.heartbeats == 2
    assert 2.5 <= stats.wall_seconds < 3.5
