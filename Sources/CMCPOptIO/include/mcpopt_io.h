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
    MCO_FEATURE_COOP_TASKRUN = 32,     // IORING_SETUP_COOP_TASKRUN
    MCO_FEATURE_DEFER_TASKRUN = 64,    // IORING_SETUP_DEFER_TASKRUN (with SINGLE_ISSUER)
};

/// mco_completion.flags
enum {
    MCO_COMPLETION_MORE = 1,   // a stream's completion: more follow for this token (this is not its last)
};

typedef struct mco_completion {
    uint64_t token;
    int32_t result;    // >= 0: bytes / fd / 0; < 0: -errno (-ETIME for an expired timer, -ECANCELED)
    uint32_t flags;    // MCO_COMPLETION_*
    /// A receive stream's bytes (`result` of them), valid until the next mco_loop_wait: a
    /// provided buffer goes back to the kernel's ring then.
    const void *data;
} mco_completion;

typedef struct mco_loop mco_loop;

/// The longest busy poll a loop takes (mco_loop_options.busy_poll_ns).
#define MCO_BUSY_POLL_MAX_NS 10000000ull

typedef struct mco_loop_options {
    unsigned entries;        // submission queue entries (0: 256)
    /// Multishot accept and receive with provided buffers where the kernel has them: 1 yes,
    /// 0 no (streams are emulated with one-shot operations), -1 as MCPOPT_IO_MULTISHOT says
    /// ("0" turns them off; default on).
    int multishot;
    unsigned buffer_count;   // provided receive buffers (0: 64; rounded up to a power of two)
    unsigned buffer_size;    // bytes each (0: 16 KiB)
    /// Busy polling: before a wait would sleep, look for completions for up to this long,
    /// yielding the CPU between looks (0: off; at most 10 ms). A request that arrives meanwhile
    /// is taken without the wake-up of a sleeping thread, which across CPUs of a virtual machine
    /// costs tens of microseconds; the price is up to this much CPU after each burst of work.
    uint64_t busy_poll_ns;
} mco_loop_options;

/// A loop on the preferred backend. AUTO reads MCPOPT_IO ("uring" or "epoll"), else tries
/// io_uring and falls back to epoll. `options` may be NULL (defaults). NULL on failure, with
/// the reason in `error`.
mco_loop *mco_loop_new(int preference, const mco_loop_options *options, char *error, size_t error_size);
void mco_loop_free(mco_loop *loop);
int mco_loop_backend(const mco_loop *loop);
/// Facilities the kernel has (probed at start).
uint32_t mco_loop_features(const mco_loop *loop);
/// Facilities this loop uses: the probed ones, less multishot and buffer rings when turned
/// off or when setting them up failed.
uint32_t mco_loop_features_in_use(const mco_loop *loop);
/// Why AUTO did not use io_uring ("" when it did, or was not asked to).
const char *mco_loop_fallback_reason(const mco_loop *loop);

typedef struct mco_loop_stats {
    uint64_t ring_completions;   // receive completions delivered from provided buffers
    uint64_t enobufs;            // multishot receives ended because the buffer ring was empty
    uint64_t rearms;             // streams the loop submitted again after the kernel ended them
    uint64_t busy_polls_found;   // busy polls that found completions (the wait did not sleep)
    uint64_t busy_polls_expired; // busy polls that found nothing in their time, then slept
} mco_loop_stats;
void mco_loop_stats_get(const mco_loop *loop, mco_loop_stats *out);

/// Prepares an fd for this backend (non-blocking: both backends make plain syscalls on it).
int mco_loop_adopt(mco_loop *loop, int fd);
/// Operations: 0 when submitted, -errno when not. Tokens are the caller's; 0 and values from
/// 2^63 up are reserved. epoll allows one pending read-side (read, accept, poll, streams) and
/// one write-side (write, connect) operation per fd; io_uring has no such limit, callers keep
/// to it anyway.
int mco_loop_read(mco_loop *loop, int fd, void *buffer, unsigned length, uint64_t token);
int mco_loop_write(mco_loop *loop, int fd, const void *buffer, unsigned length, uint64_t token);
int mco_loop_accept(mco_loop *loop, int fd, uint64_t token);
int mco_loop_connect(mco_loop *loop, int fd, const struct sockaddr *address, socklen_t length, uint64_t token);
/// Completes when `fd` is readable (result: the poll events).
int mco_loop_poll_readable(mco_loop *loop, int fd, uint64_t token);
/// Completes with -ETIME after `nanos`.
int mco_loop_timer(mco_loop *loop, uint64_t nanos, uint64_t token);

/// Streams: one submission, many completions (MCO_COMPLETION_MORE on all but the last), until
/// an error, end of file or mco_loop_cancel (the last then has -ECANCELED).
/// Accepts connections on a listening socket: each completion is a new fd (close-on-exec,
/// non-blocking); the last is an error. Multishot accept where the kernel has it, else a
/// one-shot accept (or, on epoll, accept4 on readiness) that the loop repeats.
int mco_loop_accept_multishot(mco_loop *loop, int fd, uint64_t token);
/// Receives from a socket (or reads a pipe, emulated): each completion has `result` bytes at
/// `data`; the last is 0 (end of file) or an error. Multishot recv into the loop's provided
/// buffers where the kernel has them; else reads of up to `length` bytes into a buffer of the
/// loop's own, on readiness (a poll in the ring, or epoll).
int mco_loop_recv(mco_loop *loop, int fd, unsigned length, uint64_t token);

/// Cancels a pending operation: it completes with -ECANCELED (or with its result, if it won
/// the race); a stream may still deliver what the kernel received before the cancellation,
/// then ends with -ECANCELED. -ENOENT when no such operation is pending.
int mco_loop_cancel(mco_loop *loop, uint64_t token);
/// Drops every read and write (on epoll also a connect) still waiting on `fd`; they complete
/// with -ECANCELED. Call it before closing `fd`: a number closed with an operation on it can go
/// to the next file opened, which that operation would then read from or write to (io_uring's
/// poll holds the old file and then calls read or write on the number; epoll keeps the
/// operation in the number's slot). Streams are not touched: cancel them, and close when they
/// have ended.
int mco_loop_forget(mco_loop *loop, int fd);
/// Wakes a waiting loop (any thread). The wake-up is not reported as a completion.
int mco_loop_wake(mco_loop *loop);
/// Submits what is pending and waits up to `timeout_ns` (-1: forever) for completions, a
/// wake-up, or the timeout. Returns how many completions were written to `out` (0 on a wake-up
/// or timeout), or -errno. Receive buffers handed out by the previous call are reused now.
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
