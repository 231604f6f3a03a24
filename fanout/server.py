"""The WebSocket stream server: bus in, conflated JSON frames out, never waiting on a client.

Tasks (all on one event loop, so the synchronous sections below are atomic):

- one **bus reader** decodes ``EventBatch`` records and feeds every tier's ``Conflator``;
  the realtime tier's updates are distributed at once, per bus batch; while the realtime
  tier has no subscriber, each read is conflated once (one update per key) for all tiers;
- one **ticker** ticks the interval tiers (``200ms``, ``1s``) and distributes their changes;
- per client, a **handler** reads client messages (auth, subscribe, unsubscribe) and a
  **relay** drains the client's ``ConflatingOutbox`` into frames.

Distribution never awaits a socket (websockets' broadcast guidance): a caught-up client's
frame is written to its transport at once, as ``websockets.broadcast`` does (for a busy
tick, in C: ``fanout._fastwrite``); a client with
anything waiting gets the update pushed into its bounded ``ConflatingOutbox`` and its relay
woken. A stalled client costs one bounded queue and delays no one. A client whose queue
overflows, or that stays behind for ``slow_client_s``, is evicted: error 407 and close code
4407. A distribution to many clients yields to the loop every ``_FLUSH_CHUNK`` clients.

Snapshot atomicity: a subscribe records the routes, queues the acknowledgement and the
snapshot (from the tier's cache = what the tier last emitted) in one synchronous step;
a distribution's routing is synchronous too, so every later update of those symbols is
routed after the snapshot, and every earlier one is already in it. No gap, no duplicate.

Close codes: ``4000 + error code`` (4402 auth failed, 4404 auth timeout, 4406 connection
limit, 4407 slow client); 1009 for a frame over ``max_frame_bytes`` (the library's).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from operator import itemgetter
from urllib.parse import parse_qs, urlsplit

from google.protobuf.message import DecodeError
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State

from conflate import Channel, Conflator, TierTable, UnknownTierError, Update, UpdateBuilder
from fanout._fastwrite import write_direct
from fanout.auth import Authenticator
from fanout.errors import (
    AuthFailedError,
    AuthTimeoutError,
    ConnectionLimitExceededError,
    InsufficientSubscriptionError,
    InternalStreamError,
    InvalidSyntaxError,
    RateLimitedError,
    SlowClientError,
    StreamError,
)
from fanout.metrics import FanoutGauges, FanoutMetrics
from fanout.outbox import ConflatingOutbox
from fanout.protocol import (
    Auth,
    Command,
    Subscribe,
    Unsubscribe,
    encode_update,
    error,
    frame,
    parse_client_message,
    subscription,
    success,
)
from fanout.session import StreamSession, SubscriptionChange, TokenBucket
from fanout.wire import text_frame_header
from normalize.proto import marketdata_pb2 as pb
from tickerplant.bus import Bus, Subscription
from tickerplant.identity import Role
from tickerplant.observability import Health, health_response
from tickerplant.settings import ConflateSettings, FanoutSettings
from tickerplant.topics import MD_BARS, MD_QUOTES, MD_STATUS, MD_TRADES

logger = logging.getLogger(__name__)

MD_TOPICS = (MD_TRADES, MD_QUOTES, MD_STATUS, MD_BARS)
_BUS_BATCH = 5000
_RATE_ERROR_EVERY_S = 1.0
_TEXT_PLAIN = "text/plain; charset=utf-8"
# The direct path writes whole text frames itself (``text_frame_header``): the connections
# negotiate no extension (``compression=None``), send no fragmented message, and the
# ``State.OPEN`` check keeps data from following a close frame.
# Channels whose named subscriptions a busy tick can serve by pull (``_distribute``).
_PULLED = (Channel.TRADES, Channel.QUOTES)
# The publish time of an update without one, in a ``_PullTable``: no latency to observe.
_UNKNOWN = float("inf")
# Clients served per step of a distribution before yielding to the event loop (~10-20 ms).
_FLUSH_CHUNK = 1000


class _Client:
    __slots__ = (
        "bucket",
        "closing",
        "evicted",
        "id",
        "inflight",
        "outbox",
        "pending",
        "rate_error_s",
        "relay",
        "reported_conflated",
        "sending",
        "session",
        "tier",
        "wake",
        "ws",
    )

    def __init__(
        self,
        client_id: int,
        ws: ServerConnection,
        tier: str,
        session: StreamSession,
        outbox: ConflatingOutbox,
        bucket: TokenBucket,
    ) -> None:
        self.id = client_id
        self.ws = ws
        self.tier = tier
        self.session = session
        self.outbox = outbox
        self.bucket = bucket
        self.wake = asyncio.Event()
        self.relay: asyncio.Task | None = None
        self.closing: tuple[int, str] | None = None
        self.evicted = False
        self.rate_error_s = float("-inf")
        self.reported_conflated = 0
        # The distribution in progress for this client (``_distribute``): indexes into
        # ``inflight``, that distribution's update list.
        self.pending: list[int] = []
        self.inflight: list[Update] = []
        self.sending = False  # the relay is inside ``ws.send``

    def send_control(self, fragment: str) -> bool:
        ok = self.outbox.push_control(fragment)
        self.wake.set()
        return ok

    def close_after(self, exc: StreamError) -> None:
        """Send ``exc`` as an error message, then close with code ``4000 + exc.code``."""
        if self.closing is None:
            self.closing = (4000 + exc.code, exc.msg[:120])
            self.send_control(error(exc))

    def __repr__(self) -> str:
        remote = self.ws.remote_address
        return f"client {self.id} ({remote[0]}:{remote[1]})" if remote else f"client {self.id}"


class _Routes:
    """Which clients of one tier receive which (channel, symbol).

    Invariant: a client is in ``explicit[(ch, s)]`` iff it subscribed ``s`` on ``ch`` and not
    ``"*"`` on ``ch``; it is in ``wild[ch]`` iff it subscribed ``"*"`` on ``ch``. The two are
    disjoint per channel, so no client gets an update twice.

    For pull routing (``FanoutServer._distribute``) every named trade or quote key has a
    *slot*, a small integer (``slots``), and every client naming such keys a C-level
    ``itemgetter`` over its slots (``getters``). A busy tick fills a list by slot; each
    client then reads its share with one call. A getter always returns a sequence: for a
    single slot it is ``itemgetter(slice(s, s + 1))`` (``itemgetter(s)`` would return the
    bare value). A slot is freed when no client names its key, and reused: the number of
    slots is bounded by the keys clients name now.
    """

    def __init__(self) -> None:
        self.explicit: dict[tuple[Channel, str], set[_Client]] = {}
        self.wild: dict[Channel, set[_Client]] = {channel: set() for channel in Channel}
        self.slots: dict[tuple[Channel, str], int] = {}
        self.slot_count = 0
        self._free_slots: list[int] = []
        self.getters: dict[_Client, Callable[[list], Sequence]] = {}

    def _refresh_getter(self, client: _Client) -> None:
        session = client.session
        slots = [
            self.slots[(channel, symbol)]
            for channel in _PULLED
            if channel not in session.wildcard
            for symbol in sorted(session.symbols[channel])
        ]
        if len(slots) > 1:
            self.getters[client] = itemgetter(*slots)
        elif slots:
            self.getters[client] = itemgetter(slice(slots[0], slots[0] + 1))
        else:
            self.getters.pop(client, None)

    @property
    def active(self) -> bool:
        """Whether any client receives anything from this tier."""
        return bool(self.explicit) or any(self.wild.values())

    def _add(self, channel: Channel, symbol: str, client: _Client) -> None:
        key = (channel, symbol)
        clients = self.explicit.get(key)
        if clients is None:
            clients = self.explicit[key] = set()
            if channel in _PULLED:
                if self._free_slots:
                    self.slots[key] = self._free_slots.pop()
                else:
                    self.slots[key] = self.slot_count
                    self.slot_count += 1
        clients.add(client)

    def _remove(self, channel: Channel, symbol: str, client: _Client) -> None:
        key = (channel, symbol)
        clients = self.explicit.get(key)
        if clients is not None:
            clients.discard(client)
            if not clients:
                del self.explicit[key]
                slot = self.slots.pop(key, None)
                if slot is not None:
                    self._free_slots.append(slot)

    def subscribed(self, client: _Client, change: SubscriptionChange) -> None:
        session = client.session
        for channel in change.wildcard:
            for symbol in session.symbols[channel]:
                self._remove(channel, symbol, client)
            self.wild[channel].add(client)
        for channel, symbols in change.symbols.items():
            if channel not in session.wildcard:
                for symbol in symbols:
                    self._add(channel, symbol, client)
        self._refresh_getter(client)

    def unsubscribed(self, client: _Client, change: SubscriptionChange) -> None:
        session = client.session
        for channel in change.wildcard:
            self.wild[channel].discard(client)
            for symbol in session.symbols[channel]:
                self._add(channel, symbol, client)
        for channel, symbols in change.symbols.items():
            if channel not in session.wildcard:
                for symbol in symbols:
                    self._remove(channel, symbol, client)
        self._refresh_getter(client)

    def forget(self, client: _Client) -> None:
        session = client.session
        for channel in Channel:
            self.wild[channel].discard(client)
            for symbol in session.symbols[channel]:
                self._remove(channel, symbol, client)
        self.getters.pop(client, None)


class _PullTable:
    """One busy tick's pulled updates, laid out by slot (``_Routes.slots``), ``None`` where
    a slot's key did not change: ``entries`` for ``fanout._fastwrite`` (the encoded
    fragment and the publish time in ns after ``base_ns`` as a float, ``inf`` if unknown),
    ``indexes`` into the tick's update list for the Python path."""

    __slots__ = ("base_ns", "entries", "indexes")

    def __init__(self, size: int, base_ns: int) -> None:
        self.base_ns = base_ns
        self.entries: list[tuple[bytes, float] | None] = [None] * size
        self.indexes: list[int | None] = [None] * size


class FanoutServer:
    """The stream server on ``settings.host:settings.port`` at ``settings.path``.

    Use as an async context manager, or ``start()`` / ``stop()``. ``port=0`` picks a free
    port; read ``.port`` / ``.url`` after start. ``/metrics`` and ``/healthz`` answer plain
    HTTP GETs on the same port.
    """

    def __init__(
        self,
        bus: Bus,
        authenticator: Authenticator,
        *,
        settings: FanoutSettings | None = None,
        conflate: ConflateSettings | None = None,
        registry: CollectorRegistry | None = None,
        health: Health | None = None,
    ) -> None:
        self.settings = settings or FanoutSettings()
        conflate = conflate or ConflateSettings()
        self.tiers = TierTable.from_settings(conflate.interval_ms, conflate.tiers)
        self._tier_roles = tier_roles(self.tiers, conflate.tier_roles)
        self._bus = bus
        self._auth = authenticator
        self.registry = registry if registry is not None else CollectorRegistry()
        self.health = health if health is not None else Health()
        self.conflators = {name: Conflator(tier) for name, tier in self.tiers.tiers.items()}
        self._routes = {name: _Routes() for name in self.tiers.tiers}
        self._clients: set[_Client] = set()
        self._ids = itertools.count(1)
        self.metrics = FanoutMetrics(self.registry)
        self.registry.register(
            FanoutGauges(
                self.conflators,
                lambda: [(c.tier, c.session.pair_count) for c in list(self._clients)],
            )
        )
        self._server: Server | None = None
        self._subscription: Subscription | None = None
        self._tasks: list[asyncio.Task] = []
        self._closers: set[asyncio.Task] = set()
        self.evictions = 0
        self.bus_errors = 0
        self.health.add("bus reader", self._reader_problem)

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> FanoutServer:
        for topic in MD_TOPICS:
            await self._bus.create_topic(topic)
        self._subscription = await self._bus.subscribe(MD_TOPICS, start="latest")
        s = self.settings
        self._server = await serve(
            self._handle,
            s.host,
            s.port,
            process_request=self._process_request,
            compression=None,  # per-message deflate costs ~100 KB and CPU per connection
            max_size=s.max_frame_bytes,
            max_queue=16,
            ping_interval=s.ping_interval_s,
            ping_timeout=s.ping_timeout_s,
            close_timeout=s.close_timeout_s,
            ssl=self._ssl_context(),
        )
        self._tasks = [
            asyncio.create_task(self._read_bus(), name="fanout-bus-reader"),
            asyncio.create_task(self._tick_loop(), name="fanout-ticker"),
        ]
        logger.info("stream on %s (tiers %s)", self.url, ", ".join(self.tiers.tiers))
        return self

    def _ssl_context(self) -> ssl.SSLContext | None:
        if self.settings.tls_cert is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.settings.tls_cert, self.settings.tls_key)
        return context

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self._server is not None:
            self._server.close()  # closes every connection with 1001 going away
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.close_timeout_s + 1):
                    await self._server.wait_closed()
        if self._subscription is not None:
            await self._subscription.close()

    async def __aenter__(self) -> FanoutServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        return self._server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        scheme = "wss" if self.settings.tls_cert is not None else "ws"
        return f"{scheme}://{self.settings.host}:{self.port}{self.settings.path}"

    @property
    def connections(self) -> int:
        return len(self._clients)

    def queue_lengths(self) -> list[int]:
        """Each connected client's outbox length (for tests and diagnostics)."""
        return [len(client.outbox) for client in self._clients]

    def _reader_problem(self) -> str | None:
        for task in self._tasks[:1]:
            if task.done():
                return "bus reader stopped"
        return None

    # -- HTTP on the same port --------------------------------------------------------------

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        if path == self.settings.path:
            return None
        if path == "/metrics":
            return _response(200, generate_latest(self.registry), CONTENT_TYPE_LATEST)
        if path == "/healthz":
            status, body = health_response(self.health)
            return _response(status, body, "application/json")
        return _response(404, b"not found; the stream is at " + self.settings.path.encode())

    # -- connections ------------------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        s = self.settings
        if len(self._clients) >= s.max_connections:
            self.metrics.disconnects.labels("connection_limit").inc()
            exc = ConnectionLimitExceededError(f"at most {s.max_connections} connections")
            with contextlib.suppress(ConnectionClosed):
                await ws.send(frame([error(exc)]))
                await ws.close(4000 + exc.code, exc.msg)
            return
        query = parse_qs(urlsplit(ws.request.path).query) if ws.request else {}
        try:
            tier = self.tiers.get(query["tier"][-1] if "tier" in query else None).name
        except UnknownTierError as exc:
            bad = InvalidSyntaxError(str(exc))
            with contextlib.suppress(ConnectionClosed):
                await ws.send(frame([error(bad)]))
                await ws.close(4000 + bad.code, bad.msg[:120])
            return
        if s.send_buffer_bytes:
            # A small kernel buffer bounds memory per client and shows a stall sooner.
            sock = ws.transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, s.send_buffer_bytes)
        loop = asyncio.get_running_loop()
        client = _Client(
            next(self._ids),
            ws,
            tier,
            StreamSession(max_symbols=s.max_symbols),
            ConflatingOutbox(
                soft_limit=s.queue_soft, hard_limit=s.queue_hard, encode=encode_update
            ),
            TokenBucket(rate=s.rate_per_s, burst=s.rate_burst, now_s=loop.time()),
        )
        self._clients.add(client)
        client.relay = asyncio.create_task(self._relay(client), name=f"fanout-relay-{client.id}")
        client.send_control(success("connected"))
        deadline = loop.call_later(s.auth_timeout_s, self._auth_timeout, client)
        try:
            async for message in ws:
                if client.closing is not None or client.evicted:
                    continue
                await self._on_message(client, message, loop.time())
        except ConnectionClosed:
            pass
        finally:
            deadline.cancel()
            self._forget(client)
            relay = client.relay
            if relay is not None and not relay.done():
                # Let the relay flush a pending error and close, bounded by close_timeout.
                with contextlib.suppress(TimeoutError, asyncio.CancelledError, ConnectionClosed):
                    async with asyncio.timeout(s.close_timeout_s if client.closing else 0):
                        await asyncio.shield(relay)
                relay.cancel()

    def _forget(self, client: _Client) -> None:
        if client in self._clients:
            self._clients.discard(client)
            self._routes[client.tier].forget(client)

    def _auth_timeout(self, client: _Client) -> None:
        if not client.session.is_authenticated and client.closing is None and not client.evicted:
            self.metrics.disconnects.labels("auth_timeout").inc()
            self.metrics.client_errors.labels("404").inc()
            client.close_after(AuthTimeoutError(f"no auth within {self.settings.auth_timeout_s}s"))

    async def _on_message(self, client: _Client, message: str | bytes, now_s: float) -> None:
        if not client.bucket.take(now_s):
            self.metrics.dropped.labels("rate_limited").inc()
            if now_s - client.rate_error_s >= _RATE_ERROR_EVERY_S:
                client.rate_error_s = now_s
                self._reply_error(
                    client, RateLimitedError(f"at most {self.settings.rate_per_s:g} messages/s")
                )
            return
        try:
            command = parse_client_message(message)
            await self._execute(client, command)
        except StreamError as exc:
            self._reply_error(client, exc)
        except Exception:
            logger.exception("%r: internal error handling a message", client)
            self._reply_error(client, InternalStreamError())

    def _reply_error(self, client: _Client, exc: StreamError) -> None:
        self.metrics.client_errors.labels(str(exc.code)).inc()
        if not client.send_control(error(exc)):
            self._evict(client, SlowClientError("queue overflow"), "queue_overflow")

    async def _execute(self, client: _Client, command: Command) -> None:
        session = client.session
        if isinstance(command, Auth):
            session.check_can_authenticate()
            try:
                user = await self._auth.authenticate(command.token)
            except Exception as exc:
                logger.warning("%r: token lookup failed: %s", client, exc)
                raise InternalStreamError("authentication is unavailable, retry later") from exc
            if client.closing is not None or client.evicted:
                return  # timed out while the lookup ran
            if user is None:
                self.metrics.disconnects.labels("auth_failed").inc()
                self.metrics.client_errors.labels("402").inc()
                client.close_after(AuthFailedError())
                return
            allowed = self._tier_roles.get(client.tier)
            if allowed is not None and user.role not in allowed:
                self.metrics.disconnects.labels("insufficient_subscription").inc()
                self.metrics.client_errors.labels("409").inc()
                roles = " or ".join(sorted(allowed))
                client.close_after(
                    InsufficientSubscriptionError(f"the {client.tier} tier needs role {roles}")
                )
                return
            session.authenticated(user)
            client.send_control(success("authenticated"))
            return
        self._change_subscription(client, command)

    def _change_subscription(self, client: _Client, command: Subscribe | Unsubscribe) -> None:
        """Subscribe or unsubscribe: synchronous, so atomic with a distribution's routing."""
        session = client.session
        routes = self._routes[client.tier]
        if isinstance(command, Subscribe):
            before = {
                channel: (channel in session.wildcard, set(session.symbols[channel]))
                for channel in Channel
            }
            change = session.subscribe(command.symbols)
            routes.subscribed(client, change)
            ok = client.send_control(subscription(session.current()))
            ok = self._push_snapshot(client, change, before) and ok
        else:
            change = session.unsubscribe(command.symbols)
            routes.unsubscribed(client, change)
            removed = self._unroute_pending(client)
            removed += client.outbox.discard(lambda u: session.receives(u.channel, u.symbol))
            if removed:
                self.metrics.dropped.labels("unsubscribed").inc(removed)
            ok = client.send_control(subscription(session.current()))
        if not ok:
            self._evict(client, SlowClientError("queue overflow"), "queue_overflow")

    def _push_snapshot(
        self,
        client: _Client,
        change: SubscriptionChange,
        before: dict[Channel, tuple[bool, set[str]]],
    ) -> bool:
        cache = self.conflators[client.tier].cache
        now_ns = time.time_ns()
        ok = True
        for channel in Channel:
            was_wild, was_named = before[channel]
            if was_wild:
                continue
            if channel in change.wildcard:
                updates = [u for u in cache.snapshot(channel) if u.symbol not in was_named]
            elif channel in change.symbols:
                updates = cache.snapshot(channel, change.symbols[channel])
            else:
                continue
            for update in updates:
                ok = client.outbox.push(update, encode_update(update), now_ns) and ok
        client.wake.set()
        return ok

    async def _relay(self, client: _Client) -> None:
        ws = client.ws
        outbox = client.outbox
        metrics = self.metrics
        queue_depth = metrics.queue_depth.observe
        latency = metrics.latency.observe
        batch_max = self.settings.batch_max
        try:
            while True:
                await client.wake.wait()
                client.wake.clear()
                # The counters move once per wake-up (a Prometheus ``inc`` takes a lock),
                # for the frames actually sent; the histograms observe every frame.
                frames = sent_bytes = messages = 0
                try:
                    while len(outbox):
                        queue_depth(len(outbox))
                        batch = outbox.take(batch_max)
                        text = frame(batch.fragments)
                        client.sending = True
                        try:
                            await ws.send(text)
                        finally:
                            client.sending = False
                        outbox.mark_sent()
                        frames += 1
                        sent_bytes += len(text)
                        messages += batch.data_count
                        if batch.oldest_publish_ts_ns:
                            latency((time.time_ns() - batch.oldest_publish_ts_ns) / 1e9)
                finally:
                    if frames:
                        metrics.frames_out.inc(frames)
                        metrics.bytes_out.inc(sent_bytes)
                    if messages:
                        metrics.messages_out.inc(messages)
                    conflated = outbox.stats.conflated - client.reported_conflated
                    if conflated:
                        client.reported_conflated += conflated
                        metrics.dropped.labels("conflated").inc(conflated)
                if client.closing is not None:
                    await ws.close(*client.closing)
                    return
        except ConnectionClosed:
            return

    # -- slow consumers ---------------------------------------------------------------------

    def _evict(self, client: _Client, exc: StreamError, reason: str) -> None:
        """Stop feeding ``client``, then tell it why and close (code ``4000 + exc.code``)."""
        if client.evicted:
            return
        client.evicted = True
        self.evictions += 1
        self._forget(client)
        stats = client.outbox.stats
        logger.warning(
            "%r evicted (%s): %s; %d queued, %d sent, %d conflated",
            client,
            reason,
            exc.msg,
            len(client.outbox),
            stats.sent,
            stats.conflated,
        )
        self.metrics.disconnects.labels(reason).inc()
        self.metrics.client_errors.labels(str(exc.code)).inc()
        if client.relay is not None:
            client.relay.cancel()
        closer = asyncio.create_task(self._close(client, exc), name=f"fanout-evict-{client.id}")
        self._closers.add(closer)
        closer.add_done_callback(self._closers.discard)

    async def _close(self, client: _Client, exc: StreamError) -> None:
        ws = client.ws
        try:
            # Queued frames are dropped; the error goes after what is already in flight.
            async with asyncio.timeout(self.settings.close_timeout_s):
                await ws.send(frame([error(exc)]))
                await ws.close(4000 + exc.code, exc.msg[:120])
        except (TimeoutError, ConnectionClosed):
            pass
        finally:
            if ws.transport is not None and not ws.transport.is_closing():
                ws.transport.abort()

    # -- the bus side -----------------------------------------------------------------------

    async def _read_bus(self) -> None:
        assert self._subscription is not None
        # Each event becomes one update, shared by every tier (updates are immutable).
        builder = UpdateBuilder()
        conflators = list(self.conflators.items())
        realtime = [name for name, conflator in conflators if conflator.tier.realtime]
        while True:
            try:
                records = await self._subscription.next_batch(_BUS_BATCH, timeout=0.5)
            except asyncio.CancelledError:
                raise
            except Exception:
                self.bus_errors += 1
                logger.exception("reading the bus failed; retrying in 1s")
                await asyncio.sleep(1.0)
                continue
            if not records:
                continue
            self.metrics.bus_records.inc(len(records))
            batches = []
            for record in records:
                with contextlib.suppress(DecodeError):  # counted just below
                    batches.append(pb.EventBatch.FromString(record.value).events)
            if len(batches) < len(records):
                bad = len(records) - len(batches)
                self.metrics.bad_records.inc(bad)
                logger.warning("skipped %d undecodable bus records of %d", bad, len(records))
            # A tier nobody subscribes to still conflates (interval tiers) or caches
            # (realtime) every update, so that its cache - the snapshot a first subscriber
            # gets - and its pending changes are exactly what they would be with
            # subscribers: skipping them would need the history to rebuild the trade
            # intervals. Subscribing never awaits, so no update falls between these checks
            # and a new subscriber's snapshot.
            if not any(self._routes[name].active for name in realtime):
                # Nobody wants every event: the whole read is conflated once, one update
                # per key (``build_conflated``), for every tier; nothing awaits here.
                conflated = builder.build_conflated(batches)
                for _, conflator in conflators:
                    if conflator.tier.realtime:
                        conflator.add_updates(
                            conflated.latest, emit=False, events_in=conflated.events_in
                        )
                    else:
                        conflator.add_updates(conflated.updates, events_in=conflated.events_in)
                continue
            updates: list[Update] = []
            for events in batches:
                updates.extend(builder.build_batch(events))
            if not updates:
                continue
            now_ns = time.time_ns()
            for name, conflator in conflators:
                active = self._routes[name].active
                out = conflator.add_updates(updates, emit=active)
                if out:
                    await self._distribute(name, out, now_ns)

    async def _tick_loop(self) -> None:
        interval = [(name, c) for name, c in self.conflators.items() if not c.tier.realtime]
        if not interval:
            return
        while True:
            now = time.monotonic_ns()
            for name, conflator in interval:
                if conflator.due(now):
                    await self._distribute(name, conflator.tick(now), time.time_ns())
            next_due = min(conflator.next_due_ns(now) for _, conflator in interval)
            await asyncio.sleep(max(0.0, (next_due - time.monotonic_ns()) / 1e9))

    async def _distribute(self, tier: str, updates: list[Update], now_ns: int) -> None:
        """Send or queue each update for every client of ``tier`` that receives it.

        Routing is one synchronous step (atomic with subscribe: every client subscribed
        before it gets these updates, every later one has them in its snapshot). Then the
        clients are served ``_FLUSH_CHUNK`` at a time, yielding to the loop in between, so a
        tick to 10,000 clients does not hold up the bus reader or the other tiers.

        Two ways to route. **Push**: each update's index is appended to the ``pending`` list
        of every client that receives it (one Python step per update and client). **Pull**,
        on a busy tick of an interval tier (at least half of the named trade and quote keys
        changed): those updates are laid out by slot (``_Routes``) in a ``_PullTable``, and
        each client with named keys reads its share with its getter, captured here, at
        routing time (one C call per client); wildcard, bar and status updates are still
        pushed.

        A client that is caught up (empty outbox, relay idle, writing not paused by the
        transport's flow control, which pauses it when the buffer passes the connection's
        ``write_limit``, websockets' default 32 KiB) gets its share as frames written at
        once, the way ``websockets.broadcast`` writes: no queue, no task switch. Any other
        client's share goes through its outbox and relay, which wait for the socket,
        conflate and evict. Either way a client's updates keep their order: the direct
        path is only taken when nothing of that client waits anywhere. What a client
        unsubscribes from while its share waits here is dropped (``_unroute_pending``, and
        the getter check in ``_flush``).
        """
        if not updates:
            return
        routes = self._routes[tier]
        explicit = routes.explicit
        wild = routes.wild
        slots = routes.slots
        table: _PullTable | None = None
        if slots and not self.conflators[tier].tier.realtime:
            changed = sum(1 for update in updates if update.key in slots)
            if 2 * changed >= len(slots):
                table = _PullTable(routes.slot_count, now_ns)
        touched: list[_Client] = []
        fragments: list[str] = []
        for index, update in enumerate(updates):
            channel = update.channel
            everyone = wild[channel]
            slot = slots.get(update.key) if table is not None else None
            if slot is not None:
                text = encode_update(update)
                fragments.append(text)
                published = update.publish_ts_ns
                age = float(published - now_ns) if published else _UNKNOWN
                table.entries[slot] = (text.encode(), age)
                table.indexes[slot] = index
                named = None
            else:
                named = explicit.get((channel, update.symbol))
                if not named and not everyone:
                    fragments.append("")
                    continue
                fragments.append(encode_update(update))
            for clients in (named, everyone):
                if not clients:
                    continue
                for client in clients:
                    pending = client.pending
                    if not pending:
                        touched.append(client)
                        client.inflight = updates
                    pending.append(index)
        if table is None:
            work: list[tuple[_Client, Callable[[list], Sequence] | None]] = [
                (client, None) for client in touched
            ]
        else:
            getters = routes.getters
            work = list(getters.items())
            work.extend((client, None) for client in touched if client not in getters)
        for start in range(0, len(work), _FLUSH_CHUNK):
            if start:
                await asyncio.sleep(0)
            self._flush(
                routes, work[start : start + _FLUSH_CHUNK], table, updates, fragments, now_ns
            )

    @staticmethod
    def _unroute_pending(client: _Client) -> int:
        """Drop from ``client``'s pushed share of a distribution in progress what it no
        longer receives (it unsubscribed between the routing and its chunk); how many."""
        pending = client.pending
        if not pending:
            return 0
        inflight = client.inflight
        receives = client.session.receives
        client.pending = [i for i in pending if receives(inflight[i].channel, inflight[i].symbol)]
        return len(pending) - len(client.pending)

    def _flush(
        self,
        routes: _Routes,
        work: list[tuple[_Client, Callable[[list], Sequence] | None]],
        table: _PullTable | None,
        updates: list[Update],
        fragments: list[str],
        now_ns: int,
    ) -> None:
        """Serve one chunk of a distribution: each client its pulled and pushed share."""
        batch_max = self.settings.batch_max
        latency = self.metrics.latency.observe
        getters = routes.getters
        frames = sent_bytes = messages = 0
        if table is not None:
            # The caught-up clients of a pulled tick, all of it in C (``fanout._fastwrite``:
            # the same checks and frames as the path below); the others come back in
            # ``work`` for the path below.
            frames, sent_bytes, messages, work, delays = write_direct(
                work, getters, table.entries, batch_max, State.OPEN, table.base_ns
            )
            self.metrics.latency.observe_all_ns(delays)
        queued: list[_Client] = []
        for client, getter in work:
            pushed = client.pending
            if pushed:
                client.pending = []
                client.inflight = []
            if client.evicted:
                continue
            ws = client.ws
            transport = ws.transport
            direct = (
                not client.outbox.waiting
                and not client.sending
                and not ws.paused
                and ws.protocol.state is State.OPEN
            )
            if getter is None:
                share = pushed
            else:
                assert table is not None
                # The getter captured at routing time: a (un)subscribe since then made a
                # new one, and the share is filtered by what the client receives now.
                current = getters.get(client) is getter
                share = [i for i in getter(table.indexes) if i is not None]
                if not current:
                    receives = client.session.receives
                    share = [i for i in share if receives(updates[i].channel, updates[i].symbol)]
                share.extend(pushed)
            if not share:
                continue
            if direct:
                for start in range(0, len(share), batch_max):
                    chunk = share[start : start + batch_max]
                    data = frame(map(fragments.__getitem__, chunk)).encode()
                    try:
                        transport.write(text_frame_header(len(data)) + data)
                    except Exception as exc:  # the connection is going away
                        logger.debug("%r: direct write failed: %s", client, exc)
                        break
                    frames += 1
                    sent_bytes += len(data)
                    messages += len(chunk)
                    client.outbox.stats.sent += len(chunk)
                    oldest = min(filter(None, (updates[i].publish_ts_ns for i in chunk)), default=0)
                    if oldest:
                        latency((time.time_ns() - oldest) / 1e9)
                continue
            outbox = client.outbox
            queued.append(client)
            for index in share:
                if not outbox.push(updates[index], fragments[index], now_ns):
                    break
            client.wake.set()
        metrics = self.metrics
        if frames:
            metrics.queue_depth.observe_many(0, frames)  # written directly: nothing queued
            metrics.frames_out.inc(frames)
            metrics.bytes_out.inc(sent_bytes)
            metrics.messages_out.inc(messages)
        slow_ns = int(self.settings.slow_client_s * 1e9)
        for client in queued:
            if client.outbox.overflowed:
                self._evict(client, SlowClientError("queue overflow"), "queue_overflow")
            elif client.outbox.behind_ns(now_ns) >= slow_ns:
                seconds = self.settings.slow_client_s
                self._evict(client, SlowClientError(f"behind for {seconds:g}s"), "slow_client")


def tier_roles(tiers: TierTable, configured: dict[str, list[str]]) -> dict[str, frozenset[Role]]:
    """``TP_CONFLATE__TIER_ROLES`` checked against the tiers: tier -> the roles it admits."""
    gated: dict[str, frozenset[Role]] = {}
    for tier, roles in configured.items():
        if tier not in tiers.tiers:
            raise UnknownTierError(tier, tuple(tiers.tiers))
        gated[tier] = frozenset(Role.parse(role) for role in roles)
    return gated


def _response(status: int, body: bytes, content_type: str = _TEXT_PLAIN) -> Response:
    reason = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}.get(status, "")
    headers = Headers([("Content-Type", content_type), ("Content-Length", str(len(body)))])
    return Response(status, reason, headers, body)
