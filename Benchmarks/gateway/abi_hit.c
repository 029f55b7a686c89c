/* Cache hits through the C ABI, in a C host: mcpopt_optimize_request on the same tools/call
 * (answered from the engine's cache after the first) on THREADS threads side by side, the
 * library loaded with dlopen from the path given (SwiftPM's libMCPOpt.so or CMake's
 * libmcpopt.so.1). The engine's one server is the HTTP echo server on PORT.
 * Usage: abi_hit LIBRARY PORT N THREADS
 * Prints one JSON line: calls, calls per second, p50/p99 in microseconds, how many were hits.
 * Run by `mcpopt bench gateway`. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <mcpopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_THREADS 16
static __typeof__(mcpopt_optimize_request) *optimize;
static __typeof__(mcpopt_free) *release;
static mcpopt_engine *engine;
static const char *request = "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\",\"arguments\":{\"i\":1}}}";

static double now(void) { struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts); return ts.tv_sec + ts.tv_nsec / 1e9; }
static int cmp(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return (x > y) - (x < y); }

typedef struct { int n, hits; double *samples; } lane;

/* One call; 1 when the engine answered it from its cache. */
static int call(void) {
    char *out = NULL;
    size_t length = 0;
    if (optimize(engine, request, strlen(request), NULL, 0, &out, &length) != MCPOPT_OK) return -1;
    int hit = strstr(out, "\"cacheSource\":\"memory\"") != NULL;
    release(out);
    return hit;
}

static void *run(void *arg) {
    lane *l = arg;
    for (int i = 0; i < l->n; i++) {
        double t = now();
        int r = call();
        l->samples[i] = (now() - t) * 1e6;
        if (r > 0) l->hits++;
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 5) { fprintf(stderr, "usage: abi_hit LIBRARY PORT N THREADS\n"); return 2; }
    int n = atoi(argv[3]), threads = atoi(argv[4]);
    if (n < 1 || threads < 1 || threads > MAX_THREADS) { fprintf(stderr, "N >= 1, 1 <= THREADS <= %d\n", MAX_THREADS); return 2; }
    void *library = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!library) { fprintf(stderr, "%s\n", dlerror()); return 1; }
    __typeof__(mcpopt_engine_create) *create = (__typeof__(mcpopt_engine_create) *)dlsym(library, "mcpopt_engine_create");
    __typeof__(mcpopt_engine_destroy) *destroy = (__typeof__(mcpopt_engine_destroy) *)dlsym(library, "mcpopt_engine_destroy");
    optimize = (__typeof__(mcpopt_optimize_request) *)dlsym(library, "mcpopt_optimize_request");
    release = (__typeof__(mcpopt_free) *)dlsym(library, "mcpopt_free");
    if (!create || !destroy || !optimize || !release) { fprintf(stderr, "%s lacks the mcpopt_* functions\n", argv[1]); return 1; }
    char config[256];
    snprintf(config, sizeof config, "{\"mcpServers\":{\"echo\":{\"url\":\"http://127.0.0.1:%s/mcp\"}},\"caching\":{\"tools\":{\"echo\":\"60s\"}}}", argv[2]);
    if (create(config, MCPOPT_NUL_TERMINATED, &engine) != MCPOPT_OK) { fprintf(stderr, "cannot create the engine\n"); return 1; }
    /* The first call goes upstream and fills the cache; the warm-up hits after it are not timed. */
    for (int i = 0; i < n / 10 + 10; i++)
        if (call() < 0) { fprintf(stderr, "the warm-up call failed\n"); destroy(engine); return 1; }
    lane lanes[MAX_THREADS] = {{0}};
    pthread_t t[MAX_THREADS];
    int each = (n + threads - 1) / threads;
    double start = now();
    for (int i = 0; i < threads; i++) {
        lanes[i].n = each;
        lanes[i].samples = malloc(each * sizeof(double));
        pthread_create(&t[i], NULL, run, &lanes[i]);
    }
    for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
    double elapsed = now() - start;
    double *all = malloc((size_t)each * threads * sizeof *all);
    int total = 0, hits = 0;
    for (int i = 0; i < threads; i++) {
        memcpy(all + total, lanes[i].samples, each * sizeof(double));
        total += each;
        hits += lanes[i].hits;
    }
    qsort(all, total, sizeof *all, cmp);
    printf("{\"threads\":%d,\"requests\":%d,\"hits\":%d,\"callsPerSecond\":%.0f,\"p50Us\":%.2f,\"p99Us\":%.2f}\n",
           threads, total, hits, total / elapsed, all[total / 2], all[(int)(total * 0.99)]);
    destroy(engine);
    return 0;
}
