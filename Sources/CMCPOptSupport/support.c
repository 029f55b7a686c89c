#define _GNU_SOURCE
#include "mcpopt_support.h"
#include <dlfcn.h>
#include <errno.h>
#include <sched.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

typedef struct mco_issue {
    char *path;
    char *message;
} mco_issue;

struct mco_error {
    int32_t status;
    char *message;
    mco_issue *issues;
    size_t issue_count;
};

static char *dup_text(const char *s) { return strdup(s ? s : ""); }

mco_error *mco_error_new(int32_t status, const char *message) {
    mco_error *e = calloc(1, sizeof *e);
    if (!e) return NULL;
    e->status = status;
    e->message = dup_text(message);
    if (!e->message) { free(e); return NULL; }
    return e;
}

int mco_error_add_issue(mco_error *e, const char *path, const char *message) {
    if (!e) return 0;
    mco_issue *grown = realloc(e->issues, (e->issue_count + 1) * sizeof *grown);
    if (!grown) return 0;
    e->issues = grown;
    char *p = dup_text(path), *m = dup_text(message);
    if (!p || !m) { free(p); free(m); return 0; }
    e->issues[e->issue_count++] = (mco_issue){p, m};
    return 1;
}

mco_error *mco_error_copy(const mco_error *e) {
    if (!e) return NULL;
    mco_error *c = mco_error_new(e->status, e->message);
    for (size_t i = 0; c && i < e->issue_count; i++) mco_error_add_issue(c, e->issues[i].path, e->issues[i].message);
    return c;
}

void mco_error_free(mco_error *e) {
    if (!e) return;
    for (size_t i = 0; i < e->issue_count; i++) { free(e->issues[i].path); free(e->issues[i].message); }
    free(e->issues);
    free(e->message);
    free(e);
}

int32_t mco_error_status(const mco_error *e) { return e ? e->status : 0; }
const char *mco_error_message(const mco_error *e) { return e ? e->message : ""; }
size_t mco_error_issue_count(const mco_error *e) { return e ? e->issue_count : 0; }
const char *mco_error_issue_path(const mco_error *e, size_t i) { return (e && i < e->issue_count) ? e->issues[i].path : NULL; }
const char *mco_error_issue_message(const mco_error *e, size_t i) { return (e && i < e->issue_count) ? e->issues[i].message : NULL; }

/* Thread-local last error, released when the thread exits. */
static pthread_key_t error_key;
static pthread_once_t error_once = PTHREAD_ONCE_INIT;
static void destroy_slot(void *p) { mco_error_free(p); }
static void make_key(void) { pthread_key_create(&error_key, destroy_slot); }

void mco_tls_error_set(mco_error *e) {
    pthread_once(&error_once, make_key);
    mco_error *old = pthread_getspecific(error_key);
    if (old == e) return;
    pthread_setspecific(error_key, e);
    mco_error_free(old);
}

const mco_error *mco_tls_error_get(void) {
    pthread_once(&error_once, make_key);
    return pthread_getspecific(error_key);
}

int mco_process_has_jemalloc(void) {
    return dlsym(RTLD_DEFAULT, "mallocx") != NULL || dlsym(RTLD_DEFAULT, "je_mallocx") != NULL;
}

int mco_affinity_get(int tid, int32_t *cpus, size_t capacity) {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(tid, sizeof set, &set) != 0) return -errno;
    size_t count = 0;
    for (int cpu = 0; cpu < CPU_SETSIZE && count < capacity; cpu++)
        if (CPU_ISSET(cpu, &set)) cpus[count++] = cpu;
    return (int)count;
}

int mco_affinity_set(int tid, const int32_t *cpus, size_t count) {
    if (!cpus && count) return -EINVAL;
    cpu_set_t set;
    CPU_ZERO(&set);
    for (size_t i = 0; i < count; i++) {
        if (cpus[i] < 0 || cpus[i] >= CPU_SETSIZE) return -EINVAL;
        CPU_SET(cpus[i], &set);
    }
    return sched_setaffinity(tid, sizeof set, &set) == 0 ? 0 : -errno;
}

int mco_pidfd_open(int pid) {
#ifdef SYS_pidfd_open
    long fd = syscall(SYS_pidfd_open, (pid_t)pid, 0);   /* pidfds are close-on-exec already */
    return fd < 0 ? -errno : (int)fd;
#else
    (void)pid;
    return -ENOSYS;
#endif
}
