"""The exchange's side of the feed: MoldUDP64 packets onto multicast, and re-request answers.

``FeedSender`` numbers and packs ITCH messages into MoldUDP64 packets (``PacketBuilder``),
keeps every message in a ``RetransmissionBuffer`` and sends the packets to the multicast
group through a loopback-safe socket (``open_sender``: explicit interface, TTL 0 by
default). Seeded fault injection drops, duplicates or reorders *live data packets*; heartbeats,
end-of-session packets and retransmissions are never faulted, so every injected loss is
recoverable while the buffer holds it.

``RerequestServer`` answers MoldUDP64 re-requests (unicast UDP) from that buffer, only to
requesters on the loopback network. Disabled, it still receives requests but answers none,
which turns every gap into an unrecoverable one.

Both are adapters: the packing and the answers are ``ingest``'s pure code; here are only the
sockets, the fault dice and the counters.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import socket
from dataclasses import dataclass
from random import Random

from exchange_sim.errors import ExchangeSimError, OptionError
from ingest.errors import PacketError
from ingest.moldudp64 import DEFAULT_MAX_PAYLOAD, PacketBuilder, decode_request
from ingest.multicast import open_sender
from ingest.retransmit import AnswerStatus, RetransmissionBuffer
from tickerplant.settings import ExchangeSimSettings

__all__ = [
    "FaultInjector",
    "FeedSendError",
    "FeedSender",
    "RerequestServer",
    "RerequestStats",
    "SenderStats",
]

logger = logging.getLogger(__name__)

_DEFAULTS = ExchangeSimSettings.model_fields
DEFAULT_SESSION: str = _DEFAULTS["session"].default
DEFAULT_SEED: int = _DEFAULTS["seed"].default
DEFAULT_RETRANSMIT_CAPACITY: int = _DEFAULTS["retransmit_capacity"].default

# Transient "the kernel could not queue it" errors: the datagram is lost like on a network,
# and the receiver recovers it by re-request.
_TRANSIENT_SEND_ERRORS = frozenset({errno.ENOBUFS, errno.EAGAIN, errno.EWOULDBLOCK})


class FeedSendError(ExchangeSimError):
    """A datagram could not be sent to ``address`` for a reason that will not pass."""

    def __init__(self, address: tuple[str, int], reason: str) -> None:
        self.address = address
        self.reason = reason
        super().__init__(f"cannot send to {address[0]}:{address[1]}: {reason}")


@dataclass(slots=True)
class SenderStats:
    """What a ``FeedSender`` did. Packets are datagrams; messages are ITCH messages."""

    messages: int = 0  # messages numbered and stored (each once, whatever the faults)
    packets: int = 0  # live data packets put on the wire, duplicates included
    dropped_packets: int = 0  # live data packets deliberately not sent
    dropped_messages: int = 0  # messages in those packets
    duplicated_packets: int = 0  # live data packets sent twice
    reordered_packets: int = 0  # live data packets sent after the packet that followed them
    heartbeats: int = 0
    end_of_session_packets: int = 0
    send_failures: int = 0  # datagrams the kernel refused transiently (lost, recoverable)
    bytes: int = 0  # bytes put on the wire, all packet kinds


class FaultInjector:
    """Seeded network faults for live data packets, pure: packet in, datagrams to send out.

    Per packet one roll of ``Random(seed)``: below ``drop_rate`` it is dropped, then up to
    ``+ duplicate_rate`` sent twice, then up to ``+ reorder_rate`` held back and sent after the
    next packet (swapped with it); otherwise sent as is. ``release`` hands back a held packet
    (when the feed goes idle). Without any fault rate no dice are rolled.
    """

    def __init__(
        self,
        *,
        drop_rate: float = 0.0,
        duplicate_rate: float = 0.0,
        reorder_rate: float = 0.0,
        seed: int = DEFAULT_SEED,
    ) -> None:
        for name, rate in (
            ("drop_rate", drop_rate),
            ("duplicate_rate", duplicate_rate),
            ("reorder_rate", reorder_rate),
        ):
            if not 0.0 <= rate <= 1.0:
                raise OptionError(name, rate, "a probability in [0, 1]")
        total = drop_rate + duplicate_rate + reorder_rate
        if total > 1.0:
            raise OptionError(
                "drop_rate + duplicate_rate + reorder_rate",
                total,
                "at most 1 (one fault per packet)",
            )
        self._drop = drop_rate
        self._duplicate = drop_rate + duplicate_rate
        self._reorder = total
        self._dice = Random(f"exchange_sim.faults:{seed}").random
        self._held: bytes | None = None
        self.dropped_packets = 0
        self.dropped_messages = 0
        self.duplicated_packets = 0
        self.reordered_packets = 0

    def live(self, packet: bytes) -> list[bytes]:
        """The datagrams to send, in order, now that ``packet`` is ready."""
        if self._reorder > 0.0:
            roll = self._dice()
            if roll < self._drop:
                self.dropped_packets += 1
                self.dropped_messages += int.from_bytes(packet[18:20], "big")
                return self.release()
            if roll < self._duplicate:
                self.duplicated_packets += 1
                return [packet, packet, *self._swap()]
            if roll < self._reorder and self._held is None:
                self._held = packet
                return []
        return [packet, *self._swap()]

    def _swap(self) -> list[bytes]:
        """The held packet, now that a later one went out before it."""
        held = self._held
        if held is None:
            return []
        self._held = None
        self.reordered_packets += 1
        return [held]

    def release(self) -> list[bytes]:
        """The held packet, if any, to send now (in order after all: not counted)."""
        held = self._held
        if held is None:
            return []
        self._held = None
        return [held]


class FeedSender:
    """Packs messages into MoldUDP64 packets and sends them to ``group:port``.

    ``send`` returns how many packets went out because of that message (0 or 1: a packet
    leaves when the next message does not fit); ``flush`` sends the partial packet (call it
    before going idle); ``heartbeat`` announces the next sequence number;
    ``end_of_session`` flushes and ends the session. ``buffer`` is the retransmission store
    to answer re-requests from.

    Faults, decided per live data packet with ``Random(seed)``: with probability
    ``drop_rate`` it is not sent, ``duplicate_rate`` sent twice, ``reorder_rate`` held back
    and sent after the next packet (or before the next heartbeat or end of session, so
    nothing is held for more than a heartbeat interval).
    """

    def __init__(
        self,
        group: str,
        port: int,
        *,
        interface: str = "127.0.0.1",
        ttl: int = 0,
        session: str = DEFAULT_SESSION,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        drop_rate: float = 0.0,
        duplicate_rate: float = 0.0,
        reorder_rate: float = 0.0,
        seed: int = DEFAULT_SEED,
        retransmit_capacity: int = DEFAULT_RETRANSMIT_CAPACITY,
    ) -> None:
        _check_destination(group)
        self._faults = FaultInjector(
            drop_rate=drop_rate,
            duplicate_rate=duplicate_rate,
            reorder_rate=reorder_rate,
            seed=seed,
        )
        self._address = (group, port)
        self._builder = PacketBuilder(session, max_payload=max_payload)
        self.buffer = RetransmissionBuffer(
            session, capacity=retransmit_capacity, max_payload=max_payload
        )
        self.stats = SenderStats()
        self._sock = open_sender(interface=interface, ttl=ttl)
        self._sendto = self._sock.sendto

    @property
    def session(self) -> str:
        return self._builder.session

    @property
    def next_sequence(self) -> int:
        """The sequence number the next message will get."""
        return self._builder.next_sequence

    @property
    def pending(self) -> int:
        """Messages waiting in the partial packet."""
        return self._builder.pending

    def send(self, message: bytes) -> int:
        """Number and queue ``message``; send the previous packet if it is full."""
        packet = self._builder.add(message)  # raises before numbering if it can never fit
        self.buffer.append(message)
        self.stats.messages += 1
        if packet is None:
            return 0
        self._live(packet)
        return 1

    def flush(self) -> int:
        """Send the partial packet; 1 if there was one, else 0.

        A packet held back for reordering stays held until the next packet, heartbeat or end
        of session, so reordering still happens when the feed is sparse.
        """
        packet = self._builder.flush()
        if packet is None:
            return 0
        self._live(packet)
        return 1

    def heartbeat(self) -> None:
        """Announce the next sequence number (after releasing a held packet)."""
        self._release()
        self._put(self._builder.heartbeat())
        self.stats.heartbeats += 1

    def end_of_session(self) -> None:
        """Flush, then announce the end of the session; may be repeated while lingering."""
        self.flush()
        self._release()
        self._put(self._builder.end_of_session())
        self.stats.end_of_session_packets += 1

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> FeedSender:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- faults and the wire ----------------------------------------------------------------

    def _live(self, packet: bytes) -> None:
        """A new data packet: through the fault injector, then onto the wire."""
        for datagram in self._faults.live(packet):
            self._put(datagram)
            self.stats.packets += 1
        self._count_faults()

    def _release(self) -> int:
        released = self._faults.release()
        for datagram in released:
            self._put(datagram)
            self.stats.packets += 1
        return len(released)

    def _count_faults(self) -> None:
        faults, stats = self._faults, self.stats
        stats.dropped_packets = faults.dropped_packets
        stats.dropped_messages = faults.dropped_messages
        stats.duplicated_packets = faults.duplicated_packets
        stats.reordered_packets = faults.reordered_packets

    def _put(self, datagram: bytes) -> None:
        try:
            self._sendto(datagram, self._address)
        except OSError as exc:
            if exc.errno in _TRANSIENT_SEND_ERRORS:
                self.stats.send_failures += 1
                return
            raise FeedSendError(self._address, exc.strerror or str(exc)) from exc
        self.stats.bytes += len(datagram)


def _check_destination(group: str) -> None:
    """Refuse any destination but a multicast group or this host's loopback."""
    try:
        address = ipaddress.ip_address(group)
    except ValueError:
        raise OptionError("group", group, "an IPv4 multicast group such as 239.1.1.1") from None
    if not (address.is_multicast or address.is_loopback):
        raise OptionError("group", group, "a multicast group (or a loopback address)")


@dataclass(slots=True)
class RerequestStats:
    """What a ``RerequestServer`` did, in requests unless named otherwise."""

    requests: int = 0  # well-formed requests received
    answered: int = 0  # answered in full
    clamped: int = 0  # answered in part (capped at the answer limit or the last message sent)
    expired: int = 0  # the first requested message was no longer stored
    not_yet_sent: int = 0
    wrong_session: int = 0
    malformed: int = 0  # datagrams that are not a 20-byte request
    ignored: int = 0  # received while disabled
    refused: int = 0  # from a requester outside the loopback network
    packets: int = 0  # packets retransmitted
    messages: int = 0  # messages retransmitted


class RerequestServer:
    """Answers MoldUDP64 re-requests on ``host:port`` from ``buffer``, unicast, loopback only.

    ``start`` binds the UDP endpoint (port 0 picks a free one: see ``address``); ``close``
    unbinds it. ``enabled=False`` receives and counts requests but answers none.
    """

    def __init__(
        self,
        buffer: RetransmissionBuffer,
        *,
        host: str = "127.0.0.1",
        port: int,
        enabled: bool = True,
    ) -> None:
        self._buffer = buffer
        self._host = host or "127.0.0.1"
        self._port = port
        self.enabled = enabled
        self.stats = RerequestStats()
        self._transport: asyncio.DatagramTransport | None = None
        self._refused_logged = False

    @property
    def address(self) -> tuple[str, int]:
        """The bound address (the requested one before ``start``)."""
        if self._transport is not None:
            host, port = self._transport.get_extra_info("sockname")[:2]
            return host, port
        return self._host, self._port

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _RerequestProtocol(self),
            local_addr=(self._host, self._port),
            family=socket.AF_INET,
        )
        self._transport = transport
        logger.info(
            "re-request server on %s:%s (%s)",
            *self.address,
            "answering" if self.enabled else "disabled: requests are not answered",
        )

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    async def __aenter__(self) -> RerequestServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    def answer(self, datagram: bytes, requester: tuple[str, int]) -> list[bytes]:
        """The packets to send back to ``requester`` for ``datagram`` (counted in ``stats``)."""
        stats = self.stats
        try:
            request = decode_request(datagram)
        except PacketError:
            stats.malformed += 1
            return []
        if not _is_loopback(requester[0]):
            stats.refused += 1
            if not self._refused_logged:
                self._refused_logged = True
                logger.warning(
                    "refusing re-requests from %s: only loopback is answered", requester[0]
                )
            return []
        stats.requests += 1
        if not self.enabled:
            stats.ignored += 1
            return []
        retransmission = self._buffer.answer(request)
        status = retransmission.status
        if status is AnswerStatus.ANSWERED:
            stats.answered += 1
        elif status is AnswerStatus.CLAMPED:
            stats.clamped += 1
        elif status is AnswerStatus.EXPIRED:
            stats.expired += 1
        elif status is AnswerStatus.NOT_YET_SENT:
            stats.not_yet_sent += 1
        else:
            stats.wrong_session += 1
        stats.packets += len(retransmission.packets)
        stats.messages += retransmission.count
        logger.debug(
            "re-request %s %d+%d from %s: %s, %d messages",
            request.session,
            request.sequence,
            request.count,
            requester,
            status,
            retransmission.count,
        )
        return list(retransmission.packets)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _RerequestProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: RerequestServer) -> None:
        self._server = server
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        transport = self._transport
        for packet in self._server.answer(data, addr):
            if transport is None or transport.is_closing():
                return
            transport.sendto(packet, addr)

    def error_received(self, exc: Exception) -> None:
        # An ICMP error for an earlier answer (the requester went away): nothing to do.
        logger.debug("re-request socket error: %s", exc)
