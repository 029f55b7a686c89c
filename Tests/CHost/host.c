/* A C host of libmcpopt, compiled against the installed header and library. It checks the
 * documented behaviour of the C interface, bad input included, and ends with the line
 * "N passed, N failed". Run it under valgrind to check for leaks. */
#include <mcpopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int passed, failed;

#define CHECK(cond) do { \
    if (cond) passed++; \
    else { failed++; fprintf(stderr, "FAIL %s:%d: %s (last error: %s)\n", __FILE__, __LINE__, #cond, mcpopt_last_error_message()); } \
} while (0)

static char *read_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); exit(2); }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) { fprintf(stderr, "cannot read %s\n", path); exit(2); }
    buf[n] = 0;
    fclose(f);
    return buf;
}

static int has_issue(const mcpopt_error *e, const char *path, const char *fragment) {
    for (size_t i = 0; i < mcpopt_error_issue_count(e); i++) {
        if (strcmp(mcpopt_error_issue_path(e, i), path) == 0 && strstr(mcpopt_error_issue_message(e, i), fragment)) return 1;
    }
    return 0;
}

static void test_versions(void) {
    CHECK(mcpopt_abi_version() == MCPOPT_ABI_VERSION);
    CHECK(strcmp(mcpopt_version(), MCPOPT_VERSION_STRING) == 0);
    CHECK(strcmp(mcpopt_status_string(MCPOPT_ERR_INVALID_CONFIG), "invalid config") == 0);
    CHECK(strcmp(mcpopt_status_string(12345), "unknown status") == 0);
}

static void test_engine_from_real_config(const char *config) {
    mcpopt_engine *engine = NULL;
    CHECK(mcpopt_engine_create(config, strlen(config), &engine) == MCPOPT_OK);
    CHECK(engine != NULL);
    CHECK(mcpopt_last_status() == MCPOPT_OK);
    CHECK(strcmp(mcpopt_last_error_message(), "") == 0);
    CHECK(mcpopt_last_error() == NULL);

    char *json = NULL;
    size_t length = 0;
    CHECK(mcpopt_engine_describe(engine, &json, &length) == MCPOPT_OK);
    CHECK(json != NULL && strlen(json) == length);
    CHECK(json && strstr(json, "\"active\":4") != NULL);
    CHECK(json && strstr(json, "\"search\":[\"search-a\",\"search-b\"]") != NULL);
    CHECK(json && strstr(json, "example-token") == NULL); /* secrets redacted */
    CHECK(json && strstr(json, "\"allocator\":\"system\"") != NULL); /* this host has no jemalloc */
    mcpopt_free(json);

    /* length may be omitted */
    json = NULL;
    CHECK(mcpopt_engine_describe(engine, &json, NULL) == MCPOPT_OK);
    mcpopt_free(json);

    CHECK(mcpopt_engine_destroy(engine) == MCPOPT_OK);
    /* the handle is dead now */
    CHECK(mcpopt_engine_destroy(engine) == MCPOPT_ERR_INVALID_HANDLE);
    CHECK(strstr(mcpopt_last_error_message(), "not live") != NULL);
    json = (char *)1;
    CHECK(mcpopt_engine_describe(engine, &json, NULL) == MCPOPT_ERR_INVALID_HANDLE);
    CHECK(json == NULL);
}

static void test_validation_errors_name_paths(void) {
    const char *bad =
        "{\"mcpServers\": {\"git\": {\"command\": \"mcp-server-git\", \"args\": [\"--repository\", 7]},"
        "                  \"web\": {\"url\": \"ftp://example\"}},"
        " \"routing\": {\"minConfidence\": 1.5},"
        " \"caching\": {\"warmingStrategy\": \"lazy\"}}";
    CHECK(mcpopt_config_validate(bad, MCPOPT_NUL_TERMINATED) == MCPOPT_ERR_INVALID_CONFIG);
    CHECK(mcpopt_last_status() == MCPOPT_ERR_INVALID_CONFIG);
    mcpopt_error *e = mcpopt_last_error();
    CHECK(e != NULL);
    CHECK(mcpopt_error_status(e) == MCPOPT_ERR_INVALID_CONFIG);
    CHECK(mcpopt_error_issue_count(e) == 4);
    CHECK(has_issue(e, "$.mcpServers.git.args[1]", "expected a string"));
    CHECK(has_issue(e, "$.mcpServers.web.url", "http://"));
    CHECK(has_issue(e, "$.routing.minConfidence", "out of range"));
    CHECK(has_issue(e, "$.caching.warmingStrategy", "lazy"));
    CHECK(mcpopt_error_issue_path(e, 4) == NULL);
    CHECK(mcpopt_error_issue_message(e, 99) == NULL);
    CHECK(strstr(mcpopt_error_message(e), "(and 3 more)") != NULL);
    mcpopt_error_free(e);

    mcpopt_engine *engine = (mcpopt_engine *)1;
    CHECK(mcpopt_engine_create(bad, strlen(bad), &engine) == MCPOPT_ERR_INVALID_CONFIG);
    CHECK(engine == NULL);

    /* a successful call clears the last error */
    CHECK(mcpopt_config_validate("{}", 2) == MCPOPT_OK);
    CHECK(mcpopt_last_status() == MCPOPT_OK);
    CHECK(mcpopt_last_error() == NULL);
}

static void test_bad_input(void) {
    mcpopt_engine *engine = NULL;
    CHECK(mcpopt_config_validate(NULL, 5) == MCPOPT_ERR_INVALID_ARGUMENT);
    CHECK(strstr(mcpopt_last_error_message(), "NULL") != NULL);
    CHECK(mcpopt_engine_create(NULL, 0, &engine) == MCPOPT_ERR_INVALID_ARGUMENT);
    CHECK(mcpopt_engine_create("{}", 2, NULL) == MCPOPT_ERR_INVALID_ARGUMENT);
    CHECK(mcpopt_engine_describe(NULL, NULL, NULL) == MCPOPT_ERR_INVALID_ARGUMENT);
    char *json = NULL;
    CHECK(mcpopt_engine_describe(NULL, &json, NULL) == MCPOPT_ERR_INVALID_ARGUMENT);
    /* a pointer that was never a handle */
    int not_an_engine = 0;
    CHECK(mcpopt_engine_describe((mcpopt_engine *)&not_an_engine, &json, NULL) == MCPOPT_ERR_INVALID_HANDLE);
    CHECK(mcpopt_engine_destroy((mcpopt_engine *)&not_an_engine) == MCPOPT_ERR_INVALID_HANDLE);
    CHECK(mcpopt_engine_destroy(NULL) == MCPOPT_OK);

    /* malformed JSON, invalid UTF-8, empty text, wrong sizes */
    CHECK(mcpopt_config_validate("{\"mcpServers\":", MCPOPT_NUL_TERMINATED) == MCPOPT_ERR_MALFORMED_JSON);
    mcpopt_error *e = mcpopt_last_error();
    CHECK(e && mcpopt_error_issue_count(e) == 1 && strcmp(mcpopt_error_issue_path(e, 0), "$") == 0);
    mcpopt_error_free(e);
    CHECK(mcpopt_config_validate("{\"a\":\"\xff\xfe\"}", MCPOPT_NUL_TERMINATED) == MCPOPT_ERR_INVALID_UTF8);
    CHECK(mcpopt_config_validate("", 0) == MCPOPT_ERR_MALFORMED_JSON);
    CHECK(mcpopt_config_validate("{}", (size_t)-2) == MCPOPT_ERR_INVALID_ARGUMENT);
    /* the length counts: only "{" of "{}" is read */
    CHECK(mcpopt_config_validate("{}", 1) == MCPOPT_ERR_MALFORMED_JSON);
    /* embedded NUL inside the given length is not JSON */
    CHECK(mcpopt_config_validate("{}\0{}", 5) == MCPOPT_ERR_MALFORMED_JSON);
    CHECK(mcpopt_config_validate("[1,2]", MCPOPT_NUL_TERMINATED) == MCPOPT_ERR_INVALID_CONFIG);

    /* over the size limit */
    size_t big = (size_t)17 << 20;
    char *huge = malloc(big);
    memset(huge, ' ', big);
    huge[0] = '{';
    huge[big - 1] = '}';
    CHECK(mcpopt_config_validate(huge, big) == MCPOPT_ERR_TOO_LARGE);
    free(huge);

    /* accessors tolerate NULL */
    CHECK(mcpopt_error_status(NULL) == MCPOPT_OK);
    CHECK(strcmp(mcpopt_error_message(NULL), "") == 0);
    CHECK(mcpopt_error_issue_count(NULL) == 0);
    CHECK(mcpopt_error_issue_path(NULL, 0) == NULL);
    mcpopt_error_free(NULL);
    mcpopt_free(NULL);
}

typedef struct watch_log {
    int calls, deletes;
    char last_key[64];
    char last_value[64];
} watch_log;

static void on_state(void *user_data, const char *key, size_t key_length, const void *value, size_t value_length,
                     const char *version, int deleted) {
    watch_log *log = user_data;
    log->calls++;
    log->deletes += deleted;
    snprintf(log->last_key, sizeof log->last_key, "%.*s", (int)key_length, key);
    snprintf(log->last_value, sizeof log->last_value, "%.*s", (int)value_length, (const char *)value);
    (void)version;
}

static void test_state(const char *config) {
    mcpopt_engine *engine = NULL;
    CHECK(mcpopt_engine_create(config, MCPOPT_NUL_TERMINATED, &engine) == MCPOPT_OK);
    watch_log log = {0};
    uint64_t watch = 0;
    CHECK(mcpopt_state_watch(engine, "cfg/", 4, on_state, &log, &watch) == MCPOPT_OK);
    char *v1 = NULL, *v2 = NULL;
    CHECK(mcpopt_state_put(engine, "cfg/limit", MCPOPT_NUL_TERMINATED, "10", 2, &v1) == MCPOPT_OK);
    CHECK(mcpopt_state_put(engine, "cfg/limit", MCPOPT_NUL_TERMINATED, "20", 2, &v2) == MCPOPT_OK);
    CHECK(v1 && v2 && strcmp(v1, v2) != 0 && strchr(v1, '@') != NULL);
    CHECK(mcpopt_state_put(engine, "other", MCPOPT_NUL_TERMINATED, "x", 1, NULL) == MCPOPT_OK);
    CHECK(log.calls == 2 && strcmp(log.last_key, "cfg/limit") == 0 && strcmp(log.last_value, "20") == 0);

    void *value = NULL;
    size_t length = 0;
    char *version = NULL;
    CHECK(mcpopt_state_get(engine, "cfg/limit", MCPOPT_NUL_TERMINATED, &value, &length, &version) == MCPOPT_OK);
    CHECK(length == 2 && memcmp(value, "20", 2) == 0 && version && strcmp(version, v2) == 0);
    mcpopt_free(value);
    mcpopt_free(version);
    mcpopt_free(v1);
    mcpopt_free(v2);

    /* binary values and empty values */
    const unsigned char blob[4] = {0, 255, 10, 0};
    CHECK(mcpopt_state_put(engine, "bin", 3, blob, 4, NULL) == MCPOPT_OK);
    CHECK(mcpopt_state_get(engine, "bin", 3, &value, &length, NULL) == MCPOPT_OK && length == 4 && memcmp(value, blob, 4) == 0);
    mcpopt_free(value);
    CHECK(mcpopt_state_put(engine, "empty", 5, NULL, 0, NULL) == MCPOPT_OK);
    CHECK(mcpopt_state_get(engine, "empty", 5, &value, &length, NULL) == MCPOPT_OK && length == 0);
    mcpopt_free(value);

    CHECK(mcpopt_state_delete(engine, "cfg/limit", MCPOPT_NUL_TERMINATED) == MCPOPT_OK);
    CHECK(log.deletes == 1);
    CHECK(mcpopt_state_get(engine, "cfg/limit", MCPOPT_NUL_TERMINATED, &value, &length, NULL) == MCPOPT_ERR_NOT_FOUND);
    CHECK(value == NULL && length == 0);
    CHECK(mcpopt_state_delete(engine, "cfg/limit", MCPOPT_NUL_TERMINATED) == MCPOPT_ERR_NOT_FOUND);
    CHECK(mcpopt_state_unwatch(engine, watch) == MCPOPT_OK);
    CHECK(mcpopt_state_unwatch(engine, watch) == MCPOPT_ERR_NOT_FOUND);
    CHECK(mcpopt_state_put(engine, "cfg/limit", MCPOPT_NUL_TERMINATED, "30", 2, NULL) == MCPOPT_OK);
    CHECK(log.calls == 3); /* 2 puts + 1 delete, nothing after unwatch */

    /* bad input */
    CHECK(mcpopt_state_put(engine, NULL, 0, "x", 1, NULL) == MCPOPT_ERR_INVALID_ARGUMENT);
    CHECK(mcpopt_state_put(engine, "", 0, "x", 1, NULL) == MCPOPT_ERR_INVALID_ARGUMENT);
    CHECK(mcpopt_state_put(engine, "\xff", 1, "x", 1, NULL) == MCPOPT_ERR_INVALID_UTF8);
    CHECK(mcpopt_state_put(engine, "k", 1, NULL, 3, NULL) == MCPOPT_ERR_INVALID_ARGUMENT);
    CHECK(mcpopt_state_get(engine, "k", 1, NULL, &length, NULL) == MCPOPT_ERR_INVALID_ARGUMENT);
    CHECK(mcpopt_state_watch(engine, "", 0, NULL, NULL, &watch) == MCPOPT_ERR_INVALID_ARGUMENT);
    CHECK(mcpopt_state_put(NULL, "k", 1, "x", 1, NULL) == MCPOPT_ERR_INVALID_ARGUMENT);

    /* compare-and-set: NULL expects no value; a stale or malformed version is refused */
    char *c1 = NULL, *c2 = NULL;
    CHECK(mcpopt_state_compare_and_set(engine, "cas", 3, NULL, "a", 1, &c1) == MCPOPT_OK && c1 != NULL);
    CHECK(mcpopt_state_compare_and_set(engine, "cas", 3, NULL, "b", 1, NULL) == MCPOPT_ERR_CONFLICT);
    CHECK(mcpopt_state_compare_and_set(engine, "cas", 3, c1, "b", 1, &c2) == MCPOPT_OK && c2 != NULL);
    CHECK(mcpopt_state_compare_and_set(engine, "cas", 3, c1, "c", 1, NULL) == MCPOPT_ERR_CONFLICT);
    CHECK(mcpopt_state_compare_and_set(engine, "cas", 3, "garbage", "c", 1, NULL) == MCPOPT_ERR_INVALID_ARGUMENT);
    CHECK(mcpopt_state_compare_and_set(engine, "cas", 3, "\xff", "c", 1, NULL) == MCPOPT_ERR_INVALID_UTF8);
    CHECK(strcmp(mcpopt_status_string(MCPOPT_ERR_CONFLICT), "conflict") == 0);
    mcpopt_free(c1);
    mcpopt_free(c2);

    /* coordination requests that are wrong never reach a server */
    char *out = NULL;
    CHECK(mcpopt_coordinate_operation(engine, NULL, 0, &out, NULL) == MCPOPT_ERR_INVALID_ARGUMENT && out == NULL);
    CHECK(mcpopt_coordinate_operation(engine, "{\"operation\":", MCPOPT_NUL_TERMINATED, &out, NULL) == MCPOPT_ERR_MALFORMED_JSON);
    CHECK(mcpopt_coordinate_operation(engine, "{\"operation\":\"t\",\"servers\":[\"nope\"]}", MCPOPT_NUL_TERMINATED, &out, NULL) == MCPOPT_ERR_INVALID_ARGUMENT);
    CHECK(strstr(mcpopt_last_error_message(), "unknown server") != NULL);
    CHECK(mcpopt_transactions_recover(engine, &out, NULL) == MCPOPT_ERR_UNSUPPORTED && out == NULL);
    CHECK(mcpopt_engine_destroy(engine) == MCPOPT_OK);
    CHECK(mcpopt_state_put(engine, "k", 1, "x", 1, NULL) == MCPOPT_ERR_INVALID_HANDLE);
}

/* Threads create, describe and destroy engines at once; a shared engine is destroyed while
 * others use it. Every call must return a documented status. */
static mcpopt_engine *shared_engine;
static const char *shared_config;

static void *worker(void *arg) {
    long bad = 0;
    for (int i = 0; i < 200; i++) {
        mcpopt_engine *engine = NULL;
        if (mcpopt_engine_create(shared_config, MCPOPT_NUL_TERMINATED, &engine) != MCPOPT_OK) bad++;
        char *json = NULL;
        if (mcpopt_engine_describe(engine, &json, NULL) != MCPOPT_OK) bad++;
        mcpopt_free(json);
        json = NULL;
        mcpopt_status s = mcpopt_engine_describe(shared_engine, &json, NULL);
        if (s != MCPOPT_OK && s != MCPOPT_ERR_INVALID_HANDLE) bad++;
        mcpopt_free(json);
        if (mcpopt_engine_destroy(engine) != MCPOPT_OK) bad++;
        if (mcpopt_config_validate("{\"routing\":{\"minConfidence\":9}}", MCPOPT_NUL_TERMINATED) != MCPOPT_ERR_INVALID_CONFIG) bad++;
    }
    *(long *)arg = bad;
    return NULL;
}

static void test_threads(const char *config) {
    shared_config = config;
    CHECK(mcpopt_engine_create(config, MCPOPT_NUL_TERMINATED, &shared_engine) == MCPOPT_OK);
    pthread_t threads[4];
    long bad[4] = {0};
    for (int i = 0; i < 4; i++) pthread_create(&threads[i], NULL, worker, &bad[i]);
    CHECK(mcpopt_engine_destroy(shared_engine) == MCPOPT_OK);
    for (int i = 0; i < 4; i++) {
        pthread_join(threads[i], NULL);
        CHECK(bad[i] == 0);
    }
}

/* The cache from C: the options struct, a caller buffer, invalidation, and bad input. */
static void test_cache(const char *config) {
    mcpopt_engine *engine = NULL;
    CHECK(mcpopt_engine_create(config, strlen(config), &engine) == MCPOPT_OK);
    const char *tags[] = {"src", "lib"};
    mcpopt_cache_options options = MCPOPT_CACHE_OPTIONS_INIT;
    options.ttl_ms = 60000;
    options.coherence_group = "fs";
    options.tags = tags;
    options.tag_count = 2;
    CHECK(mcpopt_cache_set(engine, "Read:/src/a", 11, "alpha", 5, &options) == MCPOPT_OK);
    CHECK(mcpopt_cache_set(engine, "Read:/docs/b", 12, "beta", 4, NULL) == MCPOPT_OK);
    char buffer[16];
    size_t length = 0;
    CHECK(mcpopt_cache_get(engine, "Read:/src/a", 11, buffer, sizeof buffer, &length) == MCPOPT_OK);
    CHECK(length == 5 && memcmp(buffer, "alpha", 5) == 0);
    CHECK(mcpopt_cache_get(engine, "Read:/src/a", 11, buffer, 2, &length) == MCPOPT_ERR_BUFFER_TOO_SMALL && length == 5);
    void *copy = NULL;
    CHECK(mcpopt_cache_get_copy(engine, "Read:/docs/b", 12, &copy, &length) == MCPOPT_OK);
    CHECK(copy && length == 4 && memcmp(copy, "beta", 4) == 0);
    mcpopt_free(copy);
    size_t removed = 0;
    CHECK(mcpopt_cache_invalidate_tag(engine, "lib", MCPOPT_NUL_TERMINATED, &removed) == MCPOPT_OK && removed == 1);
    CHECK(mcpopt_cache_get(engine, "Read:/src/a", 11, buffer, sizeof buffer, &length) == MCPOPT_ERR_NOT_FOUND);
    CHECK(mcpopt_cache_invalidate(engine, "Read:*", MCPOPT_NUL_TERMINATED, &removed) == MCPOPT_OK && removed == 1);
    /* Bad input: a status and a message, never a crash. */
    options.struct_size = 4;
    CHECK(mcpopt_cache_set(engine, "k", 1, "v", 1, &options) == MCPOPT_ERR_INVALID_ARGUMENT);
    CHECK(strstr(mcpopt_last_error_message(), "struct_size") != NULL);
    CHECK(mcpopt_cache_set(engine, NULL, 1, "v", 1, NULL) == MCPOPT_ERR_INVALID_ARGUMENT);
    CHECK(mcpopt_cache_get(engine, "k", 1, NULL, 8, &length) == MCPOPT_ERR_INVALID_ARGUMENT);
    CHECK(mcpopt_cache_invalidate_group(engine, "\xff", MCPOPT_NUL_TERMINATED, NULL) == MCPOPT_ERR_INVALID_UTF8);
    char *json = NULL;
    CHECK(mcpopt_cache_stats(engine, &json, &length) == MCPOPT_OK);
    CHECK(json && strstr(json, "\"items\":0") != NULL);
    mcpopt_free(json);
    CHECK(mcpopt_cache_hot_keys(engine, 5, &json, NULL) == MCPOPT_OK);
    mcpopt_free(json);
    CHECK(mcpopt_engine_destroy(engine) == MCPOPT_OK);
    CHECK(mcpopt_cache_set(engine, "k", 1, "v", 1, NULL) == MCPOPT_ERR_INVALID_HANDLE);
}

/* Routing from C: tools from a tools/list result, outcomes, a decision, bad input. */
static void test_routing(const char *config) {
    mcpopt_engine *engine = NULL;
    CHECK(mcpopt_engine_create(config, strlen(config), &engine) == MCPOPT_OK);
    const char *server = "{\"id\": \"c-a\", \"group\": \"c\", \"tools\": [{\"name\": \"lookup\"}]}";
    CHECK(mcpopt_route_register_server(engine, server, MCPOPT_NUL_TERMINATED) == MCPOPT_OK);
    CHECK(mcpopt_route_register_server(engine, "{\"id\": \"c-b\", \"group\": \"c\"}", MCPOPT_NUL_TERMINATED) == MCPOPT_OK);
    CHECK(mcpopt_route_set_tools(engine, "c-b", MCPOPT_NUL_TERMINATED, "{\"tools\": [{\"name\": \"lookup\"}]}", MCPOPT_NUL_TERMINATED) == MCPOPT_OK);
    for (int i = 0; i < 30; i++) {
        CHECK(mcpopt_route_record(engine, "c-a", 3, "lookup", 6, 5000, 1) == MCPOPT_OK);
        CHECK(mcpopt_route_record(engine, "c-b", 3, "lookup", 6, 800, 1) == MCPOPT_OK);
    }
    char *json = NULL;
    size_t length = 0;
    const char *request = "{\"tool\": \"lookup\", \"requirements\": {\"strategy\": \"predictive\"}}";
    CHECK(mcpopt_route(engine, request, MCPOPT_NUL_TERMINATED, &json, &length) == MCPOPT_OK);
    CHECK(json && strstr(json, "\"server\":\"c-b\"") != NULL);
    CHECK(json && strstr(json, "\"fallbacks\":[\"c-a\"]") != NULL);
    mcpopt_free(json);
    json = NULL;
    CHECK(mcpopt_route(engine, "{\"tool\": 5}", MCPOPT_NUL_TERMINATED, &json, NULL) == MCPOPT_ERR_INVALID_ARGUMENT);
    CHECK(json == NULL && strstr(mcpopt_last_error_message(), "$.tool") != NULL);
    CHECK(mcpopt_route(engine, "{", 1, &json, NULL) == MCPOPT_ERR_MALFORMED_JSON);
    CHECK(mcpopt_route_record(engine, "nobody", MCPOPT_NUL_TERMINATED, "t", 1, 1, 1) == MCPOPT_ERR_NOT_FOUND);
    CHECK(mcpopt_route_stats(engine, &json, NULL) == MCPOPT_OK);
    CHECK(json && strstr(json, "\"circuit\":\"closed\"") != NULL);
    mcpopt_free(json);
    CHECK(mcpopt_route_remove_server(engine, "c-a", MCPOPT_NUL_TERMINATED) == MCPOPT_OK);
    CHECK(mcpopt_engine_destroy(engine) == MCPOPT_OK);
}

static int event_count;
static void count_event(void *user_data, const char *name, const char *data, size_t length) {
    if (strcmp(name, (const char *)user_data) == 0 && length > 0 && data[0] == '{') __atomic_add_fetch(&event_count, 1, __ATOMIC_RELAXED);
}

/* The request path against a real MCP server (Tests/interop/kv_server.py, FastMCP over stdio)
 * when MCPOPT_PYTHON and MCPOPT_REPO say where it is; bad input always. */
static void test_requests(void) {
    mcpopt_engine *engine = NULL;
    const char *python = getenv("MCPOPT_PYTHON"), *repo = getenv("MCPOPT_REPO");
    char config[4096];
    if (python && repo) {
        snprintf(config, sizeof config,
                 "{\"mcpServers\": {\"kv\": {\"command\": \"%s\", \"args\": [\"%s/Tests/interop/kv_server.py\"], \"trustAnnotations\": true}}}",
                 python, repo);
    } else {
        snprintf(config, sizeof config, "{}");
    }
    CHECK(mcpopt_engine_create(config, MCPOPT_NUL_TERMINATED, &engine) == MCPOPT_OK);
    char *json = NULL;
    size_t length = 0;
    const char *get = "{\"jsonrpc\":\"2.0\",\"id\":41,\"method\":\"tools/call\",\"params\":{\"name\":\"get\",\"arguments\":{\"key\":\"a\"}}}";
    /* Bad input: a status and a message, never a crash. */
    CHECK(mcpopt_optimize_request(NULL, get, MCPOPT_NUL_TERMINATED, NULL, 0, &json, &length) == MCPOPT_ERR_INVALID_ARGUMENT);
    CHECK(mcpopt_optimize_request(engine, get, MCPOPT_NUL_TERMINATED, NULL, 0, NULL, &length) == MCPOPT_ERR_INVALID_ARGUMENT);
    CHECK(mcpopt_optimize_request(engine, NULL, 5, NULL, 0, &json, &length) == MCPOPT_ERR_INVALID_ARGUMENT);
    CHECK(mcpopt_optimize_request(engine, "{\"id\":", MCPOPT_NUL_TERMINATED, NULL, 0, &json, &length) == MCPOPT_ERR_MALFORMED_JSON);
    CHECK(json == NULL);
    CHECK(mcpopt_optimize_request(engine, "{\"a\":\"\xff\"}", MCPOPT_NUL_TERMINATED, NULL, 0, &json, &length) == MCPOPT_ERR_INVALID_UTF8);
    CHECK(mcpopt_optimize_request(engine, "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}", MCPOPT_NUL_TERMINATED, NULL, 0, &json, &length) == MCPOPT_ERR_INVALID_ARGUMENT);
    CHECK(mcpopt_optimize_request(engine, get, MCPOPT_NUL_TERMINATED, "{\"servers\": 3}", MCPOPT_NUL_TERMINATED, &json, &length) == MCPOPT_ERR_INVALID_ARGUMENT);
    CHECK(strstr(mcpopt_last_error_message(), "servers") != NULL);
    CHECK(mcpopt_optimize_request(engine, get, MCPOPT_NUL_TERMINATED, "{\"bypassCache\": tru", MCPOPT_NUL_TERMINATED, &json, &length) == MCPOPT_ERR_MALFORMED_JSON);
    CHECK(mcpopt_events_subscribe(engine, NULL, NULL, NULL) == MCPOPT_ERR_INVALID_ARGUMENT);
    CHECK(mcpopt_events_unsubscribe(engine, 424242) == MCPOPT_ERR_NOT_FOUND);
    CHECK(mcpopt_metrics(engine, NULL, NULL) == MCPOPT_ERR_INVALID_ARGUMENT);
    CHECK(mcpopt_engine_start(NULL) == MCPOPT_ERR_INVALID_ARGUMENT);

    if (python && repo) {
        uint64_t subscription = 0;
        CHECK(mcpopt_events_subscribe(engine, count_event, "cacheHit", &subscription) == MCPOPT_OK);
        CHECK(mcpopt_engine_start(engine) == MCPOPT_OK);
        CHECK(mcpopt_optimize_request(engine, get, MCPOPT_NUL_TERMINATED, NULL, 0, &json, &length) == MCPOPT_OK);
        CHECK(json && strstr(json, "\"cacheSource\":\"origin\"") && strstr(json, "\"id\":41") && strstr(json, "\"success\":true"));
        mcpopt_free(json);
        json = NULL;
        CHECK(mcpopt_optimize_request(engine, get, MCPOPT_NUL_TERMINATED, "{\"partition\": null}", MCPOPT_NUL_TERMINATED, &json, &length) == MCPOPT_OK);
        CHECK(json && strstr(json, "\"cacheSource\":\"memory\"") != NULL);
        mcpopt_free(json);
        json = NULL;
        CHECK(event_count == 1);
        CHECK(mcpopt_events_unsubscribe(engine, subscription) == MCPOPT_OK);
        const char *unknown = "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":{\"name\":\"nope\"}}";
        CHECK(mcpopt_optimize_request(engine, unknown, MCPOPT_NUL_TERMINATED, NULL, 0, &json, &length) == MCPOPT_OK);
        CHECK(json && strstr(json, "\"success\":false") && strstr(json, "-32602"));
        mcpopt_free(json);
        json = NULL;
        CHECK(mcpopt_metrics(engine, &json, &length) == MCPOPT_OK);
        CHECK(json && strstr(json, "\"hits\":1") != NULL);
        mcpopt_free(json);
        json = NULL;
        CHECK(mcpopt_metrics_prometheus(engine, &json, &length) == MCPOPT_OK);
        CHECK(json && strstr(json, "mcpopt_requests_total") != NULL);
        mcpopt_free(json);
        json = NULL;
        CHECK(mcpopt_health_check(engine, &json, &length) == MCPOPT_OK);
        CHECK(json && strstr(json, "\"status\":\"healthy\"") != NULL);
        mcpopt_free(json);
        json = NULL;
        CHECK(mcpopt_engine_stop(engine) == MCPOPT_OK);
    } else {
        printf("c host: request path against a real server skipped (set MCPOPT_PYTHON and MCPOPT_REPO)\n");
    }
    CHECK(mcpopt_engine_destroy(engine) == MCPOPT_OK);
}

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: %s CONFIG.json\n", argv[0]); return 2; }
    char *config = read_file(argv[1]);
    test_versions();
    test_engine_from_real_config(config);
    test_validation_errors_name_paths();
    test_bad_input();
    test_threads(config);
    test_state(config);
    test_cache(config);
    test_routing(config);
    test_requests();
    free(config);
    printf("c host: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
