// Primitives for the L1 memory cache (Sources/MCPOptCache): key hashing, item memory access
// (the seqlock's deliberate races, kept out of ThreadSanitizer's view), and the page source.
// The concurrency primitives themselves are in CMCPOptConcurrency.
#ifndef MCPOPT_CACHE_H
#define MCPOPT_CACHE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "mcpopt_concurrency.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__has_feature)
#  if __has_feature(thread_sanitizer)
#    define MCO_NO_TSAN __attribute__((no_sanitize("thread")))
#  endif
#endif
#ifndef MCO_NO_TSAN
#  define MCO_NO_TSAN
#endif

/// The key hash: XXH3, 64 bits. Shard, index slot and fingerprint all come from it.
static inline uint64_t mco_cache_hash(const void *key, size_t length) { return XXH3_64bits(key, length); }

// ---- Items ----------------------------------------------------------------------------------
/// An item's header; key bytes follow it, the value starts at the next 8-byte boundary.
/// 24 bytes: the doubly linked S3-FIFO queue, expiry, lengths, coherence group and tag set.
typedef struct mco_item {
    uint32_t prev, next;     // neighbours in the class's small or main queue (UINT32_MAX: none)
    uint32_t expiry;         // in cache ticks (10 ms since the cache started); 0: never
    uint32_t value_length;
    uint16_t key_length;
    uint16_t group;          // interned coherence group; 0: none
    uint16_t tag_set;        // interned set of tags; 0: none
    uint8_t freq;            // S3-FIFO's saturating access count, 0...3
    uint8_t flags;           // MCO_ITEM_*
} mco_item;

// flags: 1 = the chunk holds a live item, 2 = the item is in the main queue (see CacheShard.swift).
#define MCO_ITEM_HEADER ((size_t)sizeof(mco_item))

static inline size_t mco_item_value_offset(size_t key_length) { return (MCO_ITEM_HEADER + key_length + 7) & ~(size_t)7; }

/// Asks for the cache lines after the item's first while the header is still on its way, so a
/// hit's misses overlap instead of queueing behind the key check (11-53% more gets/s in
/// alternating runs, BENCHMARKS.md).
/// Five lines cover a 32-byte key and a 256-byte value at any alignment; longer values are
/// left to the hardware prefetcher, which follows a sequential copy.
static inline void mco_item_prefetch(const mco_item *item) {
    const char *line = (const char *)((uintptr_t)item & ~(uintptr_t)63);
    for (int i = 1; i <= 5; i++) __builtin_prefetch(line + 64 * i);
}

// Item memory may be rewritten by a writer while a reader copies it; the sequence lock makes
// the reader discard such a copy. These accesses are the seqlock's intended races, so they are
// kept out of ThreadSanitizer's view; everything else is checked.
/// A reader's snapshot of the header fields it needs.
MCO_NO_TSAN static inline void mco_item_peek(const mco_item *item, uint32_t *key_length, uint32_t *value_length,
                                             uint32_t *expiry, uint32_t *flags) {
    const volatile mco_item *v = item;
    *key_length = v->key_length;
    *value_length = v->value_length;
    *expiry = v->expiry;
    *flags = v->flags;
}
MCO_NO_TSAN static inline int mco_item_key_equals(const mco_item *item, const void *key, size_t length) {
    return memcmp((const char *)item + MCO_ITEM_HEADER, key, length) == 0;
}
MCO_NO_TSAN static inline void mco_item_copy_value(const mco_item *item, size_t key_length, void *out, size_t length) {
    memcpy(out, (const char *)item + mco_item_value_offset(key_length), length);
}
/// A hit: counts towards S3-FIFO's frequency, saturating at 3 (a hot item stops being written).
MCO_NO_TSAN static inline void mco_item_touch(mco_item *item) {
    volatile uint8_t *f = &item->freq;
    uint8_t now = *f;
    if (now < 3) *f = (uint8_t)(now + 1);
}
MCO_NO_TSAN static inline void mco_item_write(mco_item *item, const mco_item *header, const void *key, const void *value) {
    memcpy(item, header, sizeof *header);
    memcpy((char *)item + MCO_ITEM_HEADER, key, header->key_length);
    if (header->value_length) memcpy((char *)item + mco_item_value_offset(header->key_length), value, header->value_length);
}
/// Writer-side header access (under the shard mutex).
MCO_NO_TSAN static inline mco_item mco_item_header(const mco_item *item) { return *item; }
MCO_NO_TSAN static inline void mco_item_set_header(mco_item *item, mco_item header) { *item = header; }
MCO_NO_TSAN static inline const void *mco_item_key(const mco_item *item) { return (const char *)item + MCO_ITEM_HEADER; }
MCO_NO_TSAN static inline const void *mco_item_value(const mco_item *item) {
    return (const char *)item + mco_item_value_offset(item->key_length);
}

// ---- Pages ----------------------------------------------------------------------------------
/// Where slab pages come from: a jemalloc arena of the cache's own when the process runs jemalloc
/// (found at run time, the library does not link it), mmap otherwise. Pages are carved from
/// regions of up to 64 MiB aligned to 2 MiB and advised for transparent huge pages (a random
/// read over hundreds of MiB otherwise pays a TLB miss on most accesses); memory is committed
/// as pages are first written. Thread-safe.
typedef struct mco_page_source mco_page_source;
/// `max_bytes`: the most page bytes the source will ever hand out (the cache's budget).
mco_page_source *mco_page_source_new(int force_mmap, size_t page_size, size_t max_bytes);
/// Frees every region (all pages at once): call when no page is in use any more.
void mco_page_source_free(mco_page_source *source);
/// 1 when pages come from jemalloc.
int mco_page_source_is_jemalloc(const mco_page_source *source);
/// A page of the source's page size, aligned to it, content undefined; NULL when the budget is
/// spent or memory ran out.
void *mco_page_alloc(mco_page_source *source);

#ifdef __cplusplus
}
#endif
#endif
