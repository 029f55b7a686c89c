#include "mcpopt_rpc_shim.h"
#include <simdjson.h>
#define XXH_INLINE_ALL
#include <xxhash.h>
#include <algorithm>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

using namespace simdjson;
using std::string_view;

namespace {

constexpr int kMaxCanonicalDepth = 128;

// Thrown inside the decoder only; caught at the C boundary.
struct Failure {
    int status;
    const char *detail;
};

[[noreturn]] void fail(int status, const char *detail) { throw Failure{status, detail}; }

void check(error_code err, const char *what) {
    if (!err) return;
    switch (err) {
    case DEPTH_ERROR: fail(MCO_RPC_TOO_DEEP, "JSON nests too deeply");
    case INCORRECT_TYPE: fail(MCO_RPC_INVALID, what);
    case NUMBER_OUT_OF_RANGE: fail(MCO_RPC_INVALID, what);
    case MEMALLOC: fail(MCO_RPC_INTERNAL, "out of memory");
    case UTF8_ERROR: fail(MCO_RPC_NOT_JSON, "text is not valid UTF-8");
    case EMPTY: fail(MCO_RPC_NOT_JSON, "empty message");
    default: fail(MCO_RPC_NOT_JSON, error_message(err));
    }
}

template <typename T> T get(simdjson_result<T> r, const char *what) {
    T value;
    check(std::move(r).get(value), what);
    return value;
}

mco_str str(string_view s) { return mco_str{s.data(), s.size()}; }

string_view strip(string_view s) {
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\n' || s.back() == '\r')) s.remove_suffix(1);
    return s;
}

struct Entry {
    string_view key;
    size_t start, length;  // of the canonical value inside the depth's scratch
};

} // namespace

struct mco_rpc_decoder {
    ondemand::parser parser;
    std::string padded;
    std::string canonical;
    // Per-depth scratch for sorting object members, reused between calls (no malloc when warm).
    std::vector<std::string> scratch{kMaxCanonicalDepth + 1};
    std::vector<std::vector<Entry>> entries{kMaxCanonicalDepth + 1};
    ondemand::document doc;
    // The last message decoded, while `padded` still holds its bytes (every span of it points
    // into this decoder): the same message handed down the layers (front, gateway, engine)
    // is decoded once. Anything else that uses the buffers clears it.
    bool memo = false;
    mco_rpc_message last{};

    static void escape(std::string &out, string_view s) {
        out.push_back('"');
        for (unsigned char c : s) {
            switch (c) {
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            case '\b': out += "\\b"; break;
            case '\f': out += "\\f"; break;
            case '\n': out += "\\n"; break;
            case '\r': out += "\\r"; break;
            case '\t': out += "\\t"; break;
            default:
                if (c < 0x20) {
                    static const char hex[] = "0123456789abcdef";
                    out += "\\u00";
                    out.push_back(hex[c >> 4]);
                    out.push_back(hex[c & 15]);
                } else {
                    out.push_back(char(c));
                }
            }
        }
        out.push_back('"');
    }

    // Appends the canonical form of `v` to `out`.
    void canon(ondemand::value v, std::string &out, int depth) {
        if (depth > kMaxCanonicalDepth) fail(MCO_RPC_TOO_DEEP, "JSON nests too deeply");
        switch (get(v.type(), "bad value")) {
        case ondemand::json_type::object: {
            auto &mine = entries[depth];
            auto &buf = scratch[depth];
            mine.clear();
            buf.clear();
            for (auto field : get(v.get_object(), "expected an object")) {
                ondemand::field f = get(std::move(field), "bad member");
                string_view key = get(f.unescaped_key(), "bad key");
                size_t start = buf.size();
                canon(f.value(), buf, depth + 1);
                mine.push_back(Entry{key, start, buf.size() - start});
            }
            std::stable_sort(mine.begin(), mine.end(), [](const Entry &a, const Entry &b) { return a.key < b.key; });
            out.push_back('{');
            for (size_t i = 0; i < mine.size(); i++) {
                if (i) out.push_back(',');
                escape(out, mine[i].key);
                out.push_back(':');
                out.append(buf, mine[i].start, mine[i].length);
            }
            out.push_back('}');
            break;
        }
        case ondemand::json_type::array: {
            out.push_back('[');
            bool first = true;
            for (auto element : get(v.get_array(), "expected an array")) {
                if (!first) out.push_back(',');
                first = false;
                canon(get(std::move(element), "bad element"), out, depth + 1);
            }
            out.push_back(']');
            break;
        }
        case ondemand::json_type::string: escape(out, get(v.get_string(), "bad string")); break;
        case ondemand::json_type::boolean: out += get(v.get_bool(), "bad boolean") ? "true" : "false"; break;
        case ondemand::json_type::null:
            if (!v.is_null()) fail(MCO_RPC_NOT_JSON, "bad null");
            out += "null";
            break;
        case ondemand::json_type::number: {
            // Numbers keep their text; validate it by parsing.
            string_view token = strip(v.raw_json_token());
            get(v.get_number(), "bad number");
            out.append(token);
            break;
        }
        }
    }

    // simdjson 3.0.1 has no document::at_end(): past the last token, current_location fails.
    bool at_end() {
        const char *location;
        return doc.current_location().get(location) != SUCCESS;
    }

    // Where the value that began at `start` ends: the parser sits at the next token.
    string_view span_from(const char *start) {
        const char *end = get(doc.current_location(), "truncated message");
        return strip(string_view(start, size_t(end - start)));
    }

    // The raw text of a value that is skipped.
    string_view raw(ondemand::value v) {
        switch (get(v.type(), "bad value")) {
        case ondemand::json_type::object: return strip(get(get(v.get_object(), "bad object").raw_json(), "bad object"));
        case ondemand::json_type::array: return strip(get(get(v.get_array(), "bad array").raw_json(), "bad array"));
        default: return strip(v.raw_json_token());
        }
    }

    void meta(ondemand::value v, mco_rpc_message *out) {
        const char *start = v.raw_json_token().data();
        for (auto field : get(v.get_object(), "params._meta must be an object")) {
            ondemand::field f = get(std::move(field), "bad _meta member");
            string_view key = get(f.unescaped_key(), "bad key");
            if (key == "io.modelcontextprotocol/protocolVersion") {
                out->protocol_version = str(get(f.value().get_string(), "protocolVersion must be a string"));
            } else if (key == "progressToken") {
                out->progress_token_raw = str(raw(f.value()));
            } else if (key == "io.modelcontextprotocol/logLevel") {
                ondemand::value level = f.value();
                if (get(level.type(), "bad logLevel") == ondemand::json_type::string) out->log_level = str(get(level.get_string(), "bad logLevel"));
            }
        }
        out->meta_raw = str(span_from(start));
    }

    void params(ondemand::value v, mco_rpc_message *out) {
        const char *start = v.raw_json_token().data();
        ondemand::json_type type = get(v.type(), "bad params");
        if (type != ondemand::json_type::object) {
            if (type != ondemand::json_type::array) fail(MCO_RPC_INVALID, "params must be an object or an array");
            out->params_raw = str(raw(v));
            return;
        }
        for (auto field : get(v.get_object(), "bad params")) {
            ondemand::field f = get(std::move(field), "bad params member");
            string_view key = get(f.unescaped_key(), "bad key");
            ondemand::value value = f.value();
            if (key == "name") {
                if (get(value.type(), "bad name") == ondemand::json_type::string) out->name = str(get(value.get_string(), "bad name"));
            } else if (key == "uri") {
                if (get(value.type(), "bad uri") == ondemand::json_type::string) out->uri = str(get(value.get_string(), "bad uri"));
            } else if (key == "cursor") {
                if (get(value.type(), "bad cursor") == ondemand::json_type::string) out->cursor = str(get(value.get_string(), "bad cursor"));
            } else if (key == "requestState") {
                if (get(value.type(), "bad requestState") == ondemand::json_type::string) out->request_state = str(get(value.get_string(), "bad requestState"));
            } else if (key == "inputResponses") {
                out->has_input_responses = 1;
            } else if (key == "protocolVersion") {
                if (get(value.type(), "bad protocolVersion") == ondemand::json_type::string && !out->protocol_version.ptr)
                    out->protocol_version = str(get(value.get_string(), "bad protocolVersion"));
            } else if (key == "_meta") {
                if (get(value.type(), "bad _meta") != ondemand::json_type::object) fail(MCO_RPC_INVALID, "params._meta must be an object");
                meta(value, out);
            } else if (key == "arguments") {
                const char *arguments = value.raw_json_token().data();
                canonical.clear();
                canon(value, canonical, 0);
                out->arguments_raw = str(span_from(arguments));
                out->arguments_canonical = str(canonical);
                out->arguments_hash = XXH3_64bits(canonical.data(), canonical.size());
            }
        }
        out->params_raw = str(span_from(start));
    }

    void result(ondemand::value v, mco_rpc_message *out) {
        const char *start = v.raw_json_token().data();
        if (get(v.type(), "bad result") != ondemand::json_type::object) {
            out->result_raw = str(raw(v));
            return;
        }
        for (auto field : get(v.get_object(), "bad result")) {
            ondemand::field f = get(std::move(field), "bad result member");
            string_view key = get(f.unescaped_key(), "bad key");
            ondemand::value value = f.value();
            ondemand::json_type type = get(value.type(), "bad result member");
            if (key == "resultType" && type == ondemand::json_type::string) {
                out->result_type = str(get(value.get_string(), "bad resultType"));
            } else if (key == "requestState" && type == ondemand::json_type::string) {
                // An input_required result's sealed state (the retry must go back to its server).
                out->request_state = str(get(value.get_string(), "bad requestState"));
            } else if (key == "isError" && type == ondemand::json_type::boolean) {
                out->result_is_error = get(value.get_bool(), "bad isError") ? 1 : 0;
            } else if (key == "ttlMs" && type == ondemand::json_type::number) {
                int64_t ttl;
                if (!value.get_int64().get(ttl) && ttl >= 0) out->result_ttl_ms = ttl;
            } else if (key == "cacheScope" && type == ondemand::json_type::string) {
                out->result_cache_scope = str(get(value.get_string(), "bad cacheScope"));
            } else if (key == "nextCursor" && type == ondemand::json_type::string) {
                out->result_next_cursor = str(get(value.get_string(), "bad nextCursor"));
            }
        }
        out->result_raw = str(span_from(start));
    }

    void error(ondemand::value v, mco_rpc_message *out) {
        const char *start = v.raw_json_token().data();
        bool has_code = false;
        for (auto field : get(v.get_object(), "error must be an object")) {
            ondemand::field f = get(std::move(field), "bad error member");
            string_view key = get(f.unescaped_key(), "bad key");
            if (key == "code") {
                out->error_code = get(f.value().get_int64(), "error.code must be an integer");
                has_code = true;
            } else if (key == "message") {
                out->error_message = str(get(f.value().get_string(), "error.message must be a string"));
            } else if (key == "data") {
                out->error_data_raw = str(raw(f.value()));
            }
        }
        (void)start;
        if (!has_code) fail(MCO_RPC_INVALID, "error has no code");
        if (!out->error_message.ptr) fail(MCO_RPC_INVALID, "error has no message");
    }

    void id(ondemand::value v, mco_rpc_message *out) {
        out->id_raw = str(strip(v.raw_json_token()));
        switch (get(v.type(), "bad id")) {
        case ondemand::json_type::number: {
            int64_t i;
            if (!v.get_int64().get(i)) {
                out->id_kind = MCO_ID_INT;
                out->id_int = i;
            } else {
                out->id_kind = MCO_ID_OTHER;
            }
            break;
        }
        case ondemand::json_type::string:
            out->id_kind = MCO_ID_STRING;
            out->id_string = str(get(v.get_string(), "bad id"));
            break;
        case ondemand::json_type::null: out->id_kind = MCO_ID_NULL; break;
        default:
            out->id_kind = MCO_ID_OTHER;
            out->id_raw = str(raw(v));
        }
    }

    void decode(const char *bytes, size_t length, size_t capacity, mco_rpc_message *out) {
        std::memset(out, 0, sizeof *out);
        out->result_ttl_ms = -1;
        padded_string_view view;
        if (capacity >= length + SIMDJSON_PADDING) {
            view = padded_string_view(bytes, length, capacity);
        } else {
            padded.assign(bytes, length);
            padded.append(SIMDJSON_PADDING, ' ');
            view = padded_string_view(padded.data(), length, padded.size());
        }
        out->source = mco_str{view.data(), length};
        check(parser.iterate(view).get(doc), "not JSON");
        ondemand::json_type type = get(doc.type(), "not JSON");
        if (type == ondemand::json_type::array) fail(MCO_RPC_BATCH, "a batch (array) of messages");
        if (type != ondemand::json_type::object) fail(MCO_RPC_INVALID, "a JSON-RPC message is an object");

        bool version = false, has_id = false, has_method = false, has_result = false, has_error = false;
        for (auto field : get(doc.get_object(), "not JSON")) {
            ondemand::field f = get(std::move(field), "bad member");
            string_view key = get(f.unescaped_key(), "bad key");
            ondemand::value value = f.value();
            if (key == "jsonrpc") {
                string_view v = get(value.get_string(), "jsonrpc must be \"2.0\"");
                if (v != "2.0") fail(MCO_RPC_INVALID, "jsonrpc must be \"2.0\"");
                version = true;
            } else if (key == "id") {
                id(value, out);
                has_id = true;
            } else if (key == "method") {
                out->method = str(get(value.get_string(), "method must be a string"));
                has_method = true;
            } else if (key == "params") {
                params(value, out);
            } else if (key == "result") {
                result(value, out);
                has_result = true;
            } else if (key == "error") {
                error(value, out);
                has_error = true;
            }
        }
        if (!at_end()) fail(MCO_RPC_NOT_JSON, "trailing content after the message");
        if (!version) fail(MCO_RPC_INVALID, "missing \"jsonrpc\": \"2.0\"");
        if (has_method) {
            if (has_result || has_error) fail(MCO_RPC_INVALID, "a message has a method or a result/error, not both");
            out->kind = has_id ? MCO_KIND_REQUEST : MCO_KIND_NOTIFICATION;
            if (has_id && out->id_kind != MCO_ID_INT && out->id_kind != MCO_ID_STRING) fail(MCO_RPC_INVALID, "a request id is a string or an integer");
        } else if (has_result && has_error) {
            fail(MCO_RPC_INVALID, "a response has a result or an error, not both");
        } else if (has_result || has_error) {
            if (!has_id) fail(MCO_RPC_INVALID, "a response has an id");
            out->kind = has_result ? MCO_KIND_RESULT : MCO_KIND_ERROR;
        } else {
            fail(MCO_RPC_INVALID, "neither a request (method) nor a response (result or error)");
        }
    }
};

extern "C" mco_rpc_decoder *mco_rpc_decoder_new(void) {
    try {
        return new mco_rpc_decoder();
    } catch (...) {
        return nullptr;
    }
}

extern "C" void mco_rpc_decoder_free(mco_rpc_decoder *decoder) { delete decoder; }

extern "C" int mco_rpc_decode(mco_rpc_decoder *decoder, const char *bytes, size_t length, mco_rpc_message *out,
                              const char **detail) {
    *detail = "";
    static const char empty = 0;
    if (decoder->memo && length == decoder->last.source.len && length > 0 && std::memcmp(bytes, decoder->padded.data(), length) == 0) {
        *out = decoder->last;
        return MCO_RPC_OK;
    }
    decoder->memo = false;
    try {
        decoder->decode(bytes ? bytes : &empty, length, 0, out);
        decoder->last = *out;
        decoder->memo = true;
        return MCO_RPC_OK;
    } catch (const Failure &f) {
        *detail = f.detail;
        return f.status;
    } catch (const std::bad_alloc &) {
        *detail = "out of memory";
        return MCO_RPC_INTERNAL;
    } catch (...) {
        *detail = "unexpected failure";
        return MCO_RPC_INTERNAL;
    }
}

extern "C" int mco_json_canonicalize(mco_rpc_decoder *decoder, const char *bytes, size_t length, mco_str *out,
                                     uint64_t *hash) {
    static const char empty = 0;
    decoder->memo = false;
    try {
        decoder->padded.assign(bytes ? bytes : &empty, length);
        decoder->padded.append(SIMDJSON_PADDING, ' ');
        padded_string_view view(decoder->padded.data(), length, decoder->padded.size());
        check(decoder->parser.iterate(view).get(decoder->doc), "not JSON");
        decoder->canonical.clear();
        ondemand::value root;
        // A scalar document cannot be read as a value: handle it through its type.
        ondemand::json_type type = get(decoder->doc.type(), "not JSON");
        if (type == ondemand::json_type::object || type == ondemand::json_type::array) {
            check(decoder->doc.get_value().get(root), "not JSON");
            decoder->canon(root, decoder->canonical, 0);
        } else if (type == ondemand::json_type::string) {
            mco_rpc_decoder::escape(decoder->canonical, get(decoder->doc.get_string(), "bad string"));
        } else if (type == ondemand::json_type::number) {
            string_view token = strip(get(decoder->doc.raw_json_token(), "bad number"));
            get(decoder->doc.get_number(), "bad number");
            decoder->canonical.append(token);
        } else if (type == ondemand::json_type::boolean) {
            decoder->canonical += get(decoder->doc.get_bool(), "bad boolean") ? "true" : "false";
        } else {
            if (!decoder->doc.is_null()) fail(MCO_RPC_NOT_JSON, "bad null");
            decoder->canonical += "null";
        }
        if (!decoder->at_end()) fail(MCO_RPC_NOT_JSON, "trailing content");
        *out = str(decoder->canonical);
        *hash = XXH3_64bits(decoder->canonical.data(), decoder->canonical.size());
        return MCO_RPC_OK;
    } catch (const Failure &f) {
        return f.status;
    } catch (...) {
        return MCO_RPC_INTERNAL;
    }
}

extern "C" uint64_t mco_hash64(const void *bytes, size_t length, uint64_t seed) {
    return XXH3_64bits_withSeed(bytes, length, seed);
}
