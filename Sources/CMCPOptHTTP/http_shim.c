#include "mcpopt_http_shim.h"
#include <http_parser.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

typedef struct span { size_t offset, length; } span;
typedef struct header { span name, value; } header;

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
};

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
    http_parser_pause(p, 1); /* one message at a time */
    return 0;
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
}

void mco_http_expect_head_response(mco_http *h, int is_head) { h->expect_head = is_head; }

int64_t mco_http_feed(mco_http *h, const char *bytes, size_t length) {
    if (h->message_done) return 0;
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
int mco_http_status(const mco_http *h) { return (int)h->parser.status_code; }
const char *mco_http_method(const mco_http *h) { return http_method_str((enum http_method)h->parser.method); }
const char *mco_http_target(const mco_http *h, size_t *length) { *length = h->target.length; return h->head + h->target.offset; }
int mco_http_version_minor(const mco_http *h) { return h->parser.http_minor; }
int mco_http_keep_alive(const mco_http *h) { return http_should_keep_alive(&h->parser); }
int mco_http_chunked(const mco_http *h) { return (h->parser.flags & F_CHUNKED) != 0; }
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
