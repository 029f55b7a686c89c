/* The request path of the addon: start, stop, healthCheck, coordinateOperation and
 * recoverTransactions block in the library, so they run as N-API async work (on libuv's thread
 * pool); optimizeRequest uses the library's callback form instead. Each settles a Promise with
 * [status, text]: the JSON answer, or the error message
 * (lib/engine.js turns it into an MCPOptError). Events reach JS through a thread-safe function,
 * like state watches. */
#include "addon.h"
#include <stdlib.h>
#include <string.h>

enum job_kind { JOB_START, JOB_STOP, JOB_HEALTH, JOB_COORDINATE, JOB_RECOVER };

typedef struct job {
    enum job_kind kind;
    mcpopt_engine *engine;
    char *request;
    size_t request_length;
    mcpopt_status status;
    char *text;          /* the answer (library memory) or NULL */
    size_t text_length;
    char *message;       /* the error message (ours) or NULL */
    napi_deferred deferred;
    napi_async_work work;
} job;

static void execute(napi_env env, void *data) {
    job *j = data;
    switch (j->kind) {
    case JOB_START: j->status = mcpopt_engine_start(j->engine); break;
    case JOB_STOP: j->status = mcpopt_engine_stop(j->engine); break;
    case JOB_HEALTH: j->status = mcpopt_health_check(j->engine, &j->text, &j->text_length); break;
    case JOB_RECOVER: j->status = mcpopt_transactions_recover(j->engine, &j->text, &j->text_length); break;
    case JOB_COORDINATE:
        j->status = mcpopt_coordinate_operation(j->engine, j->request, j->request_length, &j->text, &j->text_length);
        break;
    }
    /* The last error is per thread: read it here, on the thread that failed. */
    if (j->status != MCPOPT_OK) j->message = strdup(mcpopt_last_error_message());
}

static void complete(napi_env env, napi_status status, void *data) {
    job *j = data;
    napi_value result, code, text;
    napi_create_array_with_length(env, 2, &result);
    napi_create_int32(env, j->status, &code);
    napi_set_element(env, result, 0, code);
    if (j->status == MCPOPT_OK && j->text) {
        napi_create_string_utf8(env, j->text, j->text_length, &text);
    } else if (j->status == MCPOPT_OK) {
        napi_get_null(env, &text);
    } else {
        napi_create_string_utf8(env, j->message ? j->message : "out of memory", NAPI_AUTO_LENGTH, &text);
    }
    napi_set_element(env, result, 1, text);
    napi_resolve_deferred(env, j->deferred, result);
    napi_delete_async_work(env, j->work);
    if (j->text) mcpopt_free(j->text);
    free(j->message);
    free(j->request);
    free(j);
}

/* Queues a job; returns its Promise. */
static napi_value queue(napi_env env, job *j) {
    napi_value promise, name;
    if (napi_create_promise(env, &j->deferred, &promise) != napi_ok) { free(j->request); free(j); return NULL; }
    napi_create_string_utf8(env, "mcpopt request", NAPI_AUTO_LENGTH, &name);
    napi_create_async_work(env, NULL, name, execute, complete, j, &j->work);
    napi_queue_async_work(env, j->work);
    return promise;
}

/* A job on the engine (argument 0) and, with `with_text`, the text in argument 1. */
static napi_value engine_job(napi_env env, napi_callback_info info, enum job_kind kind, int with_text) {
    size_t argc = 2;
    napi_value argv[2];
    mcpopt_engine *engine = mcpopt_node_engine_arg(env, info, &argc, argv);
    if (!engine) return NULL;
    job *j = calloc(1, sizeof *j);
    if (!j) return mcpopt_node_throw(env, "out of memory");
    j->kind = kind;
    j->engine = engine;
    if (with_text && !mcpopt_node_bytes(env, info, 1, &j->request, &j->request_length)) { free(j); return NULL; }
    return queue(env, j);
}

static napi_value simple(napi_env env, napi_callback_info info, enum job_kind kind) { return engine_job(env, info, kind, 0); }

static napi_value start(napi_env env, napi_callback_info info) { return simple(env, info, JOB_START); }
static napi_value stop(napi_env env, napi_callback_info info) { return simple(env, info, JOB_STOP); }
static napi_value health(napi_env env, napi_callback_info info) { return simple(env, info, JOB_HEALTH); }
static napi_value recover(napi_env env, napi_callback_info info) { return simple(env, info, JOB_RECOVER); }

/* optimizeRequest does not take a libuv pool thread (there are 4 by default, and each would be
 * held for the whole upstream call): mcpopt_optimize_request_async answers on an engine thread,
 * and a thread-safe function carries the answer to the JS thread, where the Promise settles.
 * The thread-safe function also keeps Node's loop alive while the request is in flight. */
typedef struct pending_request {
    napi_deferred deferred;
    napi_threadsafe_function tsfn;
    char *text;
    size_t text_length;
} pending_request;

static void settle_request(napi_env env, napi_value js_callback, void *context, void *data) {
    pending_request *p = data;
    if (env) {
        napi_value result, code, text;
        napi_create_array_with_length(env, 2, &result);
        napi_create_int32(env, p->text ? MCPOPT_OK : MCPOPT_ERR_INTERNAL, &code);
        napi_set_element(env, result, 0, code);
        if (p->text) napi_create_string_utf8(env, p->text, p->text_length, &text);
        else napi_create_string_utf8(env, "out of memory copying the answer", NAPI_AUTO_LENGTH, &text);
        napi_set_element(env, result, 1, text);
        napi_resolve_deferred(env, p->deferred, result);
    }
    napi_release_threadsafe_function(p->tsfn, napi_tsfn_release);
    free(p->text);
    free(p);
}

static void on_answer(void *user_data, mcpopt_status status, const char *json, size_t length) {
    pending_request *p = user_data;
    p->text = malloc(length + 1);
    if (p->text) {
        memcpy(p->text, json, length);
        p->text[length] = 0;
        p->text_length = length;
    }
    /* Blocking: the queue is unbounded, so this never waits; the answer must not be dropped. */
    napi_call_threadsafe_function(p->tsfn, p, napi_tsfn_blocking);
}

/* optimizeRequest(engine, request, options|null) -> Promise<[status, text]> */
static napi_value optimize(napi_env env, napi_callback_info info) {
    size_t argc = 3;
    napi_value argv[3];
    mcpopt_engine *engine = mcpopt_node_engine_arg(env, info, &argc, argv);
    if (!engine) return NULL;
    char *request = NULL, *options = NULL;
    size_t request_length = 0, options_length = 0;
    if (!mcpopt_node_bytes(env, info, 1, &request, &request_length)) return NULL;
    napi_valuetype type = napi_undefined;
    if (argc >= 3) napi_typeof(env, argv[2], &type);
    if (type != napi_undefined && type != napi_null) {
        if (!mcpopt_node_bytes(env, info, 2, &options, &options_length)) { free(request); return NULL; }
    }
    pending_request *p = calloc(1, sizeof *p);
    napi_value promise, name;
    if (!p || napi_create_promise(env, &p->deferred, &promise) != napi_ok) {
        free(p); free(request); free(options);
        return mcpopt_node_throw(env, "out of memory");
    }
    napi_create_string_utf8(env, "mcpopt request", NAPI_AUTO_LENGTH, &name);
    if (napi_create_threadsafe_function(env, NULL, NULL, name, 0, 1, NULL, NULL, NULL, settle_request, &p->tsfn) != napi_ok) {
        napi_value error;
        napi_create_string_utf8(env, "cannot create a thread-safe function", NAPI_AUTO_LENGTH, &error);
        napi_reject_deferred(env, p->deferred, error);
        free(p); free(request); free(options);
        return promise;
    }
    mcpopt_status status = mcpopt_optimize_request_async(engine, request, request_length, options, options_length, on_answer, p);
    free(request);
    free(options);
    if (status != MCPOPT_OK) {
        /* Bad input: settle at once with the status and message, as the blocking form did. */
        napi_value result, code, text;
        napi_create_array_with_length(env, 2, &result);
        napi_create_int32(env, status, &code);
        napi_set_element(env, result, 0, code);
        napi_create_string_utf8(env, mcpopt_last_error_message(), NAPI_AUTO_LENGTH, &text);
        napi_set_element(env, result, 1, text);
        napi_resolve_deferred(env, p->deferred, result);
        napi_release_threadsafe_function(p->tsfn, napi_tsfn_release);
        free(p);
    }
    return promise;
}

/* coordinateOperation(engine, request) -> Promise<[status, text]> */
static napi_value coordinate(napi_env env, napi_callback_info info) { return engine_job(env, info, JOB_COORDINATE, 1); }

static napi_value metrics(napi_env env, napi_callback_info info) { return mcpopt_node_text_call(env, info, mcpopt_metrics); }
static napi_value prometheus(napi_env env, napi_callback_info info) { return mcpopt_node_text_call(env, info, mcpopt_metrics_prometheus); }

/* Events: the library calls back on its own threads; the listener runs on the JS thread. */
typedef struct event_box {
    napi_threadsafe_function tsfn;
    uint64_t id;
} event_box;

typedef struct engine_event {
    char *name;
    char *data;
    size_t data_length;
} engine_event;

static void free_event(engine_event *e) {
    if (!e) return;
    free(e->name);
    free(e->data);
    free(e);
}

static void call_listener(napi_env env, napi_value js_callback, void *context, void *data) {
    engine_event *e = data;
    if (env && js_callback) {
        napi_value argv[2], undefined;
        napi_create_string_utf8(env, e->name, NAPI_AUTO_LENGTH, &argv[0]);
        napi_create_string_utf8(env, e->data, e->data_length, &argv[1]);
        napi_get_undefined(env, &undefined);
        napi_call_function(env, undefined, js_callback, 2, argv, NULL);
    }
    free_event(e);
}

static void on_event(void *user_data, const char *name, const char *data, size_t length) {
    event_box *box = user_data;
    engine_event *e = calloc(1, sizeof *e);
    if (!e) return;
    e->name = strdup(name);
    e->data = malloc(length + 1);
    if (!e->name || !e->data) { free_event(e); return; }
    memcpy(e->data, data, length);
    e->data_length = length;
    if (napi_call_threadsafe_function(box->tsfn, e, napi_tsfn_nonblocking) != napi_ok) free_event(e);
}

static void release_box(napi_env env, void *data, void *hint) { free(data); }

/* subscribeEvents(engine, listener(name, dataJSON)) -> External */
static napi_value subscribe(napi_env env, napi_callback_info info) {
    size_t argc = 2;
    napi_value argv[2];
    mcpopt_engine *engine = mcpopt_node_engine_arg(env, info, &argc, argv);
    if (!engine) return NULL;
    event_box *box = calloc(1, sizeof *box);
    if (!box) return mcpopt_node_throw(env, "out of memory");
    if (!mcpopt_node_listener(env, argc >= 2 ? argv[1] : NULL, "mcpopt events", call_listener, &box->tsfn)) {
        free(box);
        return NULL;
    }
    if (mcpopt_events_subscribe(engine, on_event, box, &box->id) != MCPOPT_OK) {
        napi_release_threadsafe_function(box->tsfn, napi_tsfn_abort);
        free(box);
        return mcpopt_node_throw_last(env);
    }
    napi_value external;
    napi_create_external(env, box, release_box, NULL, &external);
    return external;
}

/* unsubscribeEvents(engine, subscription) */
static napi_value unsubscribe(napi_env env, napi_callback_info info) {
    size_t argc = 2;
    napi_value argv[2];
    mcpopt_engine *engine = mcpopt_node_engine_arg(env, info, &argc, argv);
    if (!engine) return NULL;
    napi_valuetype type = napi_undefined;
    if (argc >= 2) napi_typeof(env, argv[1], &type);
    if (type != napi_external) return mcpopt_node_throw(env, "expected a subscription handle");
    event_box *box = NULL;
    napi_get_value_external(env, argv[1], (void **)&box);
    if (!box->tsfn) return NULL;
    mcpopt_status status = mcpopt_events_unsubscribe(engine, box->id);
    napi_release_threadsafe_function(box->tsfn, napi_tsfn_release);
    box->tsfn = NULL;
    if (status != MCPOPT_OK && status != MCPOPT_ERR_NOT_FOUND) return mcpopt_node_throw_last(env);
    return NULL;
}

void mcpopt_node_requests_init(napi_env env, napi_value exports) {
    napi_property_descriptor props[] = {
        {"engineStart", NULL, start, NULL, NULL, NULL, napi_default, NULL},
        {"engineStop", NULL, stop, NULL, NULL, NULL, napi_default, NULL},
        {"optimizeRequest", NULL, optimize, NULL, NULL, NULL, napi_default, NULL},
        {"healthCheck", NULL, health, NULL, NULL, NULL, napi_default, NULL},
        {"coordinateOperation", NULL, coordinate, NULL, NULL, NULL, napi_default, NULL},
        {"recoverTransactions", NULL, recover, NULL, NULL, NULL, napi_default, NULL},
        {"metrics", NULL, metrics, NULL, NULL, NULL, napi_default, NULL},
        {"metricsPrometheus", NULL, prometheus, NULL, NULL, NULL, napi_default, NULL},
        {"subscribeEvents", NULL, subscribe, NULL, NULL, NULL, napi_default, NULL},
        {"unsubscribeEvents", NULL, unsubscribe, NULL, NULL, NULL, napi_default, NULL},
    };
    napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
