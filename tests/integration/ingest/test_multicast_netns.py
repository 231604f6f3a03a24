"""Multicast on loopback inside the harness's private network namespace."""

from __future__ import annotations

import socket

import pytest

from ingest.multicast import open_receiver, open_sender

pytestmark = pytest.mark.multicast


def test_datagrams_sent_to_a_group_on_loopback_reach_a_receiver_that_joined_it(private_netns):
    """Three datagrams sent with TTL 0 through 127.0.0.1 arrive, in order, at the receiver."""
    group = "239.255.0.7"
    receiver = open_receiver(group, 0, interface="127.0.0.1")
    port = receiver.getsockname()[1]
    receiver.settimeout(2.0)
    sender = open_sender(interface="127.0.0.1", ttl=0)
    try:
        for payload in (b"one", b"two", b"three"):
            sender.sendto(payload, (group, port))
        received = [receiver.recvfrom(64)[0] for _ in range(3)]
    finally:
        sender.close()
        receiver.close()
    assert received == [b"one", b"two", b"three"]


def test_a_sender_keeps_ttl_zero_and_the_loopback_interface():
    """The sender's socket options are TTL 0 and outgoing interface 127.0.0.1 by default."""
    sender = open_sender()
    try:
        ttl = sender.getsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL)
        interface = sender.getsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, 4)
    finally:
        sender.close()
    assert ttl == 0
    assert socket.inet_ntoa(interface) == "127.0.0.1"
