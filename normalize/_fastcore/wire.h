/* Protobuf (proto3) wire encoding of the normalized events in normalize/proto/marketdata.proto.
 *
 * The bytes equal upb's SerializeToString() for these flat messages: fields in field-number
 * order; a field whose value is the default (0, "", false) is omitted; int64, uint64, enum and
 * bool as varints (a negative int64 as its 64-bit two's complement, 10 bytes; a negative enum
 * sign-extended to 64 bits, also 10 bytes); strings and sub-messages length-delimited. Every
 * field number here is below 16, so every tag is one byte.
 *
 * Each message has a _size function and a _write function; the writer writes exactly _size
 * bytes, so callers allocate once and write in place. */
#ifndef TP_FASTCORE_WIRE_H
#define TP_FASTCORE_WIRE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    const char *data;
    size_t len;
} wire_str;

typedef struct {
    wire_str symbol;
    int64_t exchange_ts_ns;
    uint64_t seq;
    int64_t receive_ts_ns, publish_ts_ns;
    int64_t price;
    uint64_t size;
    int32_t side;
    uint64_t match_number;
    int32_t kind;
    wire_str cross_type, session;
} wire_trade;

typedef struct {
    wire_str symbol;
    int64_t exchange_ts_ns;
    uint64_t seq;
    int64_t receive_ts_ns, publish_ts_ns;
    int64_t bid_price;
    uint64_t bid_size;
    int64_t ask_price;
    uint64_t ask_size;
    wire_str session;
} wire_quote;

typedef struct {
    wire_str symbol;
    int64_t exchange_ts_ns;
    uint64_t seq;
    int64_t receive_ts_ns, publish_ts_ns;
    int32_t kind;
    wire_str code, reason;
    int halted;
    wire_str session;
} wire_status;

enum { WIRE_VARINT = 0, WIRE_LEN = 2 };

static inline size_t wire_varint_size(uint64_t v)
{
    /* 1 byte per started group of 7 bits; v | 1 keeps clz defined for 0. */
    return (size_t)(64 - __builtin_clzll(v | 1) + 6) / 7;
}

static inline uint8_t *wire_varint(uint8_t *out, uint64_t v)
{
    while (v >= 0x80) {
        *out++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *out++ = (uint8_t)v;
    return out;
}

/* Sizes of one optional field (0 when it holds the default). */
static inline size_t wire_u64_field_size(uint64_t v) { return v ? 1 + wire_varint_size(v) : 0; }
static inline size_t wire_i64_field_size(int64_t v) { return wire_u64_field_size((uint64_t)v); }
static inline size_t wire_enum_field_size(int32_t v)
{
    return wire_u64_field_size((uint64_t)(int64_t)v);
}
static inline size_t wire_len_field_size(size_t len)
{
    return len ? 1 + wire_varint_size(len) + len : 0;
}

static inline uint8_t *wire_u64_field(uint8_t *out, unsigned field, uint64_t v)
{
    if (!v)
        return out;
    *out++ = (uint8_t)(field << 3 | WIRE_VARINT);
    return wire_varint(out, v);
}

static inline uint8_t *wire_str_field(uint8_t *out, unsigned field, wire_str s)
{
    if (!s.len)
        return out;
    *out++ = (uint8_t)(field << 3 | WIRE_LEN);
    out = wire_varint(out, s.len);
    memcpy(out, s.data, s.len);
    return out + s.len;
}

/* The header shared by Trade, Quote and Status: fields 1..5. */
static inline size_t wire_header_size(wire_str symbol, int64_t exchange_ts_ns, uint64_t seq,
                                      int64_t receive_ts_ns, int64_t publish_ts_ns)
{
    return wire_len_field_size(symbol.len) + wire_i64_field_size(exchange_ts_ns) +
           wire_u64_field_size(seq) + wire_i64_field_size(receive_ts_ns) +
           wire_i64_field_size(publish_ts_ns);
}

static inline uint8_t *wire_header(uint8_t *out, wire_str symbol, int64_t exchange_ts_ns,
                                   uint64_t seq, int64_t receive_ts_ns, int64_t publish_ts_ns)
{
    out = wire_str_field(out, 1, symbol);
    out = wire_u64_field(out, 2, (uint64_t)exchange_ts_ns);
    out = wire_u64_field(out, 3, seq);
    out = wire_u64_field(out, 4, (uint64_t)receive_ts_ns);
    return wire_u64_field(out, 5, (uint64_t)publish_ts_ns);
}

static inline size_t wire_trade_size(const wire_trade *t)
{
    return wire_header_size(t->symbol, t->exchange_ts_ns, t->seq, t->receive_ts_ns,
                            t->publish_ts_ns) +
           wire_i64_field_size(t->price) + wire_u64_field_size(t->size) +
           wire_enum_field_size(t->side) + wire_u64_field_size(t->match_number) +
           wire_enum_field_size(t->kind) + wire_len_field_size(t->cross_type.len) +
           wire_len_field_size(t->session.len);
}

static inline uint8_t *wire_trade_write(uint8_t *out, const wire_trade *t)
{
    out = wire_header(out, t->symbol, t->exchange_ts_ns, t->seq, t->receive_ts_ns,
                      t->publish_ts_ns);
    out = wire_u64_field(out, 6, (uint64_t)t->price);
    out = wire_u64_field(out, 7, t->size);
    out = wire_u64_field(out, 8, (uint64_t)(int64_t)t->side);
    out = wire_u64_field(out, 9, t->match_number);
    out = wire_u64_field(out, 10, (uint64_t)(int64_t)t->kind);
    out = wire_str_field(out, 11, t->cross_type);
    return wire_str_field(out, 12, t->session);
}

static inline size_t wire_quote_size(const wire_quote *q)
{
    return wire_header_size(q->symbol, q->exchange_ts_ns, q->seq, q->receive_ts_ns,
                            q->publish_ts_ns) +
           wire_i64_field_size(q->bid_price) + wire_u64_field_size(q->bid_size) +
           wire_i64_field_size(q->ask_price) + wire_u64_field_size(q->ask_size) +
           wire_len_field_size(q->session.len);
}

static inline uint8_t *wire_quote_write(uint8_t *out, const wire_quote *q)
{
    out = wire_header(out, q->symbol, q->exchange_ts_ns, q->seq, q->receive_ts_ns,
                      q->publish_ts_ns);
    out = wire_u64_field(out, 6, (uint64_t)q->bid_price);
    out = wire_u64_field(out, 7, q->bid_size);
    out = wire_u64_field(out, 8, (uint64_t)q->ask_price);
    out = wire_u64_field(out, 9, q->ask_size);
    return wire_str_field(out, 10, q->session);
}

static inline size_t wire_status_size(const wire_status *s)
{
    return wire_header_size(s->symbol, s->exchange_ts_ns, s->seq, s->receive_ts_ns,
                            s->publish_ts_ns) +
           wire_enum_field_size(s->kind) + wire_len_field_size(s->code.len) +
           wire_len_field_size(s->reason.len) + (s->halted ? 2 : 0) +
           wire_len_field_size(s->session.len);
}

static inline uint8_t *wire_status_write(uint8_t *out, const wire_status *s)
{
    out = wire_header(out, s->symbol, s->exchange_ts_ns, s->seq, s->receive_ts_ns,
                      s->publish_ts_ns);
    out = wire_u64_field(out, 6, (uint64_t)(int64_t)s->kind);
    out = wire_str_field(out, 7, s->code);
    out = wire_str_field(out, 8, s->reason);
    out = wire_u64_field(out, 9, s->halted ? 1 : 0);
    return wire_str_field(out, 10, s->session);
}

/* EventBatch { string symbol = 1; repeated Event events = 2; } where
 * Event { oneof payload { Trade trade = 1; Quote quote = 2; Status status = 3; } }.
 * A set oneof member is written even when the sub-message is empty. */
static inline size_t wire_event_size(size_t payload_len)
{
    return 1 + wire_varint_size(payload_len) + payload_len;
}

static inline size_t wire_batch_item_size(size_t payload_len)
{
    size_t event = wire_event_size(payload_len);
    return 1 + wire_varint_size(event) + event;
}

/* Writes the batch item's two headers (field 2 of EventBatch, then the oneof field of
 * Event); the caller writes payload_len bytes of payload after them. */
static inline uint8_t *wire_batch_item_header(uint8_t *out, unsigned oneof_field,
                                              size_t payload_len)
{
    *out++ = (uint8_t)(2 << 3 | WIRE_LEN);
    out = wire_varint(out, wire_event_size(payload_len));
    *out++ = (uint8_t)(oneof_field << 3 | WIRE_LEN);
    return wire_varint(out, payload_len);
}

#endif
