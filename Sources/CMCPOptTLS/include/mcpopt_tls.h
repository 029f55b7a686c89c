// The client side of TLS over bytes the caller carries (OpenSSL with memory BIOs): the event
// loop moves ciphertext between the socket and a session, and the HTTP client sees plaintext.
// A session never touches a descriptor, so it works the same on io_uring and on epoll.
// Internal: the `mco_` prefix keeps it out of libmcpopt.so's exported `mcpopt_*` surface.
#ifndef MCO_TLS_H
#define MCO_TLS_H
#include <stddef.h>
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif

// What a client trusts: the system's CA store, or the PEM bundle `ca_file` (a private CA);
// and, when `certificate_file` and `key_file` are given (PEM), the certificate it presents to a
// server that asks for one (mutual TLS). NULL with a message in `error` (size `error_size`)
// when OpenSSL refuses the bundle, the certificate or the key, or they do not match.
typedef struct mco_tls_context mco_tls_context;
mco_tls_context *mco_tls_context_new(const char *ca_file, const char *certificate_file, const char *key_file, char *error, size_t error_size);
void mco_tls_context_free(mco_tls_context *context);

// What a server presents: the certificate chain in `certificate_file` (PEM, the server's own
// first) and its private key. NULL with a message when OpenSSL refuses them, or they do not match.
mco_tls_context *mco_tls_server_context_new(const char *certificate_file, const char *key_file, char *error, size_t error_size);

typedef struct mco_tls mco_tls;

// One accepted connection's server session. NULL when out of memory.
mco_tls *mco_tls_new_server(mco_tls_context *context);

// One connection's session to `host` (its name is sent as SNI unless it is an IP address, and
// the certificate must name it: DNS name or IP address). NULL when out of memory.
mco_tls *mco_tls_new(mco_tls_context *context, const char *host);
void mco_tls_free(mco_tls *tls);

// Results of the calls below.
enum {
    MCO_TLS_OK = 0,        // done
    MCO_TLS_WANT = 1,      // needs bytes from the peer first (handshake) / no plaintext yet (read)
    MCO_TLS_CLOSED = 2,    // the peer ended the session (close_notify)
    MCO_TLS_ERROR = -1,    // failed: mco_tls_error says why (verification, protocol)
};

// Drives the handshake; its bytes for the peer wait in the output (mco_tls_take_output).
int mco_tls_handshake(mco_tls *tls);
int mco_tls_handshake_done(const mco_tls *tls);
// Hands over `length` bytes received from the peer. Returns MCO_TLS_OK or MCO_TLS_ERROR.
int mco_tls_feed(mco_tls *tls, const void *bytes, size_t length);
// Plaintext received, up to `capacity` bytes into `out`; *read is how many.
int mco_tls_read(mco_tls *tls, void *out, size_t capacity, size_t *read);
// Encrypts `length` bytes of plaintext into the output (after the handshake).
int mco_tls_write(mco_tls *tls, const void *bytes, size_t length);
// Bytes waiting to go to the peer, and taking up to `capacity` of them.
size_t mco_tls_output_length(const mco_tls *tls);
size_t mco_tls_take_output(mco_tls *tls, void *out, size_t capacity);
// Why the last call failed ("" when it did not).
const char *mco_tls_error(const mco_tls *tls);
// Client sessions: whether the server asked for a certificate (mutual TLS).
int mco_tls_certificate_requested(const mco_tls *tls);
// Whether the handshake resumed an earlier session (a client context offers the last session
// its server gave, so a reconnect skips the certificate exchange).
int mco_tls_resumed(const mco_tls *tls);

#ifdef __cplusplus
}
#endif
#endif
