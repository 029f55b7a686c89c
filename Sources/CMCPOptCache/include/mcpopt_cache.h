// Primitives for the L1 memory cache (Sources/MCPOptCache): key hashing, the per-shard sequence
// lock that lets readers go without locks, item memory access, striped counters, and the page
// source. Everything a reader touches concurrently with a writer goes through these functions,
// so the memory-ordering rules live in one place.
#ifndef MCPOPT_CACHE_H
#define MCPOPT_CACHE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

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

// ---- Sequence lock -------------------------------------------------------------------------
// Writers (holding the shard's mutex) make the count odd while they change the shard, and even
// again after. A reader samples the count, reads, and keeps what it read only if the count was
// even and unchanged: reads never write shared memory, so readers on two cores do not bounce a
// lock's cache line between them.
static inline void mco_seq_write_begin(uint64_t *seq) {
    __atomic_store_n(seq, __atomic_load_n(seq, __ATOMIC_RELAXED) + 1, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
}
static inline void mco_seq_write_end(uint64_t *seq) {
    __atomic_store_n(seq, __atomic_load_n(seq, __ATOMIC_RELAXED) + 1, __ATOMIC_RELEASE);
}
static inline uint64_t mco_seq_read_begin(const uint64_t *seq) { return __atomic_load_n(seq, __ATOMIC_ACQUIRE); }
/// Non-zero when what was read since `start` may be torn and must be read again.
static inline int mco_seq_read_retry(const uint64_t *seq, uint64_t start) {
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    return (start & 1) || __atomic_load_n(seq, __ATOMIC_RELAXED) != start;
}

// ---- Shared words (index entries, page table, index pointer) --------------------------------
static inline uint64_t mco_load64(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
static inline void mco_store64(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }
static inline uint32_t mco_load32(const uint32_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
static inline void mco_store32(uint32_t *p, uint32_t v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }
static inline void *mco_load_pointer(void *const *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline void mco_store_pointer(void **p, void *v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
static inline uint64_t mco_add64(uint64_t *p, uint64_t v) { return __atomic_add_fetch(p, v, __ATOMIC_RELAXED); }

// ---- Epochs: when may a replaced index table be freed? -----------------------------------------
// A reader announces the epoch it started in (a store to its own cache line, then a full fence)
// and clears it when done. A writer that replaced a table advances the epoch and frees the old
// table once no reader still announces an earlier epoch. The fence pairs with the writer's
// atomic increment: either the reader sees the new table, or the writer sees the reader.
typedef struct mco_reader {
    uint64_t epoch;            // 0: not reading
    struct mco_reader *next;
    uint32_t in_use;
    uint32_t depth;            // nesting (a callback inside a read section may read again)
    char pad[64 - 8 - sizeof(void *) - 8];
} mco_reader;

/// This thread's reader record (registered on first use, released when the thread exits).
mco_reader *mco_reader_self(void);
extern uint64_t mco_global_epoch;
static inline void mco_read_enter(mco_reader *r) {
    if (r->depth++ != 0) return;
    __atomic_store_n(&r->epoch, __atomic_load_n(&mco_global_epoch, __ATOMIC_RELAXED), __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
}
static inline void mco_read_exit(mco_reader *r) {
    if (--r->depth == 0) __atomic_store_n(&r->epoch, 0, __ATOMIC_RELEASE);
}
/// Called after publishing a replacement: the epoch whose readers can no longer see the old one.
uint64_t mco_epoch_advance(void);
/// 1 when no reader that started before `epoch` is still reading.
int mco_epoch_quiescent(uint64_t epoch);

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

// ---- Striped counters ------------------------------------------------------------------------
/// Counters every reader bumps (hits, misses) are striped per thread on separate cache lines.
#define MCO_STRIPES 16
typedef struct mco_stripe { uint64_t value[8]; } mco_stripe;   // one cache line
/// This thread's stripe (assigned round-robin on first use).
unsigned mco_thread_stripe(void);
static inline void mco_stripe_add(mco_stripe *stripes, unsigned counter, uint64_t n) {
    __atomic_fetch_add(&stripes[mco_thread_stripe()].value[counter], n, __ATOMIC_RELAXED);
}
uint64_t mco_stripe_sum(const mco_stripe *stripes, unsigned counter);

/// Zeroed memory aligned to a cache line (free with free()); NULL when out of memory.
void *mco_cache_line_alloc(size_t size);

// ---- Clock ----------------------------------------------------------------------------------
/// Monotonic milliseconds from the coarse clock (a few ns; resolution of a scheduler tick).
uint64_t mco_coarse_millis(void);

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
