"""Receiving the exchange feed: UDP multicast, MoldUDP64 framing, gap detection and recovery.

So far: loopback-safe multicast sockets (``ingest.multicast``); MoldUDP64 framing
(``ingest.moldudp64``); the receiver's sequence tracker with gap recovery
(``ingest.sequencer``); the sender's retransmission buffer (``ingest.retransmit``).
"""

from ingest.errors import (
    FieldRangeError,
    IngestError,
    MessageCountMismatchError,
    MessageTooLargeError,
    PacketError,
    PacketTooShortError,
    RequestSizeError,
    SessionFieldError,
    SessionNameError,
    TrailingBytesError,
    TruncatedLengthError,
    TruncatedMessageError,
)
from ingest.moldudp64 import (
    Packet,
    PacketBuilder,
    PacketKind,
    Request,
    decode_packet,
    decode_request,
    encode_end_of_session,
    encode_heartbeat,
    encode_packet,
    encode_packets,
    encode_request,
)
from ingest.multicast import open_receiver, open_sender
from ingest.retransmit import AnswerStatus, Retransmission, RetransmissionBuffer
from ingest.sequencer import (
    Action,
    Deliver,
    EndOfSession,
    GapDetected,
    GapRecovered,
    GapRecoverer,
    RecoveryStats,
    SessionStarted,
    Unrecoverable,
)

__all__ = [
    "Action",
    "AnswerStatus",
    "Deliver",
    "EndOfSession",
    "FieldRangeError",
    "GapDetected",
    "GapRecovered",
    "GapRecoverer",
    "IngestError",
    "MessageCountMismatchError",
    "MessageTooLargeError",
    "Packet",
    "PacketBuilder",
    "PacketError",
    "PacketKind",
    "PacketTooShortError",
    "RecoveryStats",
    "Request",
    "RequestSizeError",
    "Retransmission",
    "RetransmissionBuffer",
    "SessionFieldError",
    "SessionNameError",
    "SessionStarted",
    "TrailingBytesError",
    "TruncatedLengthError",
    "TruncatedMessageError",
    "Unrecoverable",
    "decode_packet",
    "decode_request",
    "encode_end_of_session",
    "encode_heartbeat",
    "encode_packet",
    "encode_packets",
    "encode_request",
    "open_receiver",
    "open_sender",
]
