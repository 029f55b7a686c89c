/* One blocking keep-alive HTTP client doing MCP round trips one at a time (the way an agent
 * waits on each call), through whatever listens on PORT: a server directly, a proxy hop, or the
 * mcpopt gateway. Initializes a handshake-era session and sends its Mcp-Session-Id after.
 * Usage: gateway_client LABEL N PORT TOOL hit|miss [OFFSET]
 *   miss: arguments differ on every call (starting at OFFSET, so repeated runs stay misses);
 *   hit: the same arguments every time.
 * Prints one JSON line: requests, round trips per second, p50/p99/mean in microseconds. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(void) { struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts); return ts.tv_sec + ts.tv_nsec / 1e9; }
static int cmp(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return (x > y) - (x < y); }
static char session[256];

static int exchange(int fd, const char *body, char *buf, size_t size) {
    char request[2048];
    char extra[400] = "";
    if (session[0]) snprintf(extra, sizeof extra, "Mcp-Session-Id: %s\r\nMCP-Protocol-Version: 2025-06-18\r\n", session);
    int n = snprintf(request, sizeof request,
                     "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\n%sContent-Length: %zu\r\n\r\n%s",
                     extra, strlen(body), body);
    if (write(fd, request, n) != n) return -1;
    size_t len = 0;
    for (;;) {
        ssize_t r = read(fd, buf + len, size - len - 1);
        if (r <= 0) return -1;
        len += r;
        buf[len] = 0;
        char *end = strstr(buf, "\r\n\r\n");
        if (!end) continue;
        char *cl = strcasestr(buf, "content-length:");
        size_t body_len = cl ? strtoul(cl + 15, NULL, 10) : 0;
        if (len < (size_t)(end - buf) + 4 + body_len) continue;
        if (strncmp(buf, "HTTP/1.1 200", 12) != 0 && strncmp(buf, "HTTP/1.1 202", 12) != 0) { fprintf(stderr, "%.200s\n", buf); return -1; }
        if (!session[0]) {
            char *sid = strcasestr(buf, "mcp-session-id:");
            if (sid) sscanf(sid + 15, " %255[^\r\n]", session);
        }
        return 0;
    }
}

int main(int argc, char **argv) {
    if (argc < 6) { fprintf(stderr, "usage: gateway_client LABEL N PORT TOOL hit|miss\n"); return 2; }
    const char *label = argv[1], *tool = argv[4];
    int n = atoi(argv[2]), hit = strcmp(argv[5], "hit") == 0;
    long offset = argc > 6 ? atol(argv[6]) : 0;
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[3])), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(fd, (struct sockaddr *)&a, sizeof a)) { perror("connect"); return 1; }
    static char buf[1 << 16];
    if (exchange(fd, "{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"initialize\",\"params\":{\"protocolVersion\":\"2025-06-18\",\"capabilities\":{},\"clientInfo\":{\"name\":\"bench\",\"version\":\"1\"}}}", buf, sizeof buf)) return 1;
    if (exchange(fd, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}", buf, sizeof buf)) return 1;
    int warm = n / 10 + 10;
    double *samples = malloc(n * sizeof *samples), start = 0;
    for (int i = -warm; i < n; i++) {
        char body[512];
        snprintf(body, sizeof body, "{\"jsonrpc\":\"2.0\",\"id\":%d,\"method\":\"tools/call\",\"params\":{\"name\":\"%s\",\"arguments\":{\"i\":%ld}}}",
                 i + warm + 1, tool, hit ? 1L : offset + i + warm);
        if (i == 0) start = now();
        double t = now();
        if (exchange(fd, body, buf, sizeof buf)) { fprintf(stderr, "%s: request %d failed\n", label, i); return 1; }
        if (i >= 0) samples[i] = (now() - t) * 1e6;
    }
    double elapsed = now() - start, sum = 0;
    for (int i = 0; i < n; i++) sum += samples[i];
    qsort(samples, n, sizeof *samples, cmp);
    printf("{\"path\":\"%s\",\"requests\":%d,\"roundTripsPerSecond\":%.0f,\"p50Us\":%.1f,\"p99Us\":%.1f,\"meanUs\":%.1f}\n",
           label, n, n / elapsed, samples[n / 2], samples[(int)(n * 0.99)], sum / n);
    return 0;
}
