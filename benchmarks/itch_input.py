"""The benchmarks' input: a cached ITCH 5.0 file of simulated order flow, and ways to slice it.

``itch_file()`` writes (once) ``benchmarks/.data/day-<messages>-<symbols>-<seed>.itch`` with
``exchange_sim.write_file``: the simulator's seeded day (directory, system events, NOII,
adds, executions, cancels, deletes, replaces, hidden and cross trades over a Zipf-like
symbol universe), in NASDAQ's file framing (2-byte big-endian length before each message).
The default is 5,000,000 messages over 3,000 symbols, about 160 MB; later runs reuse it.

Run it alone to build the file and print its message mix::

    .venv/bin/python benchmarks/itch_input.py [--messages N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

if __name__ == "__main__":
    # Run as a script, this folder heads sys.path, and benchmarks/normalize.py would shadow
    # the normalize package: put the repository root there instead.
    sys.path[0] = str(Path(__file__).resolve().parents[1])

DATA_DIR = Path(__file__).resolve().parent / ".data"
DEFAULT_MESSAGES = 5_000_000
DEFAULT_SYMBOLS = 3_000
DEFAULT_SEED = 1
CHUNK_BYTES = 1 << 16  # what normalize.itchfile reads at a time
PACKET_BYTES = 1_400  # a MoldUDP64 datagram's message blocks on a 1500-byte MTU


def itch_file(
    messages: int = DEFAULT_MESSAGES, *, symbols: int = DEFAULT_SYMBOLS, seed: int = DEFAULT_SEED
) -> Path:
    """The path of the cached file, simulating it first when it is missing."""
    path = DATA_DIR / f"day-{messages}-{symbols}-{seed}.itch"
    if path.exists():
        return path
    from exchange_sim import write_file  # only needed to build the file

    DATA_DIR.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".partial-{os.getpid()}")
    started = time.perf_counter()
    print(f"simulating {messages:,} messages over {symbols:,} symbols into {path} …", flush=True)
    written = write_file(partial, symbols=symbols, seed=seed, messages=messages)
    if written != messages:
        partial.unlink()
        raise RuntimeError(f"the simulator wrote {written} messages, not {messages}")
    partial.replace(path)  # atomic: a run never sees half a file
    print(f"  done in {time.perf_counter() - started:.1f} s", flush=True)
    return path


def load(messages: int = DEFAULT_MESSAGES) -> bytes:
    """The whole framed file in memory."""
    return itch_file(messages).read_bytes()


def frame_chunks(data: bytes, size: int) -> list[memoryview]:
    """``data`` cut into views of at most ``size`` bytes, each ending on a frame boundary."""
    from normalize.fast import decode_framed

    view = memoryview(data)
    chunks = []
    position = 0
    while position < len(data):
        *_, consumed = decode_framed(view[position : position + size])
        if consumed == 0:
            raise ValueError(f"a frame at offset {position} is longer than {size} bytes")
        chunks.append(view[position : position + consumed])
        position += consumed
    return chunks


def split_messages(data: bytes) -> list[bytes]:
    """Every message as its own ``bytes`` (what a per-message API is handed)."""
    messages = []
    append = messages.append
    position, size = 0, len(data)
    while position + 2 <= size:
        end = position + 2 + ((data[position] << 8) | data[position + 1])
        append(data[position + 2 : end])
        position = end
    return messages


def message_mix(data: bytes) -> Counter[str]:
    """How many messages of each type ``data`` holds."""
    counts: Counter[str] = Counter()
    position, size = 0, len(data)
    while position + 2 <= size:
        counts[chr(data[position + 2])] += 1
        position += 2 + ((data[position] << 8) | data[position + 1])
    return counts


# ---------------------------------------------------------------------- measuring helpers


def pin_to_one_core() -> str:
    """Pin this process to CPU 0 (one core, as the target says); returns a note of it."""
    try:
        os.sched_setaffinity(0, {0})
    except (AttributeError, OSError) as exc:  # not Linux, or not allowed
        return f"not pinned ({exc})"
    return "pinned to CPU 0"


def median_seconds(function: Callable[[], object], runs: int) -> tuple[float, list[float]]:
    """Run ``function`` ``runs`` times; the median wall time and every time, in seconds."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times), times


def machine() -> str:
    """One line about the machine the figures come from."""
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, Python {sys.version.split()[0]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=DEFAULT_MESSAGES)
    args = parser.parse_args()
    path = itch_file(args.messages)
    data = path.read_bytes()
    mix = message_mix(data)
    print(f"{path}: {sum(mix.values()):,} messages, {len(data):,} bytes")
    for type_char, count in mix.most_common():
        print(f"  {type_char!r}: {count:>10,}  {count / sum(mix.values()):6.1%}")


if __name__ == "__main__":
    main()
