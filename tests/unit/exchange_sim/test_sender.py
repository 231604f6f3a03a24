"""The feed adapters' pure parts: fault injection, re-request answers, destination checks."""

from __future__ import annotations

from itertools import pairwise

import pytest

from exchange_sim import OptionError
from exchange_sim.sender import FaultInjector, FeedSender, RerequestServer
from ingest.moldudp64 import Request, decode_packet, encode_packet, encode_request
from ingest.retransmit import RetransmissionBuffer

LOCAL = ("127.0.0.1", 40000)


def packets(count: int) -> list[bytes]:
    return [encode_packet("F", sequence, [b"m%d" % sequence]) for sequence in range(1, count + 1)]


def through(injector: FaultInjector, live: list[bytes]) -> list[bytes]:
    sent: list[bytes] = []
    for packet in live:
        sent += injector.live(packet)
    return sent + injector.release()


def test_without_fault_rates_every_packet_goes_out_once_in_order():
    """No rates: 100 packets in, the same 100 out, no dice rolled, nothing counted."""
    live = packets(100)
    injector = FaultInjector()
    assert through(injector, live) == live
    assert (injector.dropped_packets, injector.duplicated_packets) == (0, 0)


def test_drops_duplicates_and_reorders_match_their_counts_and_the_seed():
    """With 10 % of each fault over 2,000 packets: the output lacks exactly the dropped
    packets, repeats exactly the duplicated ones, and has one inversion per packet counted
    as reordered (a held packet whose successor is dropped goes out in order after all);
    the same seed gives the same output, another seed another."""
    live = packets(2000)
    injector = FaultInjector(drop_rate=0.1, duplicate_rate=0.1, reorder_rate=0.1, seed=3)
    sent = through(injector, live)

    assert len(sent) == 2000 - injector.dropped_packets + injector.duplicated_packets
    assert len(set(sent)) == 2000 - injector.dropped_packets
    assert injector.dropped_messages == injector.dropped_packets
    out_of_order = sum(1 for a, b in pairwise(sent) if a > b)
    assert out_of_order == injector.reordered_packets
    assert 150 < injector.dropped_packets < 250
    again = FaultInjector(drop_rate=0.1, duplicate_rate=0.1, reorder_rate=0.1, seed=3)
    assert through(again, live) == sent
    other = FaultInjector(drop_rate=0.1, duplicate_rate=0.1, reorder_rate=0.1, seed=4)
    assert through(other, live) != sent


def test_a_reordered_packet_is_sent_right_after_the_next_one():
    """Every packet rolled for reordering (rate 1): each is held, then follows the next."""
    injector = FaultInjector(reorder_rate=1.0)
    first, second, third = packets(3)
    assert injector.live(first) == []
    assert injector.live(second) == [second, first]
    assert injector.live(third) == []
    assert injector.release() == [third]


@pytest.mark.parametrize(
    "rates",
    [{"drop_rate": -0.1}, {"duplicate_rate": 1.5}, {"drop_rate": 0.6, "reorder_rate": 0.6}],
)
def test_fault_rates_outside_a_probability_are_refused(rates: dict[str, float]):
    """Negative, above 1, or summing above 1: OptionError."""
    with pytest.raises(OptionError):
        FaultInjector(**rates)


@pytest.mark.parametrize("group", ["8.8.8.8", "192.168.1.10", "feed.example.com"])
def test_a_sender_refuses_a_destination_that_is_neither_multicast_nor_loopback(group: str):
    """Unicast off the host is refused before any socket is opened."""
    with pytest.raises(OptionError, match="group"):
        FeedSender(group, 26400)


def stored(count: int, **options: int) -> RetransmissionBuffer:
    buffer = RetransmissionBuffer("SIM", **options)
    for sequence in range(1, count + 1):
        buffer.append(b"m%d" % sequence)
    return buffer


def test_a_request_from_loopback_is_answered_from_the_buffer():
    """Messages 4..6 of 10 come back in one packet numbered from 4; counted as answered."""
    server = RerequestServer(stored(10), port=0)
    answer = server.answer(encode_request(Request("SIM", 4, 3)), LOCAL)
    packet = decode_packet(answer[0])
    assert (packet.sequence, packet.messages) == (4, (b"m4", b"m5", b"m6"))
    assert (server.stats.requests, server.stats.answered, server.stats.messages) == (1, 1, 3)


def test_requests_that_cannot_be_answered_are_counted_by_reason():
    """Expired, not yet sent, wrong session, malformed and non-loopback requests get no
    packets and each lands in its own counter."""
    server = RerequestServer(stored(10, capacity=5), port=0)
    assert server.answer(encode_request(Request("SIM", 2, 1)), LOCAL) == []
    assert server.answer(encode_request(Request("SIM", 11, 1)), LOCAL) == []
    assert server.answer(encode_request(Request("OTHER", 7, 1)), LOCAL) == []
    assert server.answer(b"short", LOCAL) == []
    assert server.answer(encode_request(Request("SIM", 7, 1)), ("10.1.2.3", 40000)) == []
    stats = server.stats
    assert (stats.expired, stats.not_yet_sent, stats.wrong_session) == (1, 1, 1)
    assert (stats.malformed, stats.refused, stats.requests, stats.answered) == (1, 1, 3, 0)


def test_a_disabled_server_counts_requests_and_answers_none():
    """enabled=False: a valid request is counted as ignored and gets no packets."""
    server = RerequestServer(stored(10), port=0, enabled=False)
    assert server.answer(encode_request(Request("SIM", 1, 5)), LOCAL) == []
    assert (server.stats.requests, server.stats.ignored, server.stats.packets) == (1, 1, 0)
