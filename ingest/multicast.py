"""UDP multicast sockets that can only reach this host's loopback by default.

Every sender sets its outgoing interface explicitly (``IP_MULTICAST_IF``, default
127.0.0.1) and a TTL of 0, so a datagram never leaves the machine even on a host with a
default multicast route. Receivers join the group on an explicit interface.
"""

from __future__ import annotations

import socket
import struct


def open_sender(*, interface: str = "127.0.0.1", ttl: int = 0, loop: bool = True) -> socket.socket:
    """A UDP socket for sending to multicast groups through ``interface`` with ``ttl``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    try:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(interface))
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, ttl)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1 if loop else 0)
    except OSError:
        sock.close()
        raise
    return sock


def open_receiver(
    group: str,
    port: int,
    *,
    interface: str = "127.0.0.1",
    rcvbuf: int = 8 * 1024 * 1024,
) -> socket.socket:
    """A UDP socket bound to ``group:port`` that has joined ``group`` on ``interface``.

    ``rcvbuf`` asks the kernel for a large receive buffer so an opening-bell burst is
    absorbed rather than dropped (the kernel caps it at ``net.core.rmem_max``).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.bind((group, port))
        membership = struct.pack("4s4s", socket.inet_aton(group), socket.inet_aton(interface))
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
    except OSError:
        sock.close()
        raise
    return sock
