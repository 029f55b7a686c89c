/* A minimal Streamable HTTP MCP server for the upstream benchmark (handshake era, JSON answers,
 * keep-alive, several connections through poll). Prints "PORT <n>" once listening on 127.0.0.1.
 * Answers initialize, tools/list and tools/call at once; notifications get 202; GET gets 405.
 * Not a general HTTP server: it reads Content-Length bodies of the requests the clients send. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAXC 64
typedef struct { int fd; char buf[1 << 16]; size_t len; } conn;

static int member(const char *body, const char *name, char *out, size_t size) {
    char key[32];
    snprintf(key, sizeof key, "\"%s\":", name);
    const char *p = strstr(body, key);
    if (!p) return 0;
    p += strlen(key);
    while (*p == ' ') p++;
    size_t n = 0;
    if (*p == '"') { out[n++] = *p++; while (*p && *p != '"' && n < size - 2) out[n++] = *p++; out[n++] = '"'; }
    else while (*p && *p != ',' && *p != '}' && n < size - 1) out[n++] = *p++;
    out[n] = 0;
    return 1;
}

static void reply(int fd, int status, const char *body) {
    char head[256];
    const char *text = status == 200 ? "OK" : status == 202 ? "Accepted" : "Method Not Allowed";
    int n = snprintf(head, sizeof head, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\nConnection: keep-alive\r\n\r\n",
                     status, text, strlen(body));
    char out[4096];
    memcpy(out, head, n);
    memcpy(out + n, body, strlen(body));
    if (write(fd, out, n + strlen(body)) < 0) {}
}

/* Handles every complete request in c->buf; returns 0 to close. */
static int serve(conn *c) {
    for (;;) {
        char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
        if (!end) return 1;
        size_t head = end - c->buf + 4;
        size_t body = 0;
        for (char *h = c->buf; h < end; h = strstr(h, "\r\n") + 2) {
            if (strncasecmp(h, "content-length:", 15) == 0) body = strtoul(h + 15, NULL, 10);
            if (!strstr(h, "\r\n")) break;
        }
        if (c->len < head + body) return 1;
        char saved = c->buf[head + body];
        c->buf[head + body] = 0;
        const char *payload = c->buf + head;
        char id[64], method[64];
        if (strncmp(c->buf, "GET ", 4) == 0) reply(c->fd, 405, "");
        else if (strncmp(c->buf, "DELETE ", 7) == 0) reply(c->fd, 202, "");
        else if (!member(payload, "id", id, sizeof id)) reply(c->fd, 202, "");
        else {
            char out[512];
            member(payload, "method", method, sizeof method);
            if (strcmp(method, "\"initialize\"") == 0)
                snprintf(out, sizeof out, "{\"jsonrpc\":\"2.0\",\"id\":%s,\"result\":{\"protocolVersion\":\"2025-06-18\",\"capabilities\":{\"tools\":{}},\"serverInfo\":{\"name\":\"echo\",\"version\":\"1\"}}}", id);
            else if (strcmp(method, "\"tools/list\"") == 0)
                snprintf(out, sizeof out, "{\"jsonrpc\":\"2.0\",\"id\":%s,\"result\":{\"tools\":[{\"name\":\"echo\",\"inputSchema\":{\"type\":\"object\"}}]}}", id);
            else if (strcmp(method, "\"tools/call\"") == 0)
                snprintf(out, sizeof out, "{\"jsonrpc\":\"2.0\",\"id\":%s,\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"ok\"}],\"isError\":false}}", id);
            else
                snprintf(out, sizeof out, "{\"jsonrpc\":\"2.0\",\"id\":%s,\"error\":{\"code\":-32601,\"message\":\"method not found\"}}", id);
            reply(c->fd, 200, out);
        }
        c->buf[head + body] = saved;
        memmove(c->buf, c->buf + head + body, c->len - head - body);
        c->len -= head + body;
    }
}

int main(void) {
    int listener = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (bind(listener, (struct sockaddr *)&a, sizeof a) || listen(listener, 64) || getsockname(listener, (struct sockaddr *)&a, &len)) return 1;
    printf("PORT %d\n", ntohs(a.sin_port));
    fflush(stdout);
    static conn conns[MAXC];
    int count = 0;
    for (;;) {
        struct pollfd p[MAXC + 1];
        p[0] = (struct pollfd){listener, POLLIN, 0};
        for (int i = 0; i < count; i++) p[i + 1] = (struct pollfd){conns[i].fd, POLLIN, 0};
        if (poll(p, count + 1, -1) < 0) continue;
        if ((p[0].revents & POLLIN) && count < MAXC) {
            int fd = accept(listener, NULL, NULL);
            if (fd >= 0) { setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); conns[count].fd = fd; conns[count].len = 0; count++; }
        }
        for (int i = count - 1; i >= 0; i--) {
            if (!(p[i + 1].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            conn *c = &conns[i];
            ssize_t n = read(c->fd, c->buf + c->len, sizeof c->buf - c->len - 1);
            if (n <= 0 || (c->len += n, !serve(c))) { close(c->fd); conns[i] = conns[--count]; }
        }
    }
}
