// JSON-RPC / MCP message decoding over simdjson's on-demand API, for Swift. One pass over the
// bytes extracts what routing and caching need (kind, id, method, tool name, arguments, _meta
// version, result hints) without building a tree; arguments are also written in canonical form
// (sorted keys, no whitespace) and hashed, so equal arguments give equal cache keys.
#ifndef MCO_RPC_SHIM_H
#define MCO_RPC_SHIM_H
#include <stddef.h>
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif

// A string: `ptr` is NULL when the field is absent. Raw values are slices of the input; decoded
// strings may point into the decoder's memory. Either way: valid until the decoder's next call.
typedef struct mco_str {
    const char *ptr;
    size_t len;
} mco_str;

enum {
    MCO_RPC_OK = 0,
    MCO_RPC_NOT_JSON = 1,     // malformed JSON or not UTF-8 (JSON-RPC -32700)
    MCO_RPC_INVALID = 2,      // JSON, but not a JSON-RPC 2.0 message (-32600)
    MCO_RPC_BATCH = 3,        // a top-level array (a batch): the caller decides
    MCO_RPC_TOO_DEEP = 4,     // nests deeper than the decoder allows
    MCO_RPC_INTERNAL = 5,     // out of memory or a simdjson failure
};

enum {
    MCO_KIND_REQUEST = 1,
    MCO_KIND_NOTIFICATION = 2,
    MCO_KIND_RESULT = 3,
    MCO_KIND_ERROR = 4,
};

enum {
    MCO_ID_NONE = 0,
    MCO_ID_INT = 1,
    MCO_ID_STRING = 2,
    MCO_ID_NULL = 3,
    MCO_ID_OTHER = 4,  // a float, or another JSON type (invalid per JSON-RPC, reported as-is)
};

typedef struct mco_rpc_message {
    mco_str source;             // the whole message as decoded: raw spans lie inside it
    int32_t kind;
    int32_t id_kind;
    int64_t id_int;
    mco_str id_raw;             // the id token as written
    mco_str id_string;          // decoded, for string ids
    mco_str method;             // decoded
    mco_str params_raw;
    // params members that matter to routing and caching
    mco_str name;               // params.name: tool (tools/call) or prompt (prompts/get)
    mco_str uri;                // params.uri: resources/read, resources/subscribe
    mco_str cursor;             // params.cursor
    mco_str arguments_raw;      // params.arguments as written
    mco_str arguments_canonical;// params.arguments, canonical form
    uint64_t arguments_hash;    // XXH3-64 of arguments_canonical (0 when absent)
    mco_str request_state;      // params.requestState (a multi-round-trip retry), or result.requestState (input_required)
    int32_t has_input_responses;// params.inputResponses present
    mco_str protocol_version;   // params._meta["io.modelcontextprotocol/protocolVersion"],
                                // or params.protocolVersion of an initialize request
    mco_str progress_token_raw; // params._meta.progressToken
    mco_str log_level;          // params._meta["io.modelcontextprotocol/logLevel"] (a string)
    mco_str meta_raw;           // params._meta
    // responses
    mco_str result_raw;
    mco_str result_type;        // result.resultType ("complete", "input_required")
    int32_t result_is_error;    // result.isError == true
    int64_t result_ttl_ms;      // result.ttlMs, -1 when absent
    mco_str result_cache_scope; // result.cacheScope
    mco_str result_next_cursor; // result.nextCursor
    int64_t error_code;
    mco_str error_message;
    mco_str error_data_raw;
} mco_rpc_message;

typedef struct mco_rpc_decoder mco_rpc_decoder;

// A decoder is used by one thread at a time; it keeps its buffers between calls.
mco_rpc_decoder *mco_rpc_decoder_new(void);
void mco_rpc_decoder_free(mco_rpc_decoder *decoder);

// Decodes one message. Returns MCO_RPC_OK and fills `out`, or an MCO_RPC_* reason; on
// failure `detail` (never NULL) says what was wrong. Spans stay valid until the next call.
int mco_rpc_decode(mco_rpc_decoder *decoder, const char *bytes, size_t length, mco_rpc_message *out,
                   const char **detail);

// Canonical form of any JSON value (sorted keys, no insignificant whitespace, strings
// re-escaped the one canonical way) and its XXH3-64 hash.
int mco_json_canonicalize(mco_rpc_decoder *decoder, const char *bytes, size_t length, mco_str *out,
                          uint64_t *hash);

// XXH3-64 of bytes, with a seed.
uint64_t mco_hash64(const void *bytes, size_t length, uint64_t seed);

#ifdef __cplusplus
}
#endif
#endif
