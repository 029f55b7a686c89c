#include "mcpopt_http_shim.h"
#include <http_parser.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

typedef struct span { size_t offset, length; } span;
/* `key`: the name's length and its first and last letters, lowercase (name_key): header lookups
 * compare it before the name. Set once the head is complete. */
typedef struct header { span name, value; uint32_t key; } header;

struct mco_http {
    http_parser parser;
    http_parser_settings settings;
    int kind;
    size_t max_head, max_headers;
    /* The head: target and header text, in one growing buffer. */
    char *head;
    size_t head_length, head_capacity;
    span target;
    header *headers;
    size_t header_count, header_capacity;
    int in_value;          /* the last header callback was a value */
    int head_done, message_done, expect_head;
    int64_t content_length;  /* read at the end of the head: http-parser counts it down */
    const char *error;
    char *body;
    size_t body_length, body_capacity;
    /* The fast path (see fast_message): whether it may run, whether http-parser sits at a
     * message start (never fed, or its last message kept the connection), and the current
     * message's own fields when the fast path read it. */
    int fast_enabled, slow_at_start, fast;
    int fast_method, fast_status;
    uint64_t fast_remaining;   /* body bytes still to come */
};

static inline char lower(char c) { return (c >= 'A' && c <= 'Z') ? (char)(c | 0x20) : c; }

/* Eight bytes with their ASCII capitals lowercased (other bytes unchanged). */
static inline uint64_t lower8(uint64_t x) {
    const uint64_t highs = 0x8080808080808080ull;
    uint64_t seven = x & ~highs;
    uint64_t upper = ((seven + 0x3f3f3f3f3f3f3f3full) ^ (seven + 0x2525252525252525ull)) & ~x & highs;
    return x | (upper >> 2);
}

/* Whether a[0..n) and b[0..n) are equal ignoring ASCII case, eight bytes at a time. */
static inline int same_ignoring_case(const char *a, const char *b, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t x, y;
        memcpy(&x, a + i, 8);
        memcpy(&y, b + i, 8);
        if (x != y && lower8(x) != lower8(y)) return 0;
    }
    for (; i < n; i++) if (a[i] != b[i] && lower(a[i]) != lower(b[i])) return 0;
    return 1;
}

static inline uint32_t name_key(const char *name, size_t length) {
    if (length == 0) return 0;
    return (uint32_t)(length << 16) | (uint32_t)(unsigned char)lower(name[0]) << 8 | (uint32_t)(unsigned char)lower(name[length - 1]);
}

static int grow(char **buf, size_t *capacity, size_t needed) {
    if (needed <= *capacity) return 1;
    size_t next = *capacity ? *capacity : 256;
    while (next < needed) next *= 2;
    char *p = realloc(*buf, next);
    if (!p) return 0;
    *buf = p;
    *capacity = next;
    return 1;
}

static int append_head(mco_http *h, const char *at, size_t length, span *into) {
    if (h->head_length + length > h->max_head) { h->error = "message head too large"; return -1; }
    if (!grow(&h->head, &h->head_capacity, h->head_length + length)) { h->error = "out of memory"; return -1; }
    if (into->length == 0) into->offset = h->head_length;
    memcpy(h->head + h->head_length, at, length);
    h->head_length += length;
    into->length += length;
    return 0;
}

static mco_http *self(http_parser *p) { return (mco_http *)p->data; }

static int on_url(http_parser *p, const char *at, size_t length) {
    return append_head(self(p), at, length, &self(p)->target);
}

static int on_header_field(http_parser *p, const char *at, size_t length) {
    mco_http *h = self(p);
    if (h->in_value || h->header_count == 0) {
        if (h->header_count >= h->max_headers) { h->error = "too many headers"; return -1; }
        if (h->header_count == h->header_capacity) {
            size_t next = h->header_capacity ? h->header_capacity * 2 : 16;
            header *grown = realloc(h->headers, next * sizeof *grown);
            if (!grown) { h->error = "out of memory"; return -1; }
            h->headers = grown;
            h->header_capacity = next;
        }
        memset(&h->headers[h->header_count++], 0, sizeof(header));
        h->in_value = 0;
    }
    return append_head(h, at, length, &h->headers[h->header_count - 1].name);
}

static int on_header_value(http_parser *p, const char *at, size_t length) {
    mco_http *h = self(p);
    h->in_value = 1;
    return append_head(h, at, length, &h->headers[h->header_count - 1].value);
}

static int on_headers_complete(http_parser *p) {
    mco_http *h = self(p);
    h->head_done = 1;
    for (size_t i = 0; i < h->header_count; i++) {
        header *x = &h->headers[i];
        x->key = name_key(h->head + x->name.offset, x->name.length);
    }
    h->content_length = (p->flags & F_CHUNKED) || p->content_length == ULLONG_MAX ? -1 : (int64_t)p->content_length;
    /* 1 tells http-parser the response has no body (HEAD). */
    return (h->kind == MCO_HTTP_RESPONSE && h->expect_head) ? 1 : 0;
}

static int on_body(http_parser *p, const char *at, size_t length) {
    mco_http *h = self(p);
    if (!grow(&h->body, &h->body_capacity, h->body_length + length)) { h->error = "out of memory"; return -1; }
    memcpy(h->body + h->body_length, at, length);
    h->body_length += length;
    return 0;
}

static int on_message_complete(http_parser *p) {
    mco_http *h = self(p);
    h->message_done = 1;
    /* http-parser moved to the next message's start, unless the connection must close. */
    h->slow_at_start = http_should_keep_alive(p);
    http_parser_pause(p, 1); /* one message at a time */
    return 0;
}

/* ---- The fast path ----
 * Nearly every peer sends one plain shape: HTTP/1.1, a common method, an origin-form target,
 * header lines of visible ASCII, and a body delimited by Content-Length (or none, for a
 * request). A whole head of that shape in the bytes fed is read here in one pass; http-parser
 * spent about 6,000 instructions on a gateway request (a byte-wise state machine with a callback
 * per header piece, see BENCHMARKS.md). Anything else, and a head split across reads, goes to
 * http-parser from a message start. The fuzz target `http` and the protocol tests compare the
 * two on every input the fast path takes. */

/* RFC 9110 tchar: what a header name is made of. */
static const unsigned char tchars[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 1, 0, 1, 1, 1, 1, 1, 0, 0, 1, 1, 0, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 0, 1, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
};

static inline int plain_byte(unsigned char c) { return (c >= 0x20 && c < 0x7f) || c == '\t'; }

/* Whether every byte of p[0..n) is visible ASCII, a space or a tab. Eight bytes at a time: a
 * word with a byte at or over 0x80, under 0x20 (tabs among them) or 0x7F is checked byte by byte. */
static int plain_text(const unsigned char *p, size_t n) {
    const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t x, del;
        memcpy(&x, p + i, 8);
        del = x ^ (0x7f * ones);
        if (((x | ((x - 0x20 * ones) & ~x) | ((del - ones) & ~del)) & highs) == 0) continue;
        for (size_t j = i; j < i + 8; j++) if (!plain_byte(p[j])) return 0;
    }
    for (; i < n; i++) if (!plain_byte(p[i])) return 0;
    return 1;
}

/* `text` (length n) equals the lowercase literal `word`, ignoring ASCII case. */
#define equals_word(text, n, word) ((n) == sizeof(word) - 1 && same_ignoring_case((text), (word), sizeof(word) - 1))

static int64_t take_fast_body(mco_http *h, const char *bytes, size_t length) {
    size_t take = length < h->fast_remaining ? length : (size_t)h->fast_remaining;
    if (take) {
        if (!grow(&h->body, &h->body_capacity, h->body_length + take)) { h->error = "out of memory"; return -1; }
        memcpy(h->body + h->body_length, bytes, take);
        h->body_length += take;
        h->fast_remaining -= take;
    }
    if (h->fast_remaining == 0) h->message_done = 1;
    return (int64_t)take;
}

/* Reads a whole message head of the plain shape at the start of `bytes`, and what body follows.
 * Returns the bytes used, 0 to leave the message to http-parser (nothing changed), -1 out of
 * memory. */
static int64_t fast_message(mco_http *h, const char *bytes, size_t length) {
    const char *p = bytes, *end = bytes + length;
    int method = 0, status = 0;
    span target = {0, 0};
    if (h->kind == MCO_HTTP_REQUEST) {
        static const struct { const char *text; size_t length; int method; } methods[] = {
            {"POST /", 6, HTTP_POST}, {"GET /", 5, HTTP_GET}, {"DELETE /", 8, HTTP_DELETE}, {"PUT /", 5, HTTP_PUT},
            {"HEAD /", 6, HTTP_HEAD}, {"OPTIONS /", 9, HTTP_OPTIONS}, {"PATCH /", 7, HTTP_PATCH},
        };
        size_t i = 0, count = sizeof methods / sizeof methods[0];
        while (i < count && !(length >= methods[i].length && memcmp(p, methods[i].text, methods[i].length) == 0)) i++;
        if (i == count) return 0;
        method = methods[i].method;
        p += methods[i].length - 1;               /* the target starts at its '/' */
        const char *start = p;
        while (p < end && (unsigned char)*p > 0x20 && (unsigned char)*p < 0x7f && *p != '#') p++;
        if (end - p < 11 || memcmp(p, " HTTP/1.1\r\n", 11) != 0) return 0;
        target = (span){(size_t)(start - bytes), (size_t)(p - start)};
        p += 11;
    } else {
        if (h->expect_head || length < 13 || memcmp(p, "HTTP/1.1 ", 9) != 0 || p[12] != ' ') return 0;
        for (int i = 9; i < 12; i++) {
            if (p[i] < '0' || p[i] > '9') return 0;
            status = status * 10 + (p[i] - '0');
        }
        /* 1xx, 204 and 304 have no body whatever the headers say: http-parser's. */
        if (status < 200 || status == 204 || status == 304) return 0;
        p += 13;
        while (p < end && plain_byte((unsigned char)*p)) p++;   /* the reason phrase */
        if (end - p < 2 || p[0] != '\r' || p[1] != '\n') return 0;
        p += 2;
    }
    int64_t content_length = -1;
    size_t count = 0;
    for (;;) {
        if (end - p < 2) return 0;
        if (p[0] == '\r') {
            if (p[1] != '\n') return 0;
            p += 2;
            break;
        }
        const char *name = p;
        while (p < end && tchars[(unsigned char)*p]) p++;
        if (p == name || p == end || *p != ':') return 0;
        size_t name_length = (size_t)(p - name);
        p++;
        while (p < end && (*p == ' ' || *p == '\t')) p++;
        const char *value = p;
        /* Visible ASCII with inner blanks, ending on a visible character right before CRLF. */
        const char *cr = memchr(p, '\r', (size_t)(end - p));
        if (!cr || end - cr < 2 || cr[1] != '\n' || cr == value || cr[-1] == ' ' || cr[-1] == '\t'
            || !plain_text((const unsigned char *)value, (size_t)(cr - value))) return 0;
        size_t value_length = (size_t)(cr - value);
        p = cr + 2;
        if (count == h->max_headers) return 0;
        /* The headers that decide framing and the connection: only their plainest forms. Any
         * name that begins with "transfer-encoding" goes to http-parser too: it takes
         * "Transfer-Encodingx" for Transfer-Encoding (and refuses a request that has it without
         * chunked), and the fast path reads what http-parser reads (found by the fuzzer). */
        if (name_length >= 17 && lower(name[0]) == 't' && same_ignoring_case(name, "transfer-encoding", 17)) return 0;
        switch (name_length) {
        case 14:
            if (lower(name[0]) != 'c' || !equals_word(name, name_length, "content-length")) break;
            if (content_length >= 0 || value_length > 15) return 0;
            content_length = 0;
            for (size_t i = 0; i < value_length; i++) {
                if (value[i] < '0' || value[i] > '9') return 0;
                content_length = content_length * 10 + (value[i] - '0');
            }
            break;
        case 10:
            if (lower(name[0]) == 'c' && equals_word(name, name_length, "connection") && !equals_word(value, value_length, "keep-alive")) return 0;
            break;
        case 7:
            if (lower(name[0]) == 'u' && equals_word(name, name_length, "upgrade")) return 0;
            break;
        case 16:
            if (lower(name[0]) == 'p' && equals_word(name, name_length, "proxy-connection")) return 0;
            break;
        }
        if (count == h->header_capacity) {
            size_t next = h->header_capacity ? h->header_capacity * 2 : 16;
            header *grown = realloc(h->headers, next * sizeof *grown);
            if (!grown) { h->error = "out of memory"; return -1; }
            h->headers = grown;
            h->header_capacity = next;
        }
        h->headers[count++] = (header){{(size_t)(name - bytes), name_length}, {(size_t)(value - bytes), value_length}, name_key(name, name_length)};
    }
    /* A response without a length runs to the connection's end: http-parser's. */
    if (h->kind == MCO_HTTP_RESPONSE && content_length < 0) return 0;
    size_t head_bytes = (size_t)(p - bytes);
    if (head_bytes > h->max_head) return 0;
    if (!grow(&h->head, &h->head_capacity, head_bytes)) { h->error = "out of memory"; return -1; }
    memcpy(h->head, bytes, head_bytes);   /* the spans above are offsets from `bytes` */
    h->head_length = head_bytes;
    h->header_count = count;
    h->target = target;
    h->fast = 1;
    h->fast_method = method;
    h->fast_status = status;
    h->head_done = 1;
    h->content_length = content_length;
    h->fast_remaining = content_length > 0 ? (uint64_t)content_length : 0;
    int64_t body = take_fast_body(h, p, (size_t)(end - p));
    return body < 0 ? -1 : (int64_t)head_bytes + body;
}

mco_http *mco_http_new(int kind, size_t max_head_bytes, size_t max_headers) {
    mco_http *h = calloc(1, sizeof *h);
    if (!h) return NULL;
    h->kind = kind;
    h->max_head = max_head_bytes;
    h->max_headers = max_headers;
    http_parser_settings_init(&h->settings);
    h->settings.on_url = on_url;
    h->settings.on_header_field = on_header_field;
    h->settings.on_header_value = on_header_value;
    h->settings.on_headers_complete = on_headers_complete;
    h->settings.on_body = on_body;
    h->settings.on_message_complete = on_message_complete;
    http_parser_init(&h->parser, kind == MCO_HTTP_REQUEST ? HTTP_REQUEST : HTTP_RESPONSE);
    h->parser.data = h;
    h->error = "";
    h->fast_enabled = 1;
    h->slow_at_start = 1;
    return h;
}

void mco_http_free(mco_http *h) {
    if (!h) return;
    free(h->head);
    free(h->headers);
    free(h->body);
    free(h);
}

void mco_http_next(mco_http *h) {
    http_parser_pause(&h->parser, 0);
    h->head_length = 0;
    h->target = (span){0, 0};
    h->header_count = 0;
    h->in_value = 0;
    h->head_done = h->message_done = 0;
    h->expect_head = 0;
    h->error = "";
    h->body_length = 0;
    h->fast = 0;
    h->fast_remaining = 0;
}

void mco_http_set_fast(mco_http *h, int enabled) { h->fast_enabled = enabled; }
int mco_http_read_fast(const mco_http *h) { return h->fast; }

void mco_http_expect_head_response(mco_http *h, int is_head) { h->expect_head = is_head; }

int64_t mco_http_feed(mco_http *h, const char *bytes, size_t length) {
    if (h->message_done) return 0;
    if (h->fast) return take_fast_body(h, bytes, length);
    if (h->fast_enabled && h->slow_at_start && !h->head_done && h->head_length == 0 && h->header_count == 0) {
        int64_t used = fast_message(h, bytes, length);
        if (used > 0) return used;
        if (used < 0) return -1;
    }
    if (length > 0) h->slow_at_start = 0;
    size_t n = http_parser_execute(&h->parser, &h->settings, bytes, length);
    enum http_errno err = HTTP_PARSER_ERRNO(&h->parser);
    if (err == HPE_PAUSED) return (int64_t)n;
    if (err != HPE_OK) {
        if (!*h->error) h->error = http_errno_description(err);
        return -1;
    }
    return (int64_t)n;
}

int mco_http_finish(mco_http *h) {
    if (h->message_done) return 0;
    if (h->fast) { h->error = http_errno_description(HPE_INVALID_EOF_STATE); return -1; }
    http_parser_execute(&h->parser, &h->settings, NULL, 0);
    enum http_errno err = HTTP_PARSER_ERRNO(&h->parser);
    if (err != HPE_OK && err != HPE_PAUSED) {
        if (!*h->error) h->error = http_errno_description(err);
        return -1;
    }
    if (!h->message_done) { h->error = "connection closed before the message was complete"; return -1; }
    return 0;
}

int mco_http_head_done(const mco_http *h) { return h->head_done; }
int mco_http_message_done(const mco_http *h) { return h->message_done; }
const char *mco_http_error(const mco_http *h) { return h->error; }
int mco_http_status(const mco_http *h) { return h->fast ? h->fast_status : (int)h->parser.status_code; }
const char *mco_http_method(const mco_http *h) {
    return http_method_str((enum http_method)(h->fast ? h->fast_method : h->parser.method));
}
const char *mco_http_target(const mco_http *h, size_t *length) { *length = h->target.length; return h->head + h->target.offset; }
int mco_http_version_minor(const mco_http *h) { return h->fast ? 1 : h->parser.http_minor; }
/* A fast message is HTTP/1.1 without Connection: close, delimited by its length. */
int mco_http_keep_alive(const mco_http *h) { return h->fast ? 1 : http_should_keep_alive(&h->parser); }
int mco_http_chunked(const mco_http *h) { return h->fast ? 0 : (h->parser.flags & F_CHUNKED) != 0; }
int64_t mco_http_content_length(const mco_http *h) { return h->head_done ? h->content_length : -1; }
size_t mco_http_header_count(const mco_http *h) { return h->header_count; }

int mco_http_header(const mco_http *h, size_t index, const char **name, size_t *name_length, const char **value,
                    size_t *value_length) {
    if (index >= h->header_count) return 0;
    const header *x = &h->headers[index];
    *name = h->head + x->name.offset;
    *name_length = x->name.length;
    *value = h->head + x->value.offset;
    *value_length = x->value.length;
    return 1;
}

const char *mco_http_body(const mco_http *h, size_t *length) { *length = h->body_length; return h->body; }
void mco_http_body_take(mco_http *h) { h->body_length = 0; }

int64_t mco_http_find(const mco_http *h, const char *name, size_t name_length, size_t from) {
    uint32_t key = name_key(name, name_length);
    for (size_t i = from; i < h->header_count; i++) {
        const header *x = &h->headers[i];
        if (h->head_done ? x->key != key : x->name.length != name_length) continue;
        if (x->name.length == name_length && same_ignoring_case(h->head + x->name.offset, name, name_length)) return (int64_t)i;
    }
    return -1;
}
