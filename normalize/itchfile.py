"""The framing of NASDAQ's daily ITCH 5.0 files: each message preceded by its length.

A file (``01302019.NASDAQ_ITCH50``, usually gzipped) is a plain concatenation of frames:

    +----------------------+---------------------------+
    | length: 2 bytes, BE  | message: ``length`` bytes |
    +----------------------+---------------------------+

This module only splits and joins frames; it does not look inside the messages (``decode``
does). Apart from ``open_itch_file`` it performs no I/O of its own: it reads and writes the
file object it is given.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterable, Iterator
from typing import BinaryIO

from normalize.errors import EncodeError, TruncatedMessage

__all__ = ["iter_messages", "open_itch_file", "write_messages"]

_MAX_FRAME = 0xFFFF


def open_itch_file(path: str | os.PathLike[str]) -> BinaryIO:
    """Open ``path`` for binary reading, decompressing transparently when it ends in ``.gz``."""
    if os.fspath(path).endswith(".gz"):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")  # the caller owns and closes it


def iter_messages(
    source: bytes | bytearray | memoryview | str | os.PathLike[str] | BinaryIO,
    *,
    chunk_size: int = 1 << 16,
) -> Iterator[memoryview]:
    """Yield each message (without its length prefix) from ``source``, in order.

    ``source`` is the framed bytes themselves, a path (``.gz`` is decompressed), or a binary
    file object read ``chunk_size`` bytes at a time, so memory stays bounded whatever the file
    size and a frame may straddle any number of reads. Messages are zero-copy ``memoryview``s
    of read-only buffers: they stay valid after iteration moves on; ``bytes(view)`` copies one.

    After yielding every complete frame, raises ``TruncatedMessage`` if the input ends inside a
    frame: its ``offset`` is that frame's position in the stream, ``expected`` the frame's full
    size (2 + the stated length, or 2 when the prefix itself is cut) and ``available`` the bytes
    that were there.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if isinstance(source, bytes | bytearray | memoryview):
        # A private copy of a mutable buffer, so later edits by the caller cannot change the
        # views already handed out.
        data = source if isinstance(source, bytes) else bytes(source)
        yield from _iter_buffer(data)
    elif isinstance(source, str | os.PathLike):
        with open_itch_file(source) as file:
            yield from _iter_file(file, chunk_size)
    else:
        yield from _iter_file(source, chunk_size)


def _iter_buffer(data: bytes) -> Iterator[memoryview]:
    view = memoryview(data)
    size = len(data)
    position = 0
    while position + 2 <= size:
        end = position + 2 + ((data[position] << 8) | data[position + 1])
        if end > size:
            break
        yield view[position + 2 : end]
        position = end
    if position < size:
        raise _truncated(data, position, size - position, 0)


def _iter_file(file: BinaryIO, chunk_size: int) -> Iterator[memoryview]:
    # ``buffer`` holds the unconsumed tail of the previous reads plus the latest read;
    # ``base`` is the stream offset of buffer[0]; ``position`` the next frame within buffer.
    buffer = b""
    base = 0
    position = 0
    while chunk := file.read(chunk_size):
        buffer = buffer[position:] + chunk if position < len(buffer) else chunk
        base += position
        position = 0
        view = memoryview(buffer)
        size = len(buffer)
        while position + 2 <= size:
            end = position + 2 + ((buffer[position] << 8) | buffer[position + 1])
            if end > size:
                break
            yield view[position + 2 : end]
            position = end
    if position < len(buffer):
        raise _truncated(buffer, position, len(buffer) - position, base)


def _truncated(buffer: bytes, position: int, available: int, base: int) -> TruncatedMessage:
    if available < 2:
        return TruncatedMessage(None, 2, available, base + position)
    expected = 2 + ((buffer[position] << 8) | buffer[position + 1])
    type_byte = buffer[position + 2] if available > 2 else None
    return TruncatedMessage(type_byte, expected, available, base + position)


def write_messages(
    file: BinaryIO,
    messages: Iterable[bytes | bytearray | memoryview],
    *,
    buffer_size: int = 1 << 16,
) -> int:
    """Write each message to ``file`` behind its 2-byte big-endian length; return the count.

    Frames are gathered into writes of about ``buffer_size`` bytes. A message longer than
    65535 bytes cannot be framed and raises ``EncodeError`` (field ``length``) before it is
    written; the frames before it have been written.
    """
    pending: list[bytes | bytearray | memoryview] = []
    pending_size = 0
    count = 0
    for message in messages:
        length = len(message)
        if length > _MAX_FRAME:
            if pending:
                file.write(b"".join(pending))
            first = bytes(message[:1]).decode("latin-1")
            raise EncodeError(first, "length", length, f"must be at most {_MAX_FRAME} bytes")
        pending.append(length.to_bytes(2, "big"))
        pending.append(message)
        pending_size += 2 + length
        count += 1
        if pending_size >= buffer_size:
            file.write(b"".join(pending))
            pending.clear()
            pending_size = 0
    if pending:
        file.write(b"".join(pending))
    return count
