"""Our ITCH 5.0 codec against an independent implementation: ``itchfeed`` (import ``itch``).

Both directions, for every message type: bytes we encode are parsed by ``itchfeed``'s
``MessageParser`` to the same field values, and bytes ``itchfeed`` packs decode with ours to
the same values. ``itchfeed`` keeps Alpha fields as padded ``bytes`` and prices as raw
integers; it names a few fields differently (mapped below).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from itch.messages import create_message
from itch.parser import MessageParser

from normalize.itch import MESSAGE_LAYOUTS, ItchMessage, decode, encode
from tests.unit.normalize.test_itch_properties import message_strategy

# Our field name -> itchfeed's attribute name, where they differ.
THEIR_NAMES: dict[str, dict[str, str]] = {
    "R": {"luld_reference_price_tier": "luld_ref"},
    "V": {"level_1": "level1_price", "level_2": "level2_price", "level_3": "level3_price"},
    "K": {
        "ipo_quotation_release_time": "ipo_release_time",
        "ipo_quotation_release_qualifier": "ipo_release_qualifier",
    },
    "J": {"auction_collar_extension": "auction_collar_extention"},
    "U": {"original_order_reference_number": "order_reference_number"},
    "I": {"price_variation_indicator": "variation_indicator"},
}

TYPE_BYTES = pytest.mark.parametrize(
    "type_byte", sorted(MESSAGE_LAYOUTS), ids=[chr(b) for b in sorted(MESSAGE_LAYOUTS)]
)


def their_name(type_byte: int, name: str) -> str:
    return THEIR_NAMES.get(chr(type_byte), {}).get(name, name)


def their_values_in_our_terms(type_byte: int, theirs: object) -> dict[str, object]:
    """itchfeed's attributes as our field values: text decoded, padding stripped."""
    values: dict[str, object] = {}
    for f in MESSAGE_LAYOUTS[type_byte].fields:
        value = getattr(theirs, their_name(type_byte, f.name))
        if f.kind == "alpha":
            text = value.decode("ascii")
            value = text if f.size == 1 else text.rstrip(" ")
        values[f.name] = value
    return values


def our_values(message: ItchMessage) -> dict[str, object]:
    layout = MESSAGE_LAYOUTS[ord(message.message_type)]
    return {f.name: getattr(message, f.name) for f in layout.fields}


def their_kwargs(message: ItchMessage) -> dict[str, object]:
    """Our values as itchfeed's ``create_message`` keyword arguments (Alpha as padded bytes)."""
    type_byte = ord(message.message_type)
    kwargs: dict[str, object] = {}
    for f in MESSAGE_LAYOUTS[type_byte].fields:
        value = getattr(message, f.name)
        if f.kind == "alpha":
            value = value.encode("ascii").ljust(f.size, b" ")
        kwargs[their_name(type_byte, f.name)] = value
    return kwargs


@TYPE_BYTES
@settings(max_examples=60)
@given(data=st.data())
def test_itchfeed_parses_our_encoding_of_every_message_type_to_the_same_values(type_byte, data):
    """Our bytes, framed as in NASDAQ's files, parse with itchfeed to the field values we set."""
    message = data.draw(message_strategy(type_byte))
    raw = encode(message)

    parsed = list(MessageParser().parse_stream(len(raw).to_bytes(2, "big") + raw))

    assert len(parsed) == 1
    assert parsed[0].message_type == bytes([type_byte])
    assert parsed[0].message_size == len(raw)
    assert their_values_in_our_terms(type_byte, parsed[0]) == our_values(message)


@TYPE_BYTES
@settings(max_examples=60)
@given(data=st.data())
def test_we_decode_itchfeeds_encoding_of_every_message_type_to_the_same_values(type_byte, data):
    """itchfeed's packing of the same values is byte-identical to ours and decodes to them."""
    message = data.draw(message_strategy(type_byte))

    theirs = create_message(bytes([type_byte]), **their_kwargs(message)).to_bytes()

    assert theirs == encode(message)
    assert decode(theirs) == message


def test_every_itchfeed_message_type_is_one_we_know_with_the_same_length():
    """itchfeed's registry and ours cover the same types, with the same sizes."""
    from itch.messages import messages as their_registry

    assert {key[0]: cls.message_size for key, cls in their_registry.items()} == {
        type_byte: layout.length for type_byte, layout in MESSAGE_LAYOUTS.items()
    }
