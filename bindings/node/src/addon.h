/* Shared helpers of the N-API addon; one file per area of the C interface registers its
 * functions through an mcpopt_node_*_init function. */
#ifndef MCPOPT_NODE_ADDON_H
#define MCPOPT_NODE_ADDON_H
#include <mcpopt.h>
#include <node_api.h>
#include <stdbool.h>

napi_value mcpopt_node_throw_last(napi_env env);
napi_value mcpopt_node_throw_status(napi_env env, mcpopt_status status, const char *message);
/* Throws a TypeError (a wrong JS argument, before the library is called). */
napi_value mcpopt_node_throw(napi_env env, const char *message);
/* Returns a JSON text the library handed out as a JS string and frees it; throws the last error
 * when `status` is not MCPOPT_OK. */
napi_value mcpopt_node_json_text(napi_env env, mcpopt_status status, char *json, size_t length);
int mcpopt_node_bytes(napi_env env, napi_callback_info info, size_t index, char **out, size_t *length);

void mcpopt_node_engine_init(napi_env env, napi_value exports);
void mcpopt_node_state_init(napi_env env, napi_value exports);
void mcpopt_node_cache_init(napi_env env, napi_value exports);
void mcpopt_node_routing_init(napi_env env, napi_value exports);
void mcpopt_node_requests_init(napi_env env, napi_value exports);
mcpopt_engine *mcpopt_node_engine_arg(napi_env env, napi_callback_info info, size_t *argc, napi_value *argv);
/* For (engine) -> text functions of the library (stats, metrics): calls `fn` on argument 0's
 * engine and returns its text as a JS string, or throws. */
typedef mcpopt_status (*mcpopt_node_text_fn)(mcpopt_engine *engine, char **out, size_t *length);
napi_value mcpopt_node_text_call(napi_env env, napi_callback_info info, mcpopt_node_text_fn fn);
/* A thread-safe function for a JS listener that must not keep the process alive by itself;
 * false (with a JS exception pending) when `listener` is not a function or creation failed. */
bool mcpopt_node_listener(napi_env env, napi_value listener, const char *name, napi_threadsafe_function_call_js call_js,
                          napi_threadsafe_function *out);
#endif
