/* Parses the gateway benchmark's request and the echo server's response N times each, with the
 * fast path (1) or http-parser alone (0), and looks up one header in each: run under callgrind
 * by scripts/bench-http-parser, which divides the instruction count by the messages parsed.
 * usage: parser_bench FAST N */
#include "mcpopt_http_shim.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static long parse(int kind, int fast, const char *message, long n, const char *header) {
    mco_http *h = mco_http_new(kind, 64 << 10, 100);
    if (!h) return -1;
    mco_http_set_fast(h, fast);
    size_t length = strlen(message);
    long check = 0;
    for (long i = 0; i < n; i++) {
        int64_t used = mco_http_feed(h, message, length);
        if (used != (int64_t)length || !mco_http_message_done(h)) {
            fprintf(stderr, "parse failed: %s\n", mco_http_error(h));
            exit(1);
        }
        check += mco_http_find(h, header, strlen(header), 0);
        mco_http_body_take(h);
        mco_http_next(h);
    }
    mco_http_free(h);
    return check;
}

int main(int argc, char **argv) {
    int fast = argc > 1 ? atoi(argv[1]) : 1;
    long n = argc > 2 ? atol(argv[2]) : 100000;
    const char *request_body = "{\"jsonrpc\":\"2.0\",\"id\":12345,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\",\"arguments\":{\"k\":1}}}";
    const char *response_body = "{\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"k\"}]}}";
    char request[1024], response[1024];
    snprintf(request, sizeof request,
             "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\n"
             "Mcp-Session-Id: 0123456789abcdef0123456789abcdef\r\nMCP-Protocol-Version: 2025-06-18\r\nContent-Length: %zu\r\n\r\n%s",
             strlen(request_body), request_body);
    snprintf(response, sizeof response,
             "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %zu\r\nConnection: keep-alive\r\n\r\n%s",
             strlen(response_body), response_body);
    long check = parse(MCO_HTTP_REQUEST, fast, request, n, "mcp-session-id") + parse(MCO_HTTP_RESPONSE, fast, response, n, "content-type");
    printf("%ld\n", check);
    return 0;
}
