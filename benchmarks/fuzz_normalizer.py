"""Differential fuzzing of the normalizers: arbitrary bytes in, no crash, identical output.

Each input is a byte string turned into a stream of ITCH 5.0 frames by ``frames_from``: most
frames become well-formed messages of a random type whose fields are folded into small
domains (4 locates, 32 reference numbers, a few prices, 16 match numbers, sides 'B'/'S'), so
they meet each other in the books; the rest are left as garbage (random bytes, wrong
lengths, unknown types, non-ASCII text), and a few are stale marks. The stream goes into
``FastNormalizer.process_framed`` (and the whole input once into ``process``), into the Python
``Normalizer`` one message at a time, and into ``decode_framed``; the run fails if anything
raises or crashes, or if the two normalizers' events, records or stats differ.

Engines: ``hypothesis`` (default; batches of examples until the time is up) or ``atheris``
(coverage-guided libFuzzer, when ``pip install atheris`` is available; the C code itself is
not instrumented, the Python reference is). Bounded run time; prints the executions and exits
0 when nothing failed::

    .venv/bin/python benchmarks/fuzz_normalizer.py [--seconds 60] [--engine hypothesis|atheris]
"""

from __future__ import annotations

import argparse
import logging
import struct
import sys
import time
from pathlib import Path

if __name__ == "__main__":
    # Run as a script, this folder heads sys.path, and benchmarks/normalize.py would shadow
    # the normalize package: put the repository root there instead.
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from normalize.itch import MESSAGE_LAYOUTS

STALE = None  # a mark_stale call in a stream of frames
_TYPES = sorted(MESSAGE_LAYOUTS)
_STOCKS = [b"AAPL    ", b"MSFT    ", b"A B     ", b"ZZZZZZZZ"]
_PRICES = [9_900, 10_000, 10_000, 10_100, 10_200, 0]
# Every stream starts by announcing locates 1..3 (locate 0 stays unknown).
_DIRECTORY = [
    b"R"
    + locate.to_bytes(2, "big")
    + bytes(8)
    + stock
    + b"QN\x00\x00\x00\x64NCZ PNN1N\x00\x00\x00\x00N"
    for locate, stock in ((1, _STOCKS[0]), (2, _STOCKS[1]), (3, _STOCKS[2]))
]


def _fold(layout_fields, body: bytearray) -> None:
    """Fold each field of a message (after its type byte) into a small domain, in place."""
    offset = 0
    for f in layout_fields:
        raw = body[offset : offset + f.size]
        value = int.from_bytes(raw, "big")
        if f.name == "stock_locate":
            value %= 4
        elif "reference_number" in f.name:
            value %= 32
        elif f.name == "match_number":
            value %= 16
        elif "shares" in f.name:
            value %= 400
        elif f.kind == "price" and f.size == 4:
            value = _PRICES[value % len(_PRICES)]
        if f.kind == "alpha":
            if f.name == "stock":
                folded = _STOCKS[raw[0] % len(_STOCKS)] if raw else b""
            elif f.name == "buy_sell_indicator":
                folded = b"BS"[raw[0] & 1 : (raw[0] & 1) + 1]
            elif f.name == "event_code":
                folded = b"OSQMEC"[raw[0] % 6 : raw[0] % 6 + 1]
            else:
                folded = bytes(byte & 0x7F for byte in raw)
            body[offset : offset + f.size] = folded[: f.size].ljust(f.size, b" ")
        else:
            body[offset : offset + f.size] = value.to_bytes(f.size, "big")
        offset += f.size


def frames_from(data: bytes) -> list[bytes | None]:
    """The stream of frames (``None`` for a stale mark) that ``data`` describes."""
    frames: list[bytes | None] = list(_DIRECTORY)
    position, size = 0, len(data)
    while position < size:
        selector = data[position]
        position += 1
        if selector < 24:  # garbage: up to 63 raw bytes
            length = data[position] % 64 if position < size else 0
            frames.append(data[position + 1 : position + 1 + length])
            position += 1 + length
        elif selector < 26:
            frames.append(STALE)
        else:
            layout = MESSAGE_LAYOUTS[_TYPES[selector % len(_TYPES)]]
            body = bytearray(data[position : position + layout.length - 1])
            position += layout.length - 1
            body = body.ljust(layout.length - 1, b"\x00")
            if selector % 7:  # now and then the raw field values are kept as they are
                _fold(layout.fields, body)
            frames.append(bytes([layout.type_byte]) + bytes(body))
    return frames


def check(data: bytes) -> None:
    """One execution: both normalizers and the decoder on the stream that ``data`` makes."""
    from normalize.fast import FastNormalizer, decode_framed
    from normalize.normalizer import Normalizer, batch_records

    python = Normalizer(midnight_ns=1_000, session="FUZZ", match_memory=8)
    fast = FastNormalizer(midnight_ns=1_000, session="FUZZ", match_memory=8)
    frames = frames_from(data)
    seq = 1
    pending: list[bytes] = []

    def flush() -> None:
        nonlocal seq, pending
        buffer = b"".join(struct.pack(">H", len(frame)) + frame for frame in pending)
        received = seq  # one receive time per buffer, as for one datagram
        consumed = fast.process_framed(buffer, first_seq=seq, receive_ts_ns=received)
        if consumed != len(pending) or fast.last_framed_bytes != len(buffer):
            raise AssertionError(f"process_framed consumed {consumed} of {len(pending)} frames")
        for frame in pending:
            python.process(frame, seq=seq, receive_ts_ns=received)
            seq += 1
        pending = []
        decode_framed(buffer)

    for frame in frames:
        if frame is STALE:
            flush()
            python.mark_stale(seq=seq, receive_ts_ns=seq, reason="fuzz")
            fast.mark_stale(seq=seq, receive_ts_ns=seq, reason="fuzz")
        elif len(frame) <= 0xFFFF:
            pending.append(frame)
    flush()
    records = fast.take_records(publish_ts_ns=7)
    expected = batch_records(python.take_events(publish_ts_ns=7))
    if records != expected:
        raise AssertionError("FastNormalizer's records differ from the Python normalizer's")
    python.process(data, seq=seq, receive_ts_ns=0)
    fast.process(data, seq=seq, receive_ts_ns=0)
    if fast.take_events(publish_ts_ns=8) != python.take_events(publish_ts_ns=8):
        raise AssertionError("the events of one whole-input message differ")
    if fast.stats != python.stats:
        raise AssertionError(f"stats differ: {fast.stats} != {python.stats}")


def run_hypothesis(seconds: float) -> int:
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import strategies as st

    executions = 0

    @settings(
        max_examples=500,
        deadline=None,
        database=None,
        phases=[Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    @given(data=st.binary(min_size=0, max_size=4_000))
    def one_batch(data: bytes) -> None:
        nonlocal executions
        executions += 1
        check(data)

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        one_batch()
    return executions


def run_atheris(seconds: float) -> None:
    import atheris

    import normalize.fast
    import normalize.normalizer  # noqa: F401  (loaded before instrumenting)

    atheris.instrument_all()  # coverage of the Python reference guides the mutations

    def test_one_input(data: bytes) -> None:
        check(data)

    atheris.Setup(
        [sys.argv[0], f"-max_total_time={int(seconds)}", "-rss_limit_mb=4096", "-max_len=4096"],
        test_one_input,
    )
    atheris.Fuzz()  # libFuzzer prints "Done N runs in S second(s)" and exits 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--engine", choices=["hypothesis", "atheris"], default="hypothesis")
    args = parser.parse_args()
    logging.disable(logging.CRITICAL)  # the normalizers log every kind of skipped input
    if args.engine == "atheris":
        run_atheris(args.seconds)
        return
    started = time.monotonic()
    executions = run_hypothesis(args.seconds)
    elapsed = time.monotonic() - started
    print(
        f"fuzz_normalizer: {executions:,} executions in {elapsed:.0f} s "
        f"({executions / elapsed:,.0f}/s), no crash, no difference"
    )


if __name__ == "__main__":
    main()
