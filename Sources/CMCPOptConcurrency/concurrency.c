#define _GNU_SOURCE
#include "mcpopt_concurrency.h"
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <pthread.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

uint64_t mco_global_epoch = 1;
static mco_reader *readers;
static pthread_key_t reader_key;
static pthread_once_t reader_once = PTHREAD_ONCE_INIT;
static _Thread_local mco_reader *my_reader;

static void reader_release(void *record) {
    mco_reader *r = record;
    __atomic_store_n(&r->epoch, 0, __ATOMIC_RELEASE);
    __atomic_store_n(&r->in_use, 0, __ATOMIC_RELEASE);
}
static void reader_key_init(void) { pthread_key_create(&reader_key, reader_release); }

mco_reader *mco_reader_self(void) {
    if (my_reader) return my_reader;
    pthread_once(&reader_once, reader_key_init);
    // Reuse a record a finished thread gave back, else add one (records are never freed).
    for (mco_reader *r = __atomic_load_n(&readers, __ATOMIC_ACQUIRE); r; r = r->next) {
        uint32_t expected = 0;
        if (__atomic_compare_exchange_n(&r->in_use, &expected, 1, 0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED)) { my_reader = r; break; }
    }
    if (!my_reader) {
        mco_reader *r = mco_cache_line_alloc(sizeof *r);
        if (!r) abort();
        r->in_use = 1;
        r->next = __atomic_load_n(&readers, __ATOMIC_RELAXED);
        while (!__atomic_compare_exchange_n(&readers, &r->next, r, 1, __ATOMIC_RELEASE, __ATOMIC_RELAXED)) {}
        my_reader = r;
    }
    pthread_setspecific(reader_key, my_reader);
    return my_reader;
}

uint64_t mco_epoch_advance(void) { return __atomic_add_fetch(&mco_global_epoch, 1, __ATOMIC_SEQ_CST); }

int mco_epoch_quiescent(uint64_t epoch) {
    for (mco_reader *r = __atomic_load_n(&readers, __ATOMIC_ACQUIRE); r; r = r->next) {
        uint64_t e = __atomic_load_n(&r->epoch, __ATOMIC_ACQUIRE);
        if (e != 0 && e < epoch) return 0;
    }
    return 1;
}

static unsigned next_stripe;
static _Thread_local unsigned my_stripe = UINT32_MAX;

unsigned mco_thread_stripe(void) {
    if (my_stripe == UINT32_MAX) my_stripe = __atomic_fetch_add(&next_stripe, 1, __ATOMIC_RELAXED) % MCO_STRIPES;
    return my_stripe;
}

uint64_t mco_stripe_sum(const mco_stripe *stripes, unsigned counter) {
    uint64_t sum = 0;
    for (unsigned i = 0; i < MCO_STRIPES; i++) sum += __atomic_load_n(&stripes[i].value[counter], __ATOMIC_RELAXED);
    return sum;
}

void *mco_cache_line_alloc(size_t size) {
    void *p = NULL;
    if (posix_memalign(&p, 64, (size + 63) & ~(size_t)63) != 0) return NULL;
    memset(p, 0, size);
    return p;
}

uint64_t mco_coarse_millis(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}


static _Thread_local uint64_t random_state;
static uint64_t random_seed_counter = 0x9E3779B97F4A7C15ull;

uint64_t mco_thread_random(void) {
    uint64_t x = random_state;
    if (x == 0) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        x = __atomic_add_fetch(&random_seed_counter, 0x9E3779B97F4A7C15ull, __ATOMIC_RELAXED) ^ (uint64_t)ts.tv_nsec ^ (uint64_t)(uintptr_t)&random_state;
        if (x == 0) x = 1;
    }
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    random_state = x;
    return x * 0x2545F4914F6CDD1Dull;
}

// The contended paths of mco_mutex: a short spin (the holder is usually on another CPU and
// about to give the lock back), then sleeping on the word marked "waiters".
void mco_mutex_wait(mco_mutex *m) {
    int c = 1;
    for (int spin = 0; spin < 64; spin++) {
        c = 0;
        if (__atomic_compare_exchange_n(&m->state, &c, 1, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) return;
        if (c == 2) break;
        __builtin_ia32_pause();
    }
    if (c != 2) c = __atomic_exchange_n(&m->state, 2, __ATOMIC_ACQUIRE);
    while (c != 0) {
        syscall(SYS_futex, &m->state, FUTEX_WAIT_PRIVATE, 2, NULL, NULL, 0);
        c = __atomic_exchange_n(&m->state, 2, __ATOMIC_ACQUIRE);
    }
}

void mco_mutex_wake(mco_mutex *m) { syscall(SYS_futex, &m->state, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0); }
