// The live market page: a watchlist over the WebSocket stream and a candlestick chart of the
// selected symbol (TradingView Lightweight Charts, vendored; it defines window.LightweightCharts).
//
// Authentication: the API token comes once in the URL fragment (/#token=tp_…; a fragment is
// never sent to a server), is removed from the address bar at once and kept in memory only.
// It buys short-lived signed stream tokens (GET /v1/stream-token, which also names the stream
// URL); the WebSocket only ever sees those. It also authorizes the bars history (GET /v1/bars).
//
// Bars: the stream's `b` messages are closed (or revised) bars of 1 s and 1 min, told apart
// by `e - t`; a bar with n = 0 was withdrawn (every trade broken). Between closed bars the
// chart draws a *forming* candle from the symbol's trades, replaced by the real bar when it
// closes. Recent 1-minute history comes from /v1/bars when the API has that route.

const LWC = window.LightweightCharts;
const EXCHANGE_TZ = "America/New_York";
const HISTORY_LIMIT = 500;
const HISTORY_TIMEFRAMES = { 60: "1Min" }; // /v1/bars stores no 1-second bars
const MAX_BARS = 3000; // per timeframe, oldest dropped first
const RECONNECT_MAX_MS = 10_000;

// -- formatting ------------------------------------------------------------------------------

const clockFormat = new Intl.DateTimeFormat("en-US", {
  timeZone: EXCHANGE_TZ, hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23",
});
const minuteFormat = new Intl.DateTimeFormat("en-US", {
  timeZone: EXCHANGE_TZ, hour: "2-digit", minute: "2-digit", hourCycle: "h23",
});
const dayFormat = new Intl.DateTimeFormat("en-US", { timeZone: EXCHANGE_TZ, month: "short", day: "numeric" });
const fullFormat = new Intl.DateTimeFormat("en-US", {
  timeZone: EXCHANGE_TZ, month: "short", day: "numeric", hour: "2-digit", minute: "2-digit",
  second: "2-digit", hourCycle: "h23",
});
const volumeFormat = new Intl.NumberFormat("en-US");

/** Prices have 4 implied decimals: show 2 to 4 of them, as many as the price needs. */
function fmtDecimal(value) {
  return value.toFixed(4).replace(/(\.\d\d\d?)0+$/, "$1").replace(/(\.\d\d)0$/, "$1");
}

function fmtPrice(price) {
  return price == null || price === 0 ? "–" : fmtDecimal(price);
}

function fmtSigned(value) {
  const text = fmtDecimal(value);
  return value > 0 ? `+${text}` : text;
}

/** Seconds since the epoch from RFC 3339 UTC with up to nanoseconds ("…T14:30:00.123456789Z"). */
function parseTime(text) {
  const whole = Date.parse(text.slice(0, 19) + "Z") / 1000;
  const fraction = text[19] === "." ? Number("0." + text.slice(20).replace(/Z$/, "")) : 0;
  return whole + fraction;
}

// -- state -----------------------------------------------------------------------------------

const state = {
  apiToken: null, // memory only: never stored, never sent over the WebSocket
  ws: null,
  authenticated: false,
  attempts: 0,
  connection: "connecting",
  rows: new Map(), // symbol -> row model
  dirty: new Set(),
  renderQueued: false,
  selected: null,
  barsSubscribed: null,
  timeframe: 60,
  bars: { 1: new Map(), 60: new Map() }, // timeframe -> (start s -> bar), selected symbol only
  forming: { 1: null, 60: null },
  note: "",
  messages: 0,
  lastRateCount: 0,
  exchangeTime: 0,
};

const $ = (id) => document.getElementById(id);
const tbody = document.querySelector("#watchlist tbody");

// -- the chart -------------------------------------------------------------------------------

const chartElement = $("chart");
const chart = LWC.createChart(chartElement, {
  autoSize: true,
  layout: { background: { type: "solid", color: "#151a23" }, textColor: "#b2b5be", fontSize: 12 },
  grid: { vertLines: { color: "#1d2330" }, horzLines: { color: "#1d2330" } },
  crosshair: { mode: LWC.CrosshairMode.Normal },
  rightPriceScale: { borderColor: "#232a36", scaleMargins: { top: 0.08, bottom: 0.26 } },
  timeScale: {
    borderColor: "#232a36", timeVisible: true, secondsVisible: false, rightOffset: 3, barSpacing: 12, minBarSpacing: 2,
    tickMarkFormatter: (time, kind) => {
      const date = new Date(time * 1000);
      if (kind <= 2) return dayFormat.format(date); // year, month, day boundaries
      return (kind === 4 ? clockFormat : minuteFormat).format(date);
    },
  },
  localization: {
    timeFormatter: (time) => fullFormat.format(new Date(time * 1000)),
    priceFormatter: fmtDecimal,
  },
});
const candleSeries = chart.addCandlestickSeries({
  priceFormat: { type: "price", precision: 4, minMove: 0.0001 }, // shown through fmtDecimal
  upColor: "#26a69a", downColor: "#ef5350", borderVisible: false,
  wickUpColor: "#26a69a", wickDownColor: "#ef5350",
});
const volumeSeries = chart.addHistogramSeries({
  priceFormat: { type: "volume" }, priceScaleId: "volume", lastValueVisible: false, priceLineVisible: false,
});
chart.priceScale("volume").applyOptions({ scaleMargins: { top: 0.8, bottom: 0 } });

function volumePoint(bar) {
  return { time: bar.time, value: bar.volume, color: bar.close >= bar.open ? "rgba(38,166,154,.45)" : "rgba(239,83,80,.45)" };
}

function sortedBars() {
  return [...state.bars[state.timeframe].values()].sort((a, b) => a.time - b.time);
}

function lastBarTime(timeframe) {
  let last = -Infinity;
  for (const time of state.bars[timeframe].keys()) last = Math.max(last, time);
  return last;
}

/** Draw the selected timeframe's bars and forming candle from scratch. */
function redrawChart() {
  const bars = sortedBars();
  const forming = state.forming[state.timeframe];
  if (forming && (bars.length === 0 || forming.time > bars[bars.length - 1].time)) bars.push(forming);
  candleSeries.setData(bars);
  volumeSeries.setData(bars.map(volumePoint));
  chartElement.dataset.candles = String(state.bars[state.timeframe].size);
  showOhlc(bars[bars.length - 1]);
  updateNote();
}

function showOhlc(bar) {
  $("chart-ohlc").textContent = bar
    ? `O ${fmtPrice(bar.open)}  H ${fmtPrice(bar.high)}  L ${fmtPrice(bar.low)}  C ${fmtPrice(bar.close)}  V ${volumeFormat.format(bar.volume)}`
    : "";
}

chart.subscribeCrosshairMove((param) => {
  const bar = param.time === undefined ? null : param.seriesData.get(candleSeries);
  if (bar) {
    const volume = param.seriesData.get(volumeSeries);
    showOhlc({ ...bar, volume: volume ? volume.value : 0 });
  } else {
    const bars = sortedBars();
    showOhlc(state.forming[state.timeframe] || bars[bars.length - 1]);
  }
});

function updateNote() {
  const count = state.bars[state.timeframe].size;
  const width = state.timeframe === 1 ? "1-second" : "1-minute";
  const parts = [count ? `${count} ${width} bars` : `waiting for the first ${width} bar…`];
  if (state.forming[state.timeframe]) parts.push("forming candle from live trades");
  if (state.note) parts.push(state.note);
  $("chart-note").textContent = parts.join(" · ");
}

function putBar(timeframe, bar) {
  const bars = state.bars[timeframe];
  bars.set(bar.time, bar);
  if (bars.size > MAX_BARS) bars.delete(Math.min(...bars.keys()));
  const forming = state.forming[timeframe];
  if (forming && forming.time <= bar.time) state.forming[timeframe] = null;
}

function onBar(m) {
  if (m.S !== state.selected) return; // a late message for the previous selection
  const start = parseTime(m.t);
  const timeframe = Math.round(parseTime(m.e) - start);
  if (!(timeframe in state.bars)) return;
  const time = Math.round(start);
  if (m.n === 0) state.bars[timeframe].delete(time); // withdrawn: every trade was broken
  else putBar(timeframe, { time, open: m.o, high: m.h, low: m.l, close: m.c, volume: m.v });
  if (timeframe === state.timeframe) redrawChart();
}

/** Extend the forming candle of each timeframe with a trade of the selected symbol. */
function formFromTrade(m) {
  const at = parseTime(m.t);
  for (const timeframe of [1, 60]) {
    const bucket = Math.floor(at / timeframe) * timeframe;
    if (bucket <= lastBarTime(timeframe)) continue; // that bar has closed already
    let forming = state.forming[timeframe];
    if (forming && forming.time === bucket) {
      forming.high = Math.max(forming.high, m.p);
      forming.low = Math.min(forming.low, m.p);
      forming.close = m.p;
      forming.volume += m.v;
    } else if (!forming || bucket > forming.time) {
      forming = { time: bucket, open: m.p, high: m.p, low: m.p, close: m.p, volume: m.v };
      state.forming[timeframe] = forming;
      if (timeframe === state.timeframe) updateNote();
    } else {
      continue; // an older bucket than the forming one: its bar is on its way
    }
    if (timeframe === state.timeframe) {
      candleSeries.update({ ...forming });
      volumeSeries.update(volumePoint(forming));
      showOhlc(forming);
    }
  }
}

// -- bars history ----------------------------------------------------------------------------

function barsFromHistory(body, symbol) {
  const list = Array.isArray(body?.bars) ? body.bars : body?.bars?.[symbol] || [];
  return list.map((b) => ({
    time: Math.round(typeof b.t === "number" ? b.t : parseTime(b.t)),
    open: b.o, high: b.h, low: b.l, close: b.c, volume: b.v,
  }));
}

async function loadHistory(symbol, timeframe) {
  const name = HISTORY_TIMEFRAMES[timeframe];
  if (!name) {
    state.note = "live bars only at this width";
    updateNote();
    return;
  }
  // `end` well ahead of now: the simulator's exchange clock need not follow the wall clock.
  const end = new Date(Date.now() + 2 * 86_400_000).toISOString();
  const query = new URLSearchParams({ symbols: symbol, timeframe: name, sort: "desc", limit: String(HISTORY_LIMIT), end });
  let response;
  try {
    response = await fetch(`/v1/bars?${query}`, { headers: { Authorization: `Bearer ${state.apiToken}` } });
  } catch (err) {
    state.note = "bars history unreachable";
    updateNote();
    return;
  }
  if (state.selected !== symbol) return;
  if (response.status === 404) {
    state.note = "no bars history on this server: live bars only";
  } else if (response.status === 400) {
    state.note = "no stored bars yet"; // the API answers 400 for a symbol with no bars
  } else if (!response.ok) {
    state.note = `bars history: HTTP ${response.status}`;
  } else {
    const history = barsFromHistory(await response.json(), symbol);
    if (state.selected !== symbol) return;
    const bars = state.bars[timeframe];
    for (const bar of history) if (!bars.has(bar.time)) putBar(timeframe, bar); // live wins
    state.note = `${history.length} from history`;
    if (timeframe === state.timeframe) redrawChart();
  }
  updateNote();
}

// -- the watchlist ---------------------------------------------------------------------------

function rowFor(symbol) {
  let row = state.rows.get(symbol);
  if (row) return row;
  const tr = document.createElement("tr");
  tr.dataset.symbol = symbol;
  const cells = {};
  for (const [name, cls] of [["sym", "sym"], ["last", "num last"], ["chg", "num chg"], ["pct", "num pct"],
    ["bid", "num bid"], ["ask", "num ask"], ["vol", "num vol"]]) {
    const td = document.createElement("td");
    td.className = cls;
    tr.appendChild(td);
    cells[name] = td;
  }
  cells.sym.textContent = symbol;
  tr.addEventListener("click", () => select(symbol));
  row = { symbol, tr, cells, last: null, ref: null, bid: 0, ask: 0, bs: 0, as: 0, volume: 0, halted: false, flash: null };
  state.rows.set(symbol, row);
  if (symbol === state.selected) tr.classList.add("selected");
  // Keep the table sorted by symbol.
  const after = [...tbody.children].find((other) => other.dataset.symbol > symbol);
  tbody.insertBefore(tr, after || null);
  $("count").textContent = `${state.rows.size} symbols`;
  return row;
}

function markDirty(row) {
  state.dirty.add(row);
  if (!state.renderQueued) {
    state.renderQueued = true;
    requestAnimationFrame(render);
  }
}

function render() {
  state.renderQueued = false;
  for (const row of state.dirty) renderRow(row);
  state.dirty.clear();
}

function renderRow(row) {
  const { cells } = row;
  cells.last.textContent = fmtPrice(row.last);
  row.tr.dataset.last = row.last == null ? "" : String(row.last);
  if (row.last != null && row.ref) {
    // Rounded to the prices' 4 decimals first: 3.12 - 3.125 is -0.0050000000000003 in binary.
    const change = Math.round((row.last - row.ref) * 10_000) / 10_000;
    const direction = change > 0 ? "up" : change < 0 ? "down" : "";
    cells.chg.textContent = fmtSigned(change);
    const percent = ((100 * change) / row.ref).toFixed(2);
    cells.pct.textContent = `${change > 0 ? "+" : ""}${Number(percent) === 0 ? "0.00" : percent}%`;
    cells.chg.className = `num chg ${direction}`;
    cells.pct.className = `num pct ${direction}`;
  }
  cells.bid.textContent = fmtPrice(row.bid);
  cells.ask.textContent = fmtPrice(row.ask);
  cells.bid.title = row.bs ? `${volumeFormat.format(row.bs)} shares` : "";
  cells.ask.title = row.as ? `${volumeFormat.format(row.as)} shares` : "";
  cells.vol.textContent = row.volume ? volumeFormat.format(row.volume) : "–";
  cells.sym.innerHTML = "";
  cells.sym.append(row.symbol);
  if (row.halted) {
    const badge = document.createElement("span");
    badge.className = "halt";
    badge.textContent = "HALT";
    cells.sym.append(badge);
  }
  if (row.flash) {
    // Restart the flash animation: drop the class, force a style flush, add it back.
    cells.last.classList.remove("flash-up", "flash-down");
    void cells.last.offsetWidth;
    cells.last.classList.add(`flash-${row.flash}`);
    row.flash = null;
  }
  if (row.symbol === state.selected) {
    $("chart-last").textContent = fmtPrice(row.last);
    $("chart-last").className = `chart-last ${cells.chg.classList.contains("down") ? "down" : "up"}`;
  }
}

function noteTime(text) {
  const at = parseTime(text);
  if (at > state.exchangeTime) state.exchangeTime = at;
}

function onTrade(m) {
  const row = rowFor(m.S);
  if (row.ref == null) row.ref = m.p;
  if (row.last != null && m.p !== row.last) row.flash = m.p > row.last ? "up" : "down";
  row.last = m.p;
  row.volume = m.cv;
  noteTime(m.t);
  markDirty(row);
  if (m.S === state.selected) formFromTrade(m);
}

function onQuote(m) {
  const row = rowFor(m.S);
  row.bid = m.bp;
  row.ask = m.ap;
  row.bs = m.bs;
  row.as = m.as;
  noteTime(m.t);
  markDirty(row);
}

// ITCH 5.0 system event codes (market-wide statuses).
const SYSTEM_EVENTS = {
  O: "start of messages", S: "pre-market", Q: "market open", M: "market closed",
  E: "after hours ended", C: "end of messages",
};

function onStatus(m) {
  if (!m.S) {
    const text = m.k === "system_event" ? SYSTEM_EVENTS[m.sc] : null;
    $("session").textContent = text || m.rm || `${m.k.replaceAll("_", " ")} ${m.sc}`;
    return;
  }
  const row = rowFor(m.S);
  row.halted = m.h;
  markDirty(row);
}

// -- selection -------------------------------------------------------------------------------

function select(symbol) {
  if (symbol === state.selected) return;
  if (state.selected) state.rows.get(state.selected)?.tr.classList.remove("selected");
  state.selected = symbol;
  state.rows.get(symbol)?.tr.classList.add("selected");
  state.bars = { 1: new Map(), 60: new Map() };
  state.forming = { 1: null, 60: null };
  state.note = "";
  $("chart-symbol").textContent = symbol;
  const row = state.rows.get(symbol);
  if (row) markDirty(row);
  redrawChart();
  subscribeBars();
  loadHistory(symbol, state.timeframe);
}

function setTimeframe(timeframe) {
  if (timeframe === state.timeframe) return;
  state.timeframe = timeframe;
  for (const button of document.querySelectorAll(".timeframes button")) {
    button.classList.toggle("active", Number(button.dataset.tf) === timeframe);
  }
  chart.applyOptions({ timeScale: { secondsVisible: timeframe === 1 } });
  state.note = "";
  redrawChart();
  chart.timeScale().scrollToRealTime();
  if (state.selected) loadHistory(state.selected, timeframe);
}

for (const button of document.querySelectorAll(".timeframes button")) {
  button.addEventListener("click", () => setTimeframe(Number(button.dataset.tf)));
}

document.addEventListener("keydown", (event) => {
  if (event.key !== "ArrowDown" && event.key !== "ArrowUp") return;
  const symbols = [...tbody.children].map((tr) => tr.dataset.symbol);
  const at = symbols.indexOf(state.selected);
  const next = symbols[at + (event.key === "ArrowDown" ? 1 : -1)];
  if (next) {
    event.preventDefault();
    select(next);
    state.rows.get(next).tr.scrollIntoView({ block: "nearest" });
  }
});

/** With nothing chosen yet, chart the most traded symbol (by dollar volume). */
function selectDefault() {
  let best = null;
  const notional = (row) => row.volume * row.last;
  for (const row of state.rows.values()) {
    if (row.last != null && (!best || notional(row) > notional(best))) best = row;
  }
  if (best) select(best.symbol);
}

// -- the stream ------------------------------------------------------------------------------

function setConnection(connection, text = connection) {
  state.connection = connection;
  $("conn").dataset.state = connection;
  $("conn").textContent = text;
}

function send(message) {
  if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(JSON.stringify(message));
}

function subscribeBars() {
  if (!state.authenticated || state.barsSubscribed === state.selected) return;
  if (state.barsSubscribed) send({ action: "unsubscribe", bars: [state.barsSubscribed] });
  if (state.selected) send({ action: "subscribe", bars: [state.selected] });
  state.barsSubscribed = state.selected;
}

function onFrame(text) {
  let sawTrade = false;
  for (const m of JSON.parse(text)) {
    switch (m.T) {
      case "t": state.messages++; sawTrade = true; onTrade(m); break;
      case "q": state.messages++; onQuote(m); break;
      case "b": state.messages++; onBar(m); break;
      case "s": state.messages++; onStatus(m); break;
      case "success":
        if (m.msg === "authenticated") onAuthenticated();
        break;
      case "error":
        console.warn("stream error", m.code, m.msg);
        if (m.code === 402) setConnection("reconnecting", "token refused, renewing");
        break;
      default:
        break;
    }
  }
  if (sawTrade && !state.selected) selectDefault();
}

function onAuthenticated() {
  state.authenticated = true;
  state.attempts = 0;
  setConnection("live");
  state.barsSubscribed = state.selected;
  send({
    action: "subscribe", trades: ["*"], quotes: ["*"], statuses: ["*"],
    bars: state.selected ? [state.selected] : [],
  });
  // Bars that closed while we were away: fetch the history again.
  if (state.selected) loadHistory(state.selected, state.timeframe);
}

async function connect() {
  setConnection(state.attempts ? "reconnecting" : "connecting");
  let grant;
  try {
    const response = await fetch("/v1/stream-token", {
      headers: { Authorization: `Bearer ${state.apiToken}` }, cache: "no-store",
    });
    if (response.status === 401) {
      setConnection("error", "signed out");
      showSignIn("The server refused the token (revoked or mistyped). Open the page again with a valid <code>#token=…</code>.");
      return;
    }
    if (!response.ok) throw new Error(`GET /v1/stream-token: HTTP ${response.status}`);
    grant = await response.json();
  } catch (err) {
    console.warn(err);
    scheduleReconnect();
    return;
  }
  const ws = new WebSocket(grant.stream_url);
  state.ws = ws;
  ws.onopen = () => ws.send(JSON.stringify({ action: "auth", token: grant.token }));
  ws.onmessage = (event) => onFrame(event.data);
  ws.onclose = () => {
    if (state.ws !== ws) return;
    state.ws = null;
    state.authenticated = false;
    state.barsSubscribed = null;
    scheduleReconnect();
  };
}

function scheduleReconnect() {
  const delay = Math.min(RECONNECT_MAX_MS, 500 * 2 ** state.attempts) * (0.75 + Math.random() / 2);
  state.attempts++;
  setConnection("reconnecting");
  setTimeout(connect, delay);
}

function showSignIn(html) {
  if (html) $("overlay-text").innerHTML = html;
  $("overlay").hidden = false;
}

setInterval(() => {
  $("rate").textContent = volumeFormat.format(state.messages - state.lastRateCount);
  state.lastRateCount = state.messages;
  if (state.exchangeTime) $("clock").textContent = clockFormat.format(new Date(state.exchangeTime * 1000));
}, 1000);

// -- for tests and the curious ---------------------------------------------------------------

/** Last price per symbol, as shown. */
window.__watchlist = () =>
  Object.fromEntries([...state.rows.values()].filter((r) => r.last != null).map((r) => [r.symbol, r.last]));
/** Closed bars (stream and history) drawn for the selected symbol and width; not the forming one. */
window.__chart_candles = () => state.bars[state.timeframe].size;
window.__market_state = () => ({
  connection: state.connection, selected: state.selected, timeframe: state.timeframe,
  messages: state.messages, forming: Boolean(state.forming[state.timeframe]), note: state.note,
});

// -- start -----------------------------------------------------------------------------------

function start() {
  const params = new URLSearchParams(location.hash.slice(1));
  state.apiToken = params.get("token");
  if (state.apiToken) {
    // Out of the address bar (and so out of history, bookmarks and screenshots) at once.
    params.delete("token");
    const rest = params.toString();
    history.replaceState(null, "", location.pathname + location.search + (rest ? `#${rest}` : ""));
  }
  if (params.get("tf") === "1s") setTimeframe(1);
  if (params.get("symbol")) select(params.get("symbol").toUpperCase());
  if (!state.apiToken) {
    setConnection("error", "no token");
    $("overlay-text").innerHTML =
      `Open the page with your API token in the address: <code>${location.origin}/#token=tp_…</code> ` +
      "(<code>tickerplant demo</code> prints that link).";
    showSignIn();
    return;
  }
  connect();
}

start();
