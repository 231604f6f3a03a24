"""The 2-byte length-prefixed framing of NASDAQ's daily ITCH 5.0 files."""

from __future__ import annotations

import gzip
import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from normalize.errors import EncodeError, TruncatedMessage
from normalize.itch import decode
from normalize.itchfile import iter_messages, open_itch_file, write_messages
from tests.unit.normalize.test_itch_messages import (
    ADD_ORDER,
    ADD_ORDER_BYTES,
    ORDER_DELETE,
    ORDER_DELETE_BYTES,
    STOCK_DIRECTORY_BYTES,
    SYSTEM_EVENT,
    SYSTEM_EVENT_BYTES,
)

MESSAGES = [SYSTEM_EVENT_BYTES, STOCK_DIRECTORY_BYTES, ADD_ORDER_BYTES, ORDER_DELETE_BYTES]
FRAMED = (
    b"\x00\x0c"
    + SYSTEM_EVENT_BYTES
    + b"\x00\x27"
    + STOCK_DIRECTORY_BYTES
    + b"\x00\x24"
    + ADD_ORDER_BYTES
    + b"\x00\x13"
    + ORDER_DELETE_BYTES
)


def as_bytes(views) -> list[bytes]:
    return [bytes(view) for view in views]


def test_writing_frames_each_message_behind_its_big_endian_length():
    """write_messages emits exactly length-prefixed frames and returns how many it wrote."""
    out = io.BytesIO()

    count = write_messages(out, MESSAGES)

    assert count == 4
    assert out.getvalue() == FRAMED


def test_reading_framed_bytes_yields_each_message_without_its_prefix():
    """The four framed messages come back in order, prefixes removed."""
    assert as_bytes(iter_messages(FRAMED)) == MESSAGES


def test_written_then_read_frames_decode_to_the_original_messages():
    """A file of framed messages decodes, each with its frame length, to the messages."""
    out = io.BytesIO()
    write_messages(out, MESSAGES)
    out.seek(0)

    decoded = [decode(view, 0, len(view)) for view in iter_messages(out)]

    assert decoded[0] == SYSTEM_EVENT
    assert decoded[2:] == [ADD_ORDER, ORDER_DELETE]


@pytest.mark.parametrize("chunk_size", [1, 2, 3, 5, 13, 38, 39, 40, 41, 64, 4096])
def test_a_file_read_in_small_chunks_yields_frames_split_across_chunk_boundaries(chunk_size):
    """Whatever the chunk size, prefixes and bodies that straddle reads are reassembled."""
    assert as_bytes(iter_messages(io.BytesIO(FRAMED), chunk_size=chunk_size)) == MESSAGES


def test_yielded_views_stay_valid_after_the_reader_moves_on():
    """Views from earlier chunks keep their bytes after later chunks are read."""
    views = list(iter_messages(io.BytesIO(FRAMED), chunk_size=7))

    assert as_bytes(views) == MESSAGES


def test_a_mutable_source_buffer_edited_after_reading_does_not_change_the_messages():
    """A bytearray source is copied once, so the yielded views are stable."""
    source = bytearray(FRAMED)
    views = list(iter_messages(source))
    source[2:14] = b"\xff" * 12

    assert bytes(views[0]) == SYSTEM_EVENT_BYTES


def test_a_zero_length_frame_yields_an_empty_message():
    """Framing does not judge content: a 0x0000 prefix yields b''."""
    assert as_bytes(iter_messages(b"\x00\x00" + b"\x00\x13" + ORDER_DELETE_BYTES)) == [
        b"",
        ORDER_DELETE_BYTES,
    ]


def test_an_empty_input_yields_nothing():
    """No bytes, no messages, no error."""
    assert list(iter_messages(b"")) == []
    assert list(iter_messages(io.BytesIO(b""))) == []


# --- truncation -----------------------------------------------------------------------------


@pytest.mark.parametrize("chunk_size", [1, 4, 1 << 16])
def test_a_tail_cut_inside_a_message_raises_truncated_message_at_the_frames_offset(chunk_size):
    """The last frame (at offset 93) is cut 10 bytes short; the three before it are yielded."""
    data = FRAMED[:-10]
    read: list[bytes] = []

    with pytest.raises(TruncatedMessage) as caught:
        for view in iter_messages(io.BytesIO(data), chunk_size=chunk_size):
            read.append(bytes(view))

    assert read == MESSAGES[:3]
    error = caught.value
    assert (error.type_byte, error.expected, error.available, error.offset) == (
        ord("D"),
        21,
        11,
        93,
    )
    assert str(error) == (
        "truncated ITCH 5.0 message type 'D' (0x44) at offset 93: needs 21 bytes, only 11 available"
    )


def test_a_tail_of_one_prefix_byte_raises_truncated_message_needing_two():
    """A single stray byte after the last frame cannot even hold a length prefix."""
    with pytest.raises(TruncatedMessage) as caught:
        list(iter_messages(FRAMED + b"\x00"))

    error = caught.value
    assert (error.type_byte, error.expected, error.available, error.offset) == (None, 2, 1, 114)
    assert str(error) == (
        "truncated ITCH 5.0 message at offset 114: needs 2 bytes, only 1 available"
    )


def test_a_tail_of_a_bare_prefix_raises_truncated_message_without_a_type():
    """A complete prefix announcing 36 bytes, then end of input, in a file read 3 at a time."""
    with pytest.raises(TruncatedMessage) as caught:
        list(iter_messages(io.BytesIO(FRAMED + b"\x00\x24"), chunk_size=3))

    error = caught.value
    assert (error.type_byte, error.expected, error.available, error.offset) == (None, 38, 2, 114)


# --- paths and gzip -------------------------------------------------------------------------


def test_a_gzipped_file_is_read_transparently_by_path(tmp_path):
    """A path ending in .gz is decompressed while reading."""
    path = tmp_path / "01302019.NASDAQ_ITCH50.gz"
    with gzip.open(path, "wb") as out:
        write_messages(out, MESSAGES)

    assert as_bytes(iter_messages(path, chunk_size=5)) == MESSAGES
    assert as_bytes(iter_messages(str(path))) == MESSAGES
    with open_itch_file(path) as file:
        assert file.read() == FRAMED


def test_a_plain_file_is_read_by_path(tmp_path):
    """Any other path is read as is."""
    path = tmp_path / "01302019.NASDAQ_ITCH50"
    with open(path, "wb") as out:
        write_messages(out, MESSAGES)

    assert as_bytes(iter_messages(path)) == MESSAGES


def test_a_truncated_gzipped_file_reports_the_offset_in_the_decompressed_stream(tmp_path):
    """Offsets count decompressed bytes: the frame at 93 is cut short."""
    path = tmp_path / "cut.gz"
    with gzip.open(path, "wb") as out:
        out.write(FRAMED[:-1])

    with pytest.raises(TruncatedMessage, match=r"at offset 93: needs 21 bytes, only 20 available$"):
        list(iter_messages(path))


# --- write errors and arguments -------------------------------------------------------------


def test_a_message_too_long_for_a_two_byte_prefix_raises_encode_error_after_earlier_frames():
    """65536 bytes cannot be framed; the frame before it is written, nothing after it."""
    out = io.BytesIO()

    with pytest.raises(EncodeError) as caught:
        write_messages(out, [ORDER_DELETE_BYTES, b"A" * 65536, ADD_ORDER_BYTES])

    error = caught.value
    assert (error.message_type, error.field, error.value) == ("A", "length", 65536)
    assert str(error) == (
        "cannot encode ITCH 5.0 message type 'A': field length=65536 must be at most 65535 bytes"
    )
    assert out.getvalue() == b"\x00\x13" + ORDER_DELETE_BYTES


def test_writes_are_gathered_until_the_buffer_size_is_reached():
    """With buffer_size=100, twelve frames (114 bytes per four) go out as three 114-byte writes."""

    class RecordingWriter(io.BytesIO):
        def __init__(self) -> None:
            super().__init__()
            self.write_sizes: list[int] = []

        def write(self, data):
            self.write_sizes.append(len(data))
            return super().write(data)

    out = RecordingWriter()

    write_messages(out, MESSAGES * 3, buffer_size=100)

    assert out.getvalue() == FRAMED * 3
    assert out.write_sizes == [114, 114, 114]


def test_a_chunk_size_below_one_is_rejected():
    """Reading zero bytes at a time would never finish."""
    with pytest.raises(ValueError, match=r"^chunk_size must be >= 1, got 0$"):
        list(iter_messages(io.BytesIO(FRAMED), chunk_size=0))


@given(
    messages=st.lists(st.binary(max_size=300), max_size=20),
    chunk_size=st.integers(min_value=1, max_value=700),
)
def test_any_messages_round_trip_through_framing_at_any_chunk_size(messages, chunk_size):
    """write then read, from a file in chunks and from bytes, gives back the same messages."""
    out = io.BytesIO()
    assert write_messages(out, messages) == len(messages)
    framed = out.getvalue()

    assert as_bytes(iter_messages(io.BytesIO(framed), chunk_size=chunk_size)) == messages
    assert as_bytes(iter_messages(framed)) == messages
