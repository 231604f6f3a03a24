/* The trades a Broken Trade can still be matched to: match number -> (price, size, side).
 *
 * Mirrors Normalizer._matches / _match_order: every published trade sets its match number's
 * entry and appends the number to a FIFO of at most `limit` numbers; when the FIFO overflows,
 * its oldest number's entry is removed, whatever trade set it last (so a number published
 * twice can be forgotten early, exactly as the Python dict/deque pair does). A Broken Trade
 * pops the entry but leaves the FIFO alone. The FIFO is a ring buffer that grows on demand up
 * to `limit`; the entries are an open-addressing hash table like the order table's. */
#ifndef TP_FASTCORE_MATCHES_H
#define TP_FASTCORE_MATCHES_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint64_t match;
    uint64_t size;
    uint32_t price;
    uint8_t side; /* protobuf Side */
    uint8_t used;
} match_entry;

typedef struct {
    match_entry *slots;
    uint32_t mask, count;
    uint8_t shift;
    uint64_t *ring;
    size_t ring_capacity, ring_head, ring_count;
    size_t limit;
} match_memory;

void matches_init(match_memory *m, size_t limit);
void matches_free(match_memory *m);
/* Forget everything (a new day); keeps no memory beyond the initial size. */
void matches_clear(match_memory *m);
/* Record a published trade; -1 when out of memory (nothing changed then). */
int matches_remember(match_memory *m, uint64_t match, uint32_t price, uint64_t size,
                     uint8_t side);
/* Pop the entry of match into *out; 0 when there is none. */
int matches_pop(match_memory *m, uint64_t match, match_entry *out);
size_t matches_memory(const match_memory *m);

#endif
