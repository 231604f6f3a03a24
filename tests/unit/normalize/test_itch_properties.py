"""Properties of the ITCH 5.0 codec over random field values and random bytes.

``message_strategy`` is shared with the cross-check against ``itchfeed``.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from normalize.errors import DecodeError
from normalize.itch import (
    MESSAGE_LAYOUTS,
    MESSAGE_LENGTHS,
    FieldLayout,
    ItchMessage,
    decode,
    encode,
)

TYPE_BYTES = pytest.mark.parametrize(
    "type_byte", sorted(MESSAGE_LAYOUTS), ids=[chr(b) for b in sorted(MESSAGE_LAYOUTS)]
)

ASCII = st.characters(max_codepoint=0x7F)


def field_strategy(layout: FieldLayout) -> st.SearchStrategy[object]:
    """Every value the field can carry: any ASCII text that fits, any unsigned integer.

    Multi-byte text never ends in a space: trailing spaces are padding on the wire.
    """
    if layout.kind == "alpha" and layout.size == 1:
        return ASCII
    if layout.kind == "alpha":
        return st.text(ASCII, max_size=layout.size).map(lambda text: text.rstrip(" "))
    return st.integers(min_value=0, max_value=(1 << (8 * layout.size)) - 1)


def message_strategy(type_byte: int) -> st.SearchStrategy[ItchMessage]:
    """Messages of one type with every field drawn independently from its full range."""
    layout = MESSAGE_LAYOUTS[type_byte]
    return st.builds(layout.message_class, **{f.name: field_strategy(f) for f in layout.fields})


def valid_bytes_strategy(type_byte: int) -> st.SearchStrategy[bytes]:
    """Raw messages of one type: random bytes, with the Alpha fields' bytes kept ASCII."""
    layout = MESSAGE_LAYOUTS[type_byte]
    parts = [st.just(bytes([type_byte]))]
    for f in layout.fields:
        if f.kind == "alpha":
            parts.append(st.binary(min_size=f.size, max_size=f.size).map(_to_ascii))
        else:
            parts.append(st.binary(min_size=f.size, max_size=f.size))
    return st.tuples(*parts).map(b"".join)


def _to_ascii(raw: bytes) -> bytes:
    return bytes(byte & 0x7F for byte in raw)


@TYPE_BYTES
@given(data=st.data())
def test_every_message_type_round_trips_random_valid_values_exactly(type_byte, data):
    """encode then decode gives back an equal message, in exactly the type's length."""
    message = data.draw(message_strategy(type_byte))

    raw = encode(message)

    assert len(raw) == MESSAGE_LENGTHS[type_byte]
    assert raw[0] == type_byte
    assert decode(raw) == message
    assert decode(b"\xff" * 7 + raw + b"\xff" * 3, 7, len(raw)) == message


@TYPE_BYTES
@given(data=st.data())
def test_every_message_types_valid_bytes_decode_and_re_encode_to_the_same_bytes(type_byte, data):
    """decode then encode reproduces any well-formed message byte for byte, padding included."""
    raw = data.draw(valid_bytes_strategy(type_byte))

    assert encode(decode(raw)) == raw


@given(raw=st.binary(max_size=64), offset=st.integers(min_value=0, max_value=70))
def test_arbitrary_bytes_either_decode_or_raise_a_decode_error(raw, offset):
    """No input makes decode fail with anything but a DecodeError subclass."""
    try:
        message = decode(raw, offset)
    except DecodeError:
        return
    assert len(raw) - offset >= MESSAGE_LENGTHS[raw[offset]]
    assert encode(message) == raw[offset : offset + MESSAGE_LENGTHS[raw[offset]]]
