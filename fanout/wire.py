"""RFC 6455 framing of the server's own data frames (§5.2): header bytes only, no state.

The fanout writes a caught-up client's data frame straight to its transport (see
``fanout.server``): one small header plus the payload, instead of the library's general
frame object per client per tick. A server's frames are never masked; the connections
negotiate no extension, so the RSV bits are 0; FIN is set (no fragmentation).
"""

from __future__ import annotations

import struct

_TEXT_FIN = 0x81  # FIN + opcode 0x1 (text)
_SHORT = struct.Struct("!BB").pack
_MEDIUM = struct.Struct("!BBH").pack  # 16-bit extended length
_LONG = struct.Struct("!BBQ").pack  # 64-bit extended length


def text_frame_header(length: int) -> bytes:
    """The header of an unmasked, unfragmented text frame with a ``length``-byte payload."""
    if length < 126:
        return _SHORT(_TEXT_FIN, length)
    if length < 65536:
        return _MEDIUM(_TEXT_FIN, 126, length)
    return _LONG(_TEXT_FIN, 127, length)
