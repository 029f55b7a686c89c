// Concurrency primitives shared by the lock-free parts of mcpopt (the cache's reads, handle
// lookups, the routing table): a sequence lock, relaxed shared words, epochs that tell when a
// replaced structure may be freed, per-thread striped counters, and a coarse clock. The memory
// ordering rules live here, in one place, written with the compiler's atomics.
#ifndef MCPOPT_CONCURRENCY_H
#define MCPOPT_CONCURRENCY_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

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

// ---- Shared words (table slots, published pointers) -----------------------------------------
static inline uint64_t mco_load64(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
static inline void mco_store64(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }
static inline uint32_t mco_load32(const uint32_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
static inline void mco_store32(uint32_t *p, uint32_t v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }
static inline void *mco_load_pointer(void *const *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline void mco_store_pointer(void **p, void *v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
static inline uint64_t mco_add64(uint64_t *p, uint64_t v) { return __atomic_add_fetch(p, v, __ATOMIC_RELAXED); }
static inline uint64_t mco_sub64(uint64_t *p, uint64_t v) { return __atomic_sub_fetch(p, v, __ATOMIC_RELAXED); }
/// Compare-and-swap: 1 when *p was `expected` and is now `desired`.
static inline int mco_cas64(uint64_t *p, uint64_t expected, uint64_t desired) {
    return __atomic_compare_exchange_n(p, &expected, desired, 0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED);
}

/// A fast per-thread pseudo-random number (xorshift64*, seeded per thread): for exploration and
/// random choices on hot paths, where a shared generator would be a contended cache line.
uint64_t mco_thread_random(void);

// ---- Epochs: when may a replaced structure be freed? -----------------------------------------
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

// ---- Mutex (futex) --------------------------------------------------------------------------
// The uncontended path is one compare-and-swap to take and one exchange to give back, inlined
// where it is used; pthread_mutex_lock/unlock cost ~110 instructions a pair through the PLT,
// and a request takes ~36 (BENCHMARKS.md). Three states (Drepper, "Futexes Are Tricky",
// mutex 3): 0 free, 1 held, 2 held with waiters, who sleep on the word. These are the
// compiler's atomics, compiled into the caller: ThreadSanitizer sees them (it does not see a
// futex lock precompiled into a library, such as Synchronization.Mutex on Linux).
typedef struct { int state; } mco_mutex;
void mco_mutex_wait(mco_mutex *m);
void mco_mutex_wake(mco_mutex *m);
static inline void mco_mutex_lock(mco_mutex *m) {
    int expected = 0;
    if (__atomic_compare_exchange_n(&m->state, &expected, 1, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) return;
    mco_mutex_wait(m);
}
static inline void mco_mutex_unlock(mco_mutex *m) {
    if (__atomic_exchange_n(&m->state, 0, __ATOMIC_RELEASE) == 2) mco_mutex_wake(m);
}

#ifdef __cplusplus
}
#endif
#endif
