"""From datagrams to bus records: MoldUDP64 decoding, gap recovery and normalization, glued.

``FeedPipeline`` is pure: it takes datagram bytes and times, and returns the re-requests
to send and the records to publish. The socket and bus adapters (``ingest.service``) only
move bytes. Every message reaches the normalizer exactly once and in sequence order
(``GapRecoverer``); a range that cannot be recovered marks the books stale
(``Normalizer.mark_stale``) instead of letting them silently drift.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ingest.errors import PacketError
from ingest.moldudp64 import Request, decode_packet
from ingest.sequencer import (
    Deliver,
    EndOfSession,
    GapDetected,
    GapRecovered,
    GapRecoverer,
    SessionStarted,
    Unrecoverable,
)
from normalize.fast import FastNormalizer
from normalize.normalizer import Normalizer

logger = logging.getLogger(__name__)

OutRecord = tuple[str, bytes, bytes]
"""(topic, key, value) ready for ``Bus.publish_many``."""


@dataclass(slots=True)
class PipelineStats:
    datagrams: int = 0
    bad_packets: int = 0
    end_of_session: int = 0


class FeedPipeline:
    """One feed's receive path: datagram → packet → in-order messages → normalized records.

    ``receive_ts_ns`` is wall-clock epoch time stamped on events; ``now_ns`` is the
    monotonic clock the recoverer's timeouts run on. Both are arguments, never read here.
    """

    def __init__(self, normalizer: Normalizer | FastNormalizer, recoverer: GapRecoverer) -> None:
        self.normalizer = normalizer
        self.recoverer = recoverer
        self.stats = PipelineStats()
        self._bad_packet_logged = 0

    def on_datagram(
        self, data: bytes, *, receive_ts_ns: int, now_ns: int, retransmission: bool = False
    ) -> list[Request]:
        """Feed one datagram; return the re-requests to send for any gap it revealed.

        ``retransmission``: the datagram came from the re-request server, not the live feed.
        """
        self.stats.datagrams += 1
        try:
            packet = decode_packet(data)
        except PacketError as exc:
            self.stats.bad_packets += 1
            # Log the first bad packet and then every 1000th, with the running count.
            if self.stats.bad_packets == 1 or self.stats.bad_packets % 1000 == 0:
                logger.warning(
                    "skipped malformed MoldUDP64 packet (%d so far): %s",
                    self.stats.bad_packets,
                    exc,
                )
            return []
        actions = self.recoverer.on_packet(packet, now_ns, retransmission=retransmission)
        return self._apply(actions, receive_ts_ns)

    def on_timer(self, *, receive_ts_ns: int, now_ns: int) -> list[Request]:
        """Let re-request timeouts fire; return re-requests to (re)send."""
        return self._apply(self.recoverer.on_timer(now_ns), receive_ts_ns)

    def take_records(self, *, publish_ts_ns: int) -> list[OutRecord]:
        """The normalized events produced so far, batched per (topic, symbol)."""
        return self.normalizer.take_records(publish_ts_ns=publish_ts_ns)

    def _apply(self, actions: list, receive_ts_ns: int) -> list[Request]:
        requests: list[Request] = []
        process_messages = self.normalizer.process_messages
        for action in actions:
            if isinstance(action, Deliver):
                process_messages(
                    action.messages, first_seq=action.sequence, receive_ts_ns=receive_ts_ns
                )
            elif isinstance(action, Request):
                requests.append(action)
            elif isinstance(action, Unrecoverable):
                last = action.sequence + action.count - 1
                reason = (
                    f"messages {action.sequence}..{last} of session {action.session} "
                    "could not be recovered"
                )
                logger.error("unrecoverable gap: %s; books marked stale", reason)
                self.normalizer.mark_stale(
                    seq=action.sequence, receive_ts_ns=receive_ts_ns, reason=reason
                )
            elif isinstance(action, GapDetected):
                logger.info(
                    "gap in session %s: %d message(s) from %d, re-requesting",
                    action.session,
                    action.count,
                    action.sequence,
                )
            elif isinstance(action, GapRecovered):
                logger.info(
                    "gap in session %s recovered: %d message(s) from %d",
                    action.session,
                    action.count,
                    action.sequence,
                )
            elif isinstance(action, SessionStarted):
                logger.info(
                    "feed session %s started (previous %s)", action.session, action.previous
                )
            elif isinstance(action, EndOfSession):
                self.stats.end_of_session += 1
                logger.info(
                    "end of session %s at sequence %d", action.session, action.next_sequence
                )
        return requests
