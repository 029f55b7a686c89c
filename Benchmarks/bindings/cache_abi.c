/* Per-call cost of the cache through the C ABI: mcpopt_cache_get hits (32-byte keys, 256-byte
 * values) on 1 and 2 threads, and mcpopt_cache_set, over 1,000 keys (they stay in the CPU's
 * caches, so the figure is the call, not DRAM). `mcpopt bench cache` reports the same loop from
 * Swift as hotGetNs. Run by scripts/bench-bindings. */
#define _POSIX_C_SOURCE 200809L
#include <mcpopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define KEYS 1000
static mcpopt_engine *engine;
static char keys[KEYS][32];

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *reader(void *arg) {
    long *count = arg;
    char buffer[512];
    size_t length;
    unsigned x = (unsigned)(size_t)count;
    double end = now() + 1.0;
    long done = 0;
    while (now() < end) {
        for (int i = 0; i < 1024; i++) {
            x = x * 1103515245u + 12345u;
            mcpopt_cache_get(engine, keys[x % KEYS], 32, buffer, sizeof buffer, &length);
        }
        done += 1024;
    }
    *count = done;
    return NULL;
}

int main(void) {
    const char *config = "{\"caching\":{\"memoryCacheSize\":\"256MiB\"}}";
    if (mcpopt_engine_create(config, MCPOPT_NUL_TERMINATED, &engine) != MCPOPT_OK) return 1;
    char value[256];
    memset(value, 'v', sizeof value);
    for (int i = 0; i < KEYS; i++) {
        snprintf(keys[i], 32, "key-%027d", i);
        keys[i][31] = 'k';
    }
    double start = now();
    for (int round = 0; round < 1000; round++)
        for (int i = 0; i < KEYS; i++) mcpopt_cache_set(engine, keys[i], 32, value, sizeof value, NULL);
    double set_ns = (now() - start) / (1000.0 * KEYS) * 1e9;
    for (int threads = 1; threads <= 2; threads++) {
        pthread_t t[2];
        long counts[2] = {1, 2};
        for (int i = 0; i < threads; i++) pthread_create(&t[i], NULL, reader, &counts[i]);
        long total = 0;
        for (int i = 0; i < threads; i++) { pthread_join(t[i], NULL); total += counts[i]; }
        printf("{\"threads\":%d,\"getsPerSecond\":%ld,\"getNs\":%.1f}\n", threads, total, 1e9 * threads / (double)total);
    }
    printf("{\"setNs\":%.1f}\n", set_ns);
    mcpopt_engine_destroy(engine);
    return 0;
}
