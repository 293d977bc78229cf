/* TLS server connections over wolfSSL, sans-I/O: ciphertext in, plaintext out, plaintext in,
 * ciphertext out. The reactor owns the socket; this module never sees a file descriptor,
 * never blocks and never reads a clock.
 *
 * Per connection, the reactor:
 *   1. puts received bytes in with tls_conn_feed() (a copy) or receives straight into
 *      tls_conn_input_space() and reports them with tls_conn_input_commit() (no copy);
 *   2. calls tls_conn_read() until it returns 0 (the handshake is driven from here) and hands
 *      the plaintext up (HTTP/2);
 *   3. encrypts what the upper layer wants to send with tls_conn_write() (accepts nothing
 *      before the handshake is done, less than asked when the output is over its bound);
 *   4. sends what tls_conn_output() returns and reports it with tls_conn_output_consumed().
 * Any of 1–3 may produce output (handshake messages, tickets, alerts): check it after each.
 * A handshake deadline is the reactor's (no clock here): close a connection whose
 * tls_conn_handshake_done() is still false after some seconds (grpc-go's server uses 120 s).
 *
 * Output contract (the same as net/grpc.h): the iovecs from tls_conn_output() stay valid and
 * unchanged until reported sent; output produced meanwhile is appended behind them.
 *
 * Limits: ciphertext waiting to be decrypted is bounded by TLS_CONN_INPUT_MAX (the reactor
 * asks tls_conn_input_room() before receiving, so a peer cannot make it grow); ciphertext
 * waiting to be sent is bounded by TLS_CONN_OUTPUT_MAX (tls_conn_write() then accepts
 * nothing until some is consumed: backpressure to the upper layer).
 *
 * Certificates: a tls_ctx holds the loaded certificate, key, CA and CRL, and is reference
 * counted; each connection holds a reference to the ctx it started with, so replacing the
 * ctx (tls_ctx_reload_if_changed, when a file's mtime changes) affects new
 * connections only. Session tickets are sealed with a process-wide key, so a client resumes
 * across reloads and across ctxs of different reactor threads. Contexts that verify client
 * certificates issue and accept no tickets (wolfSSL would lose the client's CN on resumption).
 *
 * Threads: a tls_conn is used by one thread at a time. A tls_ctx may be shared by connections
 * on many threads (wolfSSL's CTX is read-only once built); the `struct tls_ctx *` variable
 * passed to tls_ctx_reload_if_changed() must be owned by one thread (for example one per
 * reactor thread, each reloading its own).
 */
#ifndef UETCD_TLS_TLS_H
#define UETCD_TLS_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#define TLS_VERSION_1_2 0x0303
#define TLS_VERSION_1_3 0x0304

/* Ciphertext buffered before decryption: two maximal TLS records and some. */
#define TLS_CONN_INPUT_MAX (40u * 1024)
/* Ciphertext queued for sending before tls_conn_write() stops accepting. */
#define TLS_CONN_OUTPUT_MAX (256u * 1024)

struct tls_ctx;
struct tls_conn;

struct tls_server_config {
	const char *cert_file;       /* PEM certificate (chain: leaf first) */
	const char *key_file;        /* PEM private key, RSA or ECDSA (PKCS#1, SEC1 or PKCS#8) */
	const char *trusted_ca_file; /* PEM CA bundle for client certificates, or NULL */
	const char *crl_file;        /* CRL (PEM or DER): client certificates whose serial it lists
				      * are refused (etcd's check: serials only), or NULL */
	bool client_cert_auth;       /* require a client certificate signed by trusted_ca_file (the
				      * system roots if none). As in etcd, a trusted_ca_file alone
				      * requires one too. */
	int min_version;             /* TLS_VERSION_1_2, TLS_VERSION_1_3, 0 = TLS 1.2 */
	int max_version;             /* TLS_VERSION_1_2, TLS_VERSION_1_3, 0 = TLS 1.3 */
	const char *cipher_suites;   /* etcd's (Go's) names, comma-separated; NULL or "" = ECDHE with
				      * ChaCha20-Poly1305 or AES-GCM. Like Go, they restrict TLS 1.2
				      * only; TLS 1.3 keeps its three. */
};

/* Parses etcd's --tls-min-version/--tls-max-version value: "TLS1.2" or "TLS1.3" gives the
 * version, "" gives 0 (default); anything else gives -EINVAL and etcd's message in err. */
int tls_version_parse(const char *s, char *err, size_t errlen);

/* Loads the files and builds a context with one reference. NULL on failure, with a message
 * (etcd's where etcd has one: unknown cipher suite, bad version range). */
struct tls_ctx *tls_ctx_new(const struct tls_server_config *cfg, char *err, size_t errlen);
struct tls_ctx *tls_ctx_ref(struct tls_ctx *ctx);
/* Drops a reference; the last one frees the context. NULL is ignored. */
void tls_ctx_free(struct tls_ctx *ctx);

/* If `force` or the certificate, key, CA or CRL file changed on disk since *ctxp
 * was built (mtime, size or inode), builds a new context from the same configuration and
 * replaces *ctxp with it, dropping the caller's reference to the old one (connections keep
 * theirs). Returns 1 if replaced, 0 if nothing changed, or a negative errno if the new files
 * do not load: the error is logged and *ctxp is kept (it is not retried until the files
 * change again or `force`). Cost when nothing changed: four stat(2) calls; the caller
 * decides how often (etcd re-reads the files on every handshake; once a second is enough). */
int tls_ctx_reload_if_changed(struct tls_ctx **ctxp, bool force);

/* Makes a new process-wide session-ticket key; tickets sealed under the previous one still
 * resume (and get a fresh ticket) until the next rotation, older ones do a full handshake.
 * Thread-safe. Call every few hours for forward secrecy (Go rotates daily). 0 or -EIO. */
int tls_ticket_key_rotate(void);

/* A server connection using ctx (takes a reference). NULL if out of memory. */
struct tls_conn *tls_conn_new(struct tls_ctx *ctx);
void tls_conn_free(struct tls_conn *c);

/* Ciphertext in. Copies all `len` bytes and returns 0, or -ENOBUFS (nothing taken) if they
 * do not fit in tls_conn_input_room(): receive no more than that. -EPIPE after a fatal error
 * or once the connection is closed; -ENOMEM. */
int tls_conn_feed(struct tls_conn *c, const uint8_t *data, size_t len);
/* Free space for ciphertext; 0 means stop receiving until tls_conn_read() has consumed some. */
size_t tls_conn_input_room(const struct tls_conn *c);
/* Zero-copy input: receive up to *room bytes at the returned address (valid until the next
 * call on c), then report how many arrived with tls_conn_input_commit(). NULL with *room 0
 * if out of memory (or after a fatal error: *room is 0). */
uint8_t *tls_conn_input_space(struct tls_conn *c, size_t *room);
void tls_conn_input_commit(struct tls_conn *c, size_t n);

/* Plaintext out. Drives the handshake, then decrypts. Returns the number of plaintext bytes
 * (> 0) put in buf; 0 when more ciphertext is needed; or, when the connection must be closed
 * once the output is sent (an alert may be queued):
 *   -ESHUTDOWN    the peer closed cleanly (close_notify; ours is queued)
 *   -EACCES       the peer's certificate was missing, untrusted, expired or revoked
 *   -EPROTO       any other TLS failure (garbage, wrong version, no common cipher, bad MAC)
 *   -ENOMEM       out of memory
 * Once negative, every later call returns the same value. */
ssize_t tls_conn_read(struct tls_conn *c, uint8_t *buf, size_t cap);

/* Plaintext in. Encrypts and queues up to len bytes; returns how many were taken: 0 before
 * the handshake is done or while the output is at TLS_CONN_OUTPUT_MAX. Negative as for
 * tls_conn_read() after a fatal error. */
ssize_t tls_conn_write(struct tls_conn *c, const uint8_t *data, size_t len);
/* The same for several buffers, taken in order: small ones (gRPC frames) are gathered into
 * full records, large ones are encrypted straight from the caller's memory. */
ssize_t tls_conn_writev(struct tls_conn *c, const struct iovec *iov, size_t iovcnt);

/* Queues close_notify; nothing more can be written. */
void tls_conn_shutdown(struct tls_conn *c);

/* Releases the connection's empty buffers (input, drained output, spare chunk, writev
 * staging): for the reactor to call on a connection that went quiet, so thousands of idle
 * watch connections cost little. They are allocated again on demand. */
void tls_conn_trim(struct tls_conn *c);

/* Ciphertext out: fills up to iov_max iovecs, returns their number. */
size_t tls_conn_output(struct tls_conn *c, struct iovec *iov, size_t iov_max);
/* Reports that n bytes from the front of the output were sent. */
void tls_conn_output_consumed(struct tls_conn *c, size_t n);
size_t tls_conn_output_bytes(const struct tls_conn *c);

bool tls_conn_handshake_done(const struct tls_conn *c);
/* The ALPN protocol selected ("h2" or "http/1.1"), or NULL if the client sent no ALPN.
 * Valid for the connection's lifetime once the handshake is done. */
const char *tls_conn_alpn(const struct tls_conn *c);
/* Copies the verified client certificate's Common Name into buf (NUL-terminated). Returns
 * its length, -ENOENT if there is no verified client certificate or it has no CN, -ENOSPC
 * if cap is too small. */
int tls_conn_peer_cn(const struct tls_conn *c, char *buf, size_t cap);
/* "TLSv1.3", "TLSv1.2" (or NULL before the handshake), and the cipher suite's name. */
const char *tls_conn_version(const struct tls_conn *c);
const char *tls_conn_cipher(const struct tls_conn *c);
bool tls_conn_resumed(const struct tls_conn *c);
/* What went wrong, for the log, once tls_conn_read() or tls_conn_write() failed; else NULL. */
const char *tls_conn_error(const struct tls_conn *c);
/* Logs that a connection was refused and why (tls_conn_error()), rate-limited across the
 * process (see TLS_REJECT_LOG_BURST in tls.c); now_ms is the caller's monotonic clock, this
 * module reads none. Any thread. */
void tls_log_rejected(int reactor, const char *why, uint64_t now_ms);

#endif
