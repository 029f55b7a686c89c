// A C view of simdjson for Swift: parse a document and flatten it into a compact,
// self-describing byte stream that Swift turns into values without a second parse.
#ifndef MCO_JSON_SHIM_H
#define MCO_JSON_SHIM_H
#include <stddef.h>
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif

// Tags of the flattened stream. Integers are little-endian; lengths and counts are u32.
//   'n' null, 't' true, 'f' false,
//   'i' int64, 'u' uint64, 'd' double (8 bytes each),
//   's' u32 length + UTF-8 bytes,
//   'a' u32 count + values,
//   'o' u32 count + (u32 key length + key bytes + value) per member, in document order.
// Why a parse failed (mco_json_flat.error).
enum {
    MCO_JSON_OK = 0,
    MCO_JSON_SYNTAX = 1,    // not JSON
    MCO_JSON_DEPTH = 2,     // nests deeper than max_depth
    MCO_JSON_UTF8 = 3,      // not UTF-8
    MCO_JSON_EMPTY = 4,     // no value at all
    MCO_JSON_MEMORY = 5,    // out of memory, or over simdjson's 4 GiB capacity
};

typedef struct mco_json_flat {
    uint8_t *data;        // owned; release with mco_json_flat_free
    size_t length;
    int error;            // MCO_JSON_OK, or one of the MCO_JSON_* reasons
    const char *message;  // static text describing error (never NULL)
} mco_json_flat;

// Parses `length` bytes at `bytes` (need not be NUL-terminated nor padded).
void mco_json_flatten(const char *bytes, size_t length, size_t max_depth, mco_json_flat *out);
void mco_json_flat_free(mco_json_flat *flat);

// Validates UTF-8 with simdjson's fast validator.
int mco_utf8_valid(const char *bytes, size_t length);

#ifdef __cplusplus
}
#endif
#endif
