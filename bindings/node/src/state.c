/* State functions of the addon. Watch listeners are called through an N-API thread-safe
 * function: the library calls back on whichever thread made the change, and the listener then
 * runs on the JS thread, asynchronously, in order. */
#include "addon.h"
#include <stdlib.h>
#include <string.h>

typedef struct state_event {
    char *key;
    size_t key_length;
    void *value;
    size_t value_length;
    char *version;
    int deleted;
} state_event;

typedef struct watch_box {
    napi_threadsafe_function tsfn;
    uint64_t id;
} watch_box;

static void free_event(state_event *e) {
    if (!e) return;
    free(e->key);
    free(e->value);
    free(e->version);
    free(e);
}

static void call_listener(napi_env env, napi_value js_callback, void *context, void *data) {
    state_event *e = data;
    if (env && js_callback) {
        napi_value argv[4], undefined, buffer;
        napi_create_string_utf8(env, e->key, e->key_length, &argv[0]);
        void *copy = NULL;
        napi_create_buffer_copy(env, e->value_length, e->value_length ? e->value : "", &copy, &buffer);
        argv[1] = buffer;
        napi_create_string_utf8(env, e->version, NAPI_AUTO_LENGTH, &argv[2]);
        napi_get_boolean(env, e->deleted != 0, &argv[3]);
        napi_get_undefined(env, &undefined);
        napi_call_function(env, undefined, js_callback, 4, argv, NULL);
    }
    free_event(e);
}

static void on_change(void *user_data, const char *key, size_t key_length, const void *value, size_t value_length,
                      const char *version, int deleted) {
    watch_box *box = user_data;
    state_event *e = calloc(1, sizeof *e);
    if (!e) return;
    e->key = malloc(key_length + 1);
    e->value = malloc(value_length ? value_length : 1);
    e->version = strdup(version);
    if (!e->key || !e->value || !e->version) { free_event(e); return; }
    memcpy(e->key, key, key_length);
    e->key_length = key_length;
    if (value_length) memcpy(e->value, value, value_length);
    e->value_length = value_length;
    e->deleted = deleted;
    if (napi_call_threadsafe_function(box->tsfn, e, napi_tsfn_nonblocking) != napi_ok) free_event(e);
}

/* The new version a write made, as a string (the library's copy freed), or the error thrown. */
static napi_value version_result(napi_env env, mcpopt_status status, char *version) {
    if (status != MCPOPT_OK) return mcpopt_node_throw_last(env);
    napi_value result;
    napi_create_string_utf8(env, version, NAPI_AUTO_LENGTH, &result);
    mcpopt_free(version);
    return result;
}

/* put(engine, key, value) -> version */
static napi_value put(napi_env env, napi_callback_info info) {
    size_t argc = 3;
    napi_value argv[3];
    mcpopt_engine *engine = mcpopt_node_engine_arg(env, info, &argc, argv);
    if (!engine) return NULL;
    char *key, *value;
    size_t key_length, value_length;
    if (!mcpopt_node_bytes(env, info, 1, &key, &key_length)) return NULL;
    if (!mcpopt_node_bytes(env, info, 2, &value, &value_length)) { free(key); return NULL; }
    char *version = NULL;
    mcpopt_status status = mcpopt_state_put(engine, key, key_length, value, value_length, &version);
    free(key);
    free(value);
    return version_result(env, status, version);
}

/* get(engine, key) -> {value: Buffer, version} | null */
static napi_value get(napi_env env, napi_callback_info info) {
    size_t argc = 2;
    napi_value argv[2];
    mcpopt_engine *engine = mcpopt_node_engine_arg(env, info, &argc, argv);
    if (!engine) return NULL;
    char *key;
    size_t key_length;
    if (!mcpopt_node_bytes(env, info, 1, &key, &key_length)) return NULL;
    void *value = NULL;
    size_t length = 0;
    char *version = NULL;
    mcpopt_status status = mcpopt_state_get(engine, key, key_length, &value, &length, &version);
    free(key);
    napi_value result;
    if (status == MCPOPT_ERR_NOT_FOUND) {
        napi_get_null(env, &result);
        return result;
    }
    if (status != MCPOPT_OK) return mcpopt_node_throw_last(env);
    napi_value buffer, stamp;
    void *copy = NULL;
    napi_create_buffer_copy(env, length, length ? value : "", &copy, &buffer);
    napi_create_string_utf8(env, version, NAPI_AUTO_LENGTH, &stamp);
    mcpopt_free(value);
    mcpopt_free(version);
    napi_create_object(env, &result);
    napi_set_named_property(env, result, "value", buffer);
    napi_set_named_property(env, result, "version", stamp);
    return result;
}

/* compareAndSet(engine, key, value, expectedVersion | null | undefined) -> version. Throws the
 * library's error (status CONFLICT when the key is at another version). */
static napi_value compare_and_set(napi_env env, napi_callback_info info) {
    size_t argc = 4;
    napi_value argv[4];
    mcpopt_engine *engine = mcpopt_node_engine_arg(env, info, &argc, argv);
    if (!engine) return NULL;
    char *key, *value, *expected = NULL;
    size_t key_length, value_length, expected_length = 0;
    if (!mcpopt_node_bytes(env, info, 1, &key, &key_length)) return NULL;
    if (!mcpopt_node_bytes(env, info, 2, &value, &value_length)) { free(key); return NULL; }
    napi_valuetype type = napi_undefined;
    if (argc >= 4) napi_typeof(env, argv[3], &type);
    if (type != napi_undefined && type != napi_null) {
        if (type != napi_string) {
            free(key);
            free(value);
            return mcpopt_node_throw(env, "expected version is a string, null or undefined");
        }
        if (!mcpopt_node_bytes(env, info, 3, &expected, &expected_length)) { free(key); free(value); return NULL; }
        if (memchr(expected, '\0', expected_length)) {
            free(key);
            free(value);
            free(expected);
            return mcpopt_node_throw_status(env, MCPOPT_ERR_INVALID_ARGUMENT, "expected version contains a NUL character");
        }
        expected[expected_length] = '\0';
    }
    char *version = NULL;
    mcpopt_status status = mcpopt_state_compare_and_set(engine, key, key_length, expected, value, value_length, &version);
    free(key);
    free(value);
    free(expected);
    return version_result(env, status, version);
}

/* remove(engine, key) -> boolean */
static napi_value remove_key(napi_env env, napi_callback_info info) {
    size_t argc = 2;
    napi_value argv[2];
    mcpopt_engine *engine = mcpopt_node_engine_arg(env, info, &argc, argv);
    if (!engine) return NULL;
    char *key;
    size_t key_length;
    if (!mcpopt_node_bytes(env, info, 1, &key, &key_length)) return NULL;
    mcpopt_status status = mcpopt_state_delete(engine, key, key_length);
    free(key);
    napi_value result;
    if (status == MCPOPT_ERR_NOT_FOUND) {
        napi_get_boolean(env, false, &result);
        return result;
    }
    if (status != MCPOPT_OK) return mcpopt_node_throw_last(env);
    napi_get_boolean(env, true, &result);
    return result;
}

static void release_box(napi_env env, void *data, void *hint) { free(data); }

/* watch(engine, prefix, listener) -> External (pass to unwatch) */
static napi_value watch(napi_env env, napi_callback_info info) {
    size_t argc = 3;
    napi_value argv[3];
    mcpopt_engine *engine = mcpopt_node_engine_arg(env, info, &argc, argv);
    if (!engine) return NULL;
    char *prefix;
    size_t prefix_length;
    if (!mcpopt_node_bytes(env, info, 1, &prefix, &prefix_length)) return NULL;
    watch_box *box = calloc(1, sizeof *box);
    if (!box) { free(prefix); return mcpopt_node_throw(env, "out of memory"); }
    if (!mcpopt_node_listener(env, argc >= 3 ? argv[2] : NULL, "mcpopt state watch", call_listener, &box->tsfn)) {
        free(prefix);
        free(box);
        return NULL;
    }
    mcpopt_status status = mcpopt_state_watch(engine, prefix, prefix_length, on_change, box, &box->id);
    free(prefix);
    if (status != MCPOPT_OK) {
        napi_release_threadsafe_function(box->tsfn, napi_tsfn_abort);
        free(box);
        return mcpopt_node_throw_last(env);
    }
    napi_value external;
    napi_create_external(env, box, release_box, NULL, &external);
    return external;
}

/* unwatch(engine, watch) */
static napi_value unwatch(napi_env env, napi_callback_info info) {
    size_t argc = 2;
    napi_value argv[2];
    mcpopt_engine *engine = mcpopt_node_engine_arg(env, info, &argc, argv);
    if (!engine) return NULL;
    napi_valuetype type = napi_undefined;
    if (argc >= 2) napi_typeof(env, argv[1], &type);
    if (type != napi_external) return mcpopt_node_throw(env, "expected a watch handle");
    watch_box *box = NULL;
    napi_get_value_external(env, argv[1], (void **)&box);
    if (!box->tsfn) return NULL; /* already stopped */
    mcpopt_status status = mcpopt_state_unwatch(engine, box->id);
    napi_release_threadsafe_function(box->tsfn, napi_tsfn_release);
    box->tsfn = NULL;
    if (status != MCPOPT_OK && status != MCPOPT_ERR_NOT_FOUND) return mcpopt_node_throw_last(env);
    return NULL;
}

void mcpopt_node_state_init(napi_env env, napi_value exports) {
    napi_property_descriptor props[] = {
        {"statePut", NULL, put, NULL, NULL, NULL, napi_default, NULL},
        {"stateGet", NULL, get, NULL, NULL, NULL, napi_default, NULL},
        {"stateDelete", NULL, remove_key, NULL, NULL, NULL, napi_default, NULL},
        {"stateCompareAndSet", NULL, compare_and_set, NULL, NULL, NULL, napi_default, NULL},
        {"stateWatch", NULL, watch, NULL, NULL, NULL, napi_default, NULL},
        {"stateUnwatch", NULL, unwatch, NULL, NULL, NULL, napi_default, NULL},
    };
    napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
