"""The receive path as one pure unit: datagrams in, exactly the loss-free records out."""

from __future__ import annotations

import random

from ingest.moldudp64 import PacketBuilder, decode_packet
from ingest.pipeline import FeedPipeline
from ingest.retransmit import RetransmissionBuffer
from ingest.sequencer import GapRecoverer
from normalize.itch import (
    AddOrder,
    OrderDelete,
    OrderExecuted,
    StockDirectory,
    SystemEvent,
    encode,
)
from normalize.normalizer import Normalizer
from normalize.proto import marketdata_pb2 as pb
from tickerplant.topics import MD_QUOTES, MD_STATUS, MD_TRADES

SESSION = "TEST000001"
MIDNIGHT_NS = 1_732_060_800_000_000_000
OPEN = 34_200_000_000_000


def itch_stream(orders: int) -> list[bytes]:
    """Two symbols; each order is added, half of it executed, then deleted."""
    messages = [
        SystemEvent(0, 0, 1, "O"),
        *(
            StockDirectory(
                locate, 0, 2, name, "Q", "N", 100, "N", "C", "Z", "P", "N", "N", "1", "N", 0, "N"
            )
            for locate, name in ((1, "AAPL"), (2, "MSFT"))
        ),
    ]
    for ref in range(1, orders + 1):
        locate = 1 + ref % 2
        side = "B" if ref % 3 else "S"
        price = 1_000_000 + (ref % 7) * 100 * (1 if side == "S" else -1)
        t = OPEN + ref * 1_000
        messages += [
            AddOrder(locate, 0, t, ref, side, 200, "AAPL" if locate == 1 else "MSFT", price),
            OrderExecuted(locate, 0, t + 1, ref, 100, ref),
            OrderDelete(locate, 0, t + 2, ref),
        ]
    return [encode(message) for message in messages]


def packets_of(messages: list[bytes]) -> tuple[list[bytes], RetransmissionBuffer]:
    builder = PacketBuilder(SESSION, max_payload=200)
    store = RetransmissionBuffer(SESSION)
    packets = []
    for message in messages:
        store.append(message)
        packet = builder.add(message)
        if packet is not None:
            packets.append(packet)
    last = builder.flush()
    if last is not None:
        packets.append(last)
    return packets, store


def new_pipeline(**recovery: int) -> FeedPipeline:
    normalizer = Normalizer(midnight_ns=MIDNIGHT_NS, session=SESSION)
    return FeedPipeline(normalizer, GapRecoverer(**recovery))


def events_by_key(records: list[tuple[str, bytes, bytes]]) -> dict[tuple[str, bytes], list]:
    """Decoded events per (topic, symbol) in order, publish time cleared."""
    out: dict[tuple[str, bytes], list] = {}
    for topic, key, value in records:
        for event in pb.EventBatch.FromString(value).events:
            payload = getattr(event, event.WhichOneof("payload"))
            payload.publish_ts_ns = 0
            out.setdefault((topic, key), []).append(payload)
    return out


def run(pipeline: FeedPipeline, datagrams: list[bytes], store: RetransmissionBuffer | None) -> list:
    """Feed datagrams; answer every re-request from ``store`` at once (if given)."""
    records = []
    now = 0
    pending = list(datagrams)
    while pending:
        datagram = pending.pop(0)
        now += 1_000
        requests = pipeline.on_datagram(datagram, receive_ts_ns=7, now_ns=now)
        if store is not None:
            for request in requests:
                pending[0:0] = list(store.answer(request).packets)
        records += pipeline.take_records(publish_ts_ns=9)
    return records


def test_a_clean_feed_yields_trades_and_quotes_in_feed_order_per_symbol():
    """30 orders on two symbols give 30 trades and their BBO changes, each symbol in order."""
    packets, _ = packets_of(itch_stream(30))
    pipeline = new_pipeline()
    by_key = events_by_key(run(pipeline, packets, None))
    assert len(by_key[(MD_TRADES, b"AAPL")]) == 15
    assert len(by_key[(MD_TRADES, b"MSFT")]) == 15
    assert [t.match_number for t in by_key[(MD_TRADES, b"MSFT")]] == list(range(1, 31, 2))
    seqs = [q.seq for q in by_key[(MD_QUOTES, b"AAPL")]]
    assert seqs == sorted(seqs) and len(seqs) == len(set(seqs))
    assert pipeline.recoverer.stats.messages == 3 + 90
    assert pipeline.normalizer.stats.unknown_order == 0


def test_loss_duplication_and_reordering_are_repaired_to_the_loss_free_records():
    """Dropping 20% of packets, duplicating 10% and swapping neighbours gives identical events."""
    messages = itch_stream(400)
    packets, store = packets_of(messages)
    clean = events_by_key(run(new_pipeline(), packets, None))

    rng = random.Random(7)
    damaged: list[bytes] = []
    for packet in packets:
        if rng.random() < 0.2:
            continue
        damaged.append(packet)
        if rng.random() < 0.1:
            damaged.append(packet)
    for i in range(0, len(damaged) - 1, 5):
        damaged[i], damaged[i + 1] = damaged[i + 1], damaged[i]
    # The tail must arrive for the receiver to learn the last gap: end with a heartbeat.
    builder = PacketBuilder(SESSION, next_sequence=len(messages) + 1)
    damaged.append(builder.heartbeat())

    pipeline = new_pipeline()
    repaired = events_by_key(run(pipeline, damaged, store))

    assert repaired == clean
    stats = pipeline.recoverer.stats
    assert stats.gaps > 0 and stats.recovered == stats.gaps
    assert stats.unrecoverable == 0
    assert stats.duplicates > 0


def test_an_unrecoverable_gap_marks_every_symbol_stale_with_the_lost_range():
    """With no retransmission answering, a lost packet ends in FEED_STALE for AAPL and MSFT."""
    packets, _ = packets_of(itch_stream(40))
    pipeline = new_pipeline(max_retries=0, request_timeout_ns=1_000)
    lost = decode_packet(packets.pop(5))
    records = run(pipeline, packets, None)
    for now in (10**12, 10**13):  # the re-request times out; no retry is allowed
        pipeline.on_timer(receive_ts_ns=7, now_ns=now)
    records += pipeline.take_records(publish_ts_ns=9)

    stale = [
        status
        for (topic, _), events in events_by_key(records).items()
        if topic == MD_STATUS
        for status in events
        if status.kind == pb.STATUS_KIND_FEED_STALE
    ]
    last = lost.sequence + len(lost.messages) - 1
    assert sorted(status.symbol for status in stale) == ["AAPL", "MSFT"]
    assert {status.reason for status in stale} == {
        f"messages {lost.sequence}..{last} of session {SESSION} could not be recovered"
    }
    assert pipeline.recoverer.stats.unrecoverable == len(lost.messages)


def test_a_garbled_datagram_is_counted_and_skipped_and_the_feed_continues():
    """A 5-byte datagram is counted as a bad packet; the next real packet is still processed."""
    packets, _ = packets_of(itch_stream(2))
    pipeline = new_pipeline()
    run(pipeline, [b"\x00junk", *packets], None)
    assert pipeline.stats.bad_packets == 1
    assert pipeline.recoverer.stats.messages == 3 + 6
