"""The re-request server on a real loopback UDP socket (unicast only, no multicast)."""

from __future__ import annotations

import asyncio
import socket

from exchange_sim.sender import RerequestServer
from ingest.moldudp64 import Request, decode_packet, encode_request
from ingest.retransmit import RetransmissionBuffer


async def test_a_request_sent_to_the_server_is_answered_to_the_requesters_address():
    """A client on 127.0.0.1 asks for 2..4 of 5 stored messages and receives exactly them in
    one packet, on the socket it asked from."""
    buffer = RetransmissionBuffer("SIM")
    for sequence in range(1, 6):
        buffer.append(b"m%d" % sequence)
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.bind(("127.0.0.1", 0))
    client.setblocking(False)
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(5), RerequestServer(buffer, port=0) as server:
            host, port = server.address
            assert host == "127.0.0.1"
            await loop.sock_sendto(client, encode_request(Request("SIM", 2, 3)), (host, port))
            datagram = await loop.sock_recv(client, 2048)
    finally:
        client.close()
    packet = decode_packet(datagram)
    assert (packet.session, packet.sequence, packet.messages) == ("SIM", 2, (b"m2", b"m3", b"m4"))
    assert (server.stats.requests, server.stats.answered, server.stats.packets) == (1, 1, 1)
