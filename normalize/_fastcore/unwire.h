/* Parsing md.trades records: the proto3 wire format of an EventBatch
 * (normalize/proto/marketdata.proto), keeping the symbol and each trade's fields the candles
 * need. The inverse of wire.h for readers; no Python here (module.c builds the objects).
 *
 * Accepts and rejects exactly what upb (the protobuf Python parser) does for EventBatch:
 *   - any field order; a repeated scalar field's last value wins; a repeated sub-message
 *     field merges (an Event's trade given twice merges, unless another payload was set in
 *     between: then the trade restarts empty); a known field with an unexpected wire type
 *     (packed, fixed, group …) is an unknown field and skipped; absent fields are 0 / "";
 *   - unknown fields of every wire type are skipped; groups must end with the END_GROUP tag
 *     of their field number; nesting (sub-messages and groups) at most UW_MAX_DEPTH deep;
 *   - varints: at most 10 bytes, bits past the 64th ignored; tags at most 5 bytes and
 *     32 bits, field number not 0; wire types 6 and 7 are errors;
 *   - every string field of the known messages (Trade, Quote, Status, Bar, the batch's symbol)
 *     must be valid UTF-8 (no overlongs, no surrogates, at most U+10FFFF), parsed or not.
 * Every read is bounds-checked against the buffer: a truncated or lying input is an error,
 * never a read past its end. */
#ifndef TP_FASTCORE_UNWIRE_H
#define TP_FASTCORE_UNWIRE_H

#include <stddef.h>
#include <stdint.h>

enum { UW_MAX_DEPTH = 100, UW_TRADE_KIND_BROKEN = 5 };

typedef struct {
    int64_t exchange_ts_ns;
    uint64_t seq;
    int64_t price;
    uint64_t size;
    uint64_t match_number;
    int32_t kind;
} uw_trade;

typedef struct {
    const char *message; /* static text: what was wrong (NULL: no error) */
    size_t offset;       /* where in the buffer */
} uw_error;

/* Called for each event whose payload is a trade, in order; nonzero stops the parse (then
 * uw_parse_batch returns that value). */
typedef int (*uw_trade_fn)(void *ctx, const uw_trade *trade);

/* Parse the EventBatch in buf[0:len]. Returns 0 and sets *symbol / *symbol_len (the last
 * symbol field, "" if none) on success; -1 with *error set on malformed input; or the
 * nonzero value of on_trade. */
int uw_parse_batch(const uint8_t *buf, size_t len, const char **symbol, size_t *symbol_len,
                   uw_trade_fn on_trade, void *ctx, uw_error *error);

#endif
