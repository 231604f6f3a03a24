/* The order book of one symbol: live orders by reference number, aggregate shares per level.
 *
 * Same semantics as normalize/book.py (OrderBook), which is the oracle:
 * - an operation that contradicts the book (unknown reference, reference already live, side
 *   other than 'B'/'S', shares not positive or more than rest) is refused with a result code
 *   and leaves the book unchanged;
 * - a replace deletes the original and adds the new reference on the same side;
 * - no empty levels are kept; the BBO is the highest bid level and the lowest ask level,
 *   (0, 0) for an empty side.
 *
 * Orders: an open-addressing hash table (linear probing, Fibonacci hashing of the reference
 * number, backward-shift deletion so there are no tombstones). A slot is empty when its
 * shares are 0: a live order always has shares > 0 (the book refuses adds of 0 shares and
 * removes an order whose shares reach 0).
 *
 * Levels: per side, an array sorted by a key that grows towards the best price, so the best
 * level is the last element: the key is the price for bids and ~price for asks. Most activity
 * is at or near the best price, so a lookup scans a few levels back from the end before
 * falling back to binary search, and inserting or removing near the best moves few bytes. */
#ifndef TP_FASTCORE_BOOK_H
#define TP_FASTCORE_BOOK_H

#include <stddef.h>
#include <stdint.h>

enum book_result {
    BOOK_OK = 0,
    BOOK_UNKNOWN_ORDER = 1, /* UnknownOrder */
    BOOK_DUPLICATE = 2,     /* DuplicateOrder */
    BOOK_INVALID = 3,       /* InvalidOrder (side or shares) */
    BOOK_NO_MEMORY = 4,     /* allocation failed; the book is unchanged */
};

typedef struct {
    uint64_t ref;
    uint32_t price;
    uint32_t shares; /* 0: empty slot */
    uint8_t side;    /* 'B' or 'S' */
} book_order;

typedef struct {
    book_order *slots;
    uint32_t mask;  /* capacity - 1; capacity is a power of two */
    uint32_t count; /* live orders */
    uint8_t shift;  /* 64 - log2(capacity), for Fibonacci hashing */
} order_table;

typedef struct {
    uint32_t key;  /* price for bids, ~price for asks: ascending, best last */
    uint64_t size; /* aggregate shares, > 0 */
} book_level;

typedef struct {
    book_level *levels;
    uint32_t count, capacity;
} book_side;

typedef struct {
    order_table orders;
    book_side bids, asks;
} book;

/* (bid_price, bid_size, ask_price, ask_size); zeros for an empty side. */
typedef struct {
    uint64_t bid_price, bid_size, ask_price, ask_size;
} book_bbo;

int book_init(book *b);
void book_free(book *b);
/* Empty the book and give back memory beyond the initial capacity. */
int book_clear(book *b);
/* Bytes this book holds on the heap. */
size_t book_memory(const book *b);

int book_add(book *b, uint64_t ref, uint8_t side, uint32_t price, uint32_t shares);
/* execute/cancel: on BOOK_OK *side and *price tell the order's side and price. */
int book_reduce(book *b, uint64_t ref, uint32_t shares, uint8_t *side, uint32_t *price);
int book_delete(book *b, uint64_t ref);
int book_replace(book *b, uint64_t ref, uint64_t new_ref, uint32_t price, uint32_t shares);

static inline book_bbo book_get_bbo(const book *b)
{
    book_bbo q = {0, 0, 0, 0};
    if (b->bids.count) {
        const book_level *l = &b->bids.levels[b->bids.count - 1];
        q.bid_price = l->key;
        q.bid_size = l->size;
    }
    if (b->asks.count) {
        const book_level *l = &b->asks.levels[b->asks.count - 1];
        q.ask_price = (uint32_t)~l->key;
        q.ask_size = l->size;
    }
    return q;
}

/* Lookups for snapshots and tests. */
const book_order *book_find(const book *b, uint64_t ref);

#endif
