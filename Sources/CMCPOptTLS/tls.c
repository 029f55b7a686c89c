#include "mcpopt_tls.h"
#include <arpa/inet.h>
#include <pthread.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct mco_tls_context {
    SSL_CTX *ctx;
    // Client contexts (one per upstream, so one server): the last session the server gave,
    // offered by the next connection so that it resumes instead of a full handshake.
    pthread_mutex_t lock;
    SSL_SESSION *resumable;
};

// OpenSSL hands over each new client session (TLS 1.3: a ticket after the handshake): kept as
// the one to offer next. 1: the reference is ours.
static int keep_session(SSL *ssl, SSL_SESSION *session) {
    mco_tls_context *c = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
    if (!c) return 0;
    pthread_mutex_lock(&c->lock);
    SSL_SESSION *old = c->resumable;
    c->resumable = session;
    pthread_mutex_unlock(&c->lock);
    SSL_SESSION_free(old);
    return 1;
}

struct mco_tls {
    SSL *ssl;
    BIO *in, *out;   // in: what the peer sent, for OpenSSL; out: what OpenSSL sends the peer
    int certificate_requested;   // client: the server asked for a certificate
    char error[256];
};

// Client sessions: OpenSSL calls this when the server asks for a certificate (whether or not
// the context has one): a server that then closes without a word most likely refused ours.
static int note_certificate_request(SSL *ssl, void *arg) {
    (void)ssl;
    ((mco_tls *)arg)->certificate_requested = 1;
    return 1;
}

static void describe(char *error, size_t size, const char *what) {
    unsigned long code = ERR_get_error();
    char reason[200] = "";
    if (code) ERR_error_string_n(code, reason, sizeof reason);
    ERR_clear_error();
    snprintf(error, size, "%s%s%s", what, code ? ": " : "", reason);
}

// Loads a certificate chain and its private key into `ctx`: NULL when done, else what failed.
static const char *use_identity(SSL_CTX *ctx, const char *certificate_file, const char *key_file) {
    if (SSL_CTX_use_certificate_chain_file(ctx, certificate_file) != 1) return "cannot load the certificate";
    if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1) return "cannot load the private key";
    if (SSL_CTX_check_private_key(ctx) != 1) return "the private key does not match the certificate";
    return NULL;
}

// A context for `method` with what clients and servers share (TLS 1.2 or newer, partial
// writes); NULL with the reason in `error`.
static mco_tls_context *context_new(const SSL_METHOD *method, char *error, size_t error_size) {
    mco_tls_context *c = calloc(1, sizeof *c);
    if (!c) { snprintf(error, error_size, "out of memory"); return NULL; }
    pthread_mutex_init(&c->lock, NULL);
    c->ctx = SSL_CTX_new(method);
    if (!c->ctx) { describe(error, error_size, "cannot create a TLS context"); mco_tls_context_free(c); return NULL; }
    SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION);
    // Partial writes: the output BIO never blocks, but a record is written whole either way.
    SSL_CTX_set_mode(c->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    return c;
}

// Gives up on a context being made: the reason (`what`, then OpenSSL's) in `error`; NULL.
static mco_tls_context *context_failed(mco_tls_context *c, const char *what, char *error, size_t error_size) {
    describe(error, error_size, what);
    mco_tls_context_free(c);
    return NULL;
}

mco_tls_context *mco_tls_context_new(const char *ca_file, const char *certificate_file, const char *key_file, char *error, size_t error_size) {
    mco_tls_context *c = context_new(TLS_client_method(), error, error_size);
    if (!c) return NULL;
    SSL_CTX_set_app_data(c->ctx, c);
    SSL_CTX_set_session_cache_mode(c->ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(c->ctx, keep_session);
    SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
    char what[300];
    int ok = ca_file && *ca_file ? SSL_CTX_load_verify_locations(c->ctx, ca_file, NULL) : SSL_CTX_set_default_verify_paths(c->ctx);
    if (ok != 1) {
        snprintf(what, sizeof what, "cannot load the CA certificates %s", ca_file && *ca_file ? ca_file : "of the system");
        return context_failed(c, what, error, error_size);
    }
    const char *failed = certificate_file && *certificate_file ? use_identity(c->ctx, certificate_file, key_file ? key_file : "") : NULL;
    if (failed) {
        snprintf(what, sizeof what, "client certificate %s: %s", certificate_file, failed);
        return context_failed(c, what, error, error_size);
    }
    return c;
}

mco_tls_context *mco_tls_server_context_new(const char *certificate_file, const char *key_file, char *error, size_t error_size) {
    mco_tls_context *c = context_new(TLS_server_method(), error, error_size);
    if (!c) return NULL;
    const char *failed = use_identity(c->ctx, certificate_file, key_file);
    return failed ? context_failed(c, failed, error, error_size) : c;
}

void mco_tls_context_free(mco_tls_context *c) {
    if (!c) return;
    SSL_CTX_free(c->ctx);
    SSL_SESSION_free(c->resumable);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

static int is_ip_address(const char *host) {
    unsigned char buffer[16];
    return inet_pton(AF_INET, host, buffer) == 1 || inet_pton(AF_INET6, host, buffer) == 1;
}

// A session with its two memory BIOs; NULL when out of memory.
static mco_tls *session(mco_tls_context *c) {
    mco_tls *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->ssl = SSL_new(c->ctx);
    t->in = BIO_new(BIO_s_mem());
    t->out = BIO_new(BIO_s_mem());
    if (!t->ssl || !t->in || !t->out) {
        SSL_free(t->ssl);
        BIO_free(t->in);
        BIO_free(t->out);
        free(t);
        return NULL;
    }
    // An empty input reads as "retry", not as the end of the stream.
    BIO_set_mem_eof_return(t->in, -1);
    SSL_set_bio(t->ssl, t->in, t->out);   // the session owns both BIOs now
    return t;
}

mco_tls *mco_tls_new_server(mco_tls_context *c) {
    if (!c) return NULL;
    mco_tls *t = session(c);
    if (t) SSL_set_accept_state(t->ssl);
    return t;
}

mco_tls *mco_tls_new(mco_tls_context *c, const char *host) {
    if (!c || !host) return NULL;
    mco_tls *t = session(c);
    if (!t) return NULL;
    SSL_set_connect_state(t->ssl);
    SSL_set_cert_cb(t->ssl, note_certificate_request, t);
    pthread_mutex_lock(&c->lock);
    if (c->resumable && SSL_SESSION_is_resumable(c->resumable)) SSL_set_session(t->ssl, c->resumable);
    pthread_mutex_unlock(&c->lock);
    X509_VERIFY_PARAM *param = SSL_get0_param(t->ssl);
    if (is_ip_address(host)) {
        X509_VERIFY_PARAM_set1_ip_asc(param, host);
    } else {
        SSL_set_tlsext_host_name(t->ssl, host);
        X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        X509_VERIFY_PARAM_set1_host(param, host, 0);
    }
    return t;
}

void mco_tls_free(mco_tls *t) {
    if (!t) return;
    // A connection that ends without a close_notify sent makes OpenSSL mark its session not
    // resumable. HTTP connections end that way all the time (an idle close, a pool shrinking),
    // so an established one is shut down quietly here (nothing is sent) and its session stays
    // good for the next connection. A fatal alert has already spoiled it, as it should.
    if (SSL_is_init_finished(t->ssl)) {
        SSL_set_quiet_shutdown(t->ssl, 1);
        SSL_shutdown(t->ssl);
    }
    ERR_clear_error();
    SSL_free(t->ssl);
    free(t);
}

// The outcome of an SSL_* call that returned `rc`.
static int outcome(mco_tls *t, int rc, const char *what) {
    int e = SSL_get_error(t->ssl, rc);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) { ERR_clear_error(); return MCO_TLS_WANT; }
    if (e == SSL_ERROR_ZERO_RETURN) { ERR_clear_error(); return MCO_TLS_CLOSED; }
    long verify = SSL_get_verify_result(t->ssl);
    if (verify != X509_V_OK) {
        snprintf(t->error, sizeof t->error, "%s: the server's certificate was not accepted: %s", what, X509_verify_cert_error_string(verify));
        ERR_clear_error();
    } else {
        describe(t->error, sizeof t->error, what);
    }
    return MCO_TLS_ERROR;
}

int mco_tls_handshake(mco_tls *t) {
    int rc = SSL_do_handshake(t->ssl);
    return rc == 1 ? MCO_TLS_OK : outcome(t, rc, "TLS handshake failed");
}

int mco_tls_handshake_done(const mco_tls *t) { return SSL_is_init_finished(t->ssl); }

int mco_tls_feed(mco_tls *t, const void *bytes, size_t length) {
    while (length > 0) {
        size_t written = 0;
        if (BIO_write_ex(t->in, bytes, length, &written) != 1) { describe(t->error, sizeof t->error, "TLS input"); return MCO_TLS_ERROR; }
        bytes = (const char *)bytes + written;
        length -= written;
    }
    return MCO_TLS_OK;
}

int mco_tls_read(mco_tls *t, void *out, size_t capacity, size_t *read) {
    *read = 0;
    // Nothing fed and nothing decrypted left: the answer is "wait", without a trip through the
    // record layer (a call after every record read; about 2k instructions each).
    if (BIO_ctrl_pending(t->in) == 0 && SSL_pending(t->ssl) == 0 && SSL_is_init_finished(t->ssl)) return MCO_TLS_WANT;
    if (SSL_read_ex(t->ssl, out, capacity, read) == 1) return MCO_TLS_OK;
    return outcome(t, 0, "TLS read failed");
}

int mco_tls_write(mco_tls *t, const void *bytes, size_t length) {
    while (length > 0) {
        size_t written = 0;
        if (SSL_write_ex(t->ssl, bytes, length, &written) != 1) return outcome(t, 0, "TLS write failed");
        bytes = (const char *)bytes + written;
        length -= written;
    }
    return MCO_TLS_OK;
}

size_t mco_tls_output_length(const mco_tls *t) { return BIO_ctrl_pending(t->out); }

size_t mco_tls_take_output(mco_tls *t, void *out, size_t capacity) {
    size_t taken = 0;
    if (capacity == 0 || BIO_read_ex(t->out, out, capacity, &taken) != 1) return 0;
    return taken;
}

const char *mco_tls_error(const mco_tls *t) { return t->error; }

int mco_tls_certificate_requested(const mco_tls *t) { return t && t->certificate_requested; }
int mco_tls_resumed(const mco_tls *t) { return t && SSL_session_reused(t->ssl); }
