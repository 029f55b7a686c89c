#include "mcpopt_json_shim.h"
#include <simdjson.h>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {

struct Writer {
    std::string out;
    void tag(char t) { out.push_back(t); }
    void u32(uint32_t v) { out.append(reinterpret_cast<const char *>(&v), 4); }
    void u64(uint64_t v) { out.append(reinterpret_cast<const char *>(&v), 8); }
    void bytes(std::string_view s) {
        u32(static_cast<uint32_t>(s.size()));
        out.append(s.data(), s.size());
    }
};

void flatten(simdjson::dom::element e, Writer &w) {
    using simdjson::dom::element_type;
    switch (e.type()) {
    case element_type::NULL_VALUE: w.tag('n'); break;
    case element_type::BOOL: w.tag(bool(e) ? 't' : 'f'); break;
    case element_type::INT64: w.tag('i'); w.u64(static_cast<uint64_t>(int64_t(e))); break;
    case element_type::UINT64: w.tag('u'); w.u64(uint64_t(e)); break;
    case element_type::DOUBLE: {
        double d = double(e);
        uint64_t bits;
        std::memcpy(&bits, &d, 8);
        w.tag('d'); w.u64(bits);
        break;
    }
    case element_type::STRING: w.tag('s'); w.bytes(std::string_view(e)); break;
    case element_type::ARRAY: {
        simdjson::dom::array a = e;
        w.tag('a'); w.u32(static_cast<uint32_t>(a.size()));
        for (auto child : a) flatten(child, w);
        break;
    }
    case element_type::OBJECT: {
        simdjson::dom::object o = e;
        w.tag('o'); w.u32(static_cast<uint32_t>(o.size()));
        for (auto field : o) {
            w.bytes(field.key);
            flatten(field.value, w);
        }
        break;
    }
    }
}

int reason(simdjson::error_code err) {
    switch (err) {
    case simdjson::SUCCESS: return MCO_JSON_OK;
    case simdjson::DEPTH_ERROR: return MCO_JSON_DEPTH;
    case simdjson::UTF8_ERROR: return MCO_JSON_UTF8;
    case simdjson::EMPTY: return MCO_JSON_EMPTY;
    case simdjson::MEMALLOC:
    case simdjson::CAPACITY: return MCO_JSON_MEMORY;
    default: return MCO_JSON_SYNTAX;
    }
}

void fail(mco_json_flat *out, simdjson::error_code err) {
    out->error = reason(err);
    out->message = simdjson::error_message(err);
}

} // namespace

extern "C" void mco_json_flatten(const char *bytes, size_t length, size_t max_depth, mco_json_flat *out) {
    out->data = nullptr;
    out->length = 0;
    out->error = 0;
    out->message = "";
    try {
        simdjson::dom::parser parser(simdjson::SIMDJSON_MAXSIZE_BYTES);
        if (max_depth > 0) {
            auto err = parser.allocate(length < 64 ? 64 : length, max_depth);
            if (err) { fail(out, err); return; }
        }
        simdjson::padded_string padded(bytes, length);
        simdjson::dom::element root;
        auto err = parser.parse(padded).get(root);
        if (err) { fail(out, err); return; }
        Writer w;
        w.out.reserve(length + 16);
        flatten(root, w);
        out->data = static_cast<uint8_t *>(std::malloc(w.out.size() ? w.out.size() : 1));
        if (!out->data) { fail(out, simdjson::MEMALLOC); return; }
        std::memcpy(out->data, w.out.data(), w.out.size());
        out->length = w.out.size();
    } catch (const std::bad_alloc &) {
        fail(out, simdjson::MEMALLOC);
    } catch (...) {
        fail(out, simdjson::UNEXPECTED_ERROR);
    }
}

extern "C" void mco_json_flat_free(mco_json_flat *flat) {
    if (!flat) return;
    std::free(flat->data);
    flat->data = nullptr;
    flat->length = 0;
}

extern "C" int mco_utf8_valid(const char *bytes, size_t length) {
    return simdjson::validate_utf8(bytes, length) ? 1 : 0;
}
