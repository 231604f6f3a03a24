"""The MoldUDP64 receiver's sequence tracker with gap recovery: a pure state machine.

``GapRecoverer`` is fed decoded packets (``on_packet``) and clock ticks (``on_timer``), both
with the current time as an argument, and returns the actions the caller must carry out, in
order:

- ``Deliver``: consecutive messages, in sequence order, each sequence number exactly once;
- ``Request``: a re-request to send to the re-request server;
- ``GapDetected`` / ``GapRecovered``: a range found missing, and later filled completely;
- ``Unrecoverable``: a range given up on; the caller marks its books stale. Delivery resumes
  after it, so every sequence number is either delivered or declared unrecoverable, once.
  A later range may be given up before an earlier one is resolved; deliveries stay in order;
- ``SessionStarted`` / ``EndOfSession``: a new session name was seen; the session's end was
  announced and every message before it has been delivered or declared unrecoverable.

Duplicates, reordering and late arrivals are only counted (``stats``): they need no action.

How a range becomes unrecoverable:

1. each missing range is re-requested in chunks of at most ``max_request_count`` messages,
   at most ``max_outstanding_requests`` chunks in flight;
2. an attempt *fails* when ``request_timeout_ns`` passes without it being filled, or when the
   server answers a request sent after it for a later range while it is still unfilled
   (re-request servers answer in order, so its answer was lost or refused);
3. a failed attempt is re-sent for whatever is still missing in it. The re-send counts as a
   retry unless some of its messages arrived since the last send (a clamped, partial answer
   is progress, not failure); after ``max_retries`` retries the next failure declares the
   still-missing messages unrecoverable;
4. independently, when more than ``max_buffered_messages`` messages wait behind a gap, the
   oldest missing range is declared unrecoverable at once, so memory stays bounded;
5. a new session name closes the old session: what is still missing is unrecoverable.

Packets of an earlier session (a late retransmission after the switch) are dropped and
counted, so they cannot flip the session back.
"""

from __future__ import annotations

from bisect import bisect_right, insort
from collections import deque
from dataclasses import dataclass
from heapq import heappop, heappush
from operator import itemgetter

from ingest.errors import FieldRangeError
from ingest.moldudp64 import MAX_SEQUENCE, Packet, PacketKind, Request

__all__ = [
    "Action",
    "Deliver",
    "EndOfSession",
    "GapDetected",
    "GapRecovered",
    "GapRecoverer",
    "RecoveryStats",
    "SessionStarted",
    "Unrecoverable",
]

DEFAULT_MAX_REQUEST_COUNT = 1000
DEFAULT_REQUEST_TIMEOUT_NS = 100_000_000
DEFAULT_MAX_RETRIES = 3
DEFAULT_MAX_BUFFERED_MESSAGES = 100_000
DEFAULT_MAX_OUTSTANDING_REQUESTS = 8
_PAST_SESSIONS_KEPT = 16
_first_of = itemgetter(0)


@dataclass(frozen=True, slots=True)
class Deliver:
    """Messages numbered ``sequence``, ``sequence + 1``, … to hand downstream, in order."""

    session: str
    sequence: int
    messages: tuple[bytes, ...]

    @property
    def end(self) -> int:
        """One past the last delivered sequence number."""
        return self.sequence + len(self.messages)


@dataclass(frozen=True, slots=True)
class GapDetected:
    """``count`` messages from ``sequence`` are missing (recovery has started)."""

    session: str
    sequence: int
    count: int


@dataclass(frozen=True, slots=True)
class GapRecovered:
    """The gap reported as ``GapDetected(session, sequence, count)`` was filled completely."""

    session: str
    sequence: int
    count: int


@dataclass(frozen=True, slots=True)
class Unrecoverable:
    """``count`` messages from ``sequence`` are given up on and will never be delivered."""

    session: str
    sequence: int
    count: int


@dataclass(frozen=True, slots=True)
class SessionStarted:
    """Packets of ``session`` arrived; ``previous`` (if any) is closed."""

    session: str
    previous: str | None


@dataclass(frozen=True, slots=True)
class EndOfSession:
    """The session ended before ``next_sequence`` and every earlier message is accounted for."""

    session: str
    next_sequence: int


Action = (
    Deliver | Request | GapDetected | GapRecovered | Unrecoverable | SessionStarted | EndOfSession
)


@dataclass(slots=True)
class RecoveryStats:
    """Counters, cumulative across sessions. Units are messages unless named otherwise."""

    packets: int = 0  # packets fed to on_packet (data, heartbeat, end of session)
    messages: int = 0  # messages delivered
    duplicates: int = 0  # messages dropped as already delivered or already buffered
    reordered: int = 0  # messages buffered because they arrived ahead of a gap
    late: int = 0  # messages dropped because their range was already declared unrecoverable
    gaps: int = 0  # gaps detected (events)
    recovered: int = 0  # gaps filled completely (events)
    unrecoverable: int = 0  # messages declared unrecoverable
    requests: int = 0  # re-requests sent, retries included (datagrams)
    retries: int = 0  # re-sends that consumed a retry (datagrams)
    stale_packets: int = 0  # packets of an earlier session, dropped (packets)


class _Gap:
    """A detected gap [first, end); ``partly_lost`` once any of it is declared unrecoverable."""

    __slots__ = ("end", "first", "partly_lost")

    def __init__(self, first: int, end: int) -> None:
        self.first = first
        self.end = end
        self.partly_lost = False


class _Attempt:
    """One re-request in flight: the range [first, end) and how much of it is still missing."""

    __slots__ = ("deadline_ns", "end", "first", "ordinal", "progressed", "remaining", "retries")

    def __init__(self, first: int, end: int, remaining: int) -> None:
        self.first = first
        self.end = end
        self.remaining = remaining  # missing sequence numbers in [first, end)
        self.retries = 0
        self.progressed = False  # some of it arrived since the last send
        self.deadline_ns = 0
        self.ordinal = 0  # send order, to notice answers overtaking this one


def _check_option(name: str, value: int, low: int, high: int = MAX_SEQUENCE) -> None:
    if not low <= value <= high:
        raise FieldRangeError(name, value, low, high)


class GapRecoverer:
    """Turns a lossy, reordering, duplicating packet stream into an exactly-once sequence.

    ``first_sequence`` is where each session starts (MoldUDP64 numbers from 1); ``None``
    adopts the first packet's sequence number instead (a late joiner that does not want the
    session's history). Times are the caller's monotonic nanoseconds; ``next_deadline_ns``
    says when ``on_timer`` is next due.
    """

    def __init__(
        self,
        *,
        first_sequence: int | None = 1,
        max_request_count: int = DEFAULT_MAX_REQUEST_COUNT,
        request_timeout_ns: int = DEFAULT_REQUEST_TIMEOUT_NS,
        max_retries: int = DEFAULT_MAX_RETRIES,
        max_buffered_messages: int = DEFAULT_MAX_BUFFERED_MESSAGES,
        max_outstanding_requests: int = DEFAULT_MAX_OUTSTANDING_REQUESTS,
    ) -> None:
        if first_sequence is not None:
            _check_option("first_sequence", first_sequence, 0)
        _check_option("max_request_count", max_request_count, 1, 0xFFFF)
        _check_option("request_timeout_ns", request_timeout_ns, 1)
        _check_option("max_retries", max_retries, 0)
        _check_option("max_buffered_messages", max_buffered_messages, 0)
        _check_option("max_outstanding_requests", max_outstanding_requests, 1)
        self._first_sequence = first_sequence
        self._max_request_count = max_request_count
        self._timeout_ns = request_timeout_ns
        self._max_retries = max_retries
        self._max_buffered = max_buffered_messages
        self._max_outstanding = max_outstanding_requests
        self.stats = RecoveryStats()
        self._session: str | None = None
        self._past_sessions: deque[str] = deque(maxlen=_PAST_SESSIONS_KEPT)
        self._actions: list[Action] = []
        self._run_first = 0
        self._run: list[bytes] = []
        self._ordinal = 0
        self._reset_sequence()

    # -- state ------------------------------------------------------------------------------

    def _reset_sequence(self) -> None:
        start = self._first_sequence
        self._adopt = start is None
        # Invariants: every sequence number below _expected was delivered or declared
        # unrecoverable; _high is one past the highest sequence number known to exist; every
        # missing number below _requested_until is covered by an attempt or by _lost.
        self._expected = 0 if start is None else start
        self._high = self._expected
        self._requested_until = self._expected
        self._buffer: dict[int, bytes] = {}  # out-of-order messages, all above _expected
        self._heap: list[int] = []  # the keys of _buffer, to find the lowest quickly
        self._lost: list[tuple[int, int]] = []  # declared ranges above _expected, sorted
        self._gaps: deque[_Gap] = deque()  # detected and not yet passed, sorted
        self._attempts: list[_Attempt] = []  # disjoint, sorted by first
        self._end_of_session: int | None = None
        self._end_reported = False

    @property
    def session(self) -> str | None:
        """The current session name (``None`` before the first packet)."""
        return self._session

    @property
    def next_sequence(self) -> int:
        """The sequence number the next delivered message will have."""
        return self._expected

    @property
    def announced_sequence(self) -> int:
        """One past the highest sequence number known to exist."""
        return self._high

    @property
    def buffered_messages(self) -> int:
        """Messages held back behind a gap."""
        return len(self._buffer)

    @property
    def outstanding_requests(self) -> int:
        """Re-requests in flight."""
        return len(self._attempts)

    @property
    def caught_up(self) -> bool:
        """Nothing is missing, buffered or being re-requested."""
        return self._expected >= self._high and not self._attempts

    @property
    def next_deadline_ns(self) -> int | None:
        """When ``on_timer`` must next be called, or ``None`` if no request is in flight."""
        if not self._attempts:
            return None
        return min(attempt.deadline_ns for attempt in self._attempts)

    # -- inputs -----------------------------------------------------------------------------

    def on_packet(
        self, packet: Packet, now_ns: int, *, retransmission: bool = False
    ) -> list[Action]:
        """Account for one received downstream packet; the actions it calls for, in order.

        ``retransmission`` says the packet came from the re-request server (its own socket),
        not the live feed. Only such packets can show that an earlier request was lost: a
        live packet that was merely reordered also fills a later gap, and must not count.
        """
        self.stats.packets += 1
        session = packet.session
        if session != self._session:
            if session in self._past_sessions:
                self.stats.stale_packets += 1
                return []
            self._start_session(session)
        if self._adopt:
            self._adopt = False
            self._expected = self._high = self._requested_until = packet.sequence
        if packet.kind is PacketKind.DATA:
            first = packet.sequence
            if first == self._expected == self._high and packet.messages:
                # Fast path, in order with nothing missing: no buffer, no attempts.
                messages = packet.messages
                end = first + len(messages)
                self._expected = self._high = self._requested_until = end
                self.stats.messages += len(messages)
                action = Deliver(session, first, messages)
                if self._end_of_session is None and not self._actions:
                    return [action]
                self._actions.append(action)
            else:
                self._on_data(packet, now_ns, retransmission)
        else:
            self._announce(packet.sequence)
            if packet.kind is PacketKind.END_OF_SESSION and self._end_of_session is None:
                self._end_of_session = packet.sequence
        self._settle(now_ns)
        return self._take()

    def on_timer(self, now_ns: int) -> list[Action]:
        """Fail the attempts whose deadline has passed; the actions that follows from it."""
        for attempt in list(self._attempts):
            if attempt.deadline_ns <= now_ns and attempt in self._attempts:
                self._fail(attempt, now_ns)
        self._settle(now_ns)
        return self._take()

    # -- data path --------------------------------------------------------------------------

    def _on_data(self, packet: Packet, now_ns: int, retransmission: bool) -> None:
        first = packet.sequence
        messages = packet.messages
        end = first + len(messages)
        stats = self.stats
        if end <= self._expected:
            stats.duplicates += len(messages)
            return
        old_high = self._high
        if first > old_high:
            self._open_gap(old_high, first)
        if end > self._high:
            self._high = end
        buffer = self._buffer
        answered = -1  # highest send ordinal among the attempts this packet fills
        sequence = first - 1
        for message in messages:
            sequence += 1
            if sequence < self._expected:
                stats.duplicates += 1
                continue
            if sequence < old_high:
                # Already known to exist: a retransmission or a reordered packet.
                if sequence in buffer:
                    stats.duplicates += 1
                    continue
                if self._lost and self._is_lost(sequence):
                    stats.late += 1
                    continue
                attempt = self._attempt_for(sequence)
                if attempt is not None:
                    attempt.remaining -= 1
                    attempt.progressed = True
                    answered = max(answered, attempt.ordinal)
                    if attempt.remaining == 0:
                        self._attempts.remove(attempt)
            if sequence == self._expected:
                self._deliver(sequence, message)
                self._expected = sequence + 1
                if buffer or self._lost:
                    self._drain()
            else:
                buffer[sequence] = message
                heappush(self._heap, sequence)
                stats.reordered += 1
        if answered >= 0 and retransmission:
            # Re-request servers answer in order: an earlier attempt still unfilled when a
            # later one is answered had its answer lost (or refused).
            for attempt in list(self._attempts):
                overtaken = attempt.end <= first and attempt.ordinal < answered
                if overtaken and attempt in self._attempts:
                    self._fail(attempt, now_ns)
        while len(buffer) > self._max_buffered:
            self._skip_missing_run()

    def _announce(self, next_sequence: int) -> None:
        """A heartbeat or end of session says ``next_sequence`` is the next to be sent."""
        if next_sequence > self._high:
            self._open_gap(self._high, next_sequence)

    def _open_gap(self, first: int, end: int) -> None:
        self._emit(GapDetected(self._session or "", first, end - first))
        self.stats.gaps += 1
        self._gaps.append(_Gap(first, end))
        self._high = end

    def _deliver(self, sequence: int, message: bytes) -> None:
        run = self._run
        if not run or self._run_first + len(run) != sequence:
            self._flush_run()
            run = self._run
            self._run_first = sequence
        run.append(message)
        self.stats.messages += 1

    def _drain(self) -> None:
        """Deliver buffered messages and skip declared ranges from ``_expected`` onwards."""
        buffer = self._buffer
        lost = self._lost
        sequence = self._expected
        while True:
            message = buffer.pop(sequence, None)
            if message is not None:
                self._deliver(sequence, message)
                sequence += 1
            elif lost and lost[0][0] == sequence:
                sequence = lost.pop(0)[1]
            else:
                break
        self._expected = sequence
        # Buffered numbers leave the buffer only by delivery, so stale heap entries are
        # exactly those below _expected, and they sit at the top of the min-heap.
        heap = self._heap
        while heap and heap[0] < sequence:
            heappop(heap)

    def _is_lost(self, sequence: int) -> bool:
        index = bisect_right(self._lost, sequence, key=_first_of) - 1
        return index >= 0 and sequence < self._lost[index][1]

    def _attempt_for(self, sequence: int) -> _Attempt | None:
        for attempt in self._attempts:
            if sequence < attempt.first:
                return None
            if sequence < attempt.end:
                return attempt
        return None

    # -- recovery ---------------------------------------------------------------------------

    def _send(self, attempt: _Attempt, now_ns: int) -> None:
        self._ordinal += 1
        attempt.ordinal = self._ordinal
        attempt.deadline_ns = now_ns + self._timeout_ns
        self._emit(Request(self._session or "", attempt.first, attempt.end - attempt.first))
        self.stats.requests += 1

    def _issue_requests(self, now_ns: int) -> None:
        """Request the missing numbers not yet covered, while there is room in flight."""
        attempts = self._attempts
        buffer = self._buffer
        high = self._high
        cursor = self._requested_until
        while cursor < high and len(attempts) < self._max_outstanding:
            while cursor < high and cursor in buffer:
                cursor += 1
            if cursor >= high:
                break
            start = cursor
            limit = min(high, start + self._max_request_count)
            if buffer:
                while cursor < limit and cursor not in buffer:
                    cursor += 1
            else:
                cursor = limit
            attempt = _Attempt(start, cursor, cursor - start)
            attempts.append(attempt)
            self._send(attempt, now_ns)
        self._requested_until = cursor

    def _missing_runs(self, first: int, end: int) -> list[tuple[int, int]]:
        """The maximal runs of missing numbers in [first, end) (an attempt's range)."""
        buffer = self._buffer
        runs: list[tuple[int, int]] = []
        start = None
        for sequence in range(max(first, self._expected), end):
            if sequence in buffer:
                if start is not None:
                    runs.append((start, sequence))
                    start = None
            elif start is None:
                start = sequence
        if start is not None:
            runs.append((start, end))
        return runs

    def _fail(self, attempt: _Attempt, now_ns: int) -> None:
        """``attempt`` timed out or was overtaken: re-send what is missing, or give it up."""
        runs = self._missing_runs(attempt.first, attempt.end)
        if not runs:
            self._attempts.remove(attempt)
            return
        if attempt.progressed or attempt.retries < self._max_retries:
            if not attempt.progressed:
                attempt.retries += 1
                self.stats.retries += 1
            attempt.progressed = False
            attempt.first = runs[0][0]
            attempt.end = runs[-1][1]
            attempt.remaining = sum(run_end - run_first for run_first, run_end in runs)
            self._send(attempt, now_ns)
            return
        self._attempts.remove(attempt)
        for run_first, run_end in runs:
            self._lose(run_first, run_end)

    def _lose(self, first: int, end: int) -> None:
        """Declare the missing range [first, end) unrecoverable and deliver what follows."""
        self._emit(Unrecoverable(self._session or "", first, end - first))
        self.stats.unrecoverable += end - first
        for gap in self._gaps:
            if gap.first >= end:
                break
            if gap.end > first:
                gap.partly_lost = True
        if first == self._expected:
            self._expected = end
        else:
            insort(self._lost, (first, end))
        self._drain()

    def _skip_missing_run(self) -> None:
        """Declare the missing run at ``_expected`` unrecoverable (the buffer is over its cap)."""
        heap = self._heap
        stop = heap[0] if heap else self._high
        if self._lost and self._lost[0][0] < stop:
            stop = self._lost[0][0]
        self._lose(self._expected, stop)

    def _settle(self, now_ns: int) -> None:
        """Restore the invariants after ``_expected`` moved, then issue requests."""
        expected = self._expected
        if self._requested_until < expected:
            self._requested_until = expected
        for attempt in list(self._attempts):
            if attempt.first >= expected:
                break
            if attempt.end <= expected:
                self._attempts.remove(attempt)
                continue
            # Only a skip over missing numbers (a declared loss) can cut an attempt.
            attempt.first = expected
            attempt.remaining = sum(b - a for a, b in self._missing_runs(expected, attempt.end))
            if attempt.remaining == 0:
                self._attempts.remove(attempt)
        gaps = self._gaps
        while gaps and gaps[0].end <= expected:
            gap = gaps.popleft()
            if not gap.partly_lost:
                self._emit(GapRecovered(self._session or "", gap.first, gap.end - gap.first))
                self.stats.recovered += 1
        self._issue_requests(now_ns)
        end_of_session = self._end_of_session
        if (
            end_of_session is not None
            and not self._end_reported
            and self._expected >= end_of_session
            and self.caught_up
        ):
            self._end_reported = True
            self._emit(EndOfSession(self._session or "", end_of_session))
        self._flush_run()

    def _start_session(self, session: str) -> None:
        previous = self._session
        if previous is not None:
            # The old session is over: what is still missing will never come.
            while self._expected < self._high:
                self._skip_missing_run()
            end_of_session = self._end_of_session
            if end_of_session is not None and not self._end_reported:
                self._emit(EndOfSession(previous, end_of_session))
            self._flush_run()
            self._past_sessions.append(previous)
        self._session = session
        self._reset_sequence()
        self._emit(SessionStarted(session, previous))

    # -- output -----------------------------------------------------------------------------

    def _emit(self, action: Action) -> None:
        self._flush_run()
        self._actions.append(action)

    def _flush_run(self) -> None:
        if self._run:
            self._actions.append(Deliver(self._session or "", self._run_first, tuple(self._run)))
            self._run = []

    def _take(self) -> list[Action]:
        actions = self._actions
        self._actions = []
        return actions
