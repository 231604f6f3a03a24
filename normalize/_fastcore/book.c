/* Order book of one symbol; see book.h for the data structures and the rules. */
#include "book.h"

#include <stdlib.h>
#include <string.h>

#define TABLE_MIN_BITS 4   /* 16 slots when the first order arrives */
#define LEVELS_MIN 8
#define SCAN_FROM_BEST 8   /* levels scanned back from the best before binary search */

/* ------------------------------------------------------------------ order hash table */

static inline uint32_t table_home(const order_table *t, uint64_t ref)
{
    return (uint32_t)((ref * UINT64_C(0x9E3779B97F4A7C15)) >> t->shift);
}

static inline book_order *table_find(const order_table *t, uint64_t ref)
{
    if (t->slots == NULL)
        return NULL;
    uint32_t i = table_home(t, ref);
    for (;;) {
        book_order *slot = &t->slots[i];
        if (slot->shares == 0)
            return NULL;
        if (slot->ref == ref)
            return slot;
        i = (i + 1) & t->mask;
    }
}

const book_order *book_find(const book *b, uint64_t ref) { return table_find(&b->orders, ref); }

/* Put an order known to be absent into a table known to have room. */
static inline void table_place(order_table *t, const book_order *order)
{
    uint32_t i = table_home(t, order->ref);
    while (t->slots[i].shares != 0)
        i = (i + 1) & t->mask;
    t->slots[i] = *order;
}

static int table_resize(order_table *t, unsigned bits)
{
    size_t capacity = (size_t)1 << bits;
    book_order *slots = calloc(capacity, sizeof *slots);
    if (slots == NULL)
        return -1;
    book_order *old = t->slots;
    size_t old_capacity = old ? (size_t)t->mask + 1 : 0;
    t->slots = slots;
    t->mask = (uint32_t)(capacity - 1);
    t->shift = (uint8_t)(64 - bits);
    for (size_t i = 0; i < old_capacity; i++)
        if (old[i].shares != 0)
            table_place(t, &old[i]);
    free(old);
    return 0;
}

/* Room for one more order: keep the load factor at most 5/8. */
static inline int table_reserve(order_table *t)
{
    if (t->slots == NULL)
        return table_resize(t, TABLE_MIN_BITS);
    size_t capacity = (size_t)t->mask + 1;
    if ((size_t)(t->count + 1) * 8 > capacity * 5) {
        unsigned bits = 64u - t->shift + 1u;
        if (bits > 31)
            return -1; /* 2^31 slots: far beyond any real book */
        return table_resize(t, bits);
    }
    return 0;
}

/* Remove the order in slot, shifting back the run after it (no tombstones). */
static void table_remove(order_table *t, book_order *slot)
{
    uint32_t mask = t->mask;
    uint32_t hole = (uint32_t)(slot - t->slots);
    uint32_t j = hole;
    for (;;) {
        j = (j + 1) & mask;
        book_order *next = &t->slots[j];
        if (next->shares == 0)
            break;
        uint32_t home = table_home(t, next->ref);
        /* next may move into the hole unless its home lies cyclically in (hole, j]. */
        int stays = hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
        if (!stays) {
            t->slots[hole] = *next;
            hole = j;
        }
    }
    t->slots[hole].shares = 0;
    t->count--;
}

/* ------------------------------------------------------------------------ levels */

/* Index of the level with key, or where it would be inserted (*found = 0). */
static inline uint32_t side_search(const book_side *s, uint32_t key, int *found)
{
    const book_level *levels = s->levels;
    uint32_t hi = s->count; /* levels[hi..] all have keys > key */
    uint32_t stop = hi > SCAN_FROM_BEST ? hi - SCAN_FROM_BEST : 0;
    while (hi > stop && levels[hi - 1].key > key)
        hi--;
    if (hi > stop || hi == 0) {
        *found = hi > 0 && levels[hi - 1].key == key;
        return *found ? hi - 1 : hi;
    }
    /* Past the scan window: binary search in [0, hi). */
    uint32_t lo = 0;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (levels[mid].key <= key)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = lo > 0 && levels[lo - 1].key == key;
    return *found ? lo - 1 : lo;
}

static inline int side_add(book_side *s, uint32_t key, uint64_t shares)
{
    int found;
    uint32_t i = side_search(s, key, &found);
    if (found) {
        s->levels[i].size += shares;
        return 0;
    }
    if (s->count == s->capacity) {
        uint32_t capacity = s->capacity ? s->capacity * 2 : LEVELS_MIN;
        if (capacity < s->capacity)
            return -1;
        book_level *levels = realloc(s->levels, (size_t)capacity * sizeof *levels);
        if (levels == NULL)
            return -1;
        s->levels = levels;
        s->capacity = capacity;
    }
    memmove(&s->levels[i + 1], &s->levels[i], (size_t)(s->count - i) * sizeof *s->levels);
    s->levels[i].key = key;
    s->levels[i].size = shares;
    s->count++;
    return 0;
}

/* The level must exist and hold at least shares (the order table guarantees both). */
static inline void side_take(book_side *s, uint32_t key, uint64_t shares)
{
    int found;
    uint32_t i = side_search(s, key, &found);
    if (!found) /* cannot happen while the books are consistent; never read out of bounds */
        return;
    book_level *level = &s->levels[i];
    if (level->size > shares) {
        level->size -= shares;
        return;
    }
    s->count--;
    memmove(level, level + 1, (size_t)(s->count - i) * sizeof *level);
}

static inline book_side *side_of(book *b, uint8_t side) { return side == 'B' ? &b->bids : &b->asks; }

static inline uint32_t key_of(uint8_t side, uint32_t price) { return side == 'B' ? price : ~price; }

/* ------------------------------------------------------------------------ the book */

int book_init(book *b)
{
    memset(b, 0, sizeof *b);
    return 0;
}

void book_free(book *b)
{
    free(b->orders.slots);
    free(b->bids.levels);
    free(b->asks.levels);
    memset(b, 0, sizeof *b);
}

int book_clear(book *b)
{
    book_free(b);
    return 0;
}

size_t book_memory(const book *b)
{
    size_t bytes = 0;
    if (b->orders.slots)
        bytes += ((size_t)b->orders.mask + 1) * sizeof(book_order);
    bytes += (size_t)b->bids.capacity * sizeof(book_level);
    bytes += (size_t)b->asks.capacity * sizeof(book_level);
    return bytes;
}

int book_add(book *b, uint64_t ref, uint8_t side, uint32_t price, uint32_t shares)
{
    if (table_find(&b->orders, ref) != NULL)
        return BOOK_DUPLICATE;
    if ((side != 'B' && side != 'S') || shares == 0)
        return BOOK_INVALID;
    if (table_reserve(&b->orders) != 0)
        return BOOK_NO_MEMORY;
    if (side_add(side_of(b, side), key_of(side, price), shares) != 0)
        return BOOK_NO_MEMORY;
    book_order order = {.ref = ref, .price = price, .shares = shares, .side = side};
    table_place(&b->orders, &order);
    b->orders.count++;
    return BOOK_OK;
}

int book_reduce(book *b, uint64_t ref, uint32_t shares, uint8_t *side, uint32_t *price)
{
    book_order *order = table_find(&b->orders, ref);
    if (order == NULL)
        return BOOK_UNKNOWN_ORDER;
    if (shares == 0 || shares > order->shares)
        return BOOK_INVALID;
    *side = order->side;
    *price = order->price;
    side_take(side_of(b, order->side), key_of(order->side, order->price), shares);
    order->shares -= shares;
    if (order->shares == 0)
        table_remove(&b->orders, order);
    return BOOK_OK;
}

int book_delete(book *b, uint64_t ref)
{
    book_order *order = table_find(&b->orders, ref);
    if (order == NULL)
        return BOOK_UNKNOWN_ORDER;
    side_take(side_of(b, order->side), key_of(order->side, order->price), order->shares);
    table_remove(&b->orders, order);
    return BOOK_OK;
}

int book_replace(book *b, uint64_t ref, uint64_t new_ref, uint32_t price, uint32_t shares)
{
    book_order *order = table_find(&b->orders, ref);
    if (order == NULL)
        return BOOK_UNKNOWN_ORDER;
    if (new_ref != ref && table_find(&b->orders, new_ref) != NULL)
        return BOOK_DUPLICATE;
    if (shares == 0)
        return BOOK_INVALID;
    uint8_t side = order->side;
    book_side *levels = side_of(b, side);
    /* Reserve the new level first so that running out of memory changes nothing. */
    if (side_add(levels, key_of(side, price), shares) != 0)
        return BOOK_NO_MEMORY;
    /* side_add may have moved levels but not orders: order is still valid. */
    side_take(levels, key_of(side, order->price), order->shares);
    if (new_ref == ref) {
        order->price = price;
        order->shares = shares;
        return BOOK_OK;
    }
    table_remove(&b->orders, order);
    /* One order left and one came: the count is back where it was, so there is room. */
    book_order added = {.ref = new_ref, .price = price, .shares = shares, .side = side};
    table_place(&b->orders, &added);
    b->orders.count++;
    return BOOK_OK;
}
