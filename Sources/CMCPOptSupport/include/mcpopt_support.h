// Small C services the Swift core needs and Swift cannot express directly. Internal: the
// `mco_` prefix keeps these out of libmcpopt.so's exported `mcpopt_*` surface.
#ifndef MCO_SUPPORT_H
#define MCO_SUPPORT_H
#include <stddef.h>
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif

// An error: status, message, and a list of (path, message) issues. It is what the public
// `mcpopt_error *` points to. Strings are copied in; getters return pointers owned by it.
typedef struct mco_error mco_error;

mco_error *mco_error_new(int32_t status, const char *message);
// Returns 0 when out of memory (the issue is dropped, the error stays usable).
int mco_error_add_issue(mco_error *e, const char *path, const char *message);
mco_error *mco_error_copy(const mco_error *e);
void mco_error_free(mco_error *e);
int32_t mco_error_status(const mco_error *e);
const char *mco_error_message(const mco_error *e);
size_t mco_error_issue_count(const mco_error *e);
const char *mco_error_issue_path(const mco_error *e, size_t index);     // NULL past the end
const char *mco_error_issue_message(const mco_error *e, size_t index);  // NULL past the end

// The calling thread's last error. `set` takes ownership (NULL clears); `get` borrows.
void mco_tls_error_set(mco_error *e);
const mco_error *mco_tls_error_get(void);

// 1 when the process has jemalloc (its mallocx symbol resolves), else 0.
int mco_process_has_jemalloc(void);

// CPU affinity (Linux; the glibc calls need _GNU_SOURCE, which Swift's Glibc module lacks).
// The CPUs thread `tid` (0: the caller) may run on, in order, at most `capacity` of them;
// returns how many, or -errno.
int mco_affinity_get(int tid, int32_t *cpus, size_t capacity);
// Pins thread `tid` (0: the caller) to `count` CPUs. Returns 0 or -errno.
int mco_affinity_set(int tid, const int32_t *cpus, size_t count);

// A pidfd for child `pid` (close-on-exec; readable once the child has ended), or -errno where
// the kernel has no pidfd_open (before 5.3). A way to wait for a child with a deadline and no
// periodic wake-ups.
int mco_pidfd_open(int pid);

#ifdef __cplusplus
}
#endif
#endif
