"""Receiving the exchange feed: UDP multicast, MoldUDP64 framing, gap detection and recovery.

So far: loopback-safe multicast sockets (``ingest.multicast``).
"""

from ingest.multicast import open_receiver, open_sender

__all__ = ["open_receiver", "open_sender"]
