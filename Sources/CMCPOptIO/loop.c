#define _GNU_SOURCE
#include "mcpopt_io.h"
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <time.h>
#include <sys/syscall.h>
#include <unistd.h>

#define WAKE_TOKEN UINT64_MAX
// user_data of the loop's own stream SQEs (tag | generation << 32 | slot); callers' tokens are
// below it.
#define STREAM_TAG (1ull << 63)
#define BUFFER_GROUP 1

// ---- Shared -------------------------------------------------------------------------------------

enum op_kind { OP_READ, OP_WRITE, OP_ACCEPT, OP_CONNECT, OP_POLL, OP_TIMER, OP_ACCEPT_STREAM, OP_RECV_STREAM };

// A stream (mco_loop_accept_multishot, mco_loop_recv): one submission by the caller, many
// completions, until its last one. How it is carried out:
enum stream_how {
    HOW_KERNEL,   // io_uring multishot accept, or multishot recv into the provided buffer ring
    HOW_SINGLE,   // io_uring one-shot accept, or a poll and then read(): submitted again by us
    HOW_EPOLL,    // epoll: a read-side operation that stays registered (level-triggered)
};
enum stream_state {
    STREAM_FREE,
    STREAM_ARMED,        // an SQE (or epoll registration) is live
    STREAM_REARM,        // the kernel ended it for want of buffers: submitted again at the next wait
    STREAM_CANCELLING,   // cancel submitted: what still arrives is delivered, then -ECANCELED
};
typedef struct stream {
    int state, how, accepting, fd;
    uint64_t token;
    uint32_t generation;   // in the SQE's tag: completions of an earlier stream in this slot are dropped
    int next_free;
    void *buffer;          // HOW_SINGLE / HOW_EPOLL receive: where reads land (ours)
    unsigned length;
} stream;

typedef struct pending_timer {
    uint64_t token;
    uint64_t deadline;          // monotonic ns
} pending_timer;

// io_uring: timers are kept here, as on epoll, and the ring only holds a few timeouts that wake
// the loop by the earliest deadline (absolute). A request's timer then costs no operation in
// the kernel to start or to cancel (it used to be a timeout and a cancellation each): a timeout
// armed for a timer that was cancelled just fires once, later, for nothing.
#define WAKE_SLOTS 4
#define WAKE_SLOT_TOKEN(slot) (UINT64_MAX - 1 - (uint64_t)(slot))
typedef struct wake_slot {
    int busy;
    uint64_t deadline;
    struct __kernel_timespec ts; // read by the kernel when the SQE is submitted
} wake_slot;

typedef struct fd_ops {          // epoll: what waits on an fd
    int registered;
    uint32_t events;
    int read_kind, write_kind;   // -1: none
    uint64_t read_token, write_token;
    void *read_buffer;
    const void *write_buffer;
    unsigned read_length, write_length;
    int read_slot;               // a stream's slot (OP_*_STREAM)
} fd_ops;

typedef struct uring_read {    // io_uring: a read or write waiting for readiness (poll, then the syscall)
    uint64_t token;
    int fd;
    void *buffer;
    unsigned length;
    int writing;
    int cancelled;   // reported ECANCELED already: its poll's completion is dropped when it comes
} uring_read;

struct mco_loop {
    int backend;
    uring_read *reads;
    int read_count, read_capacity;
    uint32_t features, in_use;
    // The ring waits to be enabled by the loop thread (DEFER_TASKRUN: see uring_init).
    int disabled;
    // streams, in slots (a free list through next_free)
    stream *streams;
    int stream_count, stream_capacity, free_stream, rearm_count;
    void **graves;               // stream buffers to free once no completion can point into them
    int grave_count, grave_capacity;
    // io_uring provided buffers: a ring the kernel takes from, and the ids handed to the caller
    // by the last wait (given back at the next one)
    struct io_uring_buf_ring *buf_ring;
    unsigned char *buf_base;
    unsigned buffer_count, buffer_size;
    uint16_t *lent;
    unsigned lent_count;
    mco_loop_stats stats;
    char fallback[128];
    int wake_fd;
    // io_uring
    struct io_uring ring;
    int unsubmitted_turns;       // waits that returned queued completions without submitting
    uint64_t wake_value;
    int wake_armed;
    // epoll
    int epoll_fd;
    fd_ops *fds;
    int fd_capacity;
    // timers (both backends)
    pending_timer *timers;
    int timer_count, timer_capacity;
    wake_slot wake_slots[WAKE_SLOTS];  // io_uring
    // completions produced outside a wait (epoll cancels)
    mco_completion *ready;
    int ready_count, ready_capacity;
    uint64_t busy_poll_ns;       // options.busy_poll_ns
};

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

// Room for one more item in a growing array of `count` items (doubling from 16): the array,
// moved if it grew, or NULL with the array as it was (out of memory).
static void *reserve(void *items, int *capacity, int count, size_t size) {
    if (count < *capacity) return items;
    int grown_capacity = *capacity ? *capacity * 2 : 16;
    void *grown = realloc(items, (size_t)grown_capacity * size);
    if (grown) *capacity = grown_capacity;
    return grown;
}

static int push_completion(mco_loop *l, mco_completion c) {
    void *ready = reserve(l->ready, &l->ready_capacity, l->ready_count, sizeof *l->ready);
    if (!ready) return -ENOMEM;
    l->ready = ready;
    l->ready[l->ready_count++] = c;
    return 0;
}

static int push_ready(mco_loop *l, uint64_t token, int32_t result) {
    return push_completion(l, (mco_completion){token, result, 0, NULL});
}

// ---- Streams (both backends) --------------------------------------------------------------------

static int stream_new(mco_loop *l, int fd, int accepting, uint64_t token) {
    if (l->free_stream < 0) {
        void *streams = reserve(l->streams, &l->stream_capacity, l->stream_count, sizeof *l->streams);
        if (!streams) return -ENOMEM;
        l->streams = streams;
        memset(&l->streams[l->stream_count], 0, sizeof *l->streams);
        l->streams[l->stream_count].next_free = -1;
        l->free_stream = l->stream_count++;
    }
    int slot = l->free_stream;
    stream *s = &l->streams[slot];
    l->free_stream = s->next_free;
    s->state = STREAM_ARMED;
    s->fd = fd;
    s->accepting = accepting;
    s->token = token;
    s->buffer = NULL;
    s->length = 0;
    return slot;
}

// A buffer a delivered (or still queued) completion may point into: freed at a wait that
// starts with nothing queued, when every completion that could has been handled.
static void bury(mco_loop *l, void *buffer) {
    void *graves = reserve(l->graves, &l->grave_capacity, l->grave_count, sizeof *l->graves);
    if (!graves) return;   // leaked rather than freed under a completion
    l->graves = graves;
    l->graves[l->grave_count++] = buffer;
}

static void stream_release(mco_loop *l, int slot) {
    stream *s = &l->streams[slot];
    if (s->state == STREAM_REARM) l->rearm_count--;
    if (s->buffer) bury(l, s->buffer);
    s->buffer = NULL;
    s->state = STREAM_FREE;
    s->generation = (s->generation + 1) & 0x7fffffff;
    s->next_free = l->free_stream;
    l->free_stream = slot;
}

static int stream_by_token(const mco_loop *l, uint64_t token) {
    for (int i = 0; i < l->stream_count; i++) {
        if (l->streams[i].state != STREAM_FREE && l->streams[i].token == token) return i;
    }
    return -1;
}

static uint64_t stream_tag(const mco_loop *l, int slot) {
    return STREAM_TAG | (uint64_t)l->streams[slot].generation << 32 | (uint32_t)slot;
}

// A stream's last completion: queued (after anything it delivered), and its slot freed.
static void stream_end(mco_loop *l, int slot, int32_t result) {
    push_ready(l, l->streams[slot].token, result);
    stream_release(l, slot);
}

static pending_timer *add_timer(mco_loop *l, uint64_t token) {
    void *timers = reserve(l->timers, &l->timer_capacity, l->timer_count, sizeof *l->timers);
    if (!timers) return NULL;
    l->timers = timers;
    pending_timer *t = &l->timers[l->timer_count++];
    memset(t, 0, sizeof *t);
    t->token = token;
    return t;
}

static int remove_timer(mco_loop *l, uint64_t token) {
    for (int i = 0; i < l->timer_count; i++) {
        if (l->timers[i].token == token) {
            l->timers[i] = l->timers[--l->timer_count];
            return 1;
        }
    }
    return 0;
}

// ---- io_uring -----------------------------------------------------------------------------------

static struct io_uring_sqe *sqe_for(mco_loop *l) {
    struct io_uring_sqe *sqe = io_uring_get_sqe(&l->ring);
    if (!sqe) {
        io_uring_submit(&l->ring);
        sqe = io_uring_get_sqe(&l->ring);
    }
    return sqe;
}

// Pushes the timers that are due (-ETIME); returns the earliest deadline left (UINT64_MAX: none).
static uint64_t expire_timers(mco_loop *l, uint64_t now) {
    uint64_t next = UINT64_MAX;
    for (int i = 0; i < l->timer_count;) {
        if (l->timers[i].deadline <= now) {
            push_ready(l, l->timers[i].token, -ETIME);
            l->timers[i] = l->timers[--l->timer_count];
            continue;
        }
        if (l->timers[i].deadline < next) next = l->timers[i].deadline;
        i++;
    }
    return next;
}

// The earliest deadline a timeout in the ring wakes the loop by (UINT64_MAX: none).
static uint64_t uring_armed_until(const mco_loop *l) {
    uint64_t armed = UINT64_MAX;
    for (int i = 0; i < WAKE_SLOTS; i++) if (l->wake_slots[i].busy && l->wake_slots[i].deadline < armed) armed = l->wake_slots[i].deadline;
    return armed;
}

// Makes sure the ring wakes the loop by `deadline`: a timeout in a free slot when none fires by
// then. With every slot taken, the wait itself is bounded instead (uring_wait).
static void uring_arm_wake(mco_loop *l, uint64_t deadline) {
    if (deadline == UINT64_MAX || uring_armed_until(l) <= deadline) return;
    for (int i = 0; i < WAKE_SLOTS; i++) {
        wake_slot *w = &l->wake_slots[i];
        if (w->busy) continue;
        struct io_uring_sqe *sqe = sqe_for(l);
        if (!sqe) return;
        w->busy = 1;
        w->deadline = deadline;
        w->ts.tv_sec = (long long)(deadline / 1000000000ull);
        w->ts.tv_nsec = (long long)(deadline % 1000000000ull);
        io_uring_prep_timeout(sqe, &w->ts, 0, IORING_TIMEOUT_ABS);
        io_uring_sqe_set_data64(sqe, WAKE_SLOT_TOKEN(i));
        return;
    }
}

static int arm_wake(mco_loop *l) {
    struct io_uring_sqe *sqe = sqe_for(l);
    if (!sqe) return -EBUSY;
    io_uring_prep_read(sqe, l->wake_fd, &l->wake_value, sizeof l->wake_value, 0);
    io_uring_sqe_set_data64(sqe, WAKE_TOKEN);
    l->wake_armed = 1;
    return 0;
}

static void probe_features(mco_loop *l) {
    if (l->ring.features & IORING_FEAT_FAST_POLL) l->features |= MCO_FEATURE_FAST_POLL;
    struct io_uring_probe *probe = io_uring_get_probe_ring(&l->ring);
    // Multishot accept arrived with 5.19 and multishot recv with 6.0, both alongside
    // IORING_OP_SOCKET (5.19) and IORING_OP_SEND_ZC (6.0) in the opcode table.
    if (probe) {
        if (io_uring_opcode_supported(probe, IORING_OP_SOCKET)) l->features |= MCO_FEATURE_MULTISHOT_ACCEPT;
        if (io_uring_opcode_supported(probe, IORING_OP_SEND_ZC)) l->features |= MCO_FEATURE_MULTISHOT_RECV;
        io_uring_free_probe(probe);
    }
    // Provided buffer rings: try to register a tiny one.
    struct io_uring_buf_ring *br = NULL;
    if (posix_memalign((void **)&br, 4096, 4096) == 0) {
        struct io_uring_buf_reg reg = {.ring_addr = (uint64_t)(uintptr_t)br, .ring_entries = 8, .bgid = 0xFFF0};
        if (io_uring_register_buf_ring(&l->ring, &reg, 0) == 0) {
            l->features |= MCO_FEATURE_BUFFER_RINGS;
            io_uring_unregister_buf_ring(&l->ring, 0xFFF0);
        }
        free(br);
    }
}

// The provided buffers multishot receives land in: `count` buffers of `size` bytes in one
// mapping, and the ring through which the kernel takes them (liburing 2.3 has no
// io_uring_setup_buf_ring: this is what it does). All buffers start in the ring.
static int setup_buffers(mco_loop *l, unsigned count, unsigned size) {
    unsigned entries = 1;
    while (entries < count && entries < 32768) entries <<= 1;   // the kernel wants a power of two
    size_t ring_bytes = entries * sizeof(struct io_uring_buf);
    void *ring = mmap(NULL, ring_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (ring == MAP_FAILED) return -errno;
    void *base = mmap(NULL, (size_t)entries * size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    uint16_t *lent = calloc(entries, sizeof *lent);
    struct io_uring_buf_reg reg = {.ring_addr = (uint64_t)(uintptr_t)ring, .ring_entries = entries, .bgid = BUFFER_GROUP};
    int rc = base == MAP_FAILED || !lent ? -ENOMEM : io_uring_register_buf_ring(&l->ring, &reg, 0);
    if (rc < 0) {
        munmap(ring, ring_bytes);
        if (base != MAP_FAILED) munmap(base, (size_t)entries * size);
        free(lent);
        return rc;
    }
    l->buf_ring = ring;
    l->buf_base = base;
    l->buffer_count = entries;
    l->buffer_size = size;
    l->lent = lent;
    io_uring_buf_ring_init(l->buf_ring);
    int mask = io_uring_buf_ring_mask(entries);
    for (unsigned i = 0; i < entries; i++) io_uring_buf_ring_add(l->buf_ring, l->buf_base + (size_t)i * size, size, i, mask, i);
    io_uring_buf_ring_advance(l->buf_ring, entries);
    return 0;
}

// The buffers the last wait handed out go back to the kernel: their callbacks have run.
static void recycle_buffers(mco_loop *l) {
    if (!l->lent_count) return;
    int mask = io_uring_buf_ring_mask(l->buffer_count);
    for (unsigned i = 0; i < l->lent_count; i++) {
        uint16_t id = l->lent[i];
        io_uring_buf_ring_add(l->buf_ring, l->buf_base + (size_t)id * l->buffer_size, l->buffer_size, id, mask, (int)i);
    }
    io_uring_buf_ring_advance(l->buf_ring, (int)l->lent_count);
    l->lent_count = 0;
}

static int uring_stream_submit(mco_loop *l, int slot) {
    struct io_uring_sqe *sqe = sqe_for(l);
    if (!sqe) return -EBUSY;
    stream *s = &l->streams[slot];
    if (s->accepting && s->how == HOW_KERNEL) {
        io_uring_prep_multishot_accept(sqe, s->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    } else if (s->accepting) {
        io_uring_prep_accept(sqe, s->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    } else if (s->how == HOW_KERNEL) {
        // No buffer of its own: each completion names the provided buffer it filled.
        io_uring_prep_recv_multishot(sqe, s->fd, NULL, 0, 0);
        sqe->flags |= IOSQE_BUFFER_SELECT;
        sqe->buf_group = BUFFER_GROUP;
    } else {
        io_uring_prep_poll_add(sqe, s->fd, POLLIN);
    }
    io_uring_sqe_set_data64(sqe, stream_tag(l, slot));
    s->state = STREAM_ARMED;
    return 0;
}

// Streams whose submission ended go again, at the start of a wait: after ENOBUFS the buffers
// are back by then, and a poll-then-read stream's buffer is free (its last bytes were handled).
static void uring_rearm(mco_loop *l) {
    for (int i = 0; l->rearm_count > 0 && i < l->stream_count; i++) {
        if (l->streams[i].state != STREAM_REARM) continue;
        l->rearm_count--;
        if (l->streams[i].how == HOW_KERNEL) l->stats.rearms++;
        if (uring_stream_submit(l, i) < 0) stream_end(l, i, -EBUSY);
    }
}

// One CQE of a stream. What it delivered goes to `out` (returns 1); its end, if it ended,
// is queued after it.
static int uring_stream_cqe(mco_loop *l, const struct io_uring_cqe *cqe, mco_completion *out) {
    uint64_t tag = io_uring_cqe_get_data64(cqe);
    const void *data = NULL;
    if (cqe->flags & IORING_CQE_F_BUFFER) {
        // Whatever becomes of it here, the buffer goes back to the ring at the next wait.
        uint16_t id = (uint16_t)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
        l->lent[l->lent_count++] = id;
        data = l->buf_base + (size_t)id * l->buffer_size;
    }
    int slot = (int)(uint32_t)tag;
    if (slot >= l->stream_count) return 0;
    stream *s = &l->streams[slot];
    if (s->state == STREAM_FREE || s->generation != (uint32_t)(tag >> 32 & 0x7fffffff)) return 0;   // an ended stream's
    int more = (cqe->flags & IORING_CQE_F_MORE) != 0;
    int32_t result = cqe->res;
    if (!s->accepting && s->how == HOW_SINGLE && result >= 0) {
        // The poll found it readable: read now, into the stream's buffer.
        ssize_t n = read(s->fd, s->buffer, s->length);
        result = n < 0 ? -errno : (int32_t)n;
        if (result == -EWOULDBLOCK) result = -EAGAIN;
        data = s->buffer;
    }
    int delivered = 0;
    if (s->accepting ? result >= 0 : result > 0) {
        if (data && s->how == HOW_KERNEL) l->stats.ring_completions++;
        *out = (mco_completion){s->token, result, MCO_COMPLETION_MORE, s->accepting ? NULL : data};
        delivered = 1;
    } else if (result == -ENOBUFS && s->how == HOW_KERNEL && !s->accepting) {
        l->stats.enobufs++;   // the ring ran dry: nothing lost, the kernel kept the data
    } else if (result == -ENOTSOCK && s->how == HOW_KERNEL && !s->accepting && (s->buffer = malloc(65536))) {
        // recv needs a socket: a pipe is read on readiness instead.
        s->how = HOW_SINGLE;
        s->length = 65536;
    } else if (result != -EAGAIN) {
        stream_end(l, slot, result);   // end of file, an error, or -ECANCELED
        return delivered;
    }
    if (more) return delivered;
    // The kernel ended this submission (one-shot ones always do): it goes again at the next
    // wait, unless the caller cancelled it.
    if (s->state == STREAM_CANCELLING) {
        stream_end(l, slot, -ECANCELED);
    } else {
        s->state = STREAM_REARM;
        l->rearm_count++;
    }
    return delivered;
}

static int uring_init(mco_loop *l, const mco_loop_options *o, char *error, size_t error_size) {
    unsigned entries = o->entries ? o->entries : 256;
    struct io_uring_params params;
    memset(&params, 0, sizeof params);
    // DEFER_TASKRUN (6.1): the kernel's work for completions (a received request's copy, for
    // one) waits until the loop thread asks for completions, which it does before every wait,
    // instead of being queued to the thread as it happens: a cheaper wake-up per request
    // (BENCHMARKS.md). It requires SINGLE_ISSUER (one thread submits: the loop's); the ring
    // starts disabled and the loop thread enables it at its first wait (R_DISABLED), since the
    // ring is made on the thread that creates the loop. MCPOPT_IO_DEFER=0 turns it off.
    // Otherwise COOP_TASKRUN (5.19): the kernel does not interrupt the loop thread to post
    // completions (multishot ones arrive while it runs); they are posted when it next enters.
    // Older kernels: without either, then without SUBMIT_ALL.
    const char *defer = getenv("MCPOPT_IO_DEFER");
    int rc = -EINVAL;
    if (!(defer && strcmp(defer, "0") == 0)) {
        params.flags = IORING_SETUP_SUBMIT_ALL | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_R_DISABLED;
        rc = io_uring_queue_init_params(entries, &l->ring, &params);
        if (rc == 0) {
            l->features |= MCO_FEATURE_SUBMIT_ALL | MCO_FEATURE_DEFER_TASKRUN;
            l->disabled = 1;
        }
    }
    if (rc == -EINVAL) {
        memset(&params, 0, sizeof params);
        params.flags = IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG;
        rc = io_uring_queue_init_params(entries, &l->ring, &params);
        if (rc == 0) l->features |= MCO_FEATURE_SUBMIT_ALL | MCO_FEATURE_COOP_TASKRUN;
    }
    if (rc == -EINVAL) {
        memset(&params, 0, sizeof params);
        params.flags = IORING_SETUP_SUBMIT_ALL;
        rc = io_uring_queue_init_params(entries, &l->ring, &params);
        if (rc == 0) l->features |= MCO_FEATURE_SUBMIT_ALL;
    }
    if (rc == -EINVAL) {
        memset(&params, 0, sizeof params);
        rc = io_uring_queue_init_params(entries, &l->ring, &params);
    }
    if (rc < 0) {
        snprintf(error, error_size, "io_uring unavailable: %s", strerror(-rc));
        return rc;
    }
    l->backend = MCO_BACKEND_URING;
    probe_features(l);
    l->in_use = l->features & (MCO_FEATURE_FAST_POLL | MCO_FEATURE_SUBMIT_ALL | MCO_FEATURE_COOP_TASKRUN | MCO_FEATURE_DEFER_TASKRUN);
    if (o->multishot) {
        l->in_use |= l->features & MCO_FEATURE_MULTISHOT_ACCEPT;
        // Multishot receive needs the buffer ring; without one, receives are emulated.
        if ((l->features & MCO_FEATURE_MULTISHOT_RECV) && (l->features & MCO_FEATURE_BUFFER_RINGS) &&
            setup_buffers(l, o->buffer_count ? o->buffer_count : 64, o->buffer_size ? o->buffer_size : 16384) == 0)
            l->in_use |= MCO_FEATURE_MULTISHOT_RECV | MCO_FEATURE_BUFFER_RINGS;
    }
    return arm_wake(l);
}

// ---- epoll --------------------------------------------------------------------------------------

static fd_ops *ops_for(mco_loop *l, int fd) {
    if (fd < 0) return NULL;
    if (fd >= l->fd_capacity) {
        int capacity = l->fd_capacity ? l->fd_capacity : 64;
        while (capacity <= fd) capacity *= 2;
        fd_ops *grown = realloc(l->fds, capacity * sizeof *grown);
        if (!grown) return NULL;
        for (int i = l->fd_capacity; i < capacity; i++) {
            memset(&grown[i], 0, sizeof grown[i]);
            grown[i].read_kind = grown[i].write_kind = -1;
        }
        l->fds = grown;
        l->fd_capacity = capacity;
    }
    return &l->fds[fd];
}

static int epoll_update(mco_loop *l, int fd, fd_ops *o) {
    uint32_t events = (o->read_kind >= 0 ? EPOLLIN : 0) | (o->write_kind >= 0 ? EPOLLOUT : 0);
    struct epoll_event ev = {.events = events, .data.fd = fd};
    if (!events) {
        if (o->registered) { epoll_ctl(l->epoll_fd, EPOLL_CTL_DEL, fd, NULL); o->registered = 0; }
        return 0;
    }
    // A stream keeps its fd registered: writes and events on it change nothing most times.
    if (o->registered && o->events == events) return 0;
    int rc = -1;
    if (o->registered) rc = epoll_ctl(l->epoll_fd, EPOLL_CTL_MOD, fd, &ev);
    // Not registered, or no longer (the fd was closed with an operation pending and its
    // number reused): added.
    if (!o->registered || (rc < 0 && errno == ENOENT)) rc = epoll_ctl(l->epoll_fd, EPOLL_CTL_ADD, fd, &ev);
    if (rc < 0) return -errno;
    o->registered = 1;
    o->events = events;
    return 0;
}

static int epoll_init(mco_loop *l, char *error, size_t error_size) {
    l->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    if (l->epoll_fd < 0) {
        snprintf(error, error_size, "epoll_create1: %s", strerror(errno));
        return -errno;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = l->wake_fd};
    if (epoll_ctl(l->epoll_fd, EPOLL_CTL_ADD, l->wake_fd, &ev) < 0) {
        snprintf(error, error_size, "epoll_ctl: %s", strerror(errno));
        return -errno;
    }
    l->backend = MCO_BACKEND_EPOLL;
    return 0;
}

// A stream's turn on readiness: one accept or read. What it got is queued with MORE and the
// operation stays registered; an error or end of file is its last completion.
static int epoll_stream_try(mco_loop *l, int fd, fd_ops *o) {
    int accepting = o->read_kind == OP_ACCEPT_STREAM;
    ssize_t rc = accepting ? accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK) : read(fd, o->read_buffer, o->read_length);
    if (rc < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
    if (accepting ? rc >= 0 : rc > 0) {
        push_completion(l, (mco_completion){o->read_token, (int32_t)rc, MCO_COMPLETION_MORE, accepting ? NULL : o->read_buffer});
        return 1;
    }
    o->read_kind = -1;
    stream_end(l, o->read_slot, rc < 0 ? -errno : 0);
    return 1;
}

// Performs a ready operation; returns 1 when it completed (a completion is pushed).
static int epoll_try(mco_loop *l, int fd, fd_ops *o, int read_side) {
    int kind = read_side ? o->read_kind : o->write_kind;
    uint64_t token = read_side ? o->read_token : o->write_token;
    ssize_t rc = 0;
    switch (kind) {
    case OP_ACCEPT_STREAM: case OP_RECV_STREAM: return epoll_stream_try(l, fd, o);
    case OP_READ: rc = read(fd, o->read_buffer, o->read_length); break;
    case OP_ACCEPT: rc = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK); break;
    case OP_POLL: rc = EPOLLIN; break;
    case OP_WRITE: rc = write(fd, o->write_buffer, o->write_length); break;
    case OP_CONNECT: {
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
        rc = err ? -1 : 0;
        if (err) errno = err;
        break;
    }
    default: return 0;
    }
    if (rc < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINPROGRESS)) return 0;
    int32_t result = rc < 0 ? -errno : (int32_t)rc;
    if (read_side) o->read_kind = -1; else o->write_kind = -1;
    push_ready(l, token, result);
    return 1;
}

static int epoll_submit(mco_loop *l, int fd, int kind, uint64_t token, void *rbuf, const void *wbuf, unsigned len) {
    fd_ops *o = ops_for(l, fd);
    if (!o) return fd < 0 ? -EBADF : -ENOMEM;
    int read_side = kind != OP_WRITE && kind != OP_CONNECT;
    if ((read_side ? o->read_kind : o->write_kind) >= 0) return -EBUSY;
    if (read_side) { o->read_kind = kind; o->read_token = token; o->read_buffer = rbuf; o->read_length = len; }
    else { o->write_kind = kind; o->write_token = token; o->write_buffer = wbuf; o->write_length = len; }
    // Completion semantics: try at once (except connect and poll, which need readiness).
    if (kind != OP_CONNECT && kind != OP_POLL && epoll_try(l, fd, o, read_side)) return epoll_update(l, fd, o);
    int rc = epoll_update(l, fd, o);
    if (rc < 0) {
        if (read_side) o->read_kind = -1; else o->write_kind = -1;
        // Files epoll cannot watch (regular files) are always ready: complete now, blocking.
        if (rc == -EPERM) {
            ssize_t n = read_side ? read(fd, rbuf, len) : write(fd, wbuf, len);
            return push_ready(l, token, n < 0 ? -errno : (int32_t)n);
        }
    }
    return rc;
}

// A stream stays registered for readability; epoll_wait reports it while data (or a
// connection) is there.
static int epoll_stream(mco_loop *l, int slot) {
    stream *s = &l->streams[slot];
    fd_ops *o = ops_for(l, s->fd);
    if (!o) return s->fd < 0 ? -EBADF : -ENOMEM;
    if (o->read_kind >= 0) return -EBUSY;
    o->read_kind = s->accepting ? OP_ACCEPT_STREAM : OP_RECV_STREAM;
    o->read_token = s->token;
    o->read_buffer = s->buffer;
    o->read_length = s->length;
    o->read_slot = slot;
    int rc = epoll_update(l, s->fd, o);
    if (rc < 0) o->read_kind = -1;
    return rc;
}

// ---- API ----------------------------------------------------------------------------------------

mco_loop *mco_loop_new(int preference, const mco_loop_options *given, char *error, size_t error_size) {
    if (error && error_size) error[0] = 0;
    char scratch[160];
    if (!error || !error_size) { error = scratch; error_size = sizeof scratch; }
    mco_loop_options options = {0, -1, 0, 0};
    if (given) options = *given;
    if (options.multishot < 0) {
        // The escape hatch (and the way to compare): MCPOPT_IO_MULTISHOT=0.
        const char *multishot = getenv("MCPOPT_IO_MULTISHOT");
        options.multishot = !(multishot && strcmp(multishot, "0") == 0);
    }
    if (preference == MCO_BACKEND_AUTO) {
        const char *forced = getenv("MCPOPT_IO");
        if (forced && strcmp(forced, "uring") == 0) preference = MCO_BACKEND_URING;
        else if (forced && strcmp(forced, "epoll") == 0) preference = MCO_BACKEND_EPOLL;
        else if (forced && *forced) { snprintf(error, error_size, "MCPOPT_IO=%s: expected uring or epoll", forced); return NULL; }
    }
    if (options.busy_poll_ns > MCO_BUSY_POLL_MAX_NS) {
        snprintf(error, error_size, "busy polling of %llu ns: at most %llu (10 ms)", (unsigned long long)options.busy_poll_ns, (unsigned long long)MCO_BUSY_POLL_MAX_NS);
        return NULL;
    }
    mco_loop *l = calloc(1, sizeof *l);
    if (!l) { snprintf(error, error_size, "out of memory"); return NULL; }
    l->epoll_fd = -1;
    l->free_stream = -1;
    l->busy_poll_ns = options.busy_poll_ns;
    l->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (l->wake_fd < 0) { snprintf(error, error_size, "eventfd: %s", strerror(errno)); free(l); return NULL; }
    int rc = -1;
    if (preference != MCO_BACKEND_EPOLL) {
        rc = uring_init(l, &options, error, error_size);
        if (rc < 0 && preference == MCO_BACKEND_URING) { close(l->wake_fd); free(l); return NULL; }
        if (rc < 0) { snprintf(l->fallback, sizeof l->fallback, "%s", error); error[0] = 0; }
    }
    if (rc < 0 && epoll_init(l, error, error_size) < 0) {
        close(l->wake_fd);
        free(l);
        return NULL;
    }
    return l;
}

// Connections a multishot accept took that no caller will see (their completions are still in
// the ring at teardown) are closed, not leaked.
static void uring_close_unseen_accepts(mco_loop *l) {
    struct io_uring_cqe *cqe;
    unsigned head, seen = 0;
    io_uring_for_each_cqe(&l->ring, head, cqe) {
        seen++;
        uint64_t tag = io_uring_cqe_get_data64(cqe);
        if (tag == WAKE_TOKEN || !(tag & STREAM_TAG) || cqe->res < 0) continue;
        int slot = (int)(uint32_t)tag;
        if (slot < l->stream_count && l->streams[slot].state != STREAM_FREE && l->streams[slot].accepting &&
            l->streams[slot].generation == (uint32_t)(tag >> 32 & 0x7fffffff))
            close(cqe->res);
    }
    io_uring_cq_advance(&l->ring, seen);
}

void mco_loop_free(mco_loop *l) {
    if (!l) return;
    if (l->backend == MCO_BACKEND_URING) {
        uring_close_unseen_accepts(l);
        io_uring_queue_exit(&l->ring);   // cancels what is in flight
    }
    if (l->buf_ring) {
        munmap(l->buf_ring, l->buffer_count * sizeof(struct io_uring_buf));
        munmap(l->buf_base, (size_t)l->buffer_count * l->buffer_size);
        free(l->lent);
    }
    for (int i = 0; i < l->stream_count; i++) free(l->streams[i].buffer);
    for (int i = 0; i < l->grave_count; i++) free(l->graves[i]);
    free(l->streams);
    free(l->graves);
    if (l->epoll_fd >= 0) close(l->epoll_fd);
    close(l->wake_fd);
    free(l->fds);
    free(l->timers);
    free(l->ready);
    free(l->reads);
    free(l);
}

int mco_loop_backend(const mco_loop *l) { return l->backend; }
uint32_t mco_loop_features(const mco_loop *l) { return l->features; }
uint32_t mco_loop_features_in_use(const mco_loop *l) { return l->in_use; }
void mco_loop_stats_get(const mco_loop *l, mco_loop_stats *out) { *out = l->stats; }
const char *mco_loop_fallback_reason(const mco_loop *l) { return l->fallback; }

int mco_loop_adopt(mco_loop *l, int fd) {
    // Both backends read without blocking: epoll always, io_uring to read directly once a
    // poll said the fd is readable. Accepted streams come non-blocking already.
    (void)l;
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0) return -errno;
    if (!(flags & O_NONBLOCK) && fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) return -errno;
    return 0;
}

/// io_uring reads and writes: the plain syscall when it would not block; otherwise a poll in the
/// ring and the syscall when it completes. Measured against IORING_OP_READ/WRITE on pipes, which
/// the kernel hands to its worker threads when they would block: slower round trips
/// (BENCHMARKS.md).
static int uring_poll_io(mco_loop *l, int fd, void *buffer, unsigned length, uint64_t token, int writing) {
    void *reads = reserve(l->reads, &l->read_capacity, l->read_count, sizeof *l->reads);
    if (!reads) return -ENOMEM;
    l->reads = reads;
    struct io_uring_sqe *sqe = sqe_for(l);
    if (!sqe) return -EBUSY;
    io_uring_prep_poll_add(sqe, fd, writing ? POLLOUT : POLLIN);
    io_uring_sqe_set_data64(sqe, token);
    l->reads[l->read_count++] = (uring_read){token, fd, buffer, length, writing, 0};
    return 0;
}

int mco_loop_read(mco_loop *l, int fd, void *buffer, unsigned length, uint64_t token) {
    if (l->backend == MCO_BACKEND_EPOLL) return epoll_submit(l, fd, OP_READ, token, buffer, NULL, length);
    ssize_t n = read(fd, buffer, length);
    if (n >= 0) return push_ready(l, token, (int32_t)n);
    if (errno != EAGAIN && errno != EWOULDBLOCK) return push_ready(l, token, -errno);
    return uring_poll_io(l, fd, buffer, length, token, 0);
}

int mco_loop_write(mco_loop *l, int fd, const void *buffer, unsigned length, uint64_t token) {
    if (l->backend == MCO_BACKEND_EPOLL) return epoll_submit(l, fd, OP_WRITE, token, NULL, buffer, length);
    ssize_t n = write(fd, buffer, length);
    if (n >= 0) return push_ready(l, token, (int32_t)n);
    if (errno != EAGAIN && errno != EWOULDBLOCK) return push_ready(l, token, -errno);
    return uring_poll_io(l, fd, (void *)buffer, length, token, 1);
}

int mco_loop_accept(mco_loop *l, int fd, uint64_t token) {
    if (l->backend == MCO_BACKEND_EPOLL) return epoll_submit(l, fd, OP_ACCEPT, token, NULL, NULL, 0);
    struct io_uring_sqe *sqe = sqe_for(l);
    if (!sqe) return -EBUSY;
    io_uring_prep_accept(sqe, fd, NULL, NULL, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, token);
    return 0;
}

static int stream_start(mco_loop *l, int fd, int accepting, unsigned length, uint64_t token) {
    if (fd < 0) return -EBADF;
    int slot = stream_new(l, fd, accepting, token);
    if (slot < 0) return slot;
    stream *s = &l->streams[slot];
    uint32_t needs = accepting ? MCO_FEATURE_MULTISHOT_ACCEPT : MCO_FEATURE_MULTISHOT_RECV | MCO_FEATURE_BUFFER_RINGS;
    s->how = l->backend == MCO_BACKEND_EPOLL ? HOW_EPOLL : (l->in_use & needs) == needs ? HOW_KERNEL : HOW_SINGLE;
    if (!accepting && s->how != HOW_KERNEL) {
        // The emulations read into a buffer of the stream's own.
        s->length = length ? length : 65536;
        s->buffer = malloc(s->length);
        if (!s->buffer) { stream_release(l, slot); return -ENOMEM; }
    }
    int rc = s->how == HOW_EPOLL ? epoll_stream(l, slot) : uring_stream_submit(l, slot);
    if (rc < 0) stream_release(l, slot);
    return rc;
}

int mco_loop_accept_multishot(mco_loop *l, int fd, uint64_t token) { return stream_start(l, fd, 1, 0, token); }
int mco_loop_recv(mco_loop *l, int fd, unsigned length, uint64_t token) { return stream_start(l, fd, 0, length, token); }

int mco_loop_connect(mco_loop *l, int fd, const struct sockaddr *address, socklen_t length, uint64_t token) {
    if (l->backend == MCO_BACKEND_EPOLL) {
        if (connect(fd, address, length) == 0) return push_ready(l, token, 0);
        if (errno != EINPROGRESS) return push_ready(l, token, -errno);
        return epoll_submit(l, fd, OP_CONNECT, token, NULL, NULL, 0);
    }
    struct io_uring_sqe *sqe = sqe_for(l);
    if (!sqe) return -EBUSY;
    io_uring_prep_connect(sqe, fd, address, length);
    io_uring_sqe_set_data64(sqe, token);
    return 0;
}

int mco_loop_poll_readable(mco_loop *l, int fd, uint64_t token) {
    if (l->backend == MCO_BACKEND_EPOLL) return epoll_submit(l, fd, OP_POLL, token, NULL, NULL, 0);
    struct io_uring_sqe *sqe = sqe_for(l);
    if (!sqe) return -EBUSY;
    io_uring_prep_poll_add(sqe, fd, POLLIN);
    io_uring_sqe_set_data64(sqe, token);
    return 0;
}

int mco_loop_timer(mco_loop *l, uint64_t nanos, uint64_t token) {
    pending_timer *t = add_timer(l, token);
    if (!t) return -ENOMEM;
    t->deadline = now_ns() + nanos;
    if (l->backend == MCO_BACKEND_URING) uring_arm_wake(l, t->deadline);
    return 0;
}

// A stream's cancellation. epoll: ended now (nothing is in flight). io_uring: the kernel is
// asked to cancel its SQE; what it completed meanwhile is still delivered, then -ECANCELED.
// Ends the polled read or write at `i` now (-ECANCELED): once ended it must never call read or
// write on its fd number, which may name another file by the time its poll ends. It stays
// listed, marked, until that poll's completion comes, which is then dropped.
static void uring_end_read(mco_loop *l, int i) {
    l->reads[i].cancelled = 1;
    push_ready(l, l->reads[i].token, -ECANCELED);
}

// Asks the kernel to cancel the submission of `token` (the cancel's own completion is dropped).
static int uring_cancel_submission(mco_loop *l, uint64_t token) {
    struct io_uring_sqe *sqe = sqe_for(l);
    if (!sqe) return -EBUSY;
    io_uring_prep_cancel64(sqe, token, 0);
    io_uring_sqe_set_data64(sqe, 0);
    return 0;
}

static int stream_cancel(mco_loop *l, int slot) {
    stream *s = &l->streams[slot];
    if (s->state == STREAM_CANCELLING) return 0;
    if (s->how == HOW_EPOLL) {
        fd_ops *o = ops_for(l, s->fd);
        if (o && o->read_kind >= 0 && o->read_slot == slot) { o->read_kind = -1; epoll_update(l, s->fd, o); }
        stream_end(l, slot, -ECANCELED);
        return 0;
    }
    if (s->state == STREAM_REARM) {   // not in the kernel now
        stream_end(l, slot, -ECANCELED);
        return 0;
    }
    int rc = uring_cancel_submission(l, stream_tag(l, slot));
    if (rc == 0) s->state = STREAM_CANCELLING;
    return rc;
}

int mco_loop_cancel(mco_loop *l, uint64_t token) {
    int slot = stream_by_token(l, token);
    if (slot >= 0) return stream_cancel(l, slot);
    if (remove_timer(l, token)) return push_ready(l, token, -ECANCELED);
    if (l->backend == MCO_BACKEND_URING) {
        for (int i = 0; i < l->read_count; i++) {
            if (l->reads[i].token != token || l->reads[i].cancelled) continue;
            uring_end_read(l, i);
            break;
        }
        return uring_cancel_submission(l, token);
    }
    for (int fd = 0; fd < l->fd_capacity; fd++) {
        fd_ops *o = &l->fds[fd];
        if (o->read_kind >= 0 && o->read_token == token) { o->read_kind = -1; epoll_update(l, fd, o); return push_ready(l, token, -ECANCELED); }
        if (o->write_kind >= 0 && o->write_token == token) { o->write_kind = -1; epoll_update(l, fd, o); return push_ready(l, token, -ECANCELED); }
    }
    return -ENOENT;
}

int mco_loop_forget(mco_loop *l, int fd) {
    if (fd < 0) return -EBADF;
    if (l->backend == MCO_BACKEND_EPOLL) {
        if (fd >= l->fd_capacity) return 0;
        fd_ops *o = &l->fds[fd];
        if (o->read_kind >= 0 && o->read_kind != OP_ACCEPT_STREAM && o->read_kind != OP_RECV_STREAM) {
            o->read_kind = -1;
            push_ready(l, o->read_token, -ECANCELED);
        }
        if (o->write_kind >= 0) {
            o->write_kind = -1;
            push_ready(l, o->write_token, -ECANCELED);
        }
        epoll_update(l, fd, o);
        return 0;
    }
    for (int i = 0; i < l->read_count; i++) {
        if (l->reads[i].fd != fd || l->reads[i].cancelled) continue;
        uring_end_read(l, i);
        uring_cancel_submission(l, l->reads[i].token);   // the poll goes too (it holds the file open)
    }
    return 0;
}

int mco_loop_wake(mco_loop *l) {
    uint64_t one = 1;
    return write(l->wake_fd, &one, sizeof one) == sizeof one || errno == EAGAIN ? 0 : -errno;
}

static int take_ready(mco_loop *l, mco_completion *out, int max) {
    int count = l->ready_count < max ? l->ready_count : max;
    memcpy(out, l->ready, count * sizeof *out);
    memmove(l->ready, l->ready + count, (l->ready_count - count) * sizeof *out);
    l->ready_count -= count;
    return count;
}

// Called at the start of every wait, when the caller has handled what the last one returned.
static void between_waits(mco_loop *l) {
    if (l->ready_count == 0) {
        for (int i = 0; i < l->grave_count; i++) free(l->graves[i]);
        l->grave_count = 0;
    }
    if (l->backend == MCO_BACKEND_URING) {
        recycle_buffers(l);
        uring_rearm(l);
    }
}

// Whether completions are at hand without sleeping: the ring's, or what epoll reports (then
// handled into `ready`, as a wait does).
static int uring_has_completions(mco_loop *l) {
    io_uring_get_events(&l->ring);
    return io_uring_cq_ready(&l->ring) > 0;
}
static int epoll_collect(mco_loop *l, int timeout_ms);

// Busy polling: looks for completions until some come, `busy_poll_ns` pass or the wait's own
// timeout does, yielding the CPU between looks so that whatever shares it (often the very
// client or server this loop waits for) runs. 1: found some; 0: ran out; -errno: epoll failed.
static int busy_poll(mco_loop *l, int64_t timeout_ns) {
    uint64_t start = now_ns();
    uint64_t until = start + l->busy_poll_ns;
    if (timeout_ns >= 0 && (uint64_t)timeout_ns < l->busy_poll_ns) until = start + (uint64_t)timeout_ns;
    for (;;) {
        int found;
        if (l->backend == MCO_BACKEND_URING) {
            found = uring_has_completions(l);
        } else {
            // Any event counts, a wake-up too (what it woke the loop for is the caller's).
            int events = epoll_collect(l, 0);
            if (events < 0) return events;
            found = events > 0 || l->ready_count > 0;
        }
        if (found) { l->stats.busy_polls_found++; return 1; }
        if (now_ns() >= until) { l->stats.busy_polls_expired++; return 0; }
        sched_yield();
    }
}

static int uring_wait(mco_loop *l, mco_completion *out, int max, int64_t timeout_ns) {
    if (!l->wake_armed) arm_wake(l);
    if (l->timer_count > 0) {
        uint64_t now = now_ns();
        uint64_t next = expire_timers(l, now);
        uring_arm_wake(l, next);
        // No timeout in the ring fires by the next deadline (every slot taken): bound the wait.
        if (next != UINT64_MAX && uring_armed_until(l) > next) {
            int64_t left = (int64_t)(next - now);
            if (timeout_ns < 0 || left < timeout_ns) timeout_ns = left;
        }
    }
    if (l->ready_count > 0) {
        // Completions at hand (direct reads and writes): returned without a syscall. What was
        // prepared meanwhile goes with the next wait that blocks, which usually comes next;
        // a run of turns that never block submits every 8th, so no fd or timer starves.
        if (++l->unsubmitted_turns >= 8) {
            io_uring_submit(&l->ring);
            l->unsubmitted_turns = 0;
        }
        return take_ready(l, out, max);
    }
    l->unsubmitted_turns = 0;
    struct io_uring_cqe *cqe = NULL;
    int rc;
    int polled = 0;
    if (l->busy_poll_ns && timeout_ns != 0) {
        // What was prepared goes first; task work (DEFER_TASKRUN) runs at each look.
        io_uring_submit_and_get_events(&l->ring);
        polled = busy_poll(l, timeout_ns) > 0;
    }
    if (polled) {
        rc = 0;   // completions are in the ring: no wait
    } else if (timeout_ns < 0) {
        rc = io_uring_submit_and_wait(&l->ring, 1);
        if (rc >= 0) rc = io_uring_peek_cqe(&l->ring, &cqe);
    } else {
        struct __kernel_timespec ts = {.tv_sec = timeout_ns / 1000000000ll, .tv_nsec = timeout_ns % 1000000000ll};
        rc = io_uring_submit_and_wait_timeout(&l->ring, &cqe, 1, &ts, NULL);
    }
    if (rc < 0 && rc != -ETIME && rc != -EINTR) return rc;
    int count = 0;
    unsigned head;
    unsigned seen = 0;
    io_uring_for_each_cqe(&l->ring, head, cqe) {
        seen++;
        uint64_t token = io_uring_cqe_get_data64(cqe);
        if (token == WAKE_TOKEN) { l->wake_armed = 0; continue; }
        if (token == 0) continue;
        if (token >= WAKE_SLOT_TOKEN(WAKE_SLOTS - 1) && token <= WAKE_SLOT_TOKEN(0)) {
            l->wake_slots[WAKE_SLOT_TOKEN(0) - token].busy = 0;   // due timers are found below
            continue;
        }
        if (token & STREAM_TAG) {
            count += uring_stream_cqe(l, cqe, out + count);
            if (count == max) break;
            continue;
        }
        int handled = 0;
        for (int i = 0; i < l->read_count; i++) {
            if (l->reads[i].token != token) continue;
            uring_read r = l->reads[i];
            l->reads[i] = l->reads[--l->read_count];
            handled = 1;
            if (r.cancelled) break;   // its end was reported at the cancellation; the fd may be another file's now
            if (cqe->res < 0) { push_ready(l, token, cqe->res); break; }
            ssize_t n = r.writing ? write(r.fd, r.buffer, r.length) : read(r.fd, r.buffer, r.length);
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) uring_poll_io(l, r.fd, r.buffer, r.length, token, r.writing);
            else push_ready(l, token, n < 0 ? -errno : (int32_t)n);
            break;
        }
        if (handled) continue;
        out[count++] = (mco_completion){token, cqe->res, 0, NULL};
        if (count == max) break;
    }
    io_uring_cq_advance(&l->ring, seen);
    // Timers that came due while waiting.
    if (l->timer_count > 0) uring_arm_wake(l, expire_timers(l, now_ns()));
    // Reads that completed on their poll are reported now too.
    if (count < max && l->ready_count > 0) count += take_ready(l, out + count, max - count);
    return count;
}

// One epoll_wait (up to `timeout_ms`, -1: no limit): what it reports is done and goes to
// `ready`, with the timers that are due by then. Returns the events (a wake-up is one), or
// -errno.
static int epoll_collect(mco_loop *l, int timeout_ms) {
    struct epoll_event events[64];
    int n = epoll_wait(l->epoll_fd, events, 64, timeout_ms);
    if (n < 0 && errno != EINTR) return -errno;
    for (int i = 0; i < n; i++) {
        int fd = events[i].data.fd;
        if (fd == l->wake_fd) {
            uint64_t value;
            while (read(l->wake_fd, &value, sizeof value) > 0) {}
            continue;
        }
        fd_ops *o = ops_for(l, fd);
        if (!o) continue;
        uint32_t e = events[i].events;
        if (o->read_kind >= 0 && (e & (EPOLLIN | EPOLLHUP | EPOLLERR))) epoll_try(l, fd, o, 1);
        if (o->write_kind >= 0 && (e & (EPOLLOUT | EPOLLHUP | EPOLLERR))) epoll_try(l, fd, o, 0);
        epoll_update(l, fd, o);
    }
    expire_timers(l, now_ns());
    return n < 0 ? 0 : n;
}

static int epoll_wait_completions(mco_loop *l, mco_completion *out, int max, int64_t timeout_ns) {
    // Timers that are due, and the wait until the next one.
    uint64_t now = now_ns();
    int64_t wait = timeout_ns;
    uint64_t next = expire_timers(l, now);
    if (next != UINT64_MAX && (wait < 0 || (int64_t)(next - now) < wait)) wait = (int64_t)(next - now);
    if (l->ready_count == 0) {
        int polled = l->busy_poll_ns && wait != 0 ? busy_poll(l, wait) : 0;
        if (polled < 0) return polled;
        int rc = polled ? 0 : epoll_collect(l, wait < 0 ? -1 : (int)((wait + 999999) / 1000000));
        if (rc < 0) return rc;
    }
    return take_ready(l, out, max);
}

int mco_loop_wait(mco_loop *l, mco_completion *out, int max, int64_t timeout_ns) {
    if (max <= 0) return -EINVAL;
    if (l->disabled) {
        // liburing 2.3 has no io_uring_enable_rings.
        int rc = (int)syscall(__NR_io_uring_register, l->ring.ring_fd, IORING_REGISTER_ENABLE_RINGS, NULL, 0);
        if (rc < 0) return -errno;
        l->disabled = 0;
    }
    between_waits(l);
    if (l->backend == MCO_BACKEND_URING) return uring_wait(l, out, max, timeout_ns);
    return epoll_wait_completions(l, out, max, timeout_ns);
}
