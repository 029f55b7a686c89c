/* Cache functions of the addon: thin calls into mcpopt_cache_*, synchronous (reads take no
 * lock in the library and finish in well under a microsecond). */
#include "addon.h"
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

/* A JS string argument as a NUL-terminated malloc'd copy (NULL and a thrown error if not). */
static char *string_arg(napi_env env, napi_value value, const char *what) {
    napi_valuetype type;
    napi_typeof(env, value, &type);
    if (type != napi_string) {
        char message[96];
        snprintf(message, sizeof message, "%s must be a string", what);
        mcpopt_node_throw(env, message);
        return NULL;
    }
    size_t n;
    napi_get_value_string_utf8(env, value, NULL, 0, &n);
    char *text = malloc(n + 1);
    if (!text) { mcpopt_node_throw(env, "out of memory"); return NULL; }
    napi_get_value_string_utf8(env, value, text, n + 1, &n);
    return text;
}

/* cacheSet(engine, key, value, ttlMs, group | null, tags | null) */
static napi_value cache_set(napi_env env, napi_callback_info info) {
    size_t argc = 6;
    napi_value argv[6];
    mcpopt_engine *engine = mcpopt_node_engine_arg(env, info, &argc, argv);
    if (!engine) return NULL;
    if (argc < 6) return mcpopt_node_throw(env, "cacheSet needs 6 arguments");
    char *key = NULL, *value = NULL, *group = NULL;
    char **tags = NULL;
    uint32_t tag_count = 0;
    size_t key_length, value_length;
    napi_value result = NULL;
    mcpopt_cache_options options = MCPOPT_CACHE_OPTIONS_INIT;
    if (!mcpopt_node_bytes(env, info, 1, &key, &key_length)) goto done;
    if (!mcpopt_node_bytes(env, info, 2, &value, &value_length)) goto done;
    double ttl = 0;
    if (napi_get_value_double(env, argv[3], &ttl) != napi_ok) { mcpopt_node_throw(env, "ttlMs must be a number"); goto done; }
    options.ttl_ms = (int64_t)ttl;
    napi_valuetype type;
    napi_typeof(env, argv[4], &type);
    if (type != napi_null && type != napi_undefined) {
        if (!(group = string_arg(env, argv[4], "coherenceGroup"))) goto done;
        options.coherence_group = group;
    }
    bool is_array = false;
    napi_is_array(env, argv[5], &is_array);
    if (is_array) {
        napi_get_array_length(env, argv[5], &tag_count);
        tags = calloc(tag_count ? tag_count : 1, sizeof *tags);
        if (!tags) { mcpopt_node_throw(env, "out of memory"); goto done; }
        for (uint32_t i = 0; i < tag_count; i++) {
            napi_value element;
            napi_get_element(env, argv[5], i, &element);
            if (!(tags[i] = string_arg(env, element, "every tag"))) goto done;
        }
        options.tags = (const char *const *)tags;
        options.tag_count = tag_count;
    }
    if (mcpopt_cache_set(engine, key, key_length, value, value_length, &options) != MCPOPT_OK) {
        mcpopt_node_throw_last(env);
        goto done;
    }
    napi_get_undefined(env, &result);
done:
    free(key);
    free(value);
    free(group);
    if (tags) for (uint32_t i = 0; i < tag_count; i++) free(tags[i]);
    free(tags);
    return result;
}

/* cacheGetInto(engine, key, target Buffer) -> the value's length when it was copied into
 * target, -1 when not cached, -(length + 2) when target is too small (nothing copied). Lets
 * JS reuse one buffer: creating a Buffer from native code costs far more than the read. */
static napi_value cache_get_into(napi_env env, napi_callback_info info) {
    size_t argc = 3;
    napi_value argv[3];
    mcpopt_engine *engine = mcpopt_node_engine_arg(env, info, &argc, argv);
    if (!engine) return NULL;
    if (argc < 3) return mcpopt_node_throw(env, "cacheGetInto needs 3 arguments");
    bool is_buffer = false;
    napi_is_buffer(env, argv[2], &is_buffer);
    if (!is_buffer) return mcpopt_node_throw(env, "target must be a Buffer");
    void *target;
    size_t capacity;
    napi_get_buffer_info(env, argv[2], &target, &capacity);
    char *key;
    size_t key_length, length = 0;
    if (!mcpopt_node_bytes(env, info, 1, &key, &key_length)) return NULL;
    mcpopt_status status = mcpopt_cache_get(engine, key, key_length, capacity ? target : NULL, capacity, &length);
    free(key);
    double answer;
    if (status == MCPOPT_OK) answer = (double)length;
    else if (status == MCPOPT_ERR_NOT_FOUND) answer = -1;
    else if (status == MCPOPT_ERR_BUFFER_TOO_SMALL) answer = -(double)length - 2;
    else return mcpopt_node_throw_last(env);
    napi_value result;
    napi_create_double(env, answer, &result);
    return result;
}

/* cacheDelete(engine, key) -> boolean */
static napi_value cache_delete(napi_env env, napi_callback_info info) {
    size_t argc = 2;
    napi_value argv[2];
    mcpopt_engine *engine = mcpopt_node_engine_arg(env, info, &argc, argv);
    if (!engine) return NULL;
    char *key;
    size_t key_length;
    if (!mcpopt_node_bytes(env, info, 1, &key, &key_length)) return NULL;
    mcpopt_status status = mcpopt_cache_delete(engine, key, key_length);
    free(key);
    if (status != MCPOPT_OK && status != MCPOPT_ERR_NOT_FOUND) return mcpopt_node_throw_last(env);
    napi_value result;
    napi_get_boolean(env, status == MCPOPT_OK, &result);
    return result;
}

typedef mcpopt_status (*invalidation_fn)(mcpopt_engine *, const char *, size_t, size_t *);

static napi_value invalidate_with(napi_env env, napi_callback_info info, invalidation_fn fn, const char *what) {
    size_t argc = 2;
    napi_value argv[2];
    mcpopt_engine *engine = mcpopt_node_engine_arg(env, info, &argc, argv);
    if (!engine) return NULL;
    if (argc < 2) return mcpopt_node_throw(env, "missing argument");
    char *selector = string_arg(env, argv[1], what);
    if (!selector) return NULL;
    size_t removed = 0;
    mcpopt_status status = fn(engine, selector, strlen(selector), &removed);
    free(selector);
    if (status != MCPOPT_OK) return mcpopt_node_throw_last(env);
    napi_value result;
    napi_create_double(env, (double)removed, &result);
    return result;
}

static napi_value cache_invalidate(napi_env env, napi_callback_info info) {
    return invalidate_with(env, info, mcpopt_cache_invalidate, "pattern");
}
static napi_value cache_invalidate_group(napi_env env, napi_callback_info info) {
    return invalidate_with(env, info, mcpopt_cache_invalidate_group, "group");
}
static napi_value cache_invalidate_tag(napi_env env, napi_callback_info info) {
    return invalidate_with(env, info, mcpopt_cache_invalidate_tag, "tag");
}

static napi_value cache_clear(napi_env env, napi_callback_info info) {
    size_t argc = 1;
    napi_value argv[1];
    mcpopt_engine *engine = mcpopt_node_engine_arg(env, info, &argc, argv);
    if (!engine) return NULL;
    if (mcpopt_cache_clear(engine) != MCPOPT_OK) return mcpopt_node_throw_last(env);
    return NULL;
}

/* cacheStats(engine) -> JSON text; cacheHotKeys(engine, limit) -> JSON text */
static napi_value cache_stats(napi_env env, napi_callback_info info) { return mcpopt_node_text_call(env, info, mcpopt_cache_stats); }

static napi_value cache_hot_keys(napi_env env, napi_callback_info info) {
    size_t argc = 2;
    napi_value argv[2];
    mcpopt_engine *engine = mcpopt_node_engine_arg(env, info, &argc, argv);
    if (!engine) return NULL;
    double limit = 1000;
    if (argc >= 2 && napi_get_value_double(env, argv[1], &limit) != napi_ok) return mcpopt_node_throw(env, "limit must be a number");
    if (limit < 0) return mcpopt_node_throw(env, "limit must not be negative");
    char *json = NULL;
    size_t length = 0;
    mcpopt_status status = mcpopt_cache_hot_keys(engine, (size_t)limit, &json, &length);
    return mcpopt_node_json_text(env, status, json, length);
}

void mcpopt_node_cache_init(napi_env env, napi_value exports) {
    napi_property_descriptor props[] = {
        {"cacheSet", NULL, cache_set, NULL, NULL, NULL, napi_default, NULL},
        {"cacheGetInto", NULL, cache_get_into, NULL, NULL, NULL, napi_default, NULL},
        {"cacheDelete", NULL, cache_delete, NULL, NULL, NULL, napi_default, NULL},
        {"cacheInvalidate", NULL, cache_invalidate, NULL, NULL, NULL, napi_default, NULL},
        {"cacheInvalidateGroup", NULL, cache_invalidate_group, NULL, NULL, NULL, napi_default, NULL},
        {"cacheInvalidateTag", NULL, cache_invalidate_tag, NULL, NULL, NULL, napi_default, NULL},
        {"cacheClear", NULL, cache_clear, NULL, NULL, NULL, napi_default, NULL},
        {"cacheStats", NULL, cache_stats, NULL, NULL, NULL, napi_default, NULL},
        {"cacheHotKeys", NULL, cache_hot_keys, NULL, NULL, NULL, napi_default, NULL},
    };
    napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
