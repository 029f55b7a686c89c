/*
 * mcpopt.h: the C interface of libmcpopt, an MCP (Model Context Protocol) optimization engine.
 *
 * Conventions, which hold for every function below unless its comment says otherwise:
 *
 * - Status codes. Functions that can fail return an mcpopt_status. MCPOPT_OK (0) is success;
 *   anything else is an error, and the details (a message, and for configuration errors the JSON
 *   path of every bad field) are kept as the calling thread's "last error": read them with
 *   mcpopt_last_error_message() or take a copy with mcpopt_last_error(). A successful call
 *   clears the last error. Bad input (NULL pointers, invalid UTF-8, malformed JSON, wrong sizes,
 *   stale handles) is reported this way; it never crashes the host.
 *
 * - Text in. Strings are passed as (pointer, length in bytes). A length of
 *   MCPOPT_NUL_TERMINATED means "up to the first NUL byte". Text must be UTF-8.
 *
 * - Ownership. Pointers passed in are borrowed for the duration of the call only. Every pointer
 *   handed out says who owns it: "caller frees with X" or "owned by the library, valid until Y".
 *
 * - Threads. Every function may be called from any thread, concurrently, unless its comment
 *   says otherwise. The last error is per thread.
 *
 * - Handles. Engines are opaque handles. Destroying one that is still in use on another thread
 *   is safe: the calls in flight finish first. Using or destroying a handle that was already
 *   destroyed returns MCPOPT_ERR_INVALID_HANDLE (the library keeps track of live handles).
 *
 * - Allocator. The library uses whatever malloc the process has (jemalloc when the host links
 *   it, the C library's otherwise); it never requires one, so it loads into any host.
 *
 * Only symbols starting with mcpopt_ are exported.
 */
#ifndef MCPOPT_H
#define MCPOPT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------------------------
 * Versions
 * ------------------------------------------------------------------------------------------- */

/* The version of this header. The library's own is mcpopt_version(). */
#define MCPOPT_VERSION_MAJOR 0
#define MCPOPT_VERSION_MINOR 1
#define MCPOPT_VERSION_PATCH 0
#define MCPOPT_VERSION_STRING "0.1.0"

/* Bumped on every incompatible change to this interface. A host built against ABI N should
 * check mcpopt_abi_version() == MCPOPT_ABI_VERSION at start. */
#define MCPOPT_ABI_VERSION 1

/* The library's version, "MAJOR.MINOR.PATCH". Owned by the library, valid forever. */
const char *mcpopt_version(void);

/* The library's ABI version; compare with MCPOPT_ABI_VERSION. */
uint32_t mcpopt_abi_version(void);

/* ---------------------------------------------------------------------------------------------
 * Status codes and errors
 * ------------------------------------------------------------------------------------------- */

typedef int32_t mcpopt_status;

#define MCPOPT_OK                    0
#define MCPOPT_ERR_INVALID_ARGUMENT  1  /* a NULL pointer where one is required, a bad size or flag */
#define MCPOPT_ERR_INVALID_UTF8      2  /* text is not UTF-8 */
#define MCPOPT_ERR_MALFORMED_JSON    3  /* text is not JSON */
#define MCPOPT_ERR_INVALID_CONFIG    4  /* JSON, but not a valid configuration: see the issues */
#define MCPOPT_ERR_INVALID_HANDLE    5  /* a handle that is not live (destroyed, or never created) */
#define MCPOPT_ERR_NOT_FOUND         6  /* the thing asked for does not exist */
#define MCPOPT_ERR_TOO_LARGE         7  /* input over a documented limit */
#define MCPOPT_ERR_UNSUPPORTED       8  /* valid, but not supported by this build */
#define MCPOPT_ERR_BUFFER_TOO_SMALL  9  /* the caller's buffer is too small: the needed size is reported */
#define MCPOPT_ERR_CONFLICT          10 /* a compare-and-set found another version */
#define MCPOPT_ERR_UNAVAILABLE       11 /* a service the call needs (Redis) cannot be reached */
#define MCPOPT_ERR_INTERNAL          99 /* a bug in mcpopt: please report it with the message */

/* Length meaning "the text ends at its first NUL byte". */
#define MCPOPT_NUL_TERMINATED ((size_t)-1)

/* A short English name for a status, e.g. "invalid config". Owned by the library, valid
 * forever; unknown codes give "unknown status". */
const char *mcpopt_status_string(mcpopt_status status);

/* An error: a status, a message, and zero or more issues, each a (path, message) pair. For
 * configuration errors every issue names the JSON path of a bad field ("$.mcpServers.git.args[0]").
 * Opaque. */
typedef struct mcpopt_error mcpopt_error;

/* The message of the calling thread's last error, or "" when the last call succeeded.
 * Owned by the library; valid until the next mcpopt_* call on this thread. Never NULL. */
const char *mcpopt_last_error_message(void);

/* The status of the calling thread's last call (MCPOPT_OK when it succeeded). */
mcpopt_status mcpopt_last_status(void);

/* A copy of the calling thread's last error, or NULL when the last call succeeded (or memory
 * ran out). Caller frees with mcpopt_error_free(). Does not change the last error. */
mcpopt_error *mcpopt_last_error(void);

/* Accessors. All accept NULL (giving MCPOPT_OK, "", 0 and NULL). Returned strings are owned by
 * the error and valid until mcpopt_error_free(). Safe from any thread as long as nobody frees
 * the error meanwhile. */
mcpopt_status mcpopt_error_status(const mcpopt_error *error);
const char *mcpopt_error_message(const mcpopt_error *error);
size_t mcpopt_error_issue_count(const mcpopt_error *error);
/* NULL when index >= mcpopt_error_issue_count(error). */
const char *mcpopt_error_issue_path(const mcpopt_error *error, size_t index);
const char *mcpopt_error_issue_message(const mcpopt_error *error, size_t index);

/* Frees an error from mcpopt_last_error(). NULL is a no-op. Not safe to call twice. */
void mcpopt_error_free(mcpopt_error *error);

/* Frees memory the library handed out with "caller frees with mcpopt_free" (JSON texts).
 * NULL is a no-op. */
void mcpopt_free(void *pointer);

/* ---------------------------------------------------------------------------------------------
 * Configuration
 *
 * One JSON document: "mcpServers" in the shape MCP clients use (command/args/env/cwd for stdio
 * servers, url/headers for Streamable HTTP servers, plus group/weight/tags/disabled), and the
 * option groups "routing", "caching", "optimization", "coordination", "targets", "agents".
 * docs/CONFIG.md lists every field and default. Unknown keys are errors (keys starting with
 * "x-" or "$" are left alone for your own annotations).
 * ------------------------------------------------------------------------------------------- */

/* Checks a configuration without creating an engine.
 * Returns MCPOPT_OK, or MCPOPT_ERR_INVALID_UTF8 / MALFORMED_JSON / INVALID_CONFIG / TOO_LARGE
 * (with every problem as an issue of the last error), or INVALID_ARGUMENT for json == NULL. */
mcpopt_status mcpopt_config_validate(const char *json, size_t length);

/* ---------------------------------------------------------------------------------------------
 * Engine
 * ------------------------------------------------------------------------------------------- */

typedef struct mcpopt_engine mcpopt_engine;

/* Creates an engine from a configuration document (see above).
 * On MCPOPT_OK, *out_engine is a new handle: destroy it with mcpopt_engine_destroy().
 * On error, *out_engine is set to NULL (when out_engine is not NULL) and the last error says why,
 * with the same statuses as mcpopt_config_validate(). */
mcpopt_status mcpopt_engine_create(const char *config_json, size_t length, mcpopt_engine **out_engine);

/* Destroys an engine. Calls in flight on other threads finish first; later calls with this
 * handle return MCPOPT_ERR_INVALID_HANDLE. NULL is a no-op returning MCPOPT_OK. A second
 * destroy of the same handle returns MCPOPT_ERR_INVALID_HANDLE. */
mcpopt_status mcpopt_engine_destroy(mcpopt_engine *engine);

/* Describes a live engine as a JSON object: "version", "allocator" ("jemalloc" or "system"),
 * "servers" (counts by transport, replica groups) and "config" (the configuration in force with
 * every default filled in; environment values, header values and passwords read "<redacted>").
 * On MCPOPT_OK, *out_json is a NUL-terminated UTF-8 text: caller frees with mcpopt_free().
 * *out_length (when out_length is not NULL) receives its length without the NUL. */
mcpopt_status mcpopt_engine_describe(mcpopt_engine *engine, char **out_json, size_t *out_length);

/* ---------------------------------------------------------------------------------------------
 * Shared state
 *
 * Versioned keys: every write is stamped with a hybrid logical clock ("<ms>.<counter>@<node>"),
 * concurrent versions resolve by last-writer-wins, and watchers hear every change under a key
 * prefix. Without coordination.enableStateSynchronization, or without a Redis
 * (coordination.redisUrl, else caching.distributed.url), the state is local to the engine.
 * With both, it is shared by every engine instance on that Redis (docs/COORDINATION.md):
 * under consistencyModel "eventual" these calls stay local and never wait (writes reach the
 * others asynchronously, conflicts resolve by last writer on the HLC stamp); under "strong"
 * put, get, delete and compare-and-set are each one Redis round trip (linearizable per key;
 * they start the engine if needed) and fail with MCPOPT_ERR_UNAVAILABLE when Redis is down.
 * Keys are UTF-8 text; values are bytes, at most 64 MiB.
 * ------------------------------------------------------------------------------------------- */

/* Stores `value` under `key`. On MCPOPT_OK and when out_version is not NULL, *out_version is
 * the new version stamp: caller frees with mcpopt_free(). Watchers run before this returns. */
mcpopt_status mcpopt_state_put(mcpopt_engine *engine, const char *key, size_t key_length,
                               const void *value, size_t value_length, char **out_version);

/* Reads `key`. On MCPOPT_OK, *out_value (caller frees with mcpopt_free()) holds *out_length
 * bytes, and *out_version (when not NULL; caller frees with mcpopt_free()) its version stamp.
 * MCPOPT_ERR_NOT_FOUND when the key has no value (never written, or deleted). */
mcpopt_status mcpopt_state_get(mcpopt_engine *engine, const char *key, size_t key_length,
                               void **out_value, size_t *out_length, char **out_version);

/* Deletes `key` (a versioned tombstone). MCPOPT_ERR_NOT_FOUND when it has no value. */
mcpopt_status mcpopt_state_delete(mcpopt_engine *engine, const char *key, size_t key_length);

/* Stores `value` under `key` only if the key is still at version `expected_version` (a stamp
 * from mcpopt_state_get or a previous write; NULL: the key must have no value). On MCPOPT_OK,
 * *out_version (when not NULL; caller frees with mcpopt_free()) is the new stamp; otherwise
 * MCPOPT_ERR_CONFLICT and nothing is written (read again and retry). Linearizable under
 * "strong"; otherwise atomic within this engine only. */
mcpopt_status mcpopt_state_compare_and_set(mcpopt_engine *engine, const char *key, size_t key_length,
                                           const char *expected_version, const void *value, size_t value_length,
                                           char **out_version);

/* Where a merge callback leaves its answer. Valid only during the callback. */
typedef struct mcpopt_merge_result mcpopt_merge_result;

/* Inside a merge callback: the merged value (copied). Not calling it keeps the newer value. */
mcpopt_status mcpopt_merge_result_set(mcpopt_merge_result *result, const void *value, size_t length);

/* Merges two concurrent versions of `key` (the older and the newer, by version stamp) into the
 * value to keep, through mcpopt_merge_result_set(). It must be deterministic: every instance
 * merges the same two versions in the same order and must reach the same value. It runs on an
 * engine thread when a version arrives from another instance (shared state, eventual); all
 * pointers are valid only during the call; it must not call blocking mcpopt functions. */
typedef void (*mcpopt_state_merge_callback)(void *user_data, const char *key, size_t key_length,
                                            const void *older, size_t older_length,
                                            const void *newer, size_t newer_length,
                                            mcpopt_merge_result *result);

/* Resolves conflicting versions from other instances with `callback` instead of last writer
 * wins; NULL goes back to last writer wins. `user_data` is passed back untouched and must stay
 * valid until the callback is replaced or the engine destroyed. A merged value carries the
 * newer stamp. Deletes are never merged: the later of a delete and a write wins. */
mcpopt_status mcpopt_state_set_merge(mcpopt_engine *engine, mcpopt_state_merge_callback callback, void *user_data);

/* Called for every change of a watched key: the key, the new value (empty when `deleted`), and
 * its version stamp (NUL-terminated). All pointers are valid only during the call. It runs on
 * the thread that made the change, before that thread's call returns; it may call mcpopt
 * functions, including state functions of the same engine. */
typedef void (*mcpopt_state_callback)(void *user_data, const char *key, size_t key_length,
                                      const void *value, size_t value_length, const char *version,
                                      int deleted);

/* Watches every key starting with `prefix` (an empty prefix watches everything). On MCPOPT_OK,
 * *out_watch identifies the watch for mcpopt_state_unwatch(). `user_data` is passed back
 * untouched; the library never frees it. */
mcpopt_status mcpopt_state_watch(mcpopt_engine *engine, const char *prefix, size_t prefix_length,
                                 mcpopt_state_callback callback, void *user_data, uint64_t *out_watch);

/* Stops a watch. After it returns the callback is not called again for it (a call already
 * running on another thread may still finish). MCPOPT_ERR_NOT_FOUND for an unknown watch.
 * Destroying the engine ends its watches. */
mcpopt_status mcpopt_state_unwatch(mcpopt_engine *engine, uint64_t watch);

/* ---------------------------------------------------------------------------------------------
 * Cache (in-process level)
 *
 * Bytes to bytes, in the memory budget of "caching.memoryCacheSize" (slab pages, so memory in
 * use never exceeds it). Reads take no lock and copy the value out: what you hold never changes
 * under you. Eviction is S3-FIFO (better than LRU when one-time scans pass through). Keys are
 * 1 to 4096 bytes; the largest item (a 24-byte header, the key, up to 7 bytes of alignment, the
 * value) is 1 MiB or the slab page size if smaller: mcpopt_cache_set answers MCPOPT_ERR_TOO_LARGE
 * above it. docs/CACHE.md explains the design and the statistics.
 * ------------------------------------------------------------------------------------------- */

/* How an item is stored. Set struct_size to sizeof(mcpopt_cache_options) (the struct may grow;
 * a smaller size is refused with MCPOPT_ERR_INVALID_ARGUMENT). MCPOPT_CACHE_OPTIONS_INIT gives
 * the defaults. */
typedef struct mcpopt_cache_options {
    size_t struct_size;
    int64_t ttl_ms;               /* time to live in ms; 0: until evicted or invalidated */
    const char *coherence_group;  /* NUL-terminated UTF-8, or NULL: no group. Items of a group
                                     are invalidated together, and live at most
                                     caching.coherenceTimeout whatever their ttl */
    const char *const *tags;      /* tag_count NUL-terminated UTF-8 tags (at most 64), or NULL */
    size_t tag_count;
} mcpopt_cache_options;

#define MCPOPT_CACHE_OPTIONS_INIT { sizeof(mcpopt_cache_options), 0, NULL, NULL, 0 }

/* Stores `value` under `key`, replacing what was there. `options` may be NULL (no ttl, group or
 * tags); it is read during the call only. MCPOPT_ERR_TOO_LARGE when the item is over the
 * largest the cache keeps (nothing else changes), or there are more than 65,535 distinct groups
 * or tag sets. `value` may be NULL when value_length is 0. */
mcpopt_status mcpopt_cache_set(mcpopt_engine *engine, const void *key, size_t key_length,
                               const void *value, size_t value_length, const mcpopt_cache_options *options);

/* Copies the value under `key` into `buffer` (capacity bytes) without allocating.
 * MCPOPT_OK: *out_length bytes were copied. MCPOPT_ERR_NOT_FOUND: not cached (or expired).
 * MCPOPT_ERR_BUFFER_TOO_SMALL: nothing copied, *out_length is the value's size. `buffer` may be
 * NULL when capacity is 0 (to learn the size). */
mcpopt_status mcpopt_cache_get(mcpopt_engine *engine, const void *key, size_t key_length,
                               void *buffer, size_t capacity, size_t *out_length);

/* Like mcpopt_cache_get, into new memory: on MCPOPT_OK *out_value holds *out_length bytes;
 * caller frees with mcpopt_free(). MCPOPT_ERR_NOT_FOUND when not cached. */
mcpopt_status mcpopt_cache_get_copy(mcpopt_engine *engine, const void *key, size_t key_length,
                                    void **out_value, size_t *out_length);

/* Removes `key`. MCPOPT_ERR_NOT_FOUND when it was not cached here. With caching.distributed,
 * this and the three invalidations below also reach every engine instance sharing that Redis
 * (docs/SHARED-CACHE.md); *out_removed counts this instance's items. */
mcpopt_status mcpopt_cache_delete(mcpopt_engine *engine, const void *key, size_t key_length);

/* Removes every key matching a glob over the key bytes: `*` any run of bytes (including '/'),
 * `?` one byte, `\` makes the next character literal: "Read:/src/" followed by `*` selects every
 * key under that prefix. A pattern without
 * wildcards removes that one key. *out_removed (when not NULL) receives how many items went.
 * Cost: a pass over the cache's index (wildcards) under each shard's writer lock in turn. */
mcpopt_status mcpopt_cache_invalidate(mcpopt_engine *engine, const char *pattern, size_t length, size_t *out_removed);

/* Removes every item of a coherence group. An unknown group removes nothing (MCPOPT_OK). */
mcpopt_status mcpopt_cache_invalidate_group(mcpopt_engine *engine, const char *group, size_t length, size_t *out_removed);

/* Removes every item carrying `tag`. An unknown tag removes nothing (MCPOPT_OK). */
mcpopt_status mcpopt_cache_invalidate_tag(mcpopt_engine *engine, const char *tag, size_t length, size_t *out_removed);

/* Removes everything (the memory stays with the cache). */
mcpopt_status mcpopt_cache_clear(mcpopt_engine *engine);

/* Statistics as a JSON object: "hits", "misses", "hitRate", "sets", "items", "evictions",
 * "expirations", "invalidations", "rejectedFills", "rebalances" (pages moved between size
 * classes), "memoryBudget", "pageBytes" (never above the budget), "bytesUsed", "overheadBytes"
 * (index, frequency sketch and tables beside the pages), "pageSize", "shards", "pageSource"
 * ("jemalloc" or "mmap") and "classes" (per size class in use: chunkSize, pages, items,
 * bytesUsed, payloadBytes). Caller frees *out_json with mcpopt_free(). */
mcpopt_status mcpopt_cache_stats(mcpopt_engine *engine, char **out_json, size_t *out_length);

/* The hottest keys, hottest first, at most `limit`: a JSON array of {"key": text,
 * "accessCount": n} ("keyHex" instead of "key" for keys that are not UTF-8). For warming: save
 * it, and on the next start fetch and mcpopt_cache_set those keys again. accessCount is an
 * estimate (a saturating counter, plus 4 for items in the main queue). Caller frees *out_json
 * with mcpopt_free(). */
mcpopt_status mcpopt_cache_hot_keys(mcpopt_engine *engine, size_t limit, char **out_json, size_t *out_length);

/* ---------------------------------------------------------------------------------------------
 * Routing
 *
 * Which server serves each request. The engine starts with the configured servers (by name,
 * with their group, weight and tags) and learns what each offers from mcpopt_route_set_tools
 * (a tools/list result) or mcpopt_route_register_server. Outcomes fed back with
 * mcpopt_route_record drive the statistics (latency moving average and variance, success over
 * the last 64 outcomes, requests in flight) and each server's circuit breaker. Routing takes no
 * lock: decisions on any number of threads never wait for a change. docs/ROUTING.md explains
 * the strategies.
 * ------------------------------------------------------------------------------------------- */

/* Chooses a server for a request. `request_json` is either {"tool": "name", ...} or an MCP
 * tools/call request ({"method": "tools/call", "params": {"name": ...}}), with optional fields:
 *   "agent": an agent profile of the configuration (its allowed tools and servers, and its
 *            default requirements, apply);
 *   "requirements": {"maxResponseTime": "500ms" | ms, "minSuccessRate": 0..1,
 *                    "strategy": "predictive" | "adaptive" | "peakEWMA" | "leastOutstanding" |
 *                                "consistentHash",
 *                    "affinityKey": text (consistent hashing), "allowedServers": [names]};
 *   "maxFallbacks": 0..64 (default 3).
 * On MCPOPT_OK, *out_json (caller frees with mcpopt_free) is the decision:
 *   {"outcome": "chosen" | "last-resort" | "unknown-tool" | "no-server-meets-requirements" |
 *               "no-candidates",
 *    "server": id or null, "fallbacks": [ids, best first], "confidence": 0..1,
 *    "predictedLatencyMs": number or null, "strategy": name, "probe": bool (the request
 *    tests a half-open circuit), "reasoning": a short English explanation,
 *    "decisionTimeNs": n}.
 * "No server" is a decision (MCPOPT_OK with "server": null and the reasoning), not an error.
 * Errors: MALFORMED_JSON / INVALID_UTF8; INVALID_ARGUMENT for a bad field (the issue names its
 * JSON path) or a tool the agent may not call; NOT_FOUND for an unknown agent. */
mcpopt_status mcpopt_route(mcpopt_engine *engine, const char *request_json, size_t length,
                           char **out_json, size_t *out_length);

/* Adds a server, or replaces the one with the same id (its statistics are kept):
 * {"id": text (required), "transport": "stdio" | "http", "group": text (default: the id),
 *  "weight": positive number, "tags": [text], "tools": [tool objects as in tools/list, with
 *  "annotations" hints readOnlyHint, idempotentHint, destructiveHint, openWorldHint] or a
 *  tools/list result, "resources": [uri], "prompts": [name],
 *  "health": "unknown" | "healthy" | "degraded" | "unhealthy"}.
 * Unknown fields are errors (INVALID_ARGUMENT, with the field's path). */
mcpopt_status mcpopt_route_register_server(mcpopt_engine *engine, const char *server_json, size_t length);

/* Replaces the tools of a registered server: `tools_json` is a tools/list result
 * ({"tools": [...]}) or an array of tool objects. NOT_FOUND for an unknown server. */
mcpopt_status mcpopt_route_set_tools(mcpopt_engine *engine, const char *server, size_t server_length,
                                     const char *tools_json, size_t length);

/* Removes a server: new requests go elsewhere at once. NOT_FOUND for an unknown server. */
mcpopt_status mcpopt_route_remove_server(mcpopt_engine *engine, const char *server, size_t length);

/* Records the outcome of a request served by `server` for `tool`: its latency in microseconds
 * and whether it succeeded (non-zero). Failures open the server's circuit when its last 5
 * outcomes all failed, or at least half of its last 64 (10 or more) did. NOT_FOUND for an
 * unknown server. */
mcpopt_status mcpopt_route_record(mcpopt_engine *engine, const char *server, size_t server_length,
                                  const char *tool, size_t tool_length, int64_t latency_us, int success);

/* The router's state as JSON: {"generation", "defaultStrategy", "tools", "servers": [{"id",
 * "group", "health", "circuit": "closed" | "open" | "half-open", "latencyEwmaMs",
 * "latencyStdDevMs", "successRate", "inFlight", "samples", "lastError", "tools": [per-tool
 * statistics]}]}. Caller frees *out_json with mcpopt_free(). */
mcpopt_status mcpopt_route_stats(mcpopt_engine *engine, char **out_json, size_t *out_length);

/* ---------------------------------------------------------------------------------------------
 * The request path: every request through the whole pipeline
 *
 * An engine with servers in its configuration starts a warm session to each (stdio processes,
 * Streamable HTTP connections) and lists what they offer. mcpopt_optimize_request then serves
 * one JSON-RPC request: agent policy, in-process cache, merging of identical requests in
 * flight, routing, the server's session, retries and failover for safe (read-only or
 * idempotent) requests, cache fill, invalidation. The calls below block the calling thread;
 * do not call them from an event callback (it runs on one of the engine's threads).
 * ------------------------------------------------------------------------------------------- */

/* Starts the engine's servers and lists them (in parallel). Returns once every server has
 * answered or failed; a server that fails is left out (see mcpopt_health_check) and the rest
 * work; it is listed again with backoff (1 s doubling to 30 s) and joins once it answers.
 * Calling it again does nothing; mcpopt_optimize_request calls it if needed. */
mcpopt_status mcpopt_engine_start(mcpopt_engine *engine);

/* Stops the engine's servers (stdio servers are asked to exit, then signalled). Requests in
 * flight fail. mcpopt_engine_destroy stops a started engine by itself. */
mcpopt_status mcpopt_engine_stop(mcpopt_engine *engine);

/* Serves one JSON-RPC request (`request_json`, e.g. a tools/call). `options_json` may be NULL
 * (length 0) or an object: {"agent": caller's agent profile, "partition": cache partition (who
 * the caller is; defaults to the agent), "servers": [server or group names to restrict to],
 * "bypassCache": bool, "timeoutMs": number, "session": the client session (servers marked
 * "stateful" get a backend session per client session)}. On MCPOPT_OK, *out_json (caller frees with
 * mcpopt_free()) is {"response": the JSON-RPC response with the request's own id, "success":
 * bool (false when the response is an error), "server": name or null, "cacheSource": "memory" |
 * "origin" | "coalesced" | "engine" | "stale" (every server failed: caching.staleIfError) |
 * "shared" (the Redis tier: caching.distributed),
 * "attempts": n, "executionTimeMs": ms, "error": why, when not successful}. Errors the request met (unknown tool, every server down) are responses;
 * input that is not a JSON-RPC request is a status: INVALID_UTF8, MALFORMED_JSON or
 * INVALID_ARGUMENT, with the reason in mcpopt_last_error_message(). */
mcpopt_status mcpopt_optimize_request(mcpopt_engine *engine, const char *request_json, size_t length,
                                      const char *options_json, size_t options_length,
                                      char **out_json, size_t *out_length);

/* Called once with the answer of mcpopt_optimize_request_async: `status` is MCPOPT_OK and
 * `json` (valid only during the call; copy what you keep) is what mcpopt_optimize_request would
 * have returned in *out_json. It runs on one of the engine's threads: return quickly, and do
 * not call blocking mcpopt functions from it. */
typedef void (*mcpopt_request_callback)(void *user_data, mcpopt_status status, const char *json, size_t length);

/* mcpopt_optimize_request without blocking: checks the request and returns at once. On
 * MCPOPT_OK, `callback` is called exactly once with the answer (possibly before this call
 * returns, on another thread); otherwise (the same input errors as mcpopt_optimize_request) it
 * is never called. Any number may be in flight: a host's threads are not held while servers
 * work. `user_data` is passed back untouched. Destroying the engine fails the requests in
 * flight; their callbacks are still called, once each. */
mcpopt_status mcpopt_optimize_request_async(mcpopt_engine *engine, const char *request_json, size_t length,
                                            const char *options_json, size_t options_length,
                                            mcpopt_request_callback callback, void *user_data);

/* The engine's figures as JSON: {"routing": {decision time p50/p99 in µs, accuracy,
 * fallbackRate, errors}, "cache": {hitRate, hits, misses, coalesced, invalidations,
 * coherenceConflicts, ...}, "system": {requests, successRate, latencyMs, latencyReduction,
 * throughputRps, ...}, "coordination": {activeServers, ...}} (see docs/METRICS.md). Caller frees
 * *out_json with mcpopt_free(). */
mcpopt_status mcpopt_metrics(mcpopt_engine *engine, char **out_json, size_t *out_length);

/* The same figures in the Prometheus text exposition format. Caller frees with mcpopt_free(). */
mcpopt_status mcpopt_metrics_prometheus(mcpopt_engine *engine, char **out_text, size_t *out_length);

/* Probes every server (ping, or server/discover for modern-era servers) and reports {"status":
 * "healthy" | "degraded" | "unhealthy", "servers": [{"name", "group", "transport", "up",
 * "probeMs", "circuit", "protocolVersion", "error"}]}. Starts the engine if needed. Caller
 * frees *out_json with mcpopt_free(). */
mcpopt_status mcpopt_health_check(mcpopt_engine *engine, char **out_json, size_t *out_length);

/* Called for each engine event: its name ("cacheHit", "cacheMiss", "routingError",
 * "optimizationError", "serverUp", "serverDown", "circuitOpened", "circuitClosed", ...) and its
 * details as a JSON object. Pointers are valid only during the call. It runs on the engine's
 * thread that saw the event: return quickly, and do not call blocking mcpopt functions. */
typedef void (*mcpopt_event_callback)(void *user_data, const char *name, const char *data_json, size_t data_length);

/* Subscribes to events. On MCPOPT_OK, *out_subscription identifies it for
 * mcpopt_events_unsubscribe(). `user_data` is passed back untouched. */
mcpopt_status mcpopt_events_subscribe(mcpopt_engine *engine, mcpopt_event_callback callback, void *user_data,
                                      uint64_t *out_subscription);

/* Ends a subscription. NOT_FOUND for an unknown one. */
mcpopt_status mcpopt_events_unsubscribe(mcpopt_engine *engine, uint64_t subscription);

/* ---------------------------------------------------------------------------------------------
 * Coordination: one operation across many servers (docs/COORDINATION.md)
 * ------------------------------------------------------------------------------------------- */

/* Runs one operation across several servers and blocks until it is decided. `request_json`:
 * {"operation": name (required: the tool to call, or the transaction's name),
 *  "servers": [server names] with "data": the arguments for every server (default {}), or
 *  "calls": [{"server", "tool" (default: operation), "arguments" (default: data)}],
 *  "mode": "fanout" (default) | "transaction",
 *  "policy": "all" (default) | "quorum" (with "quorum": n) | "first" (fan-out: when it has
 *  succeeded; "quorum" and "first" cancel the calls still running once decided),
 *  "concurrency": calls in flight (default coordination.fanOutConcurrency), "timeoutMs": per
 *  server (fan-out; default optimization.requestTimeout) or for the prepare phase
 *  (transaction; default coordination.transactionTimeout), "transactionId": string (default:
 *  operation + a random suffix), "agent": the caller's agent profile}.
 * A transaction is a two-phase commit: every server is a participant following the convention
 * (tools tx_prepare, tx_commit, tx_abort) and `data`/`arguments` is its prepare payload; it
 * needs coordination.enableDistributedTransactions (UNSUPPORTED otherwise), and decisions are
 * made durable in coordination.transactionLog before any participant hears them.
 * On MCPOPT_OK, *out_json (caller frees with mcpopt_free()) is {"operation", "mode", "success",
 * "durationMs"} plus, for a fan-out, {"policy", "size", "succeeded", "failed", "results":
 * {server: {"status": "success" | "error" | "timeout" | "cancelled", "success", "latencyMs",
 * "result": the tool result, "error"}}}, or for a transaction {"transactionId", "committed",
 * "reason": why it aborted or null, "unacknowledged": [participants not yet told]}.
 * A failed call or an aborted transaction is MCPOPT_OK with "success": false; an unknown
 * server, a bad request or a server named twice is INVALID_ARGUMENT. Thread-safe. */
mcpopt_status mcpopt_coordinate_operation(mcpopt_engine *engine, const char *request_json, size_t length,
                                          char **out_json, size_t *out_length);

/* Finishes the transactions the decision log left unfinished (after a crash of a process that
 * used the same log): undecided ones abort, decided ones are sent their decision again.
 * mcpopt_engine_start does this by itself when transactions are enabled (this call starts the
 * engine if needed); what it finished is reported by the next call of this one. On MCPOPT_OK,
 * *out_json (caller frees with mcpopt_free()) is {"recovered": [{"transactionId", "committed",
 * "unacknowledged"}]}. UNSUPPORTED when transactions are off. */
mcpopt_status mcpopt_transactions_recover(mcpopt_engine *engine, char **out_json, size_t *out_length);

#ifdef __cplusplus
}
#endif

#endif /* MCPOPT_H */
