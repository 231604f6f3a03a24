/* NASDAQ TotalView-ITCH 5.0: the message table, a bounds-checked decoder of every field.
 *
 * Mirrors normalize/itch.py (the reference codec): integers are unsigned big-endian, the
 * timestamp is 6 bytes, Alpha fields are ASCII (a byte >= 0x80 anywhere in an Alpha field
 * makes the whole message undecodable, as the Python decoder's ASCII check does) and
 * multi-byte Alpha fields lose their trailing spaces (only spaces, only on the right).
 *
 * Safety: itch_decode() reads a message only after checking that its length is exactly the
 * type's fixed length (itch_length()); every field offset below is < that length, which the
 * test suite checks against normalize.itch.MESSAGE_LAYOUTS through itch_layout_table(). */
#ifndef TP_FASTCORE_ITCH_H
#define TP_FASTCORE_ITCH_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Decode results: ITCH_OK or the reason the Python decoder would raise. */
enum itch_status {
    ITCH_OK = 0,
    ITCH_TRUNCATED = 1,      /* TruncatedMessage: not even the type byte */
    ITCH_UNKNOWN_TYPE = 2,   /* UnknownMessageType */
    ITCH_LENGTH_MISMATCH = 3,/* LengthMismatch: the frame length is not the type's length */
    ITCH_INVALID_ALPHA = 4,  /* InvalidAlphaField: a non-ASCII byte in an Alpha field */
};

/* A multi-byte Alpha value: its bytes with the right padding of spaces removed. */
typedef struct {
    char text[8];
    uint8_t len;
} itch_alpha;

typedef struct {
    uint8_t type;
    uint16_t locate;
    uint16_t tracking;
    uint64_t timestamp; /* ns since midnight, 48 bits */
    union {
        struct { uint8_t event_code; } S;
        struct {
            itch_alpha stock;
            uint8_t market_category, financial_status_indicator;
            uint32_t round_lot_size;
            uint8_t round_lots_only, issue_classification;
            itch_alpha issue_sub_type;
            uint8_t authenticity, short_sale_threshold_indicator, ipo_flag,
                luld_reference_price_tier, etp_flag;
            uint32_t etp_leverage_factor;
            uint8_t inverse_indicator;
        } R;
        struct {
            itch_alpha stock;
            uint8_t trading_state, reserved;
            itch_alpha reason;
        } H;
        struct { itch_alpha stock; uint8_t reg_sho_action; } Y;
        struct {
            itch_alpha mpid, stock;
            uint8_t primary_market_maker, market_maker_mode, market_participant_state;
        } L;
        struct { uint64_t level_1, level_2, level_3; } V;
        struct { uint8_t breached_level; } W;
        struct {
            itch_alpha stock;
            uint32_t release_time;
            uint8_t qualifier;
            uint32_t ipo_price;
        } K;
        struct {
            itch_alpha stock;
            uint32_t reference_price, upper_price, lower_price, extension;
        } J;
        struct { itch_alpha stock; uint8_t market_code, action; } h;
        struct { /* 'A' and 'F' */
            uint64_t ref;
            uint8_t side;
            uint32_t shares;
            itch_alpha stock;
            uint32_t price;
            itch_alpha attribution; /* 'F' only */
        } A;
        struct { uint64_t ref; uint32_t shares; uint64_t match; } E;
        struct {
            uint64_t ref;
            uint32_t shares;
            uint64_t match;
            uint8_t printable;
            uint32_t price;
        } C;
        struct { uint64_t ref; uint32_t shares; } X;
        struct { uint64_t ref; } D;
        struct { uint64_t ref, new_ref; uint32_t shares, price; } U;
        struct {
            uint64_t ref;
            uint8_t side;
            uint32_t shares;
            itch_alpha stock;
            uint32_t price;
            uint64_t match;
        } P;
        struct {
            uint64_t shares;
            itch_alpha stock;
            uint32_t price;
            uint64_t match;
            uint8_t cross_type;
        } Q;
        struct { uint64_t match; } B;
        struct {
            uint64_t paired_shares, imbalance_shares;
            uint8_t imbalance_direction;
            itch_alpha stock;
            uint32_t far_price, near_price, current_reference_price;
            uint8_t cross_type, price_variation_indicator;
        } I;
        struct { itch_alpha stock; uint8_t interest_flag; } N;
        struct {
            itch_alpha stock;
            uint8_t open_eligibility_status;
            uint32_t minimum_allowable_price, maximum_allowable_price, near_execution_price;
            uint64_t near_execution_time;
            uint32_t lower_price_range_collar, upper_price_range_collar;
        } O;
    } u;
} itch_message;

/* Fixed length of each type byte (type byte included), 0 for an unknown type. */
extern const uint8_t itch_lengths[256];

/* An Alpha field's position: offset from the type byte and size. */
typedef struct {
    uint8_t offset, size;
} itch_alpha_span;

/* The Alpha fields of each type, at most 12 (Stock Directory), ended by size 0. */
extern const itch_alpha_span itch_alpha_spans[256][13];

static inline size_t itch_length(uint8_t type) { return itch_lengths[type]; }

static inline uint16_t itch_u16(const uint8_t *p) { return (uint16_t)((p[0] << 8) | p[1]); }

static inline uint32_t itch_u32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return __builtin_bswap32(v);
}

static inline uint64_t itch_u64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return __builtin_bswap64(v);
}

static inline uint64_t itch_u48(const uint8_t *p)
{
    return ((uint64_t)itch_u16(p) << 32) | itch_u32(p + 2);
}

/* Multi-byte Alpha: copy and strip the right padding of spaces. */
static inline void itch_alpha_read(itch_alpha *out, const uint8_t *p, size_t size)
{
    size_t len = size;
    memcpy(out->text, p, size);
    while (len > 0 && p[len - 1] == ' ')
        len--;
    out->len = (uint8_t)len;
}

/* Whether every Alpha byte of a message of a known type (already length-checked) is ASCII. */
static inline int itch_alpha_ascii(const uint8_t *p, uint8_t type)
{
    const itch_alpha_span *span = itch_alpha_spans[type];
    uint8_t any = 0;
    for (; span->size; span++)
        for (size_t i = 0; i < span->size; i++)
            any |= p[span->offset + i];
    return !(any & 0x80);
}

/* Validate a message of n bytes at p the way normalize.itch.decode(p, 0, n) does. */
static inline enum itch_status itch_check(const uint8_t *p, size_t n)
{
    if (n == 0)
        return ITCH_TRUNCATED;
    size_t expected = itch_lengths[p[0]];
    if (expected == 0)
        return ITCH_UNKNOWN_TYPE;
    if (n != expected)
        return ITCH_LENGTH_MISMATCH;
    if (!itch_alpha_ascii(p, p[0]))
        return ITCH_INVALID_ALPHA;
    return ITCH_OK;
}

/* Decode every field of a message that passed itch_check(). */
void itch_decode_fields(const uint8_t *p, itch_message *m);

/* itch_check() then itch_decode_fields(). */
static inline enum itch_status itch_decode(const uint8_t *p, size_t n, itch_message *m)
{
    enum itch_status status = itch_check(p, n);
    if (status == ITCH_OK)
        itch_decode_fields(p, m);
    return status;
}

#endif
