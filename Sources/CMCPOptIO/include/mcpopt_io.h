// The reactor's kernel interface: one completion-based API over io_uring (liburing) or, where
// io_uring is unavailable or MCPOPT_IO=epoll, over epoll with the same semantics (an operation
// is submitted, and later completes with a result: bytes, a new fd, or -errno).
//
// A loop is used by one thread (its event-loop thread), except mco_loop_wake, which any thread
// may call. Buffers passed to operations must stay valid until their completion.
#ifndef MCPOPT_IO_H
#define MCPOPT_IO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#ifdef __cplusplus
extern "C" {
#endif

enum { MCO_BACKEND_AUTO = 0, MCO_BACKEND_URING = 1, MCO_BACKEND_EPOLL = 2 };

/// Kernel facilities found at start (io_uring only; epoll has none of them).
enum {
    MCO_FEATURE_FAST_POLL = 1,         // IORING_FEAT_FAST_POLL
    MCO_FEATURE_MULTISHOT_ACCEPT = 2,  // accept with IORING_ACCEPT_MULTISHOT
    MCO_FEATURE_MULTISHOT_RECV = 4,    // recv with IORING_RECV_MULTISHOT
    MCO_FEATURE_BUFFER_RINGS = 8,      // provided buffer rings (io_uring_register_buf_ring)
    MCO_FEATURE_SUBMIT_ALL = 16,       // IORING_SETUP_SUBMIT_ALL
};

typedef struct mco_completion {
    uint64_t token;
    int32_t result;    // >= 0: bytes / fd / 0; < 0: -errno (-ETIME for an expired timer, -ECANCELED)
    uint32_t flags;
} mco_completion;

typedef struct mco_loop mco_loop;

/// A loop on the preferred backend. AUTO reads MCPOPT_IO ("uring" or "epoll"), else tries
/// io_uring and falls back to epoll. NULL on failure, with the reason in `error`.
mco_loop *mco_loop_new(int preference, unsigned entries, char *error, size_t error_size);
void mco_loop_free(mco_loop *loop);
int mco_loop_backend(const mco_loop *loop);
uint32_t mco_loop_features(const mco_loop *loop);
/// Why AUTO did not use io_uring ("" when it did, or was not asked to).
const char *mco_loop_fallback_reason(const mco_loop *loop);

/// Prepares an fd for this backend (epoll needs it non-blocking; io_uring does not).
int mco_loop_adopt(mco_loop *loop, int fd);
/// Operations: 0 when submitted, -errno when not. Tokens are the caller's; 0 and UINT64_MAX are
/// reserved. epoll allows one pending read-side (read, accept, poll) and one write-side
/// (write, connect) operation per fd; io_uring has no such limit, callers keep to it anyway.
int mco_loop_read(mco_loop *loop, int fd, void *buffer, unsigned length, uint64_t token);
int mco_loop_write(mco_loop *loop, int fd, const void *buffer, unsigned length, uint64_t token);
int mco_loop_accept(mco_loop *loop, int fd, uint64_t token);
int mco_loop_connect(mco_loop *loop, int fd, const struct sockaddr *address, socklen_t length, uint64_t token);
/// Completes when `fd` is readable (result: the poll events).
int mco_loop_poll_readable(mco_loop *loop, int fd, uint64_t token);
/// Completes with -ETIME after `nanos`.
int mco_loop_timer(mco_loop *loop, uint64_t nanos, uint64_t token);
/// Cancels a pending operation: it completes with -ECANCELED (or with its result, if it won
/// the race). -ENOENT when no such operation is pending.
int mco_loop_cancel(mco_loop *loop, uint64_t token);
/// Wakes a waiting loop (any thread). The wake-up is not reported as a completion.
int mco_loop_wake(mco_loop *loop);
/// Submits what is pending and waits up to `timeout_ns` (-1: forever) for completions, a
/// wake-up, or the timeout. Returns how many completions were written to `out` (0 on a wake-up
/// or timeout), or -errno.
int mco_loop_wait(mco_loop *loop, mco_completion *out, int max, int64_t timeout_ns);

#ifdef __cplusplus
}
#endif
#endif

#ifndef MCPOPT_IO_SPAWN_H
#define MCPOPT_IO_SPAWN_H
#include <sys/types.h>
#ifdef __cplusplus
extern "C" {
#endif
/// Starts `file` (searched on PATH when it has no '/') with `argv` and `envp` (NULL-terminated)
/// in `cwd` (NULL: ours), in a process group of its own, with pipes for its stdin, stdout and
/// stderr: fds[0] writes its stdin, fds[1] reads its stdout, fds[2] its stderr (all
/// close-on-exec). *pidfd is a pidfd for the child, or -1 where the kernel has none.
/// Returns 0, or an errno (ENOENT: no such program).
int mco_spawn(const char *file, char *const argv[], char *const envp[], const char *cwd,
              int fds[3], pid_t *pid, int *pidfd);
/// The environment of this process (for adding to it).
char **mco_environ(void);
#ifdef __cplusplus
}
#endif
#endif
