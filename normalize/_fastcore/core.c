/* The normalizer core; the rules are normalize/normalizer.py's, see core.h. */
#include "core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char RECOVERED_REASON[] = "start of messages: the book restarts empty";

/* Types whose locate another shard may own: every known type but the market-wide S, V, W. */
static inline int is_sharded_type(uint8_t type)
{
    return itch_lengths[type] != 0 && type != 'S' && type != 'V' && type != 'W';
}

static inline int owns(const fc_core *c, uint16_t locate)
{
    return c->shard_count == 1 || locate % c->shard_count == c->shard_index;
}

static inline int64_t exchange_time(const fc_core *c, uint64_t timestamp)
{
    /* Unsigned arithmetic: wraps instead of overflowing (the Python side would raise). */
    return (int64_t)((uint64_t)c->midnight_ns + timestamp);
}

/* ------------------------------------------------------------------ init and memory */

int fc_init(fc_core *c, int64_t midnight_ns, const char *session, size_t session_len,
            uint32_t shard_index, uint32_t shard_count, size_t match_memory)
{
    memset(c, 0, sizeof *c);
    c->midnight_ns = midnight_ns;
    c->shard_index = shard_index;
    c->shard_count = shard_count ? shard_count : 1;
    c->publishes_market_wide = owns(c, 0);
    c->session = malloc(session_len ? session_len : 1);
    c->symbols = calloc(FC_LOCATES, sizeof *c->symbols);
    if (c->session == NULL || c->symbols == NULL) {
        fc_free(c);
        return -1;
    }
    memcpy(c->session, session, session_len);
    c->session_len = session_len;
    matches_init(&c->matches, match_memory);
    c->announced_sorted = 1;
    return 0;
}

void fc_free(fc_core *c)
{
    if (c->symbols != NULL) {
        for (size_t i = 0; i < c->announced_count; i++) {
            fc_symbol *s = c->symbols[c->announced[i]];
            book_free(&s->book);
            free(s);
        }
        free(c->symbols);
    }
    free(c->announced);
    free(c->session);
    free(c->events);
    free(c->text);
    matches_free(&c->matches);
    memset(c, 0, sizeof *c);
}

size_t fc_memory(const fc_core *c)
{
    size_t bytes = FC_LOCATES * sizeof *c->symbols + c->announced_capacity * sizeof(uint16_t) +
                   c->event_capacity * sizeof(fc_event) + c->text_capacity + c->session_len +
                   matches_memory(&c->matches);
    for (size_t i = 0; i < c->announced_count; i++)
        bytes += sizeof(fc_symbol) + book_memory(&c->symbols[c->announced[i]]->book);
    return bytes;
}

static int compare_locates(const void *a, const void *b)
{
    return (int)*(const uint16_t *)a - (int)*(const uint16_t *)b;
}

const uint16_t *fc_announced(fc_core *c, size_t *count)
{
    if (!c->announced_sorted) {
        qsort(c->announced, c->announced_count, sizeof *c->announced, compare_locates);
        c->announced_sorted = 1;
    }
    *count = c->announced_count;
    return c->announced;
}

/* ------------------------------------------------------------------------- events */

static fc_event *new_event(fc_core *c, uint8_t topic, const char *symbol, uint8_t symbol_len,
                           int64_t exchange_ts_ns, uint64_t seq, int64_t receive_ts_ns)
{
    if (c->event_count == c->event_capacity) {
        size_t capacity = c->event_capacity ? c->event_capacity * 2 : 1024;
        if (capacity >= FC_NO_EVENT)
            return NULL; /* event indices are 32 bits: take events before 4 billion */
        fc_event *events = realloc(c->events, capacity * sizeof *events);
        if (events == NULL)
            return NULL;
        c->events = events;
        c->event_capacity = capacity;
    }
    fc_event *e = &c->events[c->event_count++];
    memset(e, 0, sizeof *e);
    e->topic = topic;
    e->symbol_len = symbol_len;
    memcpy(e->symbol, symbol, symbol_len);
    e->exchange_ts_ns = exchange_ts_ns;
    e->seq = seq;
    e->receive_ts_ns = receive_ts_ns;
    return e;
}

/* Copy text into the arena; the offset, or -1 when out of memory. */
static int64_t text_add(fc_core *c, const char *text, size_t len)
{
    if (c->text_len + len > c->text_capacity) {
        size_t capacity = c->text_capacity ? c->text_capacity : 4096;
        while (capacity < c->text_len + len)
            capacity *= 2;
        if (capacity > UINT32_MAX)
            return -1;
        char *grown = realloc(c->text, capacity);
        if (grown == NULL)
            return -1;
        c->text = grown;
        c->text_capacity = capacity;
    }
    memcpy(c->text + c->text_len, text, len);
    int64_t offset = (int64_t)c->text_len;
    c->text_len += len;
    return offset;
}

void fc_events_reset(fc_core *c)
{
    c->event_count = 0;
    c->text_len = 0;
    /* Give back a burst's memory: keep at most 64 Ki events and 1 MiB of text between takes. */
    if (c->event_capacity > 65536) {
        free(c->events);
        c->events = NULL;
        c->event_capacity = 0;
    }
    if (c->text_capacity > (1u << 20)) {
        free(c->text);
        c->text = NULL;
        c->text_capacity = 0;
    }
}

static int emit_trade(fc_core *c, const fc_symbol *s, uint64_t timestamp, uint64_t seq,
                      int64_t receive_ts_ns, uint32_t price, uint64_t size, uint8_t side,
                      uint64_t match, uint8_t kind, const char *cross_type, uint8_t cross_len)
{
    fc_event *e = new_event(c, FC_TRADES, s->symbol, s->symbol_len, exchange_time(c, timestamp),
                            seq, receive_ts_ns);
    if (e == NULL)
        return -1;
    e->kind = kind;
    e->side = side;
    e->v[0] = price;
    e->v[1] = size;
    e->v[2] = match;
    if (cross_len) {
        e->code = cross_type[0];
        e->code_len = 1;
    }
    c->stats.trades++;
    return matches_remember(&c->matches, match, price, size, side);
}

static int emit_quote(fc_core *c, fc_symbol *s, book_bbo bbo, int64_t exchange_ts_ns,
                      uint64_t seq, int64_t receive_ts_ns)
{
    s->quoted = bbo;
    fc_event *e = new_event(c, FC_QUOTES, s->symbol, s->symbol_len, exchange_ts_ns, seq,
                            receive_ts_ns);
    if (e == NULL)
        return -1;
    e->v[0] = bbo.bid_price;
    e->v[1] = bbo.bid_size;
    e->v[2] = bbo.ask_price;
    e->v[3] = bbo.ask_size;
    c->stats.quotes++;
    return 0;
}

static inline int quote_if_changed(fc_core *c, fc_symbol *s, uint64_t timestamp, uint64_t seq,
                                   int64_t receive_ts_ns)
{
    if (s->stale)
        return 0;
    book_bbo bbo = book_get_bbo(&s->book);
    if (bbo.bid_price == s->quoted.bid_price && bbo.bid_size == s->quoted.bid_size &&
        bbo.ask_price == s->quoted.ask_price && bbo.ask_size == s->quoted.ask_size)
        return 0;
    return emit_quote(c, s, bbo, exchange_time(c, timestamp), seq, receive_ts_ns);
}

/* A Status whose reason is already in the arena at reason_offset. */
static int emit_status_at(fc_core *c, const char *symbol, uint8_t symbol_len, uint8_t kind,
                          const uint8_t *code, uint8_t code_len, uint32_t reason_offset,
                          uint32_t reason_len, int halted, int64_t exchange_ts_ns, uint64_t seq,
                          int64_t receive_ts_ns)
{
    fc_event *e = new_event(c, FC_STATUS, symbol, symbol_len, exchange_ts_ns, seq, receive_ts_ns);
    if (e == NULL)
        return -1;
    e->kind = kind;
    e->halted = (uint8_t)(halted != 0);
    if (code_len) {
        e->code = (char)code[0];
        e->code_len = 1;
    }
    e->reason_offset = reason_offset;
    e->reason_len = reason_len;
    c->stats.statuses++;
    return 0;
}

static int emit_status(fc_core *c, const char *symbol, uint8_t symbol_len, uint8_t kind,
                       const uint8_t *code, uint8_t code_len, const char *reason,
                       size_t reason_len, int halted, int64_t exchange_ts_ns, uint64_t seq,
                       int64_t receive_ts_ns)
{
    int64_t offset = 0;
    if (reason_len) {
        offset = text_add(c, reason, reason_len);
        if (offset < 0)
            return -1;
    }
    return emit_status_at(c, symbol, symbol_len, kind, code, code_len, (uint32_t)offset,
                          (uint32_t)reason_len, halted, exchange_ts_ns, seq, receive_ts_ns);
}

static int symbol_status(fc_core *c, const fc_symbol *s, const itch_message *m, uint8_t kind,
                         const uint8_t *code, uint8_t code_len, const char *reason,
                         size_t reason_len, uint64_t seq, int64_t receive_ts_ns)
{
    return emit_status(c, s->symbol, s->symbol_len, kind, code, code_len, reason, reason_len,
                       s->halted_by_action || s->halted_operationally,
                       exchange_time(c, m->timestamp), seq, receive_ts_ns);
}

/* ------------------------------------------------------------------------ problems */

static void note(fc_core *c, enum fc_problem kind, const uint8_t *p, size_t n, uint64_t ref)
{
    c->problems[kind]++;
    fc_problem_detail *d = &c->problem_detail[kind];
    d->type = n ? p[0] : 0;
    d->locate = n >= 3 ? itch_u16(p + 1) : 0;
    d->ref = ref;
    d->length = n;
}

static int refused(fc_core *c, int result, const uint8_t *p, size_t n, uint64_t ref)
{
    switch (result) {
    case BOOK_UNKNOWN_ORDER:
        c->stats.unknown_order++;
        note(c, FC_UNKNOWN_ORDER, p, n, ref);
        return 0;
    case BOOK_DUPLICATE:
        c->stats.inconsistent_order++;
        note(c, FC_DUPLICATE_ORDER, p, n, ref);
        return 0;
    case BOOK_INVALID:
        c->stats.inconsistent_order++;
        note(c, FC_INVALID_ORDER, p, n, ref);
        return 0;
    default:
        return -1; /* BOOK_NO_MEMORY */
    }
}

static inline uint8_t pb_side(uint8_t side)
{
    return side == 'B' ? PB_SIDE_BUY : side == 'S' ? PB_SIDE_SELL : PB_SIDE_UNSPECIFIED;
}

/* ------------------------------------------------------------------- the handlers */

static int on_stock_directory(fc_core *c, const itch_message *m)
{
    const itch_alpha *stock = &m->u.R.stock;
    fc_symbol *s = c->symbols[m->locate];
    if (s != NULL) {
        if (s->symbol_len == stock->len && memcmp(s->symbol, stock->text, stock->len) == 0)
            return 0; /* announced again: keep the book */
        if (s->stale)
            c->stats.stale_symbols--;
        book_free(&s->book);
    } else {
        if (c->announced_count == c->announced_capacity) {
            size_t capacity = c->announced_capacity ? c->announced_capacity * 2 : 1024;
            uint16_t *announced = realloc(c->announced, capacity * sizeof *announced);
            if (announced == NULL)
                return -1;
            c->announced = announced;
            c->announced_capacity = capacity;
        }
        s = malloc(sizeof *s);
        if (s == NULL)
            return -1;
        c->symbols[m->locate] = s;
        if (c->announced_count && c->announced[c->announced_count - 1] > m->locate)
            c->announced_sorted = 0;
        c->announced[c->announced_count++] = m->locate;
    }
    memset(s, 0, sizeof *s);
    book_init(&s->book);
    memcpy(s->symbol, stock->text, stock->len);
    s->symbol_len = stock->len;
    return 0;
}

static int start_of_day(fc_core *c, int64_t exchange_ts_ns, uint64_t seq, int64_t receive_ts_ns)
{
    static const book_bbo empty = {0, 0, 0, 0};
    size_t count;
    const uint16_t *locates = fc_announced(c, &count);
    uint64_t recovered = 0;
    int64_t reason_offset = -1;
    for (size_t i = 0; i < count; i++) {
        fc_symbol *s = c->symbols[locates[i]];
        book_clear(&s->book);
        s->halted_by_action = 0;
        s->halted_operationally = 0;
        if (s->stale) {
            s->stale = 0;
            recovered++;
            c->stats.stale_symbols--;
            if (reason_offset < 0) {
                reason_offset = text_add(c, RECOVERED_REASON, sizeof RECOVERED_REASON - 1);
                if (reason_offset < 0)
                    return -1;
            }
            if (emit_status_at(c, s->symbol, s->symbol_len, PB_STATUS_FEED_RECOVERED, NULL, 0,
                               (uint32_t)reason_offset, sizeof RECOVERED_REASON - 1, 0,
                               exchange_ts_ns, seq, receive_ts_ns) != 0)
                return -1;
        }
        if (s->quoted.bid_price || s->quoted.bid_size || s->quoted.ask_price ||
            s->quoted.ask_size) {
            if (emit_quote(c, s, empty, exchange_ts_ns, seq, receive_ts_ns) != 0)
                return -1;
        }
    }
    matches_clear(&c->matches);
    if (recovered) {
        c->recovered_books += recovered;
        c->recovered_seq = seq;
    }
    return 0;
}

static int on_system_event(fc_core *c, const itch_message *m, uint64_t seq, int64_t rts)
{
    int64_t exchange_ts_ns = exchange_time(c, m->timestamp);
    if (c->publishes_market_wide &&
        emit_status(c, "", 0, PB_STATUS_SYSTEM_EVENT, &m->u.S.event_code, 1, NULL, 0, 0,
                    exchange_ts_ns, seq, rts) != 0)
        return -1;
    if (m->u.S.event_code == 'O')
        return start_of_day(c, exchange_ts_ns, seq, rts);
    return 0;
}

static int dispatch(fc_core *c, const uint8_t *p, size_t n, const itch_message *m, uint64_t seq,
                    int64_t rts)
{
    fc_symbol *s;
    int result;
    uint8_t side;
    uint32_t price;
    char reason[96];
    int len;

    switch (m->type) {
    case 'S':
        return on_system_event(c, m, seq, rts);
    case 'V':
        if (!c->publishes_market_wide)
            return 0;
        len = snprintf(reason, sizeof reason, "level_1=%llu level_2=%llu level_3=%llu",
                       (unsigned long long)m->u.V.level_1, (unsigned long long)m->u.V.level_2,
                       (unsigned long long)m->u.V.level_3);
        return emit_status(c, "", 0, PB_STATUS_MWCB, NULL, 0, reason, (size_t)len, 0,
                           exchange_time(c, m->timestamp), seq, rts);
    case 'W':
        if (!c->publishes_market_wide)
            return 0;
        return emit_status(c, "", 0, PB_STATUS_MWCB, &m->u.W.breached_level, 1, NULL, 0, 0,
                           exchange_time(c, m->timestamp), seq, rts);
    case 'R':
        return on_stock_directory(c, m);
    case 'L':
    case 'I':
    case 'N':
    case 'O':
        return 0; /* no event; only the timestamp counted */
    default:
        break;
    }

    /* Every other type is about the symbol of its locate. */
    s = c->symbols[m->locate];
    if (s == NULL) {
        c->stats.unknown_symbol++;
        note(c, FC_UNKNOWN_SYMBOL, p, n, 0);
        return 0;
    }
    switch (m->type) {
    case 'A':
    case 'F':
        result = book_add(&s->book, m->u.A.ref, m->u.A.side, m->u.A.price, m->u.A.shares);
        if (result != BOOK_OK)
            return refused(c, result, p, n, m->u.A.ref);
        return quote_if_changed(c, s, m->timestamp, seq, rts);
    case 'E':
        result = book_reduce(&s->book, m->u.E.ref, m->u.E.shares, &side, &price);
        if (result != BOOK_OK)
            return refused(c, result, p, n, m->u.E.ref);
        if (emit_trade(c, s, m->timestamp, seq, rts, price, m->u.E.shares, pb_side(side),
                       m->u.E.match, PB_TRADE_EXECUTION, NULL, 0) != 0)
            return -1;
        return quote_if_changed(c, s, m->timestamp, seq, rts);
    case 'C':
        result = book_reduce(&s->book, m->u.C.ref, m->u.C.shares, &side, &price);
        if (result != BOOK_OK)
            return refused(c, result, p, n, m->u.C.ref);
        if (m->u.C.printable == 'Y' &&
            emit_trade(c, s, m->timestamp, seq, rts, m->u.C.price, m->u.C.shares, pb_side(side),
                       m->u.C.match, PB_TRADE_EXECUTION_WITH_PRICE, NULL, 0) != 0)
            return -1;
        return quote_if_changed(c, s, m->timestamp, seq, rts);
    case 'X':
        result = book_reduce(&s->book, m->u.X.ref, m->u.X.shares, &side, &price);
        if (result != BOOK_OK)
            return refused(c, result, p, n, m->u.X.ref);
        return quote_if_changed(c, s, m->timestamp, seq, rts);
    case 'D':
        result = book_delete(&s->book, m->u.D.ref);
        if (result != BOOK_OK)
            return refused(c, result, p, n, m->u.D.ref);
        return quote_if_changed(c, s, m->timestamp, seq, rts);
    case 'U':
        result = book_replace(&s->book, m->u.U.ref, m->u.U.new_ref, m->u.U.price, m->u.U.shares);
        if (result != BOOK_OK)
            /* Python names the new reference in every refusal but an unknown original. */
            return refused(c, result, p, n,
                           result == BOOK_UNKNOWN_ORDER ? m->u.U.ref : m->u.U.new_ref);
        return quote_if_changed(c, s, m->timestamp, seq, rts);
    case 'P':
        return emit_trade(c, s, m->timestamp, seq, rts, m->u.P.price, m->u.P.shares,
                          pb_side(m->u.P.side), m->u.P.match, PB_TRADE_NON_CROSS, NULL, 0);
    case 'Q':
        if (m->u.Q.shares == 0)
            return 0; /* the cross happened without a match: nothing printed */
        return emit_trade(c, s, m->timestamp, seq, rts, m->u.Q.price, m->u.Q.shares,
                          PB_SIDE_UNSPECIFIED, m->u.Q.match, PB_TRADE_CROSS,
                          (const char *)&m->u.Q.cross_type, 1);
    case 'B': {
        match_entry entry = {0};
        matches_pop(&c->matches, m->u.B.match, &entry);
        fc_event *e = new_event(c, FC_TRADES, s->symbol, s->symbol_len,
                                exchange_time(c, m->timestamp), seq, rts);
        if (e == NULL)
            return -1;
        e->kind = PB_TRADE_BROKEN;
        e->side = entry.side;
        e->v[0] = entry.price;
        e->v[1] = entry.size;
        e->v[2] = m->u.B.match;
        c->stats.trades++;
        return 0;
    }
    case 'H':
        s->halted_by_action = m->u.H.trading_state != 'T';
        return symbol_status(c, s, m, PB_STATUS_TRADING_ACTION, &m->u.H.trading_state, 1,
                             m->u.H.reason.text, m->u.H.reason.len, seq, rts);
    case 'Y':
        return symbol_status(c, s, m, PB_STATUS_REG_SHO, &m->u.Y.reg_sho_action, 1, NULL, 0, seq,
                             rts);
    case 'h':
        s->halted_operationally = m->u.h.action == 'H';
        return symbol_status(c, s, m, PB_STATUS_OPERATIONAL_HALT, &m->u.h.action, 1,
                             (const char *)&m->u.h.market_code, 1, seq, rts);
    case 'J':
        len = snprintf(reason, sizeof reason, "reference=%u upper=%u lower=%u extension=%u",
                       (unsigned)m->u.J.reference_price, (unsigned)m->u.J.upper_price,
                       (unsigned)m->u.J.lower_price, (unsigned)m->u.J.extension);
        return symbol_status(c, s, m, PB_STATUS_LULD_COLLAR, NULL, 0, reason, (size_t)len, seq,
                             rts);
    case 'K':
        len = snprintf(reason, sizeof reason, "release_time=%u price=%u",
                       (unsigned)m->u.K.release_time, (unsigned)m->u.K.ipo_price);
        return symbol_status(c, s, m, PB_STATUS_IPO_QUOTING, &m->u.K.qualifier, 1, reason,
                             (size_t)len, seq, rts);
    default:
        return 0;
    }
}

int fc_process(fc_core *c, const uint8_t *p, size_t n, uint64_t seq, int64_t receive_ts_ns)
{
    c->stats.messages++;
    if (n >= 3 && is_sharded_type(p[0]) && !owns(c, itch_u16(p + 1))) {
        c->stats.skipped_other_shard++;
        return 0;
    }
    enum itch_status status = itch_check(p, n);
    if (status != ITCH_OK) {
        static const enum fc_problem kinds[] = {
            [ITCH_TRUNCATED] = FC_TRUNCATED,
            [ITCH_UNKNOWN_TYPE] = FC_UNKNOWN_TYPE,
            [ITCH_LENGTH_MISMATCH] = FC_LENGTH_MISMATCH,
            [ITCH_INVALID_ALPHA] = FC_INVALID_ALPHA,
        };
        c->stats.decode_errors++;
        note(c, kinds[status], p, n, 0);
        return 0;
    }
    itch_message m;
    itch_decode_fields(p, &m);
    c->last_timestamp = m.timestamp;
    return dispatch(c, p, n, &m, seq, receive_ts_ns);
}

long fc_mark_stale(fc_core *c, uint64_t seq, int64_t receive_ts_ns, const char *reason,
                   size_t reason_len)
{
    if (reason_len > UINT32_MAX)
        return -1;
    int64_t exchange_ts_ns = exchange_time(c, c->last_timestamp);
    int64_t offset = 0;
    if (reason_len) {
        offset = text_add(c, reason, reason_len);
        if (offset < 0)
            return -1;
    }
    size_t count;
    const uint16_t *locates = fc_announced(c, &count);
    long newly = 0;
    for (size_t i = 0; i < count; i++) {
        fc_symbol *s = c->symbols[locates[i]];
        if (s->stale)
            continue;
        s->stale = 1;
        newly++;
        c->stats.stale_symbols++;
        if (emit_status_at(c, s->symbol, s->symbol_len, PB_STATUS_FEED_STALE, NULL, 0,
                           (uint32_t)offset, (uint32_t)reason_len,
                           s->halted_by_action || s->halted_operationally, exchange_ts_ns, seq,
                           receive_ts_ns) != 0)
            return -1;
    }
    return newly;
}

/* -------------------------------------------------------------------- serialization */

static inline wire_str event_symbol(const fc_event *e)
{
    return (wire_str){e->symbol, e->symbol_len};
}

size_t fc_event_payload_size(const fc_core *c, const fc_event *e, int64_t publish_ts_ns)
{
    wire_str session = {c->session, c->session_len};
    switch (e->topic) {
    case FC_TRADES: {
        wire_trade t = {event_symbol(e), e->exchange_ts_ns, e->seq, e->receive_ts_ns,
                        publish_ts_ns, (int64_t)e->v[0], e->v[1], e->side, e->v[2], e->kind,
                        (wire_str){&e->code, e->code_len}, session};
        return wire_trade_size(&t);
    }
    case FC_QUOTES: {
        wire_quote q = {event_symbol(e), e->exchange_ts_ns, e->seq, e->receive_ts_ns,
                        publish_ts_ns, (int64_t)e->v[0], e->v[1], (int64_t)e->v[2], e->v[3],
                        session};
        return wire_quote_size(&q);
    }
    default: {
        wire_status s = {event_symbol(e), e->exchange_ts_ns, e->seq, e->receive_ts_ns,
                         publish_ts_ns, e->kind, (wire_str){&e->code, e->code_len},
                         (wire_str){c->text + e->reason_offset, e->reason_len}, e->halted,
                         session};
        return wire_status_size(&s);
    }
    }
}

uint8_t *fc_event_payload_write(const fc_core *c, const fc_event *e, int64_t publish_ts_ns,
                                uint8_t *out)
{
    wire_str session = {c->session, c->session_len};
    switch (e->topic) {
    case FC_TRADES: {
        wire_trade t = {event_symbol(e), e->exchange_ts_ns, e->seq, e->receive_ts_ns,
                        publish_ts_ns, (int64_t)e->v[0], e->v[1], e->side, e->v[2], e->kind,
                        (wire_str){&e->code, e->code_len}, session};
        return wire_trade_write(out, &t);
    }
    case FC_QUOTES: {
        wire_quote q = {event_symbol(e), e->exchange_ts_ns, e->seq, e->receive_ts_ns,
                        publish_ts_ns, (int64_t)e->v[0], e->v[1], (int64_t)e->v[2], e->v[3],
                        session};
        return wire_quote_write(out, &q);
    }
    default: {
        wire_status s = {event_symbol(e), e->exchange_ts_ns, e->seq, e->receive_ts_ns,
                         publish_ts_ns, e->kind, (wire_str){&e->code, e->code_len},
                         (wire_str){c->text + e->reason_offset, e->reason_len}, e->halted,
                         session};
        return wire_status_write(out, &s);
    }
    }
}

/* Group key of an event: topic, symbol length and the zero-padded symbol. */
static inline int same_key(const fc_event *a, const fc_event *b)
{
    return a->topic == b->topic && a->symbol_len == b->symbol_len &&
           memcmp(a->symbol, b->symbol, sizeof a->symbol) == 0;
}

static inline uint64_t key_hash(const fc_event *e)
{
    uint64_t word;
    memcpy(&word, e->symbol, 8);
    uint64_t h = (word ^ ((uint64_t)e->topic << 56 | (uint64_t)e->symbol_len << 48)) *
                 UINT64_C(0x9E3779B97F4A7C15);
    return h ^ (h >> 29);
}

int fc_group_events(const fc_core *c, int64_t publish_ts_ns, fc_group **groups_out,
                    size_t *ngroups, uint32_t **next_out, uint32_t **sizes_out)
{
    size_t n = c->event_count;
    size_t capacity = 16;
    while (capacity < 2 * n)
        capacity *= 2;
    fc_group *groups = malloc((n ? n : 1) * sizeof *groups);
    uint32_t *next = malloc((n ? n : 1) * sizeof *next);
    uint32_t *sizes = malloc((n ? n : 1) * sizeof *sizes);
    uint32_t *table = calloc(capacity, sizeof *table); /* group index + 1; 0 = empty */
    if (groups == NULL || next == NULL || sizes == NULL || table == NULL) {
        free(groups);
        free(next);
        free(sizes);
        free(table);
        return -1;
    }
    size_t count = 0;
    size_t mask = capacity - 1;
    for (size_t i = 0; i < n; i++) {
        const fc_event *e = &c->events[i];
        size_t size = fc_event_payload_size(c, e, publish_ts_ns);
        if (size > UINT32_MAX) { /* cannot happen: reasons are below 4 GiB in all */
            free(groups);
            free(next);
            free(sizes);
            free(table);
            return -1;
        }
        sizes[i] = (uint32_t)size;
        next[i] = FC_NO_EVENT;
        size_t slot = key_hash(e) & mask;
        for (;;) {
            uint32_t g = table[slot];
            if (g == 0) {
                fc_group *group = &groups[count];
                group->first = group->last = (uint32_t)i;
                group->batch_size = wire_len_field_size(e->symbol_len);
                table[slot] = (uint32_t)++count;
                break;
            }
            fc_group *group = &groups[g - 1];
            if (same_key(&c->events[group->first], e)) {
                next[group->last] = (uint32_t)i;
                group->last = (uint32_t)i;
                break;
            }
            slot = (slot + 1) & mask;
        }
        groups[table[slot] - 1].batch_size += wire_batch_item_size(size);
    }
    free(table);
    *groups_out = groups;
    *ngroups = count;
    *next_out = next;
    *sizes_out = sizes;
    return 0;
}

uint8_t *fc_group_write(const fc_core *c, const fc_group *g, const uint32_t *next,
                        const uint32_t *sizes, int64_t publish_ts_ns, uint8_t *out)
{
    const fc_event *first = &c->events[g->first];
    out = wire_str_field(out, 1, (wire_str){first->symbol, first->symbol_len});
    for (uint32_t i = g->first; i != FC_NO_EVENT; i = next[i]) {
        const fc_event *e = &c->events[i];
        out = wire_batch_item_header(out, (unsigned)e->topic + 1, sizes[i]);
        out = fc_event_payload_write(c, e, publish_ts_ns, out);
    }
    return out;
}
