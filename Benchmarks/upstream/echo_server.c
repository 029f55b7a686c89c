/* A minimal stdio MCP server for the upstream benchmark: answers initialize, tools/list and
 * tools/call ("echo") at once, so round trips measure the client and the pipe, not the server.
 * Handshake era (2025-06-18); other methods get "method not found". Not a general parser: it
 * reads the "id" and "method" members of the requests these benchmarks send. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int member(const char *line, const char *name, char *out, size_t size) {
    char key[32];
    snprintf(key, sizeof key, "\"%s\":", name);
    const char *p = strstr(line, key);
    if (!p) return 0;
    p += strlen(key);
    while (*p == ' ') p++;
    size_t n = 0;
    if (*p == '"') {
        out[n++] = *p++;
        while (*p && *p != '"' && n < size - 2) out[n++] = *p++;
        out[n++] = '"';
    } else {
        while (*p && *p != ',' && *p != '}' && n < size - 1) out[n++] = *p++;
    }
    out[n] = 0;
    return 1;
}

int main(void) {
    char *line = NULL;
    size_t capacity = 0;
    setvbuf(stdout, NULL, _IOFBF, 1 << 16);
    while (getline(&line, &capacity, stdin) > 0) {
        char id[64], method[64];
        if (!member(line, "id", id, sizeof id)) continue;   /* a notification */
        if (!member(line, "method", method, sizeof method)) continue;
        if (strcmp(method, "\"initialize\"") == 0)
            printf("{\"jsonrpc\":\"2.0\",\"id\":%s,\"result\":{\"protocolVersion\":\"2025-06-18\",\"capabilities\":{\"tools\":{}},\"serverInfo\":{\"name\":\"echo\",\"version\":\"1\"}}}\n", id);
        else if (strcmp(method, "\"tools/list\"") == 0)
            printf("{\"jsonrpc\":\"2.0\",\"id\":%s,\"result\":{\"tools\":[{\"name\":\"echo\",\"inputSchema\":{\"type\":\"object\"}}]}}\n", id);
        else if (strcmp(method, "\"tools/call\"") == 0)
            printf("{\"jsonrpc\":\"2.0\",\"id\":%s,\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"ok\"}],\"isError\":false}}\n", id);
        else if (strcmp(method, "\"ping\"") == 0)
            printf("{\"jsonrpc\":\"2.0\",\"id\":%s,\"result\":{}}\n", id);
        else
            printf("{\"jsonrpc\":\"2.0\",\"id\":%s,\"error\":{\"code\":-32601,\"message\":\"method not found\"}}\n", id);
        fflush(stdout);
    }
    free(line);
    return 0;
}
