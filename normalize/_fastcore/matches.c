/* Match memory for Broken Trades; see matches.h. */
#include "matches.h"

#include <stdlib.h>
#include <string.h>

#define MIN_BITS 6
#define RING_MIN 64

/* Match numbers rise through the day, so the remembered ones are mostly a sliding window of
 * consecutive numbers: their low bits index the table directly (neighbours in time are
 * neighbours in memory, and the window never collides with itself), while the bits above
 * the table size are mixed in multiplicatively, so keys a multiple of the table size apart
 * do not pile onto one slot. */
static inline uint32_t home_of(const match_memory *m, uint64_t match)
{
    unsigned bits = 64u - m->shift;
    return (uint32_t)((match + (match >> bits) * UINT64_C(0x9E3779B97F4A7C15)) & m->mask);
}

static match_entry *find(const match_memory *m, uint64_t match)
{
    if (m->slots == NULL)
        return NULL;
    uint32_t i = home_of(m, match);
    for (;;) {
        match_entry *slot = &m->slots[i];
        if (!slot->used)
            return NULL;
        if (slot->match == match)
            return slot;
        i = (i + 1) & m->mask;
    }
}

static void place(match_memory *m, const match_entry *entry)
{
    uint32_t i = home_of(m, entry->match);
    while (m->slots[i].used)
        i = (i + 1) & m->mask;
    m->slots[i] = *entry;
}

static int resize(match_memory *m, unsigned bits)
{
    size_t capacity = (size_t)1 << bits;
    match_entry *slots = calloc(capacity, sizeof *slots);
    if (slots == NULL)
        return -1;
    match_entry *old = m->slots;
    size_t old_capacity = old ? (size_t)m->mask + 1 : 0;
    m->slots = slots;
    m->mask = (uint32_t)(capacity - 1);
    m->shift = (uint8_t)(64 - bits);
    for (size_t i = 0; i < old_capacity; i++)
        if (old[i].used)
            place(m, &old[i]);
    free(old);
    return 0;
}

static void remove_slot(match_memory *m, match_entry *slot)
{
    uint32_t hole = (uint32_t)(slot - m->slots);
    uint32_t j = hole;
    for (;;) {
        j = (j + 1) & m->mask;
        match_entry *next = &m->slots[j];
        if (!next->used)
            break;
        uint32_t home = home_of(m, next->match);
        int stays = hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
        if (!stays) {
            m->slots[hole] = *next;
            hole = j;
        }
    }
    m->slots[hole].used = 0;
    m->count--;
}

void matches_init(match_memory *m, size_t limit)
{
    memset(m, 0, sizeof *m);
    m->limit = limit;
}

void matches_free(match_memory *m)
{
    free(m->slots);
    free(m->ring);
    size_t limit = m->limit;
    memset(m, 0, sizeof *m);
    m->limit = limit;
}

void matches_clear(match_memory *m) { matches_free(m); }

size_t matches_memory(const match_memory *m)
{
    size_t bytes = m->ring_capacity * sizeof *m->ring;
    if (m->slots)
        bytes += ((size_t)m->mask + 1) * sizeof *m->slots;
    return bytes;
}

/* Make room for one more FIFO number, growing the ring up to limit. */
static int ring_reserve(match_memory *m)
{
    if (m->ring_count < m->ring_capacity || m->ring_capacity == m->limit)
        return 0;
    size_t capacity = m->ring_capacity ? m->ring_capacity * 2 : RING_MIN;
    if (capacity > m->limit)
        capacity = m->limit;
    uint64_t *ring = malloc(capacity * sizeof *ring);
    if (ring == NULL)
        return -1;
    for (size_t i = 0, j = m->ring_head; i < m->ring_count; i++) {
        ring[i] = m->ring[j];
        j = j + 1 == m->ring_capacity ? 0 : j + 1;
    }
    free(m->ring);
    m->ring = ring;
    m->ring_capacity = capacity;
    m->ring_head = 0;
    return 0;
}

int matches_remember(match_memory *m, uint64_t match, uint32_t price, uint64_t size,
                     uint8_t side)
{
    if (m->limit == 0)
        return 0;
    match_entry *slot = find(m, match);
    if (slot == NULL) {
        /* Reserve both structures before changing either. */
        if (m->slots == NULL) {
            if (resize(m, MIN_BITS) != 0)
                return -1;
        } else if ((size_t)(m->count + 1) * 2 > (size_t)m->mask + 1) {
            unsigned bits = 64u - m->shift + 1u;
            if (bits > 31 || resize(m, bits) != 0)
                return -1;
        }
    }
    if (ring_reserve(m) != 0)
        return -1;
    if (slot == NULL) {
        match_entry entry = {.match = match, .size = size, .price = price, .side = side, .used = 1};
        place(m, &entry);
        m->count++;
    } else {
        slot->size = size;
        slot->price = price;
        slot->side = side;
    }
    /* Python appends, then pops the oldest when over the limit; evicting first and then
     * appending forgets the same number (the entry was already set above in both). */
    if (m->ring_count == m->limit) {
        uint64_t oldest = m->ring[m->ring_head];
        m->ring_head = m->ring_head + 1 == m->ring_capacity ? 0 : m->ring_head + 1;
        m->ring_count--;
        match_entry *gone = find(m, oldest);
        if (gone != NULL)
            remove_slot(m, gone);
    }
    size_t tail = m->ring_head + m->ring_count;
    m->ring[tail >= m->ring_capacity ? tail - m->ring_capacity : tail] = match;
    m->ring_count++;
    return 0;
}

int matches_pop(match_memory *m, uint64_t match, match_entry *out)
{
    match_entry *slot = find(m, match);
    if (slot == NULL)
        return 0;
    *out = *slot;
    remove_slot(m, slot);
    return 1;
}
