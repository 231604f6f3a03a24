/* EventBatch parsing for the candles (see unwire.h for what is accepted). */
#include "unwire.h"

#include <string.h>

enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_SGROUP = 3, WT_EGROUP = 4, WT_I32 = 5 };

typedef struct {
    const uint8_t *start; /* the whole buffer, for error offsets */
    uw_error *error;
} parser;

static int fail(const parser *ps, const uint8_t *at, const char *message)
{
    ps->error->message = message;
    ps->error->offset = (size_t)(at - ps->start);
    return -1;
}

/* A varint at *p (before end): at most 10 bytes, bits past 64 dropped as upb does. */
static int read_varint(const parser *ps, const uint8_t **p, const uint8_t *end, uint64_t *out)
{
    const uint8_t *q = *p;
    uint64_t v = 0;
    for (unsigned i = 0; i < 10; i++) {
        if (q >= end)
            return fail(ps, *p, "truncated varint");
        uint8_t b = *q++;
        v |= (uint64_t)(b & 0x7F) << (7 * i); /* i == 9: only bit 0 lands below bit 64 */
        if (!(b & 0x80)) {
            *p = q;
            *out = v;
            return 0;
        }
    }
    return fail(ps, *p, "varint longer than 10 bytes");
}

/* A tag: at most 5 bytes, the value within 32 bits, field number not 0. */
/* A tag, field number 0 included: upb accepts it inside a group being skipped (a "\0"
 * tag byte then its varint value), so the group skipper takes it too; everywhere else
 * read_tag refuses it, as upb does. */
static int read_any_tag(const parser *ps, const uint8_t **p, const uint8_t *end,
                        uint32_t *field, unsigned *wire_type)
{
    const uint8_t *q = *p;
    uint64_t v = 0;
    for (unsigned i = 0;; i++) {
        if (q >= end)
            return fail(ps, *p, "truncated tag");
        uint8_t b = *q++;
        if (i == 4 && b > 0x0F)
            return fail(ps, *p, "tag longer than 32 bits");
        v |= (uint64_t)(b & 0x7F) << (7 * i);
        if (!(b & 0x80))
            break;
    }
    *p = q;
    *field = (uint32_t)(v >> 3);
    *wire_type = (unsigned)(v & 7);
    return 0;
}

static int read_tag(const parser *ps, const uint8_t **p, const uint8_t *end, uint32_t *field,
                    unsigned *wire_type)
{
    const uint8_t *at = *p;
    if (read_any_tag(ps, p, end, field, wire_type))
        return -1;
    if (*field == 0)
        return fail(ps, at, "field number 0");
    return 0;
}

/* A length-delimited field's bytes: [*data, *data + *len) lies within [*p, end). */
static int read_len(const parser *ps, const uint8_t **p, const uint8_t *end,
                    const uint8_t **data, size_t *len)
{
    const uint8_t *at = *p;
    uint64_t n;
    if (read_varint(ps, p, end, &n))
        return -1;
    if (n > (uint64_t)(end - *p))
        return fail(ps, at, "length past the end of the buffer");
    *data = *p;
    *len = (size_t)n;
    *p += n;
    return 0;
}

/* Strict UTF-8 (RFC 3629): what upb and Python's str accept. */
static int valid_utf8(const uint8_t *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t need;
        uint8_t lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF)
            need = 1;
        else if (c >= 0xE0 && c <= 0xEF) {
            need = 2;
            if (c == 0xE0)
                lo = 0xA0; /* no overlongs */
            else if (c == 0xED)
                hi = 0x9F; /* no surrogates */
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3;
            if (c == 0xF0)
                lo = 0x90;
            else if (c == 0xF4)
                hi = 0x8F; /* at most U+10FFFF */
        } else
            return 0;
        if (len - i - 1 < need)
            return 0;
        if (s[i + 1] < lo || s[i + 1] > hi)
            return 0;
        for (size_t k = 2; k <= need; k++)
            if ((s[i + k] & 0xC0) != 0x80)
                return 0;
        i += need + 1;
    }
    return 1;
}

static int check_utf8(const parser *ps, const uint8_t *data, size_t len)
{
    return valid_utf8(data, len) ? 0 : fail(ps, data, "string field is not valid UTF-8");
}

/* Skip the value of an unknown field whose tag was just read. depth: nesting levels left.
 * A group's fields are skipped up to its END_GROUP tag of the same field number. */
static int skip_field(const parser *ps, const uint8_t **p, const uint8_t *end, uint32_t field,
                      unsigned wire_type, int depth)
{
    const uint8_t *at = *p;
    uint64_t ignored;
    const uint8_t *data;
    size_t len;
    switch (wire_type) {
    case WT_VARINT:
        return read_varint(ps, p, end, &ignored);
    case WT_I64:
        if (end - *p < 8)
            return fail(ps, at, "truncated fixed64");
        *p += 8;
        return 0;
    case WT_LEN:
        return read_len(ps, p, end, &data, &len);
    case WT_I32:
        if (end - *p < 4)
            return fail(ps, at, "truncated fixed32");
        *p += 4;
        return 0;
    case WT_SGROUP:
        if (depth <= 0)
            return fail(ps, at, "nested too deeply");
        for (;;) {
            uint32_t inner;
            unsigned inner_type;
            const uint8_t *tag_at = *p;
            if (*p >= end)
                return fail(ps, at, "group without END_GROUP");
            if (read_any_tag(ps, p, end, &inner, &inner_type))
                return -1;
            if (inner_type == WT_EGROUP) {
                if (inner != field)
                    return fail(ps, tag_at, "END_GROUP of another field");
                return 0;
            }
            if (skip_field(ps, p, end, inner, inner_type, depth - 1))
                return -1;
        }
    case WT_EGROUP:
        return fail(ps, at, "END_GROUP outside a group");
    default:
        return fail(ps, at, "invalid wire type");
    }
}

/* Walk a sub-message in [p, end) at the given depth (levels left), checking its structure
 * and that its string fields (those in the bitmask strings, by field number) are UTF-8. */
static int check_message(const parser *ps, const uint8_t *p, const uint8_t *end,
                         uint32_t strings, int depth)
{
    if (depth <= 0)
        return fail(ps, p, "nested too deeply");
    while (p < end) {
        uint32_t field;
        unsigned wire_type;
        if (read_tag(ps, &p, end, &field, &wire_type))
            return -1;
        if (wire_type == WT_LEN && field < 32 && (strings >> field & 1)) {
            const uint8_t *data;
            size_t len;
            if (read_len(ps, &p, end, &data, &len) || check_utf8(ps, data, len))
                return -1;
        } else if (skip_field(ps, &p, end, field, wire_type, depth - 1))
            return -1;
    }
    return 0;
}

#define BIT(n) (1u << (n))
static const uint32_t TRADE_STRINGS = BIT(1) | BIT(11) | BIT(12);
static const uint32_t QUOTE_STRINGS = BIT(1) | BIT(10);
static const uint32_t STATUS_STRINGS = BIT(1) | BIT(7) | BIT(8) | BIT(10);
static const uint32_t BAR_STRINGS = BIT(1);

/* Merge the Trade in [p, end) into *t (fields present overwrite). */
static int parse_trade(const parser *ps, const uint8_t *p, const uint8_t *end, uw_trade *t,
                       int depth)
{
    if (depth <= 0)
        return fail(ps, p, "nested too deeply");
    while (p < end) {
        uint32_t field;
        unsigned wire_type;
        if (read_tag(ps, &p, end, &field, &wire_type))
            return -1;
        if (wire_type == WT_VARINT) {
            uint64_t v;
            if (read_varint(ps, &p, end, &v))
                return -1;
            switch (field) {
            case 2: t->exchange_ts_ns = (int64_t)v; break;
            case 3: t->seq = v; break;
            case 6: t->price = (int64_t)v; break;
            case 7: t->size = v; break;
            case 9: t->match_number = v; break;
            case 10: t->kind = (int32_t)(uint32_t)v; break; /* int32 enum: low 32 bits */
            default: break; /* receive/publish times, side, unknown fields */
            }
        } else if (wire_type == WT_LEN && field < 32 && (TRADE_STRINGS >> field & 1)) {
            const uint8_t *data;
            size_t len;
            if (read_len(ps, &p, end, &data, &len) || check_utf8(ps, data, len))
                return -1;
        } else if (skip_field(ps, &p, end, field, wire_type, depth - 1))
            return -1;
    }
    return 0;
}

/* One Event in [p, end): its trade (if the payload that ends set is a trade) to on_trade. */
static int parse_event(const parser *ps, const uint8_t *p, const uint8_t *end,
                       uw_trade_fn on_trade, void *ctx, int depth)
{
    if (depth <= 0)
        return fail(ps, p, "nested too deeply");
    uw_trade trade = {0};
    uint32_t payload = 0; /* the oneof's field number, 0: none */
    while (p < end) {
        uint32_t field;
        unsigned wire_type;
        if (read_tag(ps, &p, end, &field, &wire_type))
            return -1;
        if (wire_type == WT_LEN && field >= 1 && field <= 4) {
            const uint8_t *data;
            size_t len;
            if (read_len(ps, &p, end, &data, &len))
                return -1;
            int bad;
            if (field == 1) {
                if (payload != 1)
                    memset(&trade, 0, sizeof trade); /* another payload was set: restart */
                bad = parse_trade(ps, data, data + len, &trade, depth - 1);
            } else {
                static const uint32_t strings[] = {0, 0, QUOTE_STRINGS, STATUS_STRINGS,
                                                   BAR_STRINGS};
                bad = check_message(ps, data, data + len, strings[field], depth - 1);
            }
            if (bad)
                return -1;
            payload = field;
        } else if (skip_field(ps, &p, end, field, wire_type, depth - 1))
            return -1;
    }
    return payload == 1 ? on_trade(ctx, &trade) : 0;
}

int uw_parse_batch(const uint8_t *buf, size_t len, const char **symbol, size_t *symbol_len,
                   uw_trade_fn on_trade, void *ctx, uw_error *error)
{
    parser ps = {buf, error};
    const uint8_t *p = buf, *end = buf + len;
    *symbol = "";
    *symbol_len = 0;
    error->message = NULL;
    error->offset = 0;
    while (p < end) {
        uint32_t field;
        unsigned wire_type;
        if (read_tag(&ps, &p, end, &field, &wire_type))
            return -1;
        if (wire_type == WT_LEN && (field == 1 || field == 2)) {
            const uint8_t *data;
            size_t n;
            if (read_len(&ps, &p, end, &data, &n))
                return -1;
            if (field == 1) {
                if (check_utf8(&ps, data, n))
                    return -1;
                *symbol = (const char *)data;
                *symbol_len = n;
            } else {
                int result = parse_event(&ps, data, data + n, on_trade, ctx, UW_MAX_DEPTH);
                if (result)
                    return result;
            }
        } else if (skip_field(&ps, &p, end, field, wire_type, UW_MAX_DEPTH))
            return -1;
    }
    return 0;
}
