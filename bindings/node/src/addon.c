/* N-API addon: a thin layer over include/mcpopt.h. Functions take and return plain values
 * (strings, numbers, externals); the JS files in lib/ gives them an idiomatic shape. Errors are thrown as
 * JS Errors with `status`, `statusName` and `issues` properties. */
#include "addon.h"
#include <stdlib.h>
#include <string.h>

/* Throws a JS Error with status, statusName and the issues of `e` (which may be NULL). */
static napi_value throw_error(napi_env env, mcpopt_status status, const char *message, const mcpopt_error *e) {
    napi_value msg, error, value, issues;
    napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &msg);
    napi_create_error(env, NULL, msg, &error);
    napi_create_int32(env, status, &value);
    napi_set_named_property(env, error, "status", value);
    napi_create_string_utf8(env, mcpopt_status_string(status), NAPI_AUTO_LENGTH, &value);
    napi_set_named_property(env, error, "statusName", value);
    size_t count = mcpopt_error_issue_count(e);
    napi_create_array_with_length(env, count, &issues);
    for (size_t i = 0; i < count; i++) {
        napi_value issue, text;
        napi_create_object(env, &issue);
        napi_create_string_utf8(env, mcpopt_error_issue_path(e, i), NAPI_AUTO_LENGTH, &text);
        napi_set_named_property(env, issue, "path", text);
        napi_create_string_utf8(env, mcpopt_error_issue_message(e, i), NAPI_AUTO_LENGTH, &text);
        napi_set_named_property(env, issue, "message", text);
        napi_set_element(env, issues, (uint32_t)i, issue);
    }
    napi_set_named_property(env, error, "issues", issues);
    napi_throw(env, error);
    return NULL;
}

/* Throws the calling thread's last mcpopt error. */
napi_value mcpopt_node_throw_last(napi_env env) {
    mcpopt_error *e = mcpopt_last_error();
    if (!e) return throw_error(env, mcpopt_last_status(), mcpopt_last_error_message(), NULL);
    throw_error(env, mcpopt_error_status(e), mcpopt_error_message(e), e);
    mcpopt_error_free(e);
    return NULL;
}

napi_value mcpopt_node_throw_status(napi_env env, mcpopt_status status, const char *message) {
    return throw_error(env, status, message, NULL);
}

napi_value mcpopt_node_throw(napi_env env, const char *message) {
    napi_throw_type_error(env, NULL, message);
    return NULL;
}

/* Reads argument `index` as a string or Buffer into newly malloc'ed bytes (caller frees).
 * Buffers pass their bytes through untouched, so invalid UTF-8 reaches the library. */
napi_value mcpopt_node_json_text(napi_env env, mcpopt_status status, char *json, size_t length) {
    if (status != MCPOPT_OK) return mcpopt_node_throw_last(env);
    napi_value result;
    napi_create_string_utf8(env, json, length, &result);
    mcpopt_free(json);
    return result;
}

napi_value mcpopt_node_text_call(napi_env env, napi_callback_info info, mcpopt_node_text_fn fn) {
    size_t argc = 1;
    napi_value argv[1];
    mcpopt_engine *engine = mcpopt_node_engine_arg(env, info, &argc, argv);
    if (!engine) return NULL;
    char *text = NULL;
    size_t length = 0;
    mcpopt_status status = fn(engine, &text, &length);
    return mcpopt_node_json_text(env, status, text, length);
}

bool mcpopt_node_listener(napi_env env, napi_value listener, const char *name, napi_threadsafe_function_call_js call_js,
                          napi_threadsafe_function *out) {
    napi_valuetype type = napi_undefined;
    if (listener) napi_typeof(env, listener, &type);
    if (type != napi_function) { mcpopt_node_throw(env, "expected a listener function"); return false; }
    napi_value resource;
    napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &resource);
    if (napi_create_threadsafe_function(env, listener, NULL, resource, 0, 1, NULL, NULL, NULL, call_js, out) != napi_ok) {
        mcpopt_node_throw(env, "cannot create a thread-safe function");
        return false;
    }
    napi_unref_threadsafe_function(env, *out);
    return true;
}

int mcpopt_node_bytes(napi_env env, napi_callback_info info, size_t index, char **out, size_t *length) {
    size_t argc = 4;
    napi_value argv[4];
    napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
    if (index >= argc) { mcpopt_node_throw(env, "missing argument"); return 0; }
    bool is_buffer = false;
    napi_is_buffer(env, argv[index], &is_buffer);
    if (is_buffer) {
        void *data;
        size_t n;
        napi_get_buffer_info(env, argv[index], &data, &n);
        *out = malloc(n + 1);
        if (!*out) { mcpopt_node_throw(env, "out of memory"); return 0; }
        if (n) memcpy(*out, data, n);
        *length = n;
        return 1;
    }
    napi_valuetype type;
    napi_typeof(env, argv[index], &type);
    if (type != napi_string) { mcpopt_node_throw(env, "expected a string or a Buffer"); return 0; }
    size_t n;
    napi_get_value_string_utf8(env, argv[index], NULL, 0, &n);
    *out = malloc(n + 1);
    if (!*out) { mcpopt_node_throw(env, "out of memory"); return 0; }
    napi_get_value_string_utf8(env, argv[index], *out, n + 1, &n);
    *length = n;
    return 1;
}

static napi_value version(napi_env env, napi_callback_info info) {
    napi_value v;
    napi_create_string_utf8(env, mcpopt_version(), NAPI_AUTO_LENGTH, &v);
    return v;
}

static napi_value abi_version(napi_env env, napi_callback_info info) {
    napi_value v;
    napi_create_uint32(env, mcpopt_abi_version(), &v);
    return v;
}

static napi_value status_string(napi_env env, napi_callback_info info) {
    size_t argc = 1;
    napi_value argv[1], v;
    int32_t status = 0;
    napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
    if (argc < 1 || napi_get_value_int32(env, argv[0], &status) != napi_ok) return mcpopt_node_throw(env, "expected a status number");
    napi_create_string_utf8(env, mcpopt_status_string(status), NAPI_AUTO_LENGTH, &v);
    return v;
}

static void add(napi_env env, napi_value exports, const char *name, napi_callback fn) {
    napi_value f;
    napi_create_function(env, name, NAPI_AUTO_LENGTH, fn, NULL, &f);
    napi_set_named_property(env, exports, name, f);
}

static napi_value init(napi_env env, napi_value exports) {
    add(env, exports, "version", version);
    add(env, exports, "abiVersion", abi_version);
    add(env, exports, "statusString", status_string);
    mcpopt_node_engine_init(env, exports);
    mcpopt_node_state_init(env, exports);
    mcpopt_node_cache_init(env, exports);
    mcpopt_node_routing_init(env, exports);
    mcpopt_node_requests_init(env, exports);
    return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
