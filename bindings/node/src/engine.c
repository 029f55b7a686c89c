/* Engine functions of the addon. A JS engine holds an External wrapping the C handle; the
 * finalizer destroys an engine the program forgot to close. */
#include "addon.h"
#include <stdlib.h>

typedef struct engine_box {
    mcpopt_engine *engine; /* NULL once closed */
} engine_box;

static void finalize(napi_env env, void *data, void *hint) {
    engine_box *box = data;
    if (box->engine) mcpopt_engine_destroy(box->engine);
    free(box);
}

/* The live engine of argument 0, or NULL with a JS exception pending. */
mcpopt_engine *mcpopt_node_engine_arg(napi_env env, napi_callback_info info, size_t *argc, napi_value *argv) {
    napi_get_cb_info(env, info, argc, argv, NULL, NULL);
    napi_valuetype type = napi_undefined;
    if (*argc >= 1) napi_typeof(env, argv[0], &type);
    if (type != napi_external) { mcpopt_node_throw(env, "expected an engine handle"); return NULL; }
    engine_box *box = NULL;
    napi_get_value_external(env, argv[0], (void **)&box);
    if (!box || !box->engine) { mcpopt_node_throw_status(env, MCPOPT_ERR_INVALID_HANDLE, "the engine is closed"); return NULL; }
    return box->engine;
}

static engine_box *unbox(napi_env env, napi_callback_info info) {
    size_t argc = 1;
    napi_value argv[1];
    napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
    napi_valuetype type = napi_undefined;
    if (argc >= 1) napi_typeof(env, argv[0], &type);
    if (type != napi_external) { mcpopt_node_throw(env, "expected an engine handle"); return NULL; }
    engine_box *box = NULL;
    napi_get_value_external(env, argv[0], (void **)&box);
    return box;
}

static napi_value validate(napi_env env, napi_callback_info info) {
    char *text;
    size_t length;
    if (!mcpopt_node_bytes(env, info, 0, &text, &length)) return NULL;
    mcpopt_status status = mcpopt_config_validate(text, length);
    free(text);
    if (status != MCPOPT_OK) return mcpopt_node_throw_last(env);
    return NULL;
}

static napi_value create(napi_env env, napi_callback_info info) {
    char *text;
    size_t length;
    if (!mcpopt_node_bytes(env, info, 0, &text, &length)) return NULL;
    mcpopt_engine *engine = NULL;
    mcpopt_status status = mcpopt_engine_create(text, length, &engine);
    free(text);
    if (status != MCPOPT_OK) return mcpopt_node_throw_last(env);
    engine_box *box = malloc(sizeof *box);
    if (!box) { mcpopt_engine_destroy(engine); return mcpopt_node_throw(env, "out of memory"); }
    box->engine = engine;
    napi_value external;
    napi_create_external(env, box, finalize, NULL, &external);
    return external;
}

static napi_value destroy(napi_env env, napi_callback_info info) {
    engine_box *box = unbox(env, info);
    if (!box) return NULL;
    mcpopt_engine *engine = box->engine;
    box->engine = NULL;
    if (engine && mcpopt_engine_destroy(engine) != MCPOPT_OK) return mcpopt_node_throw_last(env);
    return NULL;
}

static napi_value describe(napi_env env, napi_callback_info info) {
    engine_box *box = unbox(env, info);
    if (!box) return NULL;
    if (!box->engine) return mcpopt_node_throw_status(env, MCPOPT_ERR_INVALID_HANDLE, "the engine is closed");
    char *json = NULL;
    size_t length = 0;
    if (mcpopt_engine_describe(box->engine, &json, &length) != MCPOPT_OK) return mcpopt_node_throw_last(env);
    napi_value result;
    napi_create_string_utf8(env, json, length, &result);
    mcpopt_free(json);
    return result;
}

void mcpopt_node_engine_init(napi_env env, napi_value exports) {
    napi_property_descriptor props[] = {
        {"configValidate", NULL, validate, NULL, NULL, NULL, napi_default, NULL},
        {"engineCreate", NULL, create, NULL, NULL, NULL, napi_default, NULL},
        {"engineDestroy", NULL, destroy, NULL, NULL, NULL, napi_default, NULL},
        {"engineDescribe", NULL, describe, NULL, NULL, NULL, napi_default, NULL},
    };
    napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
