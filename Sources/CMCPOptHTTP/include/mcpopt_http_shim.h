// HTTP/1.1 message parsing with Debian's http-parser (nodejs/http-parser 2.9): a pull-style
// wrapper that collects the head and hands body bytes over as they arrive, one message at a time.
#ifndef MCO_HTTP_SHIM_H
#define MCO_HTTP_SHIM_H
#include <stddef.h>
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif

typedef struct mco_http mco_http;

enum { MCO_HTTP_RESPONSE = 0, MCO_HTTP_REQUEST = 1 };

// A parser for responses or requests. Limits: head (request line + headers) and header count.
mco_http *mco_http_new(int kind, size_t max_head_bytes, size_t max_headers);
void mco_http_free(mco_http *h);
// Starts the next message on the same connection (after a complete one).
void mco_http_next(mco_http *h);
// Tells the parser the request method a response answers (HEAD responses have no body).
void mco_http_expect_head_response(mco_http *h, int is_head);

// Feeds bytes. Returns how many were consumed: parsing stops after a complete message, so
// bytes of the next (pipelined) message are left to feed again after mco_http_next. Returns -1
// on a protocol error (see mco_http_error). Body bytes are appended to the body buffer.
int64_t mco_http_feed(mco_http *h, const char *bytes, size_t length);
// The peer closed the connection: completes a body delimited by EOF. Returns 0 or -1.
int mco_http_finish(mco_http *h);

int mco_http_head_done(const mco_http *h);
int mco_http_message_done(const mco_http *h);
const char *mco_http_error(const mco_http *h);   // "" when none

int mco_http_status(const mco_http *h);          // responses
const char *mco_http_method(const mco_http *h);  // requests ("GET", "POST", ...)
const char *mco_http_target(const mco_http *h, size_t *length); // requests: the request target
int mco_http_version_minor(const mco_http *h);   // 1 for HTTP/1.1, 0 for HTTP/1.0
int mco_http_keep_alive(const mco_http *h);      // the connection may carry another message
int mco_http_chunked(const mco_http *h);
int64_t mco_http_content_length(const mco_http *h); // -1 when absent

size_t mco_http_header_count(const mco_http *h);
// Header `index` (0-based): name and value as sent (names keep their case).
int mco_http_header(const mco_http *h, size_t index, const char **name, size_t *name_length,
                    const char **value, size_t *value_length);

// The index of the first header from `from` on named `name` (ASCII case-insensitive), or -1.
int64_t mco_http_find(const mco_http *h, const char *name, size_t name_length, size_t from);
// Whether plain heads are read without http-parser (on by default; off compares the two).
void mco_http_set_fast(mco_http *h, int enabled);
// Whether the fast path read the current message's head.
int mco_http_read_fast(const mco_http *h);

// Body bytes received and not yet taken.
const char *mco_http_body(const mco_http *h, size_t *length);
void mco_http_body_take(mco_http *h);

#ifdef __cplusplus
}
#endif
#endif
