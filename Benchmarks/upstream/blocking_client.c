/* The floor for stdio round trips: a plain blocking client (pipes, write a line, read a line),
 * no event loop, no JSON parsing beyond finding the line end. Usage: blocking_client N SERVER... */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now(void) { struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts); return ts.tv_sec + ts.tv_nsec / 1e9; }
static int cmp(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return (x > y) - (x < y); }

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: %s N SERVER [ARGS...]\n", argv[0]); return 2; }
    int n = atoi(argv[1]);
    int to[2], from[2];
    if (pipe(to) || pipe(from)) return 1;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(to[0], 0); dup2(from[1], 1);
        close(to[1]); close(from[0]);
        execvp(argv[2], argv + 2);
        _exit(127);
    }
    close(to[0]); close(from[1]);
    FILE *in = fdopen(from[0], "r");
    char *line = NULL;
    size_t capacity = 0;
    char request[256];
    int len = snprintf(request, sizeof request, "{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"initialize\",\"params\":{\"protocolVersion\":\"2025-06-18\",\"capabilities\":{},\"clientInfo\":{\"name\":\"floor\",\"version\":\"1\"}}}\n");
    if (write(to[1], request, len) != len || getline(&line, &capacity, in) <= 0) return 1;
    const char *initialized = "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n";
    if (write(to[1], initialized, strlen(initialized)) < 0) return 1;
    double *samples = malloc(n * sizeof *samples);
    double start = now();
    for (int i = 0; i < n; i++) {
        len = snprintf(request, sizeof request, "{\"jsonrpc\":\"2.0\",\"id\":%d,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\",\"arguments\":{\"i\":%d}}}\n", i + 1, i);
        double t = now();
        if (write(to[1], request, len) != len || getline(&line, &capacity, in) <= 0) return 1;
        samples[i] = (now() - t) * 1e6;
    }
    double elapsed = now() - start;
    qsort(samples, n, sizeof *samples, cmp);
    printf("{\"client\":\"blocking C (floor)\",\"requests\":%d,\"roundTripsPerSecond\":%.0f,\"p50Us\":%.1f,\"p99Us\":%.1f}\n",
           n, n / elapsed, samples[n / 2], samples[(int)(n * 0.99)]);
    close(to[1]);
    free(samples);
    free(line);
    return 0;
}
