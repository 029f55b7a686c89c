/* The floor for HTTP round trips: one blocking keep-alive connection, write a POST, read the
 * response up to its Content-Length. Usage: http_blocking_client N PORT */
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

static int exchange(int fd, const char *body, char *buf, size_t size) {
    char request[1024];
    int n = snprintf(request, sizeof request, "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: %zu\r\n\r\n%s", strlen(body), body);
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
        if (len >= (size_t)(end - buf) + 4 + body_len) return 0;
    }
}

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    int n = atoi(argv[1]);
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2])), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(fd, (struct sockaddr *)&a, sizeof a)) return 1;
    char buf[8192];
    if (exchange(fd, "{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"initialize\",\"params\":{\"protocolVersion\":\"2025-06-18\",\"capabilities\":{},\"clientInfo\":{\"name\":\"floor\",\"version\":\"1\"}}}", buf, sizeof buf)) return 1;
    double *samples = malloc(n * sizeof *samples), start = now();
    for (int i = 0; i < n; i++) {
        char body[256];
        snprintf(body, sizeof body, "{\"jsonrpc\":\"2.0\",\"id\":%d,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\",\"arguments\":{\"i\":%d}}}", i + 1, i);
        double t = now();
        if (exchange(fd, body, buf, sizeof buf)) return 1;
        samples[i] = (now() - t) * 1e6;
    }
    double elapsed = now() - start;
    qsort(samples, n, sizeof *samples, cmp);
    printf("{\"client\":\"blocking C over keep-alive HTTP (floor)\",\"requests\":%d,\"roundTripsPerSecond\":%.0f,\"p50Us\":%.1f,\"p99Us\":%.1f}\n",
           n, n / elapsed, samples[n / 2], samples[(int)(n * 0.99)]);
    return 0;
}
