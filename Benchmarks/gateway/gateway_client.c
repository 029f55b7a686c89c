/* Blocking keep-alive HTTP clients doing MCP round trips one at a time each (the way an agent
 * waits on each call), through whatever listens on PORT: a server directly, a proxy hop, or the
 * mcpopt gateway. Each connection initializes a handshake-era session and sends its
 * Mcp-Session-Id after. With CONNECTIONS > 1, that many threads run side by side (throughput
 * under concurrency); the figures are over all their calls.
 * Usage: gateway_client LABEL N PORT TOOL hit|miss|rotate [OFFSET [CONNECTIONS [SAMPLES]]]
 *   miss: arguments differ on every call (starting at OFFSET, so repeated runs stay misses);
 *   hit: the same arguments every time;
 *   rotate: eight arguments in turn (each call repeats an earlier one, never the last);
 *   SAMPLES: a file each call's round trip is appended to (microseconds, one a line), so
 *   several runs can be pooled.
 * Built with -DGATEWAY_CLIENT_TLS (and -lssl -lcrypto), it speaks HTTPS when MCPOPT_BENCH_CA
 * names the CA file to check the server against (scripts/bench-tls front).
 * Prints one JSON line: requests, round trips per second, p50/p99/mean in microseconds, and
 * (one connection) the CPU the client was on after its last call: `mcpopt bench gateway` sets
 * it beside the server's to tell whether the scheduler kept the pair on one CPU.
 * Run by `mcpopt bench gateway`. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNECTIONS 64
static double now(void) { struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts); return ts.tv_sec + ts.tv_nsec / 1e9; }
static int cmp(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return (x > y) - (x < y); }

enum { MODE_MISS, MODE_HIT, MODE_ROTATE };

typedef struct {
    const char *label, *tool;
    int port, n, mode, ok;
    long offset;
    char session[256];
    char buf[1 << 16];
    double *samples, end;
    int cpu;   /* after the last call */
} worker;

static pthread_barrier_t ready;
static double start;

#ifdef GATEWAY_CLIENT_TLS
#include <openssl/ssl.h>
static SSL_CTX *tls_context;   /* set when MCPOPT_BENCH_CA is: every connection speaks TLS */
static __thread SSL *tls;      /* this worker's session */
static ssize_t io_write(int fd, const void *p, size_t n) { return tls ? SSL_write(tls, p, (int)n) : write(fd, p, n); }
static ssize_t io_read(int fd, void *p, size_t n) { return tls ? SSL_read(tls, p, (int)n) : read(fd, p, n); }
static int io_start(int fd) {
    if (!tls_context) return 0;
    tls = SSL_new(tls_context);
    SSL_set_fd(tls, fd);
    SSL_set_tlsext_host_name(tls, "localhost");
    SSL_set1_host(tls, "localhost");
    if (SSL_connect(tls) != 1) { fprintf(stderr, "TLS handshake failed\n"); return -1; }
    return 0;
}
static void io_setup(void) {
    const char *ca = getenv("MCPOPT_BENCH_CA");
    if (!ca || !*ca) return;
    tls_context = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(tls_context, SSL_VERIFY_PEER, NULL);
    if (SSL_CTX_load_verify_locations(tls_context, ca, NULL) != 1) { fprintf(stderr, "cannot load %s\n", ca); exit(2); }
}
#else
static ssize_t io_write(int fd, const void *p, size_t n) { return write(fd, p, n); }
static ssize_t io_read(int fd, void *p, size_t n) { return read(fd, p, n); }
static int io_start(int fd) { (void)fd; return 0; }
static void io_setup(void) {}
#endif

static int exchange(int fd, worker *w, const char *body) {
    char request[2048];
    char extra[400] = "";
    if (w->session[0]) snprintf(extra, sizeof extra, "Mcp-Session-Id: %s\r\nMCP-Protocol-Version: 2025-06-18\r\n", w->session);
    int n = snprintf(request, sizeof request,
                     "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\n%sContent-Length: %zu\r\n\r\n%s",
                     extra, strlen(body), body);
    if (io_write(fd, request, n) != n) return -1;
    char *buf = w->buf;
    size_t len = 0, size = sizeof w->buf;
    for (;;) {
        ssize_t r = io_read(fd, buf + len, size - len - 1);
        if (r <= 0) return -1;
        len += r;
        buf[len] = 0;
        char *end = strstr(buf, "\r\n\r\n");
        if (!end) continue;
        char *cl = strcasestr(buf, "content-length:");
        size_t body_len = cl ? strtoul(cl + 15, NULL, 10) : 0;
        if (len < (size_t)(end - buf) + 4 + body_len) continue;
        if (strncmp(buf, "HTTP/1.1 200", 12) != 0 && strncmp(buf, "HTTP/1.1 202", 12) != 0) { fprintf(stderr, "%.200s\n", buf); return -1; }
        if (!w->session[0]) {
            char *sid = strcasestr(buf, "mcp-session-id:");
            if (sid) sscanf(sid + 15, " %255[^\r\n]", w->session);
        }
        return 0;
    }
}

/* One call; 0 when answered. */
static int call(int fd, worker *w, int id, long argument) {
    char body[512];
    snprintf(body, sizeof body, "{\"jsonrpc\":\"2.0\",\"id\":%d,\"method\":\"tools/call\",\"params\":{\"name\":\"%s\",\"arguments\":{\"i\":%ld}}}",
             id, w->tool, argument);
    if (exchange(fd, w, body)) { fprintf(stderr, "%s: request %d failed\n", w->label, id); return -1; }
    return 0;
}

/* The call's argument: the same for hits, one of eight in turn, or new for misses. */
static long argument(const worker *w, int id) {
    if (w->mode == MODE_HIT) return 1L;
    if (w->mode == MODE_ROTATE) return 1L + id % 8;
    return w->offset + id;
}

/* One connection: handshake, warm-up, then its share of the calls once every connection is ready. */
static void *run(void *arg) {
    worker *w = arg;
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1, failed = 0, id = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(w->port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(fd, (struct sockaddr *)&a, sizeof a)) { perror("connect"); failed = 1; }
    if (!failed && io_start(fd)) failed = 1;
    if (!failed && exchange(fd, w, "{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"initialize\",\"params\":{\"protocolVersion\":\"2025-06-18\",\"capabilities\":{},\"clientInfo\":{\"name\":\"bench\",\"version\":\"1\"}}}")) failed = 1;
    if (!failed && exchange(fd, w, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}")) failed = 1;
    for (int i = 0; i < w->n / 10 + 10 && !failed; i++, id++) failed = call(fd, w, id, argument(w, id));
    /* Every thread reaches the barrier, failed or not, so none waits forever; one takes the time. */
    if (pthread_barrier_wait(&ready) == PTHREAD_BARRIER_SERIAL_THREAD) start = now();
    pthread_barrier_wait(&ready);
    for (int i = 0; i < w->n && !failed; i++, id++) {
        double t = now();
        failed = call(fd, w, id, argument(w, id));
        w->samples[i] = (now() - t) * 1e6;
    }
    w->end = now();
    w->cpu = sched_getcpu();
    w->ok = !failed;
    close(fd);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 6) { fprintf(stderr, "usage: gateway_client LABEL N PORT TOOL hit|miss|rotate [OFFSET [CONNECTIONS [SAMPLES]]]\n"); return 2; }
    int n = atoi(argv[2]), connections = argc > 7 ? atoi(argv[7]) : 1;
    if (n < 1 || connections < 1 || connections > MAX_CONNECTIONS) { fprintf(stderr, "N >= 1, 1 <= CONNECTIONS <= %d\n", MAX_CONNECTIONS); return 2; }
    long offset = argc > 6 ? atol(argv[6]) : 0;
    io_setup();
    static worker workers[MAX_CONNECTIONS];
    pthread_t threads[MAX_CONNECTIONS];
    pthread_barrier_init(&ready, NULL, connections);
    int each = (n + connections - 1) / connections;
    for (int c = 0; c < connections; c++) {
        worker *w = &workers[c];
        w->label = argv[1]; w->tool = argv[4]; w->port = atoi(argv[3]); w->mode = strcmp(argv[5], "hit") == 0 ? MODE_HIT : strcmp(argv[5], "rotate") == 0 ? MODE_ROTATE : MODE_MISS; w->n = each;
        w->offset = offset + (long)c * 100000000L;   /* each connection's misses are its own */
        w->samples = malloc(each * sizeof *w->samples);
        pthread_create(&threads[c], NULL, run, w);
    }
    double end = 0, sum = 0;
    int total = 0, ok = 1;
    for (int c = 0; c < connections; c++) {
        pthread_join(threads[c], NULL);
        ok &= workers[c].ok;
        if (workers[c].end > end) end = workers[c].end;
    }
    if (!ok) return 1;
    double *all = malloc((size_t)each * connections * sizeof *all);
    for (int c = 0; c < connections; c++)
        for (int i = 0; i < each; i++) { all[total++] = workers[c].samples[i]; sum += workers[c].samples[i]; }
    if (argc > 8) {
        FILE *samples = fopen(argv[8], "a");
        if (!samples) { perror(argv[8]); return 1; }
        for (int i = 0; i < total; i++) fprintf(samples, "%.3f\n", all[i]);
        if (fclose(samples)) { perror(argv[8]); return 1; }
    }
    qsort(all, total, sizeof *all, cmp);
    printf("{\"path\":\"%s\",\"requests\":%d,\"connections\":%d,\"roundTripsPerSecond\":%.0f,\"p50Us\":%.1f,\"p99Us\":%.1f,\"meanUs\":%.1f,\"cpu\":%d}\n",
           argv[1], total, connections, total / (end - start), all[total / 2], all[(int)(total * 0.99)], sum / total, connections == 1 ? workers[0].cpu : -1);
    return 0;
}
