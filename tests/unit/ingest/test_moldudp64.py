"""MoldUDP64 framing: exact bytes from the spec's layout, strict decoding, the packet builder."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.errors import (
    FieldRangeError,
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
from tickerplant.errors import TickerplantError

# Hand-built from the spec's field table: Session (10), Sequence Number (8), Message Count (2),
# then Message Length (2, not counting itself) + Message Data per block. Big-endian.
SESSION = b"SESSION001"
SEQ_42 = b"\x00\x00\x00\x00\x00\x00\x00\x2a"
DATA_PACKET = SESSION + SEQ_42 + b"\x00\x02" + b"\x00\x03ABC" + b"\x00\x01Z"
HEARTBEAT = SESSION + SEQ_42 + b"\x00\x00"
END_OF_SESSION = SESSION + SEQ_42 + b"\xff\xff"
REQUEST = SESSION + SEQ_42 + b"\x00\x05"


def test_a_data_packet_decodes_to_its_session_sequence_and_messages():
    """Two blocks after a header for sequence 42 decode to messages 42 (ABC) and 43 (Z)."""
    packet = decode_packet(DATA_PACKET)
    assert packet == Packet("SESSION001", 42, (b"ABC", b"Z"), PacketKind.DATA)
    assert packet.next_sequence == 44
    assert all(type(message) is bytes for message in packet.messages)


def test_encoding_a_data_packet_produces_the_spec_bytes():
    """encode_packet lays out header and length-prefixed blocks exactly as the spec says."""
    assert encode_packet("SESSION001", 42, [b"ABC", b"Z"]) == DATA_PACKET


def test_a_heartbeat_decodes_to_the_next_expected_sequence_with_no_messages():
    """Message Count 0 is a heartbeat whose Sequence Number is the next to be sent."""
    packet = decode_packet(HEARTBEAT)
    assert packet == Packet("SESSION001", 42, (), PacketKind.HEARTBEAT)
    assert packet.next_sequence == 42
    assert encode_heartbeat("SESSION001", 42) == HEARTBEAT


def test_end_of_session_is_message_count_ffff_carrying_the_next_sequence():
    """Message Count 0xFFFF is end of session; it carries the next sequence and no blocks."""
    assert decode_packet(END_OF_SESSION) == Packet("SESSION001", 42, (), PacketKind.END_OF_SESSION)
    assert encode_end_of_session("SESSION001", 42) == END_OF_SESSION


def test_a_request_round_trips_through_its_twenty_byte_form():
    """A request for 5 messages from 42 is Session + Sequence Number + Requested Count."""
    request = Request("SESSION001", 42, 5)
    assert encode_request(request) == REQUEST
    assert decode_request(REQUEST) == request
    assert decode_request(bytearray(REQUEST)) == request
    assert request.end == 47


def test_short_session_names_are_space_padded_on_the_wire_and_stripped_on_decoding():
    """Session "A1" goes out as "A1" plus eight spaces and comes back as "A1"."""
    wire = encode_packet("A1", 1, [b"x"])
    assert wire[:10] == b"A1        "
    assert decode_packet(wire).session == "A1"
    assert decode_request(encode_request(Request("A1", 7, 1))) == Request("A1", 7, 1)


def test_a_zero_length_message_is_carried_as_a_block_of_length_zero():
    """An empty message is legal: its block is just the two length bytes 00 00."""
    wire = encode_packet("S", 9, [b"", b"q"])
    assert wire[20:] == b"\x00\x00\x00\x01q"
    assert decode_packet(wire).messages == (b"", b"q")


def test_decoding_accepts_bytearray_and_memoryview_and_returns_bytes():
    """A receive buffer (bytearray or a view of it) decodes to independent bytes messages."""
    buffer = bytearray(DATA_PACKET)
    packet = decode_packet(memoryview(buffer))
    buffer[22:25] = b"XXX"
    assert packet.messages == (b"ABC", b"Z")
    assert decode_packet(bytearray(DATA_PACKET)).messages == (b"ABC", b"Z")


@pytest.mark.parametrize(
    ("wire", "error", "text", "fields"),
    [
        pytest.param(
            DATA_PACKET[:7],
            PacketTooShortError,
            "packet too short at offset 0: the header needs 20 bytes, got 7",
            (0, 20, 7),
            id="header-too-short",
        ),
        pytest.param(
            SESSION + SEQ_42 + b"\x00\x03" + b"\x00\x03ABC" + b"\x00\x01Z",
            MessageCountMismatchError,
            "packet declares 3 messages but ends at offset 28 after 2",
            (28, 3, 2),
            id="count-larger-than-blocks",
        ),
        pytest.param(
            SESSION + SEQ_42 + b"\x00\x01" + b"\x00\x03ABC" + b"\x00\x01Z",
            TrailingBytesError,
            "packet of 28 bytes has 3 trailing bytes at offset 25, after its declared messages",
            (25, 25, 28),
            id="count-smaller-than-blocks",
        ),
        pytest.param(
            DATA_PACKET[:-1],
            TruncatedMessageError,
            "message block at offset 25 declares 1 bytes of data, only 0 remain",
            (25, 1, 0),
            id="last-block-runs-past-the-end",
        ),
        pytest.param(
            SESSION + SEQ_42 + b"\x00\x01" + b"\x01\x00ABC",
            TruncatedMessageError,
            "message block at offset 20 declares 256 bytes of data, only 3 remain",
            (20, 256, 3),
            id="block-length-far-past-the-end",
        ),
        pytest.param(
            DATA_PACKET[:-2],
            TruncatedLengthError,
            "message length field at offset 25 needs 2 bytes, only 1 remain",
            (25, 2, 1),
            id="length-field-cut",
        ),
        pytest.param(
            DATA_PACKET + b"\x00",
            TrailingBytesError,
            "packet of 29 bytes has 1 trailing bytes at offset 28, after its declared messages",
            (28, 28, 29),
            id="trailing-byte-after-blocks",
        ),
        pytest.param(
            HEARTBEAT + b"\x00\x01Z",
            TrailingBytesError,
            "packet of 23 bytes has 3 trailing bytes at offset 20, after its declared messages",
            (20, 20, 23),
            id="blocks-after-a-heartbeat",
        ),
        pytest.param(
            END_OF_SESSION + b"\x00",
            TrailingBytesError,
            "packet of 21 bytes has 1 trailing bytes at offset 20, after its declared messages",
            (20, 20, 21),
            id="bytes-after-end-of-session",
        ),
        pytest.param(
            b"SESS\xe9ON001" + SEQ_42 + b"\x00\x00",
            SessionFieldError,
            "session field at offset 0 is not printable ASCII: b'SESS\\xe9ON001'",
            (0, "printable ASCII", b"SESS\xe9ON001"),
            id="session-not-ascii",
        ),
    ],
)
def test_each_malformed_packet_raises_its_specific_error(wire, error, text, fields):
    """Every way a datagram can be malformed has its own error naming offset and sizes."""
    with pytest.raises(error) as excinfo:
        decode_packet(wire)
    assert str(excinfo.value) == text
    assert (excinfo.value.offset, excinfo.value.expected, excinfo.value.actual) == fields
    assert isinstance(excinfo.value, PacketError)
    assert isinstance(excinfo.value, TickerplantError)


@pytest.mark.parametrize(
    ("wire", "text"),
    [
        (REQUEST[:19], "request packet at offset 0 is 19 bytes: expected exactly 20"),
        (REQUEST + b"\x00", "request packet at offset 0 is 21 bytes: expected exactly 20"),
    ],
)
def test_a_request_of_the_wrong_size_is_rejected(wire, text):
    """A re-request datagram must be exactly 20 bytes, no more and no less."""
    with pytest.raises(RequestSizeError) as excinfo:
        decode_request(wire)
    assert str(excinfo.value) == text
    assert (excinfo.value.expected, excinfo.value.actual) == (20, len(wire))


@pytest.mark.parametrize(
    ("session", "text"),
    [
        ("", "session name '' is invalid: 0 characters"),
        ("SESSION0001", "session name 'SESSION0001' is invalid: 11 characters"),
        ("SES-1", "session name 'SES-1' is invalid: not ASCII letters or digits"),
        ("SÉSSION", "session name 'SÉSSION' is invalid: not ASCII letters or digits"),
        (b"SESSION", "session name b'SESSION' is invalid: not a string"),
    ],
)
def test_invalid_session_names_are_refused_when_encoding(session, text):
    """Only 1 to 10 ASCII letters or digits can be put in the session field."""
    with pytest.raises(SessionNameError) as excinfo:
        encode_heartbeat(session, 1)
    assert str(excinfo.value) == text + "; expected 1 to 10 ASCII letters or digits"


def test_encoding_refuses_values_that_do_not_fit_their_fields():
    """No messages, a sequence beyond 64 bits or a 64 KiB message cannot be encoded."""
    with pytest.raises(FieldRangeError) as excinfo:
        encode_packet("S", 1, [])
    assert str(excinfo.value) == "message count=0 is out of range: expected 1..65534"
    with pytest.raises(FieldRangeError) as excinfo:
        encode_packet("S", 2**64, [b"x"])
    assert (
        str(excinfo.value)
        == f"sequence=18446744073709551616 is out of range: expected 0..{2**64 - 1}"
    )
    with pytest.raises(MessageTooLargeError) as excinfo:
        encode_packet("S", 1, [b"x" * 65536])
    assert str(excinfo.value) == (
        "message of 65536 bytes cannot be sent: at most 65535 bytes fit in one packet"
    )
    with pytest.raises(FieldRangeError) as excinfo:
        encode_request(Request("S", 1, 65536))
    assert str(excinfo.value) == "requested message count=65536 is out of range: expected 0..65535"


def test_the_builder_never_exceeds_the_payload_limit_nor_splits_a_message():
    """Messages of 1 to 200 bytes pack into packets of at most 300 bytes, each kept whole."""
    messages = [bytes([index % 251]) * (1 + index % 200) for index in range(500)]
    packets = encode_packets("FEED", 1, messages, max_payload=300)
    assert max(len(packet) for packet in packets) <= 300
    decoded = [decode_packet(packet) for packet in packets]
    assert [message for packet in decoded for message in packet.messages] == messages
    sequences = [packet.sequence for packet in decoded]
    counts = [len(packet.messages) for packet in decoded]
    assert sequences == [1 + sum(counts[:index]) for index in range(len(decoded))]
    # Greedy packing: the next packet's first message did not fit in the one before.
    for packet, following in zip(packets, decoded[1:], strict=False):
        assert len(packet) + 2 + len(following.messages[0]) > 300


def test_the_builder_returns_a_packet_only_when_the_next_message_does_not_fit():
    """With a 30-byte limit, 4 + 4 bytes fit (20 + 6 + 6 = 32 does not): one per packet."""
    builder = PacketBuilder("FEED", next_sequence=7, max_payload=30)
    assert builder.add(b"abcd") is None
    assert builder.pending == 1
    assert builder.next_sequence == 8
    finished = builder.add(b"efgh")
    assert finished == encode_packet("FEED", 7, [b"abcd"])
    assert builder.flush() == encode_packet("FEED", 8, [b"efgh"])
    assert builder.flush() is None
    assert builder.next_sequence == 9


def test_a_message_filling_the_whole_payload_fits_and_one_byte_more_is_refused():
    """At max_payload 1400, a message of 1378 bytes is exactly one packet; 1379 is refused."""
    builder = PacketBuilder("FEED")
    assert builder.add(b"m" * 1378) is None
    assert len(builder.flush() or b"") == 1400
    with pytest.raises(MessageTooLargeError) as excinfo:
        builder.add(b"m" * 1379)
    assert str(excinfo.value) == (
        "message of 1379 bytes cannot be sent: at most 1378 bytes fit in one packet"
    )
    assert builder.pending == 0


def test_the_builder_heartbeat_announces_the_first_unsent_sequence():
    """Pending, unflushed messages are not announced by a heartbeat or end of session."""
    builder = PacketBuilder("FEED", next_sequence=10)
    builder.add(b"x")
    assert builder.heartbeat() == encode_heartbeat("FEED", 10)
    builder.flush()
    assert builder.heartbeat() == encode_heartbeat("FEED", 11)
    assert builder.end_of_session() == encode_end_of_session("FEED", 11)


def test_the_builder_refuses_a_payload_limit_that_cannot_hold_a_message():
    """max_payload below header + one length field (22 bytes) is refused."""
    with pytest.raises(FieldRangeError) as excinfo:
        PacketBuilder("FEED", max_payload=21)
    assert str(excinfo.value) == "max_payload=21 is out of range: expected 22..65507"


@settings(max_examples=300, deadline=None)
@given(
    session=st.text(alphabet="ABCXYZ0189", min_size=1, max_size=10),
    sequence=st.integers(0, 2**64 - 1),
    messages=st.lists(st.binary(max_size=300), min_size=1, max_size=40),
)
def test_any_data_packet_round_trips_through_encoding(session, sequence, messages):
    """Whatever the session, sequence and messages, decoding the encoding gives them back."""
    packet = decode_packet(encode_packet(session, sequence, messages))
    assert packet == Packet(session, sequence, tuple(messages), PacketKind.DATA)


@settings(max_examples=500, deadline=None)
@given(
    wire=st.one_of(
        st.binary(max_size=120),
        st.builds(
            lambda head, tail: head + tail,
            st.sampled_from([DATA_PACKET[:20], HEARTBEAT, END_OF_SESSION]),
            st.binary(max_size=60),
        ),
    )
)
def test_arbitrary_bytes_decode_to_a_packet_or_raise_a_packet_error(wire):
    """Garbage never escapes as anything but a PacketError; what decodes accounts for every byte."""
    try:
        packet = decode_packet(wire)
    except PacketError:
        return
    if packet.kind is PacketKind.DATA:
        assert sum(2 + len(message) for message in packet.messages) == len(wire) - 20
        assert packet.sequence == int.from_bytes(wire[10:18], "big")
