/* Round trips between a client and a server process over loopback TCP, the server waiting
 * with recv, epoll_wait or io_uring (a recv, then a send), nothing else: where the scheduler
 * puts such a pair, without any MCP program, decides what "unpinned" measures.
 * usage: wake_pair recv|epoll|uring N [DEFER(1)|COOP(0)]; run it under taskset to pin.
 * Prints the p50 and p90 round trip in microseconds. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000L + t.tv_nsec;
}

static int by_value(const void *a, const void *b) {
    long x = *(const long *)a, y = *(const long *)b;
    return x < y ? -1 : x > y;
}

/* Echoes what arrives on c until the client closes. */
static void serve(const char *mode, int c, int defer) {
    char buf[256];
    if (strcmp(mode, "recv") == 0) {
        for (;;) {
            ssize_t r = recv(c, buf, sizeof buf, 0);
            if (r <= 0) return;
            if (send(c, buf, (size_t)r, 0) < 0) return;
        }
    }
    if (strcmp(mode, "epoll") == 0) {
        int ep = epoll_create1(0);
        struct epoll_event e = {.events = EPOLLIN, .data.fd = c};
        epoll_ctl(ep, EPOLL_CTL_ADD, c, &e);
        for (;;) {
            if (epoll_wait(ep, &e, 1, -1) < 0) return;
            ssize_t r = recv(c, buf, sizeof buf, MSG_DONTWAIT);
            if (r == 0) return;
            if (r > 0 && send(c, buf, (size_t)r, MSG_DONTWAIT) < 0) return;
        }
    }
    struct io_uring ring;
    struct io_uring_params p = {0};
    p.flags = defer ? (IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN) : IORING_SETUP_COOP_TASKRUN;
    if (io_uring_queue_init_params(64, &ring, &p) != 0) { fprintf(stderr, "io_uring_queue_init_params failed\n"); return; }
    for (;;) {
        struct io_uring_sqe *s = io_uring_get_sqe(&ring);
        io_uring_prep_recv(s, c, buf, sizeof buf, 0);
        io_uring_submit_and_wait(&ring, 1);
        struct io_uring_cqe *q;
        if (io_uring_wait_cqe(&ring, &q) != 0) return;
        int r = q->res;
        io_uring_cqe_seen(&ring, q);
        if (r <= 0) return;
        s = io_uring_get_sqe(&ring);
        io_uring_prep_send(s, c, buf, (size_t)r, 0);
        io_uring_submit(&ring);
        /* The send's completion is reaped with the next recv's. */
        while (io_uring_peek_cqe(&ring, &q) == 0) io_uring_cqe_seen(&ring, q);
    }
}

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: wake_pair recv|epoll|uring N [DEFER(1)|COOP(0)]\n"); return 2; }
    const char *mode = argv[1];
    int n = atoi(argv[2]), defer = argc > 3 ? atoi(argv[3]) : 1, one = 1;
    if (n < 1 || n > 10000000) { fprintf(stderr, "1 <= N <= 10000000\n"); return 2; }
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t length = sizeof a;
    if (bind(ls, (struct sockaddr *)&a, sizeof a) != 0 || listen(ls, 1) != 0 || getsockname(ls, (struct sockaddr *)&a, &length) != 0) { perror("listen"); return 1; }
    pid_t server = fork();
    if (server == 0) {
        int c = accept(ls, NULL, NULL);
        setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        serve(mode, c, defer);
        _exit(0);
    }
    int c = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(c, (struct sockaddr *)&a, sizeof a) != 0) { perror("connect"); return 1; }
    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    long *samples = malloc((size_t)n * sizeof *samples);
    char buf[64] = "0123456789012345678901234567890123456789";
    for (int i = 0; i < n; i++) {
        long start = now_ns();
        if (send(c, buf, 40, 0) != 40 || recv(c, buf, 40, MSG_WAITALL) != 40) { fprintf(stderr, "round trip %d failed\n", i); return 1; }
        samples[i] = now_ns() - start;
    }
    close(c);
    waitpid(server, NULL, 0);
    qsort(samples, (size_t)n, sizeof *samples, by_value);
    printf("%-5s %s p50 %.1f us p90 %.1f us\n", mode, strcmp(mode, "uring") == 0 ? (defer ? "DEFER_TASKRUN" : "COOP_TASKRUN") : "", samples[n / 2] / 1e3, samples[n * 9 / 10] / 1e3);
    free(samples);
    return 0;
}
