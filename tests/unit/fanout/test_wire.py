"""The fanout's own text frame headers are byte for byte the library's frames."""

from __future__ import annotations

import pytest
from websockets.frames import OP_TEXT, Frame

from fanout.wire import text_frame_header


@pytest.mark.parametrize("length", [0, 1, 125, 126, 127, 4_500, 65_535, 65_536, 1_048_576])
def test_a_header_plus_payload_is_the_frame_websockets_would_write(length: int) -> None:
    payload = b"x" * length
    expected = Frame(OP_TEXT, payload).serialize(mask=False, extensions=[])
    assert text_frame_header(length) + payload == expected
