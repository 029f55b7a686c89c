#define _GNU_SOURCE
#include "mcpopt_cache.h"
#include <dlfcn.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

#include <pthread.h>

// jemalloc's non-standard API, looked up at run time (flags as in jemalloc.h).
typedef int (*mallctl_fn)(const char *, void *, size_t *, void *, size_t);
typedef void *(*mallocx_fn)(size_t, int);
typedef void (*dallocx_fn)(void *, int);
#define JE_LG_ALIGN(la) ((int)(la))
#define JE_TCACHE_NONE (1 << 8)
#define JE_ARENA(a) ((((int)(a)) + 1) << 20)

#define REGION_ALIGN ((size_t)2 << 20)
#define REGION_MAX ((size_t)64 << 20)

typedef struct region { char *base; size_t size; void *mapping; size_t mapping_size; } region;

struct mco_page_source {
    pthread_mutex_t lock;
    mallocx_fn mallocx;
    dallocx_fn dallocx;
    unsigned arena;
    int jemalloc;
    size_t page_size, left;        // bytes still to hand out
    char *next;                    // next page in the current region
    size_t region_left;
    region *regions;
    size_t region_count;
};

mco_page_source *mco_page_source_new(int force_mmap, size_t page_size, size_t max_bytes) {
    mco_page_source *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    pthread_mutex_init(&s->lock, NULL);
    s->page_size = page_size;
    s->left = max_bytes / page_size * page_size;
    if (force_mmap) return s;
    mallctl_fn mallctl = (mallctl_fn)dlsym(RTLD_DEFAULT, "mallctl");
    s->mallocx = (mallocx_fn)dlsym(RTLD_DEFAULT, "mallocx");
    s->dallocx = (dallocx_fn)dlsym(RTLD_DEFAULT, "dallocx");
    if (!mallctl || !s->mallocx || !s->dallocx) return s;
    size_t size = sizeof s->arena;
    if (mallctl("arenas.create", &s->arena, &size, NULL, 0) == 0) s->jemalloc = 1;
    return s;
}

void mco_page_source_free(mco_page_source *s) {
    if (!s) return;
    for (size_t i = 0; i < s->region_count; i++) {
        region *r = &s->regions[i];
        if (s->jemalloc) s->dallocx(r->mapping, JE_ARENA(s->arena) | JE_TCACHE_NONE);
        else munmap(r->mapping, r->mapping_size);
    }
    free(s->regions);
    pthread_mutex_destroy(&s->lock);
    free(s);   // jemalloc arenas are never destroyed
}

int mco_page_source_is_jemalloc(const mco_page_source *s) { return s && s->jemalloc; }

/// Reserves the next region (under the lock).
static int reserve_region(mco_page_source *s) {
    size_t size = s->left < REGION_MAX ? s->left : REGION_MAX;
    if (size < s->page_size) return 0;
    region *grown = realloc(s->regions, (s->region_count + 1) * sizeof *grown);
    if (!grown) return 0;
    s->regions = grown;
    region r = {0};
    if (s->jemalloc) {
        r.mapping = s->mallocx(size, JE_ARENA(s->arena) | JE_TCACHE_NONE | JE_LG_ALIGN(21));
        r.mapping_size = size;
        r.base = r.mapping;
    } else {
        r.mapping_size = size + REGION_ALIGN;
        void *p = mmap(NULL, r.mapping_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        r.mapping = p == MAP_FAILED ? NULL : p;
        if (r.mapping) r.base = (char *)(((uintptr_t)r.mapping + REGION_ALIGN - 1) & ~(uintptr_t)(REGION_ALIGN - 1));
    }
    if (!r.mapping) return 0;
    r.size = size;
    madvise(r.base, size, MADV_HUGEPAGE);   // advice only: fine if refused
    s->regions[s->region_count++] = r;
    s->next = r.base;
    s->region_left = size;
    s->left -= size;
    return 1;
}

void *mco_page_alloc(mco_page_source *s) {
    pthread_mutex_lock(&s->lock);
    void *page = NULL;
    if (s->region_left >= s->page_size || reserve_region(s)) {
        page = s->next;
        s->next += s->page_size;
        s->region_left -= s->page_size;
    }
    pthread_mutex_unlock(&s->lock);
    return page;
}
