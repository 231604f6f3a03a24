/* The normalizer core: ITCH 5.0 messages in, normalized events out. Pure C, no Python API.
 *
 * The rules are normalize/normalizer.py's (its module docstring is the specification, and
 * the equivalence tests compare the two byte for byte); this file only says how the state is
 * laid out. Events are queued as compact structs and serialized to Protobuf only when taken,
 * because the publish time is known only then. Strings an event carries beyond its symbol
 * and one-character code (a Status reason) live in a text arena reset at each take. */
#ifndef TP_FASTCORE_CORE_H
#define TP_FASTCORE_CORE_H

#include <stddef.h>
#include <stdint.h>

#include "book.h"
#include "itch.h"
#include "matches.h"
#include "wire.h"

#define FC_LOCATES 65536

enum fc_topic { FC_TRADES = 0, FC_QUOTES = 1, FC_STATUS = 2, FC_TOPICS = 3 };

/* marketdata.proto enums */
enum { PB_SIDE_UNSPECIFIED = 0, PB_SIDE_BUY = 1, PB_SIDE_SELL = 2 };
enum {
    PB_TRADE_EXECUTION = 1,
    PB_TRADE_EXECUTION_WITH_PRICE = 2,
    PB_TRADE_NON_CROSS = 3,
    PB_TRADE_CROSS = 4,
    PB_TRADE_BROKEN = 5,
};
enum {
    PB_STATUS_SYSTEM_EVENT = 1,
    PB_STATUS_TRADING_ACTION = 2,
    PB_STATUS_REG_SHO = 3,
    PB_STATUS_MWCB = 4,
    PB_STATUS_OPERATIONAL_HALT = 5,
    PB_STATUS_LULD_COLLAR = 6,
    PB_STATUS_IPO_QUOTING = 7,
    PB_STATUS_FEED_STALE = 8,
    PB_STATUS_FEED_RECOVERED = 9,
};

/* Why a message was skipped; the Python normalizer's problem kinds, one each. */
enum fc_problem {
    FC_TRUNCATED = 0,       /* "undecodable message (TruncatedMessage)" */
    FC_UNKNOWN_TYPE,        /* "undecodable message (UnknownMessageType)" */
    FC_LENGTH_MISMATCH,     /* "undecodable message (LengthMismatch)" */
    FC_INVALID_ALPHA,       /* "undecodable message (InvalidAlphaField)" */
    FC_UNKNOWN_SYMBOL,      /* "message for an unannounced stock locate" */
    FC_UNKNOWN_ORDER,       /* "order message for an unknown reference number" */
    FC_DUPLICATE_ORDER,     /* "order message the book refused (DuplicateOrder)" */
    FC_INVALID_ORDER,       /* "order message the book refused (InvalidOrder)" */
    FC_PROBLEMS
};

typedef struct {
    uint64_t messages, skipped_other_shard, unknown_symbol, unknown_order, inconsistent_order,
        decode_errors, trades, quotes, statuses, stale_symbols;
} fc_stats;

/* The last message of each problem kind, for the log line. */
typedef struct {
    uint8_t type;
    uint16_t locate;
    uint64_t ref;
    size_t length;
} fc_problem_detail;

typedef struct {
    book book;
    book_bbo quoted; /* the BBO of the last Quote published */
    char symbol[8];
    uint8_t symbol_len;
    uint8_t stale, halted_by_action, halted_operationally;
} fc_symbol;

typedef struct {
    uint8_t topic, kind, side, halted;
    uint8_t symbol_len, code_len;
    char code; /* Status code or Trade cross_type: at most one character */
    char symbol[8];
    uint32_t reason_offset, reason_len; /* Status reason, in the text arena */
    int64_t exchange_ts_ns;
    uint64_t seq;
    int64_t receive_ts_ns;
    uint64_t v[4]; /* Trade: price, size, match_number; Quote: bid/ask price and size */
} fc_event;

typedef struct {
    int64_t midnight_ns;
    uint32_t shard_index, shard_count;
    int publishes_market_wide;
    char *session;
    size_t session_len;

    fc_symbol **symbols; /* FC_LOCATES entries; NULL: not announced (or not owned) */
    uint16_t *announced; /* the announced locates, sorted when announced_sorted */
    size_t announced_count, announced_capacity;
    int announced_sorted;

    uint64_t last_timestamp; /* ITCH timestamp of the last message decoded */
    match_memory matches;

    fc_event *events;
    size_t event_count, event_capacity;
    char *text;
    size_t text_len, text_capacity;

    fc_stats stats;
    uint64_t problems[FC_PROBLEMS];
    fc_problem_detail problem_detail[FC_PROBLEMS];
    uint64_t recovered_books, recovered_seq; /* for the log line of a start of messages */
} fc_core;

/* 0 or -1 (out of memory). */
int fc_init(fc_core *c, int64_t midnight_ns, const char *session, size_t session_len,
            uint32_t shard_index, uint32_t shard_count, size_t match_memory);
void fc_free(fc_core *c);
size_t fc_memory(const fc_core *c);

/* Apply one message of n bytes: 0, or -1 when memory ran out. */
int fc_process(fc_core *c, const uint8_t *p, size_t n, uint64_t seq, int64_t receive_ts_ns);

/* Mark every owned symbol stale; returns the number newly marked, or -1 (out of memory). */
long fc_mark_stale(fc_core *c, uint64_t seq, int64_t receive_ts_ns, const char *reason,
                   size_t reason_len);

/* The announced locates in ascending order (sorted on demand). */
const uint16_t *fc_announced(fc_core *c, size_t *count);

/* Serialization of queued events, at take time. */
size_t fc_event_payload_size(const fc_core *c, const fc_event *e, int64_t publish_ts_ns);
uint8_t *fc_event_payload_write(const fc_core *c, const fc_event *e, int64_t publish_ts_ns,
                                uint8_t *out);

/* Forget the queued events (after they were taken). */
void fc_events_reset(fc_core *c);

/* Group the queued events per (topic, symbol) in order of first appearance, as
 * normalize.normalizer.batch_records does. On success *groups has *ngroups entries; each
 * names its first event, and next[i] is the event after i in the same group (or
 * FC_NO_EVENT); sizes[i] is event i's payload size; every array is the caller's to free. */
#define FC_NO_EVENT UINT32_MAX
typedef struct {
    uint32_t first, last;
    size_t batch_size; /* serialized EventBatch size */
} fc_group;
int fc_group_events(const fc_core *c, int64_t publish_ts_ns, fc_group **groups,
                    size_t *ngroups, uint32_t **next, uint32_t **sizes);

/* Write one group's EventBatch (exactly group->batch_size bytes). */
uint8_t *fc_group_write(const fc_core *c, const fc_group *g, const uint32_t *next,
                        const uint32_t *sizes, int64_t publish_ts_ns, uint8_t *out);

#endif
