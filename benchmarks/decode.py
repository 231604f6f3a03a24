"""Decode only: every field of every ITCH 5.0 message, no books, no events.

Peers, all on the same cached simulated file (``benchmarks/itch_input.py``), one core:

- ``normalize._fastcore.decode_framed``: the compiled core's decode-only mode (the same
  bounds-checked decoder FastNormalizer runs), over the whole framed buffer in one call;
- ``itchcpp`` (native C++, PyPI): ``MessageParser().parse_stream(buffer)`` drained, its
  fastest bulk API (it builds one Python message object per message);
- a plain ``struct.unpack_from`` loop: one precompiled ``Struct`` per type, every field, a
  tuple per message;
- ``normalize.itch.decode``: the project's Python codec (frozen dataclasses).

Run: ``.venv/bin/python benchmarks/decode.py [--messages N] [--runs N]``
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

if __name__ == "__main__":
    # Run as a script, this folder heads sys.path, and benchmarks/normalize.py would shadow
    # the normalize package: put the repository root there instead.
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from benchmarks.itch_input import (
    DEFAULT_MESSAGES,
    itch_file,
    machine,
    median_seconds,
    pin_to_one_core,
)
from normalize.fast import decode_framed
from normalize.itch import MESSAGE_LAYOUTS, decode


def fast_decode(data: bytes) -> int:
    decoded, errors, _checksum, _consumed = decode_framed(data)
    return decoded + errors


def itchcpp_decode(data: bytes) -> int:
    from itchcpp.parser import MessageParser

    # deque(maxlen=0) drains the iterator in C: no Python bytecode per message.
    collections.deque(MessageParser().parse_stream(data), maxlen=0)
    return 0


# type byte -> Struct.unpack_from of the whole message (every field, type byte included)
_UNPACKERS = {type_byte: layout.struct.unpack_from for type_byte, layout in MESSAGE_LAYOUTS.items()}


def struct_decode(data: bytes) -> int:
    unpackers = _UNPACKERS
    position, size, count = 0, len(data), 0
    while position + 2 <= size:
        length = (data[position] << 8) | data[position + 1]
        unpackers[data[position + 2]](data, position + 2)
        position += 2 + length
        count += 1
    return count


def codec_decode(data: bytes) -> int:
    position, size, count = 0, len(data), 0
    while position + 2 <= size:
        length = (data[position] << 8) | data[position + 1]
        decode(data, position + 2, length)
        position += 2 + length
        count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=DEFAULT_MESSAGES)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    pinned = pin_to_one_core()
    path = itch_file(args.messages)
    data = path.read_bytes()
    messages = args.messages

    assert fast_decode(data) == messages == struct_decode(data)
    peers = [
        ("normalize._fastcore.decode_framed (C, this project)", fast_decode),
        ("itchcpp MessageParser.parse_stream (C++, PyPI)", itchcpp_decode),
        ("struct.unpack_from loop (Python)", struct_decode),
        ("normalize.itch.decode (Python codec)", codec_decode),
    ]
    print(f"ITCH 5.0 decode only: {messages:,} messages ({path.name}, {len(data):,} bytes)")
    print(f"median of {args.runs} runs, {pinned}; {machine()}")
    print()
    print(f"{'peer':<54} {'msgs/s':>12} {'median s':>9} {'vs C':>7}")
    results = []
    for name, function in peers:
        seconds, _ = median_seconds(lambda function=function: function(data), args.runs)
        results.append((name, messages / seconds, seconds))
    fastest = results[0][1]
    for name, rate, seconds in results:
        print(f"{name:<54} {rate / 1e6:>10.2f} M {seconds:>9.3f} {rate / fastest:>6.2f}x")


if __name__ == "__main__":
    main()
