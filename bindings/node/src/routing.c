/* Routing functions of the addon: JSON in, JSON out (parsed and built in lib/routing.js). */
#include "addon.h"
#include <stdlib.h>
#include <string.h>

/* route(engine, requestJSON) -> decision JSON */
static napi_value route(napi_env env, napi_callback_info info) {
    size_t argc = 2;
    napi_value argv[2];
    mcpopt_engine *engine = mcpopt_node_engine_arg(env, info, &argc, argv);
    if (!engine) return NULL;
    char *request;
    size_t length;
    if (!mcpopt_node_bytes(env, info, 1, &request, &length)) return NULL;
    char *json = NULL;
    size_t out_length = 0;
    mcpopt_status status = mcpopt_route(engine, request, length, &json, &out_length);
    free(request);
    return mcpopt_node_json_text(env, status, json, out_length);
}

/* routeRegisterServer(engine, serverJSON) */
static napi_value register_server(napi_env env, napi_callback_info info) {
    size_t argc = 2;
    napi_value argv[2];
    mcpopt_engine *engine = mcpopt_node_engine_arg(env, info, &argc, argv);
    if (!engine) return NULL;
    char *server;
    size_t length;
    if (!mcpopt_node_bytes(env, info, 1, &server, &length)) return NULL;
    mcpopt_status status = mcpopt_route_register_server(engine, server, length);
    free(server);
    if (status != MCPOPT_OK) return mcpopt_node_throw_last(env);
    return NULL;
}

/* routeSetTools(engine, server, toolsJSON) */
static napi_value set_tools(napi_env env, napi_callback_info info) {
    size_t argc = 3;
    napi_value argv[3];
    mcpopt_engine *engine = mcpopt_node_engine_arg(env, info, &argc, argv);
    if (!engine) return NULL;
    char *server, *tools;
    size_t server_length, tools_length;
    if (!mcpopt_node_bytes(env, info, 1, &server, &server_length)) return NULL;
    if (!mcpopt_node_bytes(env, info, 2, &tools, &tools_length)) { free(server); return NULL; }
    mcpopt_status status = mcpopt_route_set_tools(engine, server, server_length, tools, tools_length);
    free(server);
    free(tools);
    if (status != MCPOPT_OK) return mcpopt_node_throw_last(env);
    return NULL;
}

/* routeRemoveServer(engine, server) -> boolean */
static napi_value remove_server(napi_env env, napi_callback_info info) {
    size_t argc = 2;
    napi_value argv[2];
    mcpopt_engine *engine = mcpopt_node_engine_arg(env, info, &argc, argv);
    if (!engine) return NULL;
    char *server;
    size_t length;
    if (!mcpopt_node_bytes(env, info, 1, &server, &length)) return NULL;
    mcpopt_status status = mcpopt_route_remove_server(engine, server, length);
    free(server);
    if (status != MCPOPT_OK && status != MCPOPT_ERR_NOT_FOUND) return mcpopt_node_throw_last(env);
    napi_value result;
    napi_get_boolean(env, status == MCPOPT_OK, &result);
    return result;
}

/* routeRecord(engine, server, tool, latencyMicros, success) */
static napi_value record(napi_env env, napi_callback_info info) {
    size_t argc = 5;
    napi_value argv[5];
    mcpopt_engine *engine = mcpopt_node_engine_arg(env, info, &argc, argv);
    if (!engine) return NULL;
    if (argc < 5) return mcpopt_node_throw(env, "routeRecord needs 5 arguments");
    double micros = 0;
    bool success = false;
    if (napi_get_value_double(env, argv[3], &micros) != napi_ok) return mcpopt_node_throw(env, "latency must be a number");
    if (napi_get_value_bool(env, argv[4], &success) != napi_ok) return mcpopt_node_throw(env, "success must be a boolean");
    char *server, *tool;
    size_t server_length, tool_length;
    if (!mcpopt_node_bytes(env, info, 1, &server, &server_length)) return NULL;
    if (!mcpopt_node_bytes(env, info, 2, &tool, &tool_length)) { free(server); return NULL; }
    mcpopt_status status = mcpopt_route_record(engine, server, server_length, tool, tool_length, (int64_t)micros, success ? 1 : 0);
    free(server);
    free(tool);
    if (status != MCPOPT_OK) return mcpopt_node_throw_last(env);
    return NULL;
}

/* routeStats(engine) -> JSON */
static napi_value stats(napi_env env, napi_callback_info info) { return mcpopt_node_text_call(env, info, mcpopt_route_stats); }

void mcpopt_node_routing_init(napi_env env, napi_value exports) {
    napi_property_descriptor props[] = {
        {"route", NULL, route, NULL, NULL, NULL, napi_default, NULL},
        {"routeRegisterServer", NULL, register_server, NULL, NULL, NULL, napi_default, NULL},
        {"routeSetTools", NULL, set_tools, NULL, NULL, NULL, napi_default, NULL},
        {"routeRemoveServer", NULL, remove_server, NULL, NULL, NULL, napi_default, NULL},
        {"routeRecord", NULL, record, NULL, NULL, NULL, napi_default, NULL},
        {"routeStats", NULL, stats, NULL, NULL, NULL, napi_default, NULL},
    };
    napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
